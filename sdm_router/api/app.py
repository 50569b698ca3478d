"""``create_app``: the FastAPI application around a ready-made ``Gateway``."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from sdm_router.api.console import pages as console
from sdm_router.api.context import ApiContext
from sdm_router.api.edge.admission import AdmissionGate
from sdm_router.api.edge.auth import AuthMiddleware, KeyRing
from sdm_router.api.edge.key_limits import KeyLimiter
from sdm_router.api.edge.limit_store import LimitStore
from sdm_router.api.edge.middleware import (
    BodyLimitMiddleware,
    CloseWhenDrainingMiddleware,
    RequestIdMiddleware,
    RequestLogMiddleware,
)
from sdm_router.api.edge.scope import RequestEdge
from sdm_router.api.edge.text import ValidTextMiddleware
from sdm_router.api.errors import install_error_handlers
from sdm_router.api.openai.fast_route import taken_by
from sdm_router.api.openai.routes import embeddings, generation, models, verify
from sdm_router.api.operations import admin, autopilot, decisions, guarantee, health
from sdm_router.config import AuthSettings, LimitsSettings, ObservabilitySettings, ServerSettings
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.pipeline.embeddings import EmbeddingsServing
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.serving import GenerationServing, VerificationServing
from sdm_router.storage.store import DecisionStore
from sdm_router.verifier.protocol import ReloadRefused

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
    auth: AuthSettings | None = None,
    limits: LimitsSettings | None = None,
    embedding_models: EmbeddingsServing | None = None,
    artifact_roots: Sequence[Path] = (),
) -> FastAPI:
    """Build the app. The gateway's components load in the lifespan, before readiness."""
    auth = auth or AuthSettings()
    ring = KeyRing(auth)
    gate = AdmissionGate(server.max_concurrency)
    limiter = KeyLimiter(LimitStore(limits or LimitsSettings(), metrics), gate, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        info = gateway.readiness().components.get("verifier", {})
        metrics.set_verifier_info(info.get("artifact_id", "none"), info.get("device", "none"))
        for name in gateway.plans:
            metrics.declare_route(name)
        watch_sighup(gateway, metrics)
        logger.info("gateway ready", extra={"components": gateway.readiness().components})
        # The start-up heap (frameworks, model code, loaded components: ~350k objects) lives as
        # long as the process. Frozen (O(1)), the cyclic GC stops walking it: a full collection
        # while serving took ~0.4 s (a p99 stall) and now takes a few ms.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # several apps in one process (tests): their heaps collectable again
            gateway.begin_draining()
            await gateway.close()
            await limiter.store.close()
            metrics.shutdown()

    app = FastAPI(
        title="sdm-router",
        version="0.1.0",
        description="OpenAI-compatible gateway whose answers are verified by a calibrated SDM "
        "estimator before they are returned.",
        lifespan=lifespan,
        # no 307 to the slash-less path: Starlette builds its URL from the Host header, which
        # the client chooses; a trailing slash is a 404 in the envelope (docs/security.md)
        redirect_slashes=False,
    )
    embeddings_serving = embedding_models or EmbeddingsServing()
    app.state.context = ApiContext(
        gateway=gateway,
        generation=GenerationServing(gateway, metrics, observability.log_prompts),
        verification=VerificationServing(gateway),
        metrics=metrics,
        server=server,
        observability=observability,
        gate=gate,
        limiter=limiter,
        edge=RequestEdge(gateway, limiter, server.request_timeout_seconds, embeddings_serving),
        max_nearest_exemplars=max_nearest_exemplars,
        store=store,
        embeddings=embeddings_serving,
        artifact_roots=tuple(artifact_roots),
        keys=ring,
    )
    install_error_handlers(app)
    # keys are checked by AuthMiddleware (deny by default, sdm_router/api/edge/auth.py)
    app.include_router(generation.router)
    # first in the router: the hot routes' fast path (the routes above document and back it)
    fast_routes = generation.fast_routes(app.router)
    app.router.routes[0:0] = fast_routes
    app.include_router(verify.router)
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(decisions.router)
    app.include_router(admin.router)
    app.include_router(guarantee.router)
    app.include_router(autopilot.router)
    app.include_router(health.router)
    app.include_router(console.router)
    # every body's text is valid Unicode, or a 400 (the fast path checks its own requests)
    app.add_middleware(ValidTextMiddleware, skip=taken_by(fast_routes))
    app.add_middleware(BodyLimitMiddleware, max_bytes=server.max_body_bytes)
    # keys before bodies: a request without a valid key is refused before its body is read
    app.add_middleware(AuthMiddleware, ring=ring, public_paths=frozenset(auth.public_paths))
    # the last added runs first: request id, then the one log line (413s included) and the 500
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    app.add_middleware(CloseWhenDrainingMiddleware, draining=lambda: gateway.draining)
    app.add_middleware(RequestIdMiddleware)
    return app
