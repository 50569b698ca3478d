"""Load tests and benchmarks: gateway overhead (``overhead.py``) and locust scenarios."""
