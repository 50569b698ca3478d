"""Running the app: the uvicorn server of ``serve`` and the worker supervisor of ``--workers``."""
