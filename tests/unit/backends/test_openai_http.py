"""``OpenAIHTTPBackend`` against scripted upstream replies.

Each test scripts replies as an ``httpx.Request -> httpx.Response`` handler (a readable way to
write them); the fixture serves the handler on a real loopback port (aiohttp's test server) and
points the backend's ``http://upstream/v1`` there with a resolver, so the backend's own client
(aiohttp) does the HTTP. A handler that raises ``httpx.ConnectError`` takes the server down: the
connection in hand is reset and the next ones are refused, as a dead upstream does.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from sdm_router.backends.openai_http import OpenAIHTTPBackend
from sdm_router.config import OpenAIBackendSettings
from sdm_router.core.errors import GatewayError, InvalidRequest, NoHealthyBackend, UpstreamError
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams, StreamDelta

Handler = Callable[[httpx.Request], httpx.Response]
MakeBackend = Callable[[Handler], Awaitable[OpenAIHTTPBackend]]

REQUEST = GenerationRequest(
    messages=(Message(role="user", content="What is six times seven?"),),
    prompt=None,
    params=SamplingParams(max_tokens=16, temperature=0.0),
)


class _Loopback(AbstractResolver):
    """Resolves every host to the scripted server's loopback port."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


async def _serve(handler: Handler) -> TestServer:
    """``handler`` on a real loopback port."""
    server: TestServer

    async def respond(request: web.Request) -> web.StreamResponse:
        scripted = httpx.Request(
            request.method,
            str(request.url),
            headers=list(request.headers.items()),
            content=await request.read(),
        )
        try:
            reply = handler(scripted)
        except httpx.ConnectError:
            assert server.runner is not None and request.transport is not None
            for site in list(server.runner.sites):
                await site.stop()  # refuse new connections
            request.transport.abort()  # and reset this one
            raise
        headers = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP}
        return web.Response(status=reply.status_code, body=reply.content, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", respond)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def make_backend() -> AsyncIterator[MakeBackend]:
    """Started backends over a scripted loopback server; all are closed at the end."""
    started: list[OpenAIHTTPBackend] = []
    servers: list[TestServer] = []

    async def make(handler: Handler) -> OpenAIHTTPBackend:
        server = await _serve(handler)
        servers.append(server)
        assert server.port is not None
        settings = OpenAIBackendSettings(type="openai", base_url="http://upstream/v1", model="m")
        backend = OpenAIHTTPBackend("up", settings, resolver=_Loopback(server.port))
        await backend.start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        await backend.close()
    for server in servers:
        await server.close()


def _json(status: int, body: Any) -> Handler:
    return lambda request: httpx.Response(status, json=body)


def _sse(*events: Any, done: bool = True) -> Handler:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    body = "".join(lines).encode()
    return lambda request: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}
    )


def _entry(token: str, logprob: float, top: tuple[tuple[str, float], ...] = ()) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top],
    }


def _chunk(text: str | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


GOOD_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "system_fingerprint": "ignored",
    "choices": [
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Forty-two."},
            "finish_reason": "length",
            "logprobs": None,
        },
        {
            "index": 0,
            "message": {"role": "assistant", "content": "42"},
            "finish_reason": "stop",
            "logprobs": {"content": [_entry("42", -0.25, (("42", -0.25), ("41", -3.0)))]},
        },
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


async def _collect(backend: OpenAIHTTPBackend) -> list[StreamDelta]:
    return [delta async for delta in backend.stream(REQUEST)]


async def test_a_good_completion_is_parsed(make_backend: MakeBackend) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url == "http://upstream/v1/chat/completions"
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=GOOD_COMPLETION)

    backend = await make_backend(handler)
    generation = await backend.generate(REQUEST)
    assert seen[0]["model"] == "m"
    assert seen[0]["logprobs"] is True
    assert seen[0]["stream"] is False
    assert generation.model == "up"
    first, second = generation.candidates
    assert (first.text, first.finish_reason) == ("42", "stop")
    assert first.token_logprobs is not None
    (token,) = first.token_logprobs
    assert (token.token, token.logprob) == ("42", -0.25)
    assert [(alt.token, alt.logprob) for alt in token.top_logprobs] == [("42", -0.25), ("41", -3.0)]
    assert (second.text, second.finish_reason, second.token_logprobs) == (
        "Forty-two.",
        "length",
        None,
    )
    assert (generation.usage.prompt_tokens, generation.usage.completion_tokens) == (9, 3)


