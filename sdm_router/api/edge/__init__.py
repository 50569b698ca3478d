"""The edge of every request: keys, per-key limits, middleware (request id, body limit, log
line) and the request scope handlers pass to the pipeline."""
