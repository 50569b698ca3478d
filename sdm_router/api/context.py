"""What route handlers need, stored on ``app.state`` by ``create_app``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from starlette.types import Receive

from sdm_router.config import ObservabilitySettings, ServerSettings
from sdm_router.core.errors import Overloaded, UpstreamTimeout
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.pipeline.embeddings import EmbeddingsServing
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.serving import GenerationServing, VerificationServing
from sdm_router.storage.store import DecisionStore

if TYPE_CHECKING:
    from sdm_router.api.limits import KeyLimiter

T = TypeVar("T")


class AdmissionGate:
    """Bounds requests in flight; a full gate refuses at once (429), it never queues."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def acquire(self) -> None:
        """Take a slot or refuse with ``Overloaded``."""
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"The gateway is at its limit of {self.limit} concurrent requests; retry shortly."
            )
        self.in_flight += 1

    def release(self) -> None:
        """Give a slot back (exactly once per ``acquire``)."""
        self.in_flight -= 1

    def __enter__(self) -> AdmissionGate:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(slots=True)
class ApiContext:
    """Shared state of the HTTP layer."""

    gateway: Gateway
    generation: GenerationServing
    verification: VerificationServing
    metrics: GatewayMetrics
    server: ServerSettings
    observability: ObservabilitySettings
    gate: AdmissionGate
    limiter: KeyLimiter
    max_nearest_exemplars: int
    store: DecisionStore | None = None
    embeddings: EmbeddingsServing = field(default_factory=EmbeddingsServing)


def context_of(request: Request) -> ApiContext:
    """The ``ApiContext`` of the app serving ``request``."""
    context: ApiContext = request.app.state.context
    return context


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


def request_timeout(seconds: float) -> UpstreamTimeout:
    """The 504 for a request that outran ``server.request_timeout_seconds``."""
    return UpstreamTimeout(
        f"The request did not finish within {seconds:g} s (server.request_timeout_seconds).",
        code="request_timeout",
    )


async def client_left(receive: Receive) -> None:
    """Return once the client has disconnected (the request's other messages are dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(
    request: Request, work: Awaitable[T], timeout: float | None = None
) -> T:
    """Await ``work``, cancelling it (and the upstream calls it makes) if the client leaves or
    ``timeout`` seconds pass (then ``UpstreamTimeout``, a 504)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_left(request.receive))
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if task in done and not task.cancelled():
        return task.result()
    await asyncio.gather(task, return_exceptions=True)
    if watcher in done or timeout is None:
        raise ClientDisconnected
    raise request_timeout(timeout)