async def test_lenient_where_servers_differ(make_backend: MakeBackend) -> None:
    body = {
        "choices": [
            {"message": {"role": "assistant", "content": None}, "finish_reason": "eos_token"}
        ]
    }
    generation = await (await make_backend(_json(200, body))).generate(REQUEST)
    (candidate,) = generation.candidates
    assert (candidate.text, candidate.finish_reason, candidate.token_logprobs) == ("", "stop", None)
    assert generation.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, InvalidRequest, "invalid_value"),  # vLLM's integer code is no OpenAI code
        (429, UpstreamError, "upstream_rate_limited"),
        (500, UpstreamError, "upstream_server_error"),
        (503, NoHealthyBackend, "no_healthy_backend"),
    ],
)
async def test_error_statuses_are_mapped_keeping_the_message(
    make_backend: MakeBackend, status: int, kind: type[GatewayError], code: str | None
) -> None:
    body = {"error": {"message": f"scripted {status}", "type": "x", "code": status}}
    backend = await make_backend(_json(status, body))
    with pytest.raises(kind) as caught:
        await backend.generate(REQUEST)
    assert type(caught.value) is kind
    assert caught.value.code == code
    assert f"answered {status}: scripted {status}" in caught.value.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"message": "This model's maximum context length is 2048 tokens.", "code": 400},
         "context_length_exceeded"),  # vLLM's words
        ({"message": "too long", "code": "context_length_exceeded"}, "context_length_exceeded"),
        ({"message": "no such tool", "code": "invalid_tool"}, "invalid_tool"),
    ],
)  # fmt: skip
async def test_a_400_keeps_the_upstreams_string_code_or_names_a_context_overflow(
    make_backend: MakeBackend, error: dict[str, object], code: str
) -> None:
    backend = await make_backend(_json(400, {"error": error}))
    with pytest.raises(InvalidRequest) as caught:
        await backend.generate(REQUEST)
    assert caught.value.code == code


async def test_an_error_status_on_a_stream_is_mapped(make_backend: MakeBackend) -> None:
    backend = await make_backend(_json(429, {"error": {"message": "slow down"}}))
    with pytest.raises(UpstreamError) as caught:
        await _collect(backend)
    assert caught.value.code == "upstream_rate_limited"
    assert "slow down" in caught.value.message


async def test_a_body_that_is_not_json(make_backend: MakeBackend) -> None:
    backend = await make_backend(lambda request: httpx.Response(200, content=b"{not json"))
    with pytest.raises(UpstreamError) as caught:
        await backend.generate(REQUEST)
    assert caught.value.code == "bad_response"
    assert "not JSON" in caught.value.message


async def test_a_reply_without_choices(make_backend: MakeBackend) -> None:
    backend = await make_backend(_json(200, {"id": "x", "object": "chat.completion"}))
    with pytest.raises(UpstreamError) as caught:
        await backend.generate(REQUEST)
    assert caught.value.code == "bad_response"
    assert caught.value.message == "upstream reply is malformed: choices: Field required"


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        ({"0": {}}, "choices: Input should be a valid list"),
        (["text"], "choices[0]: Input should be an object"),
        ([{"finish_reason": "stop"}], "choices[0].message: Field required"),
        (
            [{"message": {"content": 42}}],
            "choices[0].message.content: Input should be a valid string",
        ),
        (
            [
                {
                    "message": {"content": "a b c"},
                    "logprobs": {"content": [_entry("a", -0.1), _entry("b", -0.2), {"token": "c"}]},
                }
            ],
            "choices[0].logprobs.content[2].logprob: Field required",
        ),
        (
            [
                {
                    "message": {"content": "a b c"},
                    "logprobs": {
                        "content": [
                            _entry("a", -0.1),
                            _entry("b", -0.2),
                            {"token": "c", "logprob": "low", "top_logprobs": []},
                        ]
                    },
                }
            ],
            "choices[0].logprobs.content[2].logprob: Input should be a valid number",
        ),
    ],
)
async def test_a_malformed_choice_names_the_field(
    make_backend: MakeBackend, choices: Any, expected: str
) -> None:
    backend = await make_backend(_json(200, {"choices": choices}))
    with pytest.raises(UpstreamError) as caught:
        await backend.generate(REQUEST)
    assert caught.value.code == "bad_response"
    assert caught.value.message == f"upstream reply is malformed: {expected}"


