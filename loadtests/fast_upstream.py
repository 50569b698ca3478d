"""A lean OpenAI chat-completions responder: pre-rendered bytes, no JSON parsing per request.

It answers every ``POST`` with the fake upstream's confident answer ("The answer is 42."), with
per-token logprobs, as ``chat.completion`` or, when the body asks for ``"stream": true``, as SSE
chunks ending in ``data: [DONE]``. Any other request gets the model list (a readiness probe).
Serve it with ``uvicorn --factory loadtests.fast_upstream:create_app``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.types import Receive, Scope, Send

ANSWER = "The answer is 42."
MODEL = "good"
_STREAM = re.compile(rb'"stream"\s*:\s*true')


def _tokens(text: str) -> list[str]:
    pieces = text.split(" ")
    return [piece if i == 0 else " " + piece for i, piece in enumerate(pieces)]


def _logprobs(tokens: list[str]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": -0.1, "bytes": list(t.encode()), "top_logprobs": []}
            for t in tokens
        ]
    }


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def completion_bytes(created: int, answer: str = ANSWER) -> bytes:
    """The non-streamed ``chat.completion`` body."""
    tokens = _tokens(answer)
    usage = {"prompt_tokens": 7, "completion_tokens": len(tokens), "total_tokens": 7 + len(tokens)}
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": answer},
        "logprobs": _logprobs(tokens),
        "finish_reason": "stop",
    }
    return _dumps(
        {
            "id": "chatcmpl-fast",
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [choice],
            "usage": usage,
        }
    )


def stream_events(created: int) -> list[bytes]:
    """The SSE events of a streamed answer: one per token, finish, usage, ``[DONE]``."""
    tokens = _tokens(ANSWER)
    head = {"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": created}

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + _dumps({**head, "model": MODEL, "choices": choices, **extra}) + b"\n\n"

    events = [
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"content": token} if n else {"role": "assistant", "content": token},
                    "logprobs": _logprobs([token]),
                    "finish_reason": None,
                }
            ]
        )
        for n, token in enumerate(tokens)
    ]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    usage = {"prompt_tokens": 7, "completion_tokens": len(tokens), "total_tokens": 7 + len(tokens)}
    events.append(chunk([], usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


class FastUpstream:
    """The ASGI app; every response body is rendered once, at construction. ``answer`` is what
    every non-streamed completion says."""

    def __init__(self, answer: str = ANSWER) -> None:
        created = int(time.time())
        self.completion = completion_bytes(created, answer)
        self.events = stream_events(created)
        self.models = _dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        self._json_start = self._start(b"application/json", len(self.completion))
        self._models_start = self._start(b"application/json", len(self.models))

    @staticmethod
    def _start(content_type: bytes, length: int | None) -> dict[str, Any]:
        headers = [(b"content-type", content_type)]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        return {"type": "http.response.start", "status": 200, "headers": headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            await send(self._models_start)
            await send({"type": "http.response.body", "body": self.models})
        elif _STREAM.search(body):
            await send(self._start(b"text/event-stream", None))
            for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send(self._json_start)
            await send({"type": "http.response.body", "body": self.completion})


def create_app() -> FastUpstream:
    """Factory for ``uvicorn --factory``."""
    return FastUpstream()


def create_judge() -> FastUpstream:
    """Factory for ``uvicorn --factory``: a judge that finds every answer correct."""
    return FastUpstream("correct. The answer is 42.")
