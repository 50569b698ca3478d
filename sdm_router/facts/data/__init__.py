"""Fact tables (CSV) for the task suites and retrieval passages; read with importlib.resources."""