async def test_a_good_stream_with_a_final_usage_chunk(make_backend: MakeBackend) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    handler = _sse(
        _chunk("The", logprobs={"content": [_entry("The", -0.5, (("A", -1.5),))]}),
        _chunk(" answer", logprobs=None),
        _chunk(None, "stop"),
        {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage},
    )
    deltas = await _collect(await make_backend(handler))
    assert "".join(delta.text for delta in deltas) == "The answer"
    assert [delta.finish_reason for delta in deltas] == [None, None, "stop", None]
    (token,) = deltas[0].token_logprobs
    assert (token.token, token.logprob) == ("The", -0.5)
    assert [(alt.token, alt.logprob) for alt in token.top_logprobs] == [("A", -1.5)]
    assert deltas[1].token_logprobs == ()
    final = deltas[-1].usage
    assert final is not None
    assert (final.prompt_tokens, final.completion_tokens) == (7, 2)
    assert all(delta.usage is None for delta in deltas[:-1])


async def test_a_stream_chunk_that_is_not_json(make_backend: MakeBackend) -> None:
    backend = await make_backend(_sse(_chunk("The"), "{broken"))
    with pytest.raises(UpstreamError) as caught:
        await _collect(backend)
    assert caught.value.code == "bad_response"
    assert "malformed stream event" in caught.value.message


async def test_a_stream_chunk_failing_validation_names_the_field(
    make_backend: MakeBackend,
) -> None:
    bad = _chunk("x", logprobs={"content": [{"token": "x", "logprob": None}]})
    received: list[StreamDelta] = []
    backend = await make_backend(_sse(_chunk("The"), bad))
    with pytest.raises(UpstreamError) as caught:
        async for delta in backend.stream(REQUEST):
            received.append(delta)
    assert [delta.text for delta in received] == ["The"]
    assert caught.value.code == "bad_response"
    assert caught.value.message == (
        "upstream stream chunk is malformed: "
        "choices[0].logprobs.content[0].logprob: Input should be a valid number"
    )


async def test_an_upstream_error_event_mid_stream(make_backend: MakeBackend) -> None:
    error = {"error": {"message": "scripted mid-stream failure", "type": "x", "code": 500}}
    received: list[StreamDelta] = []
    backend = await make_backend(_sse(_chunk("The"), error))
    with pytest.raises(UpstreamError) as caught:
        async for delta in backend.stream(REQUEST):
            received.append(delta)
    assert [delta.text for delta in received] == ["The"]
    assert caught.value.code == "upstream_stream_error"
    assert caught.value.message == "upstream stream error: scripted mid-stream failure"


async def test_a_stream_that_ends_without_done(make_backend: MakeBackend) -> None:
    received: list[StreamDelta] = []
    backend = await make_backend(_sse(_chunk("The"), _chunk(" answer"), done=False))
    with pytest.raises(UpstreamError) as caught:
        async for delta in backend.stream(REQUEST):
            received.append(delta)
    assert "".join(delta.text for delta in received) == "The answer"
    assert caught.value.code == "upstream_protocol"
    assert "before [DONE]" in caught.value.message


async def test_a_connect_error_is_upstream_connection(make_backend: MakeBackend) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    backend = await make_backend(refuse)
    with pytest.raises(UpstreamError) as caught:
        await backend.generate(REQUEST)
    assert caught.value.code == "upstream_connection"
    assert "unreachable" in caught.value.message
    with pytest.raises(UpstreamError) as streamed:
        await _collect(backend)
    assert streamed.value.code == "upstream_connection"


async def test_a_backend_not_started_is_not_healthy() -> None:
    settings = OpenAIBackendSettings(type="openai", base_url="http://upstream/v1", model="m")
    backend = OpenAIHTTPBackend("up", settings)
    with pytest.raises(NoHealthyBackend):
        await backend.generate(REQUEST)


def test_proxies_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdm_router.backends.openai_http import _env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    monkeypatch.setenv("NO_PROXY", "vllm.internal")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _env_proxy("https://api.example.com/v1") == "http://egress:3128"
    assert _env_proxy("https://vllm.internal/v1") is None
    assert _env_proxy("http://api.example.com/v1") is None
