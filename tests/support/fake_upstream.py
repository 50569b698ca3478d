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
* tools (like vLLM with a tool parser): given ``tools`` (and ``tool_choice`` not ``none``) and a
  last turn that is not a tool's answer, the reply calls the named ``tool_choice`` function, else
  the first tool, with arguments made from its ``parameters`` schema (``"Paris"`` for strings,
  42 for numbers), ``content: null`` and ``finish_reason: "tool_calls"``; streamed, the call
  comes in pieces (id and name first, then the arguments in two parts). After a tool's answer it
  answers in text as usual.
* ``response_format``: ``json_object`` answers ``{"answer": 42}``, ``json_schema`` a JSON value
  made from the schema.
* ``POST /v1/embeddings``: one vector per input (``dimensions`` long, default 3) made from the
  text's length, as floats or as base64 float32 (``encoding_format: base64``); model
  ``fail-400`` answers 400.

Every request body is recorded in ``log.requests`` (with its path in ``log.paths``), so tests
can assert what was forwarded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
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
    paths: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)

    def models_called(self) -> list[str]:
        """The upstream model of every request, in order."""
        return [str(request.get("model")) for request in self.requests]


TOOL_CALL_ID = "call_fake_0"


def example_value(schema: Any) -> Any:
    """A value that fits a (simple) JSON schema: strings "Paris", numbers 42, objects filled.
    Anything it does not understand (the schemathesis test sends random schemas) is "Paris"."""
    if not isinstance(schema, dict):
        return "Paris"
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    properties = schema.get("properties")
    if kind == "object":
        if not isinstance(properties, dict):
            return {}
        return {str(name): example_value(sub) for name, sub in properties.items()}
    if kind == "array":
        return [example_value(schema.get("items"))]
    if kind in ("integer", "number"):
        return 42
    if kind == "boolean":
        return True
    return "Paris"


def tool_call(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The call the fake makes for a request with tools, or None (answer in text)."""
    tools = payload.get("tools") or []
    choice = payload.get("tool_choice")
    messages = payload.get("messages") or [{}]
    if not tools or choice == "none" or messages[-1].get("role") == "tool":
        return None
    function = tools[0]["function"]
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        function = next(t["function"] for t in tools if t["function"]["name"] == wanted)
    arguments = json.dumps(example_value(function.get("parameters") or {}))
    return {
        "id": TOOL_CALL_ID,
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }


def _answer(model: str, payload: dict[str, Any]) -> str:
    if model == "unsure":
        return UNSURE
    response_format = payload.get("response_format") or {}
    if response_format.get("type") == "json_object":
        return json.dumps({"answer": 42})
    if response_format.get("type") == "json_schema":
        return json.dumps(example_value(response_format["json_schema"].get("schema")))
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
    """A chat.completion with ``n`` choices and logprobs (tool calls when tools are given)."""
    call = tool_call(payload)
    text = call["function"]["arguments"] if call else _answer(model, payload)
    tokens = _tokens(text)
    n = int(payload.get("n") or 1)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": message,
                "logprobs": _logprobs(tokens),
                "finish_reason": "tool_calls" if call else "stop",
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
        self.log.paths.append(str(scope.get("path")))
        model = str(payload.get("model"))
        if str(scope.get("path")).endswith("/embeddings"):
            await self._embeddings(model, payload, send)
        elif payload.get("stream"):
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
            await send_json(send, status, error)
            return
        if model == "broken-json":
            await _send_raw(send, 200, b"{not json", b"application/json")
            return
        await send_json(send, 200, completion_body(model, payload))

    async def _embeddings(self, model: str, payload: dict[str, Any], send: Send) -> None:
        if model == "fail-400":
            error = {"error": {"message": "scripted failure 400", "type": "invalid_request_error"}}
            await send_json(send, 400, error)
            return
        inputs = payload["input"]
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        size = int(payload.get("dimensions") or 3)
        data = []
        for index, item in enumerate(inputs):
            vector = [float(len(item)) + i / 10 for i in range(size)]
            embedding: Any = vector
            if payload.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(item).split()) for item in inputs)
        reply = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await send_json(send, 200, reply)

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
        call = tool_call(payload)
        if call is not None:
            await self._stream_tool_call(model, call, send)
            return
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

    @staticmethod
    async def _stream_tool_call(model: str, call: dict[str, Any], send: Send) -> None:
        """A tool call in pieces, as vLLM streams one: id and name, then the arguments."""
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        first = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        pieces = [first]
        pieces += [
            {"index": 0, "function": {"arguments": part}}
            for part in (arguments[:half], arguments[half:])
        ]
        for number, piece in enumerate(pieces):
            delta: dict[str, Any] = {"tool_calls": [piece]}
            if number == 0:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            await _event(
                send,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [choice],
                },
            )
        await _event(
            send,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            },
        )
        usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        await _event(
            send,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": usage,
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


async def send_json(send: Send, status: int, data: dict[str, Any]) -> None:
    """Answer with ``data`` as JSON."""
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
