"""The ``sdm-router`` console script: ``serve`` plus the SDM, data and verifier tool groups."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from service.core.errors import ConfigurationError

# Tool groups register themselves on the parser; each module exposes register(subparsers).
TOOL_GROUPS = (
    "service.verifier.sdm.cli",
    "service.training.cli",
)


def _serve(args: argparse.Namespace) -> int:
    """Start the gateway with uvicorn."""
    import uvicorn

    from service.config import load_settings
    from service.main import CONFIG_ENV, build_app
    from service.observability.logging import configure_logging

    try:
        settings = load_settings(args.config)
    except ConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    configure_logging(settings.observability.log_level, json=settings.observability.json_logs)
    grace = int(settings.server.graceful_shutdown_seconds)
    target: Any = "service.main:app_from_environment"
    if args.workers > 1:
        # Each worker process builds its own app from the same file (see docs/observability.md
        # for PROMETHEUS_MULTIPROC_DIR, which several workers need).
        if args.config is not None:
            os.environ[CONFIG_ENV] = str(args.config.resolve())
        multiprocess = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if multiprocess:
            from service.observability.metrics import clear_multiprocess_dir

            clear_multiprocess_dir(multiprocess)
    else:
        target = build_app(settings)
    uvicorn.run(
        target,
        factory=args.workers > 1,
        workers=args.workers if args.workers > 1 else None,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=grace,
    )
    return 0


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
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
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
