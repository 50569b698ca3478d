"""``create_app``: the FastAPI application around a ready-made ``Gateway``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.api.auth import require_admin_key, require_api_key
from service.api.context import AdmissionGate, ApiContext
from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from service.api.routes import admin, decisions, generation, health, models, verify
from service.config import ObservabilitySettings, ServerSettings
from service.observability.metrics import GatewayMetrics
from service.pipeline.gateway import Gateway
from service.pipeline.serving import GenerationServing, VerificationServing
from service.storage.store import DecisionStore
from service.verifier.protocol import ReloadRefused

logger = logging.getLogger(__name__)


def watch_sighup(gateway: Gateway, metrics: GatewayMetrics) -> None:
    """SIGHUP reloads the configured verifier artifact (where the loop can take signals)."""

    async def reload() -> None:
        try:
            info = await gateway.reload_verifier()
        except ReloadRefused as error:
            logger.error(
                "SIGHUP: the verifier artifact was refused, the old one keeps serving: %s", error
            )
            return
        metrics.set_verifier_info(info.artifact_id, info.device)
        logger.info("SIGHUP: verifier artifact %s loaded", info.artifact_id)

    tasks: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        task = asyncio.ensure_future(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_signal)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        logger.debug("SIGHUP reloads are off: this loop cannot take signals")


def create_app(
    gateway: Gateway,
    metrics: GatewayMetrics,
    server: ServerSettings,
    observability: ObservabilitySettings,
    max_nearest_exemplars: int = 25,
    store: DecisionStore | None = None,
) -> FastAPI:
    """Build the app. The gateway's components load in the lifespan, before readiness."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        info = gateway.readiness().components.get("verifier", {})
        metrics.set_verifier_info(info.get("artifact_id", "none"), info.get("device", "none"))
        for name in gateway.plans:
            metrics.declare_route(name)
        watch_sighup(gateway, metrics)
        logger.info("gateway ready", extra={"components": gateway.readiness().components})
        try:
            yield
        finally:
            gateway.begin_draining()
            await gateway.close()
            metrics.shutdown()

    app = FastAPI(
        title="sdm-router",
        version="0.1.0",
        description="OpenAI-compatible gateway whose answers are verified by a calibrated SDM "
        "estimator before they are returned.",
        lifespan=lifespan,
    )
    app.state.context = ApiContext(
        gateway=gateway,
        generation=GenerationServing(gateway, metrics, observability.log_prompts),
        verification=VerificationServing(gateway),
        metrics=metrics,
        server=server,
        observability=observability,
        gate=AdmissionGate(server.max_concurrency),
        max_nearest_exemplars=max_nearest_exemplars,
        store=store,
    )
    install_error_handlers(app)
    authenticated = [Depends(require_api_key)]
    app.include_router(generation.router, dependencies=authenticated)
    app.include_router(verify.router, dependencies=authenticated)
    app.include_router(models.router, dependencies=authenticated)
    app.include_router(decisions.router, dependencies=authenticated)
    app.include_router(admin.router, dependencies=[Depends(require_admin_key)])
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=server.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
