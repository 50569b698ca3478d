"""Backends: where answers are generated (OpenAI-compatible HTTP servers, in-process models)."""
