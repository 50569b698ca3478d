"""Run an ASGI app on a real local port in a background thread (for fake upstreams and gateways)."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from sdm_router.api.serve.server import gateway_server
from sdm_router.config import ServerSettings


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn until the block ends; yields the base URL. Idle connections
    stay open as long as the gateway keeps them (``server.keep_alive_seconds``): with uvicorn's
    5 s a busy test could reuse a connection just as the server closed it."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False,
        timeout_keep_alive=math.ceil(ServerSettings().keep_alive_seconds),
    )  # fmt: skip
    with running(uvicorn.Server(config), port) as url:
        yield url


@contextmanager
def serve_gateway_in_thread(app: FastAPI, settings: ServerSettings) -> Iterator[str]:
    """Serve a gateway app as ``sdm-router serve`` does (``gateway_server``: its edge limits,
    keep-alive and drain) until the block ends; yields the base URL."""
    port = free_port()
    with running(gateway_server(app, "127.0.0.1", port, settings), port) as url:
        yield url


@contextmanager
def running(server: uvicorn.Server, port: int) -> Iterator[str]:
    """Run ``server`` (listening on ``port``) in a thread until the block ends."""
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"server on port {port} failed to start")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on port {port} did not start within 120 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
