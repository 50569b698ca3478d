"""One gateway replica for the replica and drain runs: `sdm-router serve` with a no-op verifier.

``python -m loadtests.replicas_gateway --config gateway.yaml --port 8001`` loads the YAML file
with ``SDM_ROUTER_*`` overrides (``load_settings``), builds the real app (``build_app``: backends,
cascade, decision store, auth and limits as configured) with ``NoopVerifier`` in place of the
SDM verifier (so a replica starts in a second and costs no model memory), and serves it with
the same server code as ``sdm-router serve`` (``sdm_router.api.serve.server.serve``: SIGTERM
drains).
``--workers N`` runs N such processes on the port the way ``sdm-router serve --workers N``
does (``sdm_router.api.serve.workers.serve_workers``: ``SO_REUSEPORT``, a drain per worker).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from loadtests.noop_verifier import NoopVerifier
from sdm_router.api.serve.server import serve
from sdm_router.api.serve.workers import serve_workers
from sdm_router.config import ServerSettings, load_settings
from sdm_router.core.errors import ConfigurationError
from sdm_router.main import build_app
from sdm_router.observability.logging import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one replica until SIGTERM (drained) or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.replicas_gateway")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)  # a bad config fails here, with status 2
    except ConfigurationError as error:
        print(f"replicas_gateway: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.observability.log_level, json=settings.observability.json_logs)
    if args.workers > 1:
        factory = functools.partial(replica_app, args.config.resolve())
        return serve_workers(factory, args.host, args.port, args.workers)
    serve(build_app(settings, verifier=NoopVerifier()), args.host, args.port, settings.server)
    return 0


def replica_app(config: Path) -> tuple[FastAPI, ServerSettings]:
    """The replica's app (in each worker with ``--workers``): ``build_app`` + ``NoopVerifier``."""
    settings = load_settings(config)
    configure_logging(settings.observability.log_level, json=settings.observability.json_logs)
    return build_app(settings, verifier=NoopVerifier()), settings.server


if __name__ == "__main__":
    raise SystemExit(main())
