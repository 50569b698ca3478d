"""Streamed responses: a pipeline ``Streaming`` rendered as SSE chunks (after keep-alive comments
while the answer is not ready yet), and an SSE response that cancels its producer when the
client disconnects."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sdm_router.api.edge.disconnect import client_left, request_timeout
from sdm_router.api.errors import error_body, internal_error_body
from sdm_router.api.openai.render.base import RenderContext, Renderer
from sdm_router.api.openai.render.sse import DONE, PING, sse
from sdm_router.api.openai.render.verification import verification_of
from sdm_router.core.errors import GatewayError
from sdm_router.pipeline.serving import Served, Streaming

logger = logging.getLogger(__name__)


async def stream_body(
    renderer: Renderer,
    context: RenderContext,
    streaming: Streaming,
    deadline: float,
    timeout: float,
    request_id: str,
) -> AsyncIterator[bytes]:
    """The chunks of a streamed answer, the verdict on the last one, then ``[DONE]``.

    Finish chunks wait for the verdict (a live stream learns it after the last token). Any
    failure, and running past ``deadline`` (``time.monotonic()``; the request's ``timeout``
    seconds from its start), becomes an error frame and ``[DONE]``.
    """
    model = streaming.decided.model if streaming.decided is not None else streaming.plan.name
    finishes: list[tuple[int, str]] = []
    events = streaming.events
    try:
        opening = renderer.opening(
            context, model, len(streaming.decided.candidates) if streaming.decided else 1
        )
        if opening is not None:
            yield opening
        while True:
            try:
                event = await asyncio.wait_for(anext(events), max(0.0, deadline - time.monotonic()))
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise request_timeout(timeout) from None
            if isinstance(event, Served):
                for chunk in _ending(renderer, context, model, finishes, event):
                    yield chunk
                return
            if event.finish_reason is not None:
                finishes.append((event.index, event.finish_reason))
            if event.text or event.tool_calls or event.refusal:
                yield renderer.piece(context, model, event)
    except GatewayError as error:
        yield sse(error_body(error))
        yield DONE
    except Exception:
        logger.exception("stream failed", extra={"request_id": request_id})
        yield sse(internal_error_body(request_id))
        yield DONE
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def keepalive_then_stream(
    pending: asyncio.Future[Streaming],
    interval: float,
    renderer: Renderer,
    context: RenderContext,
    deadline: float,
    timeout: float,
    request_id: str,
) -> AsyncIterator[bytes]:
    """A stream opened before its answer is ready (a verification still running): ``: ping``
    at once and every ``interval`` seconds until ``pending`` has the ``Streaming``, then its
    chunks (:func:`stream_body`). A failure or the deadline is an error frame and ``[DONE]``;
    closing the stream early cancels ``pending`` (and the upstream calls it makes)."""
    try:
        yield PING
        while not pending.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise request_timeout(timeout)
            await asyncio.wait({pending}, timeout=min(interval, remaining))
            if not pending.done():
                yield PING
        streaming = pending.result()
    except GatewayError as error:
        yield sse(error_body(error))
        yield DONE
        return
    except Exception:
        logger.exception("stream failed", extra={"request_id": request_id})
        yield sse(internal_error_body(request_id))
        yield DONE
        return
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
    chunks = stream_body(renderer, context, streaming, deadline, timeout, request_id)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _ending(
    renderer: Renderer,
    context: RenderContext,
    model: str,
    finishes: list[tuple[int, str]],
    served: Served,
) -> list[bytes]:
    verification = verification_of(served, context.nearest_exemplars)
    finishes = finishes or [(0, "stop")]
    chunks = []
    for number, (index, reason) in enumerate(finishes):
        carries = number == len(finishes) - 1 and not context.include_usage
        chunks.append(
            renderer.finish(context, model, index, reason, verification if carries else None)
        )
    if context.include_usage:
        chunks.append(renderer.usage(context, model, served.result.usage, verification))
    chunks.append(DONE)
    return chunks


class ClosingChunks:
    """``body``'s chunks, with an ``aclose`` that closes ``body`` and then runs ``release``.

    An async generator closed before its first ``anext`` runs none of its ``finally`` blocks,
    so a stream whose response start fails (the client already gone) would leave what its
    body owns (a pending cascade, an upstream stream) running. ``release`` frees those
    whether or not the body ever started; it must be safe to run after the body freed them.
    """

    __slots__ = ("_body", "_release")

    def __init__(self, body: AsyncIterator[bytes], release: Callable[[], Awaitable[None]]) -> None:
        self._body = body
        self._release = release

    def __aiter__(self) -> ClosingChunks:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._body)

    async def aclose(self) -> None:
        """Close the body, then release what it owns."""
        try:
            await self._body.aclose()  # type: ignore[attr-defined]
        finally:
            await self._release()


def decided_stream(
    renderer: Renderer,
    context: RenderContext,
    streaming: Streaming,
    deadline: float,
    timeout: float,
    request_id: str,
) -> ClosingChunks:
    """:func:`stream_body` of a ``Streaming`` in hand; closing it always closes its events."""
    body = stream_body(renderer, context, streaming, deadline, timeout, request_id)
    return ClosingChunks(body, streaming.events.aclose)  # type: ignore[attr-defined]


def pending_stream(
    pending: asyncio.Future[Streaming],
    interval: float,
    renderer: Renderer,
    context: RenderContext,
    deadline: float,
    timeout: float,
    request_id: str,
) -> ClosingChunks:
    """:func:`keepalive_then_stream`; closing it always cancels ``pending`` or, when it has
    finished, closes the events of its ``Streaming``."""
    body = keepalive_then_stream(
        pending, interval, renderer, context, deadline, timeout, request_id
    )

    async def release() -> None:
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        elif not pending.cancelled() and pending.exception() is None:
            await pending.result().events.aclose()  # type: ignore[attr-defined]

    return ClosingChunks(body, release)


class SSEResponse(Response):
    """Streams an async byte iterator as ``text/event-stream``.

    A disconnecting client cancels the producer, and the producer is always closed
    (``aclose``), so upstream connections it holds are released at once.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: dict[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(content=None, status_code=200, headers=headers)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._body = body
        self._on_close = on_close
        self.headers["cache-control"] = "no-cache"
        self.headers["x-accel-buffering"] = "no"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                await client_left(receive)
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                async for chunk in self._body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with anyio.CancelScope(shield=True):
                    await self._body.aclose()  # type: ignore[attr-defined]
                if self._on_close is not None:
                    self._on_close()
            group.cancel_scope.cancel()
