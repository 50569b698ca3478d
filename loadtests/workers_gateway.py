"""The overhead benchmark's gateway served the way ``sdm-router serve [--workers N]`` serves.

``LOADTEST_UPSTREAM_URL=... python -m loadtests.workers_gateway --port 8001 --workers 2`` builds
``loadtests.overhead.gateway_app`` (one-tier routes, ``NoopVerifier``) and serves it with one
draining ``GatewayServer`` (``--workers 1``, as plain ``serve``) or with N ``SO_REUSEPORT``
workers behind the supervisor (``sdm_router.api.serve.workers.serve_workers``, as
``serve --workers N``).
``python -m loadtests.overhead --workers 1,2`` starts it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fastapi import FastAPI

from loadtests.overhead import gateway_app
from sdm_router.api.serve.server import serve
from sdm_router.api.serve.workers import serve_workers
from sdm_router.config import ServerSettings

# A benchmark gateway stops at once: no drain delay, a short grace.
SERVER = ServerSettings(drain_delay_seconds=0, graceful_shutdown_seconds=2)


def bench_app() -> tuple[FastAPI, ServerSettings]:
    """In each worker: the benchmark's gateway app."""
    return gateway_app(), SERVER


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.workers_gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.workers > 1:
        return serve_workers(bench_app, args.host, args.port, args.workers)
    serve(gateway_app(), args.host, args.port, SERVER)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
