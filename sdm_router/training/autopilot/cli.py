"""``sdm-router autopilot``: run the autopilot's loop beside the gateways (``autopilot.run_in:
separate``), or one pass (``--once``); and the factory ``serve`` uses to run it inside a
replica (``run_in: serve``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sdm_router.core.errors import ConfigurationError

if TYPE_CHECKING:
    from sdm_router.config import Settings
    from sdm_router.observability.metrics import GatewayMetrics
    from sdm_router.pipeline.gateway import Companion, Gateway


def serve_companions(
    settings: Settings,
) -> list[Callable[[Gateway, GatewayMetrics], Companion]]:
    """The autopilot as a companion of ``serve`` when ``autopilot.enabled`` and ``run_in:
    serve`` (the replica holding the lease runs it); else nothing."""
    if not settings.autopilot.enabled or settings.autopilot.run_in != "serve":
        return []

    def make(_gateway: Gateway, metrics: GatewayMetrics) -> Companion:
        from sdm_router.storage.database import make_engine
        from sdm_router.storage.registry import ArtifactRegistry
        from sdm_router.training.autopilot.loop import Autopilot

        registry = ArtifactRegistry(make_engine(settings.storage.sqlalchemy_url()))
        return Autopilot(settings, registry, metrics)

    return [make]


def _autopilot(args: argparse.Namespace) -> int:
    from sdm_router.config import load_settings
    from sdm_router.observability.logging import configure_logging
    from sdm_router.observability.metrics import GatewayMetrics
    from sdm_router.storage.registry import ArtifactRegistry
    from sdm_router.training.autopilot.loop import Autopilot

    try:
        settings = load_settings(args.config)
    except ConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    if not settings.autopilot.enabled:
        print("sdm-router: autopilot.enabled is false in this config", file=sys.stderr)
        return 2
    configure_logging(settings.observability.log_level, json=settings.observability.json_logs)
    registry = ArtifactRegistry.connect(settings.storage.sqlalchemy_url())
    pilot = Autopilot(settings, registry, GatewayMetrics())
    try:
        if args.once:
            step = pilot.run_once()
            print(json.dumps(None if step is None else step.as_dict(), indent=2))
            return 0

        async def forever() -> None:
            await pilot.start()
            try:
                await asyncio.Event().wait()
            finally:
                await pilot.close()

        asyncio.run(forever())
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        registry.close()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``autopilot`` to the console script."""
    parser = commands.add_parser(
        "autopilot", help="build, gate and promote the verifier from labelled traffic"
    )
    parser.add_argument("--config", type=Path, default=None, help="the gateway's YAML config")
    parser.add_argument("--once", action="store_true", help="one pass, print its last step")
    parser.set_defaults(func=_autopilot)
