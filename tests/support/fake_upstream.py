"""A real HTTP server that plays an OpenAI-compatible upstream (vLLM) with scripted faults.

The upstream ``model`` name in the request picks the behaviour:

* ``good``: answers "The answer is 42." (or, for questions containing "hard", "I am not sure.")
* ``unsure``: always answers "I am not sure."
* ``fail-500`` / ``fail-400`` / ``fail-429``: answers with that status and an OpenAI error body
* ``hang``: never answers (until the client disconnects, which is recorded)
* ``slow``: answers after 0.3 s
* ``broken-json``: 200 with a body that is not JSON
* streaming (``stream: true``): ``good`` streams word by word with ``[DONE]``;
  ``broken-stream`` stops after two chunks without ``[DONE]``; ``stream-error`` sends an error
  event mid-stream; ``hang`` stalls after the first chunk.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Message, Receive, Scope, Send

UNSURE = "I am not sure."
CONFIDENT = "The answer is 42."


@dataclass
class UpstreamLog:
    """What the fake upstream saw."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)

    def models_called(self) -> list[str]:
        """The upstream model of every request, in order."""
        return [str(request.get("model")) for request in self.requests]


def _answer(model: str, payload: dict[str, Any]) -> str:
    if model == "unsure":
        return UNSURE
    question = ""
    for message in payload.get("messages") or []:
        if message.get("role") == "user":
            question = str(message.get("content", ""))
    if "hard" in question.lower() and "42" not in question:
        return UNSURE
    return CONFIDENT


def _tokens(text: str) -> list[str]:
    pieces = text.split(" ")
    return [piece if i == 0 else " " + piece for i, piece in enumerate(pieces)]


def _logprobs(tokens: list[str]) -> dict[str, Any]:
    return {
        "content": [
            {"token": token, "logprob": -0.1, "bytes": list(token.encode()), "top_logprobs": []}
            for token in tokens
        ]
    }


def completion_body(model: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion with ``n`` choices and logprobs."""
    text = _answer(model, payload)
    tokens = _tokens(text)
    n = int(payload.get("n") or 1)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": _logprobs(tokens),
                "finish_reason": "stop",
            }
            for index in range(n)
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": len(tokens),
            "total_tokens": 7 + len(tokens),
        },
    }


class FakeUpstream:
    """The ASGI app. ``log`` records requests and client disconnects."""

    def __init__(self) -> None:
        self.log = UpstreamLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = json.loads(body or b"{}")
        self.log.requests.append(payload)
        model = str(payload.get("model"))
        if payload.get("stream"):
            await self._stream(model, payload, receive, send)
        else:
            await self._respond(model, payload, receive, send)

    async def _wait_for_disconnect(self, receive: Receive, model: str) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                self.log.disconnects.append(model)
                return

    async def _respond(
        self, model: str, payload: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if model == "hang":
            await self._wait_for_disconnect(receive, model)
            return
        if model == "slow":
            await asyncio.sleep(0.3)
        if model.startswith("fail-"):
            status = int(model.split("-", 1)[1])
            error = {
                "error": {
                    "message": f"scripted failure {status}",
                    "type": "server_error",
                    "param": None,
                    "code": status,
                }
            }
            await _send_json(send, status, error)
            return
        if model == "broken-json":
            await _send_raw(send, 200, b"{not json", b"application/json")
            return
        await _send_json(send, 200, completion_body(model, payload))

    async def _stream(
        self, model: str, payload: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        text = _answer(
            "good" if model in {"broken-stream", "stream-error", "hang"} else model, payload
        )
        tokens = _tokens(text)
        for number, token in enumerate(tokens):
            if model == "hang" and number == 1:
                await self._wait_for_disconnect(receive, model)
                return
            if model == "broken-stream" and number == 2:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if model == "stream-error" and number == 2:
                await _event(
                    send,
                    {
                        "error": {
                            "message": "scripted mid-stream failure",
                            "type": "server_error",
                            "code": 500,
                        }
                    },
                )
                await send(
                    {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}
                )
                return
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": token},
                        "logprobs": _logprobs([token]),
                        "finish_reason": None,
                    }
                ],
            }
            await _event(send, chunk)
            await asyncio.sleep(0.005)
        await _event(
            send,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        )
        await _event(
            send,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": len(tokens),
                    "total_tokens": 7 + len(tokens),
                },
            },
        )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _event(send: Send, data: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.body",
            "body": b"data: " + json.dumps(data).encode() + b"\n\n",
            "more_body": True,
        }
    )


async def _send_json(send: Send, status: int, data: dict[str, Any]) -> None:
    await _send_raw(send, status, json.dumps(data).encode(), b"application/json")


async def _send_raw(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
