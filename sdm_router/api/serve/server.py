"""Running the gateway under uvicorn, with a drain that really happens.

uvicorn alone stops listening the moment SIGTERM arrives and runs the app's shutdown only after
its sockets are closed, so a readiness probe never sees the drain. ``GatewayServer`` owns the
sequence instead:

1. SIGTERM: ``/readyz`` answers 503 at once (``on_drain`` flips the gateway's drain flag);
   the server keeps accepting and serving, so a load balancer notices the 503 before
   connections start to fail;
2. after ``server.drain_delay_seconds``: the listening sockets close (new connections are
   refused), idle keep-alive connections close, in-flight requests get
   ``server.graceful_shutdown_seconds`` to finish; uvicorn cancels the rest (their upstream
   requests are closed with them);
3. the app's lifespan shutdown: the gateway closes its components and the decision store
   flushes what is queued.

A second SIGTERM, or SIGINT (Ctrl+C), skips the delay: uvicorn's own shutdown starts at once.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from sdm_router.api.context import ApiContext
from sdm_router.api.serve.http_protocol import limited_protocol
from sdm_router.config import ServerSettings

logger = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """``uvicorn.Server`` whose SIGTERM starts a drain: ``on_drain`` at once, listening stops
    ``drain_delay`` seconds later (then uvicorn's graceful shutdown)."""

    def __init__(
        self, config: uvicorn.Config, drain_delay: float, on_drain: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self.drain_delay = drain_delay
        self._on_drain = on_drain
        self._drain_started: float | None = None
        self._drain_logged = False

    @property
    def draining(self) -> bool:
        """Whether a drain has started."""
        return self._drain_started is not None

    def begin_drain(self) -> None:
        """Start the drain (what SIGTERM does); a no-op once one has started."""
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            self._on_drain()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM drains; a second one, or SIGINT, is uvicorn's immediate shutdown."""
        if sig == signal.SIGTERM and not self.draining and not self.should_exit:
            # Not re-raised after the shutdown (uvicorn does that with the signals it takes):
            # a completed drain exits with status 0.
            self.begin_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Every 0.1 s: end the drain delay when it is over."""
        started = self._drain_started
        if started is not None:
            if not self._drain_logged:
                self._drain_logged = True
                logger.info(
                    "SIGTERM: draining; /readyz answers 503, new connections are refused in %.3g s",
                    self.drain_delay,
                )
            if not self.should_exit and time.monotonic() - started >= self.drain_delay:
                logger.info(
                    "drain delay over: refusing new connections; in-flight requests have %s s",
                    self.config.timeout_graceful_shutdown,
                )
                self.should_exit = True
        return await super().on_tick(counter)


def gateway_server(app: FastAPI, host: str, port: int, settings: ServerSettings) -> GatewayServer:
    """The server for an app built by ``create_app``: uvicorn's logging goes to the root logger
    (``configure_logging``), no access log (the request-log middleware writes one line per
    request)."""
    context: ApiContext = app.state.context
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_seconds),
        timeout_keep_alive=math.ceil(settings.keep_alive_seconds),
        # the edge limits uvicorn lacks: head size and count, head and body time, connections
        http=limited_protocol(settings, context.metrics.connection_closed),
    )
    return GatewayServer(config, settings.drain_delay_seconds, context.gateway.begin_draining)


def serve(app: FastAPI, host: str, port: int, settings: ServerSettings) -> None:
    """Serve ``app`` until SIGTERM (drained) or SIGINT."""
    gateway_server(app, host, port, settings).run()
