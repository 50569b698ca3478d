"""The client's side of a request: waiting for work while watching for a disconnect, and the
504 of a request that outran ``server.request_timeout_seconds``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

from sdm_router.api.errors import ClientDisconnected
from sdm_router.core.errors import UpstreamTimeout

T = TypeVar("T")


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
