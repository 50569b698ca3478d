"""A stream that ends before its body ever ran still frees what the body owns.

An async generator closed before its first ``anext`` runs none of its ``finally`` blocks, so a
client gone at the response start used to leave the pending cascade (keep-alive stream) or
the upstream stream (decided stream) running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from sdm_router.api.openai.render.base import RenderContext
from sdm_router.api.openai.render.chat import ChatRenderer
from sdm_router.api.openai.render.streaming import SSEResponse, decided_stream, pending_stream
from sdm_router.pipeline.serving import StreamEvent, Streaming
from tests.support.plans import route_plan

CONTEXT = RenderContext("chatcmpl-x", 0, logprobs=False, top_logprobs=0, include_usage=False,
                        nearest_exemplars=0)  # fmt: skip
PLAN = route_plan("auto")


class UpstreamEvents:
    """An upstream stream that records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        await asyncio.sleep(3600)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def _never_disconnects() -> Message:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


async def _start_fails(message: Message) -> None:
    if message["type"] == "http.response.start":
        raise OSError("the client is gone")


async def _serve_until_start_fails(response: SSEResponse) -> None:
    with pytest.raises(BaseExceptionGroup) as failure:  # the task group wraps it
        await response({"type": "http"}, _never_disconnects, _start_fails)
    assert failure.group_contains(OSError, match="the client is gone")


async def _still_deciding() -> Streaming:
    """Stands in for the cascade deciding a stream: it never finishes."""
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def test_keepalive_stream_whose_start_fails_cancels_the_pending_cascade() -> None:
    cascade = asyncio.ensure_future(_still_deciding())
    closed: list[bool] = []
    chunks = pending_stream(
        cascade, 1.0, ChatRenderer(), CONTEXT, time.monotonic() + 60, 60, "req-1",
    )  # fmt: skip
    await _serve_until_start_fails(SSEResponse(chunks, on_close=lambda: closed.append(True)))
    assert cascade.cancelled()
    assert closed == [True]


async def test_keepalive_stream_whose_cascade_finished_closes_its_upstream_events() -> None:
    events = UpstreamEvents()
    done: asyncio.Future[Streaming] = asyncio.get_running_loop().create_future()
    done.set_result(Streaming(PLAN, None, events))
    chunks = pending_stream(done, 1.0, ChatRenderer(), CONTEXT, time.monotonic() + 60, 60, "r")
    await _serve_until_start_fails(SSEResponse(chunks))
    assert events.closed


async def test_decided_stream_whose_start_fails_closes_its_upstream_events() -> None:
    events = UpstreamEvents()
    streaming = Streaming(PLAN, None, events)
    chunks = decided_stream(ChatRenderer(), CONTEXT, streaming, time.monotonic() + 60, 60, "r")
    await _serve_until_start_fails(SSEResponse(chunks))
    assert events.closed


async def test_a_stream_that_ran_closes_its_events_once_more_harmlessly() -> None:
    events = UpstreamEvents()
    streaming = Streaming(PLAN, None, events)
    chunks = decided_stream(ChatRenderer(), CONTEXT, streaming, time.monotonic() + 0.05, 1, "r")
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    await SSEResponse(chunks)({"type": "http"}, _never_disconnects, record)
    bodies = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"request_timeout" in bodies and bodies.endswith(b"data: [DONE]\n\n")
    assert events.closed
