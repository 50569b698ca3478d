"""The ``sdm-router`` console script: ``serve`` plus the SDM, data and verifier tool groups."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sdm_router.core.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sdm_router.config import ServerSettings, Settings

# Tool groups register themselves on the parser; each module exposes register(subparsers).
TOOL_GROUPS = (
    "sdm_router.verifier.sdm.cli",
    "sdm_router.training.cli",
    "sdm_router.training.router_cli",
    "sdm_router.training.autopilot.cli",
)


def _serve(args: argparse.Namespace) -> int:
    """Start the gateway: one process, or ``--workers N`` behind a supervisor."""
    from sdm_router.config import load_settings
    from sdm_router.observability.logging import configure_logging

    try:
        settings = load_settings(args.config)
    except ConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    configure_logging(settings.observability.log_level, json=settings.observability.json_logs)
    if args.check:
        return _check(_build(settings))
    if args.workers <= 1:
        # One process (the container default): SIGTERM drains (sdm_router/api/serve/server.py).
        from sdm_router.api.serve.server import serve

        serve(_build(settings), host, port, settings.server)
        return 0
    return _supervise(args.config, host, port, args.workers)


def _build(settings: Settings) -> FastAPI:
    """The app, with the autopilot's loop in it when ``autopilot.run_in: serve``."""
    from sdm_router.main import build_app
    from sdm_router.training.autopilot.cli import serve_companions

    return build_app(settings, companions=serve_companions(settings))


def _check(app: FastAPI) -> int:
    """``serve --check``: start every component as serving does (backends, verifier artifact,
    retrieval index, decision store), print the readiness report, stop; no port is bound.
    0 when ready; 1 with the reason when a component refuses to start (a corrupt or
    mismatched artifact, an unreachable database, ...)."""
    import asyncio
    import json

    async def start_and_stop() -> dict[str, object]:
        async with app.router.lifespan_context(app):
            readiness = app.state.context.gateway.readiness()
            return {
                "ready": readiness.ready,
                "components": readiness.components,
                "routes": readiness.routes,
            }

    try:
        report = asyncio.run(start_and_stop())
    except Exception as error:  # every refusal is reported, whatever component raised it
        print(f"sdm-router: the gateway cannot start: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0 if report["ready"] else 1


def _supervise(config: Path | None, host: str, port: int, workers: int) -> int:
    """``--workers N``: N processes on one ``SO_REUSEPORT`` port, each draining on its own,
    metrics aggregated over them (sdm_router/api/serve/workers.py)."""
    from sdm_router.api.serve.workers import serve_workers

    resolved = config.resolve() if config is not None else None
    try:
        return serve_workers(functools.partial(_worker_app, resolved), host, port, workers)
    except ConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2


def _worker_app(config: Path | None) -> tuple[FastAPI, ServerSettings]:
    """In each worker of ``--workers N``: the app built from the config file."""
    from sdm_router.config import load_settings
    from sdm_router.observability.logging import configure_logging

    settings = load_settings(config)
    configure_logging(settings.observability.log_level, json=settings.observability.json_logs)
    return _build(settings), settings.server


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parser = argparse.ArgumentParser(
        prog="sdm-router", description="Uncertainty-aware, OpenAI-compatible LLM gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, default=None, help="YAML config (default: embedded)")
    serve.add_argument("--host", default=None, help="bind address (overrides the config)")
    serve.add_argument("--port", type=int, default=None, help="port (overrides the config)")
    serve.add_argument("--workers", type=int, default=1, help="processes (SO_REUSEPORT)")
    serve.add_argument(
        "--check",
        action="store_true",
        help="start every component (artifacts, models, store), report readiness and exit",
    )
    serve.set_defaults(func=_serve)
    for module_name in TOOL_GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = (
            module.register
        )
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.captureWarnings(True)
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
