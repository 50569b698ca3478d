"""Server-sent events: chunk formats, verify-then-stream and passthrough bodies, and an SSE
response that cancels its producer when the client disconnects."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.api.errors import error_body
from service.api.render import (
    Rendering,
    chat_logprobs,
    completion_logprobs,
    text_pieces,
    usage_object,
)
from service.core.errors import GatewayError
from service.core.generation import Candidate, StreamDelta, Usage

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> bytes:
    """One SSE event."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True, slots=True)
class ChunkWriter:
    """Builds chunks of a chat or legacy completion stream."""

    kind: Literal["chat", "completion"]
    rendering: Rendering
    include_usage: bool

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.rendering.response_id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.rendering.created,
            "model": self.rendering.model,
            "choices": choices,
        }
        if self.kind == "chat":
            chunk["system_fingerprint"] = None
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _choice(
        self, index: int, text: str | None, finish: str | None, logprobs: Any = None
    ) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {} if text is None else {"content": text}
            return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}

    def opening(self, count: int) -> bytes | None:
        """The role-carrying first chunk (chat only)."""
        if self.kind != "chat":
            return None
        choices = [
            {
                "index": i,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
            for i in range(count)
        ]
        return sse(self._chunk(choices))

    def piece(self, index: int, text: str, tokens: tuple[Any, ...] = ()) -> bytes:
        """A content chunk."""
        logprobs = None
        if self.rendering.logprobs and tokens:
            render = chat_logprobs if self.kind == "chat" else completion_logprobs
            logprobs = render(tuple(tokens), self.rendering.top_logprobs)
        return sse(self._chunk([self._choice(index, text, None, logprobs)]))

    def finish(self, index: int, reason: str, verification: dict[str, Any] | None = None) -> bytes:
        """The chunk that ends a choice; carries ``verification`` when it is the last one."""
        chunk = self._chunk([self._choice(index, None, reason)])
        if verification is not None:
            chunk["verification"] = verification
        return sse(chunk)

    def usage(self, usage: Usage, verification: dict[str, Any]) -> bytes:
        """The usage chunk: empty ``choices``, the request's usage, and the verdict."""
        chunk = self._chunk([])
        chunk["usage"] = usage_object(usage)
        chunk["verification"] = verification
        return sse(chunk)


async def replay_answer(
    writer: ChunkWriter,
    candidates: list[Candidate],
    usage: Usage,
    verification: dict[str, Any],
) -> AsyncIterator[bytes]:
    """Verify-then-stream: emit already verified answers as chunks, the verdict last."""
    opening = writer.opening(len(candidates))
    if opening is not None:
        yield opening
    for index, candidate in enumerate(candidates):
        tokens = candidate.token_logprobs or ()
        pieces = text_pieces(candidate.text)
        for number, piece in enumerate(pieces):
            # logprobs of a replayed answer go on its first piece
            yield writer.piece(index, piece, tokens if number == 0 else ())
    last = len(candidates) - 1
    for index, candidate in enumerate(candidates):
        carries = index == last and not writer.include_usage
        yield writer.finish(index, candidate.finish_reason, verification if carries else None)
    if writer.include_usage:
        yield writer.usage(usage, verification)
    yield DONE


def delta_chunk(writer: ChunkWriter, delta: StreamDelta) -> bytes | None:
    """A live delta as a chunk (None for a delta that carries nothing)."""
    if delta.text:
        return writer.piece(delta.index, delta.text, delta.token_logprobs)
    return None


def error_event(error: GatewayError) -> bytes:
    """A mid-stream error frame; the SDK raises ``APIError`` on it."""
    return sse(error_body(error))


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
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        group.cancel_scope.cancel()
                        return

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
