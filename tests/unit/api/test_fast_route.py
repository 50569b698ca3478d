"""The hot routes' fast path answers exactly as the declared FastAPI route would.

A valid JSON body goes straight to the handler; every other request (bad JSON, a failing
field, no body, another content type, another method) is routed again through the declared
route, so its answer must be byte for byte what the app without the fast path gives.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from sdm_router.api.errors import install_error_handlers
from sdm_router.api.openai.fast_route import (
    FALLBACK,
    JSONBodyRoute,
    JSONBytesResponse,
    json_content_type,
)
from sdm_router.api.openai.wire import ChatCompletionRequest

PATH = "/v1/chat/completions"


def _app(fast: bool, calls: list[tuple[str, Any]]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    async def handler(request: Request, body: ChatCompletionRequest) -> Response:
        route = request.scope["route"]
        calls.append(("fast" if FALLBACK not in request.scope else "declared", route.path))
        assert body.model is not None
        return JSONBytesResponse(b'{"model":"%s"}' % body.model.encode(), {"X-Seen": "yes"})

    @app.post(PATH)
    async def declared(request: Request, body: ChatCompletionRequest) -> Response:
        return await handler(request, body)

    if fast:
        app.router.routes[0:0] = [JSONBodyRoute(PATH, ChatCompletionRequest, handler, app.router)]
    return app


VALID = b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}'
REQUESTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("POST", VALID, {"content-type": "application/json"}),
    ("POST", VALID, {"content-type": "application/json; charset=utf-8"}),
    ("POST", b'{"model":', {"content-type": "application/json"}),
    ("POST", b'{"model":"auto","messages":"hi"}', {"content-type": "application/json"}),
    (
        "POST",
        b'{"model":"auto","messages":[{"role":"robot","content":"x"}]}',
        {"content-type": "application/json"},
    ),
    (
        "POST",
        b'{"model":"auto","messages":[],"max_tokens":"7"}',
        {"content-type": "application/json"},
    ),
    ("POST", b'{"model":"auto"}', {"content-type": "application/json"}),
    ("POST", b"", {"content-type": "application/json"}),
    ("POST", b"[]", {"content-type": "application/json"}),
    ("POST", b'{"model":NaN}', {"content-type": "application/json"}),
    ("POST", VALID, {"content-type": "text/plain"}),
    ("POST", VALID, {}),
    ("GET", b"", {}),
]


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(("method", "body", "headers"), REQUESTS)
async def test_every_request_gets_the_declared_routes_answer(
    method: str, body: bytes, headers: dict[str, str]
) -> None:
    answers = []
    for fast in (False, True):
        async with _client(_app(fast, [])) as client:
            reply = await client.request(method, PATH, content=body, headers=headers)
            answers.append((reply.status_code, reply.content, reply.headers.get("x-seen")))
    assert answers[1] == answers[0]


async def test_a_valid_json_body_takes_the_fast_path_under_the_routes_name() -> None:
    calls: list[tuple[str, Any]] = []
    async with _client(_app(True, calls)) as client:
        ok = await client.post(PATH, content=VALID, headers={"content-type": "application/json"})
        bad = await client.post(PATH, content=VALID, headers={"content-type": "text/plain"})
    assert ok.status_code == 200 and ok.json() == {"model": "auto"}
    assert bad.status_code == 400  # the declared route validated it; the handler never ran
    assert calls == [("fast", PATH)]


def test_openapi_is_the_declared_routes_only() -> None:
    assert _app(True, []).openapi() == _app(False, []).openapi()


def test_json_content_types() -> None:
    assert json_content_type([(b"content-type", b"application/json")])
    assert json_content_type([(b"content-type", b"Application/JSON; charset=utf-8")])
    assert json_content_type([(b"content-type", b"application/vnd.api+json")])
    assert not json_content_type([(b"content-type", b"text/plain")])
    assert not json_content_type([])
