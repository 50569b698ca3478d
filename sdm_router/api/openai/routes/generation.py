"""``POST /v1/chat/completions``, ``POST /v1/completions`` and ``POST /v1/responses``."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp

from sdm_router.api.openai.fast_route import JSONBodyRoute, JSONBytesResponse
from sdm_router.api.openai.generation_handler import respond
from sdm_router.api.openai.render.chat import ChatRenderer
from sdm_router.api.openai.render.completion import CompletionRenderer
from sdm_router.api.openai.render.responses_api import ResponsesRenderer
from sdm_router.api.openai.render.responses_stream import response_events
from sdm_router.api.openai.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    TextCompletion,
)
from sdm_router.api.openai.wire import ChatCompletionRequest, CompletionRequest
from sdm_router.api.openai.wire_responses import ResponsesRequest
from sdm_router.core.errors import NotFound

router = APIRouter()
CHAT, COMPLETION = ChatRenderer(), CompletionRenderer()


def _stream_doc(chunk: type[Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: a streamed answer is ``text/event-stream`` of ``chunk`` events."""
    return {
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": f"SSE of {chunk.__name__}"}
                }
            }
        }
    }


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=_stream_doc(ChatCompletionChunk),
)
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    """Chat completion through the verified cascade of the route ``model`` names."""
    return await respond(request, body, CHAT)


@router.post(
    "/v1/completions", response_model=TextCompletion, responses=_stream_doc(TextCompletion)
)
async def completions(request: Request, body: CompletionRequest) -> Response:
    """Legacy completion of one prompt through the verified cascade."""
    return await respond(request, body, COMPLETION)


@router.post("/v1/responses")
async def responses(request: Request, body: ResponsesRequest) -> Response:
    """The Responses API, served as the chat request it translates to (same cascade and
    verification; ``verification`` on the response object). ``stream: true`` verifies first,
    then sends the response as the Responses event stream."""
    answered = await respond(request, body.to_chat(), ResponsesRenderer(body))
    if not body.stream or not isinstance(answered, JSONBytesResponse):
        return answered
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in answered.raw_headers
        if name not in (b"content-length", b"content-type")
    }
    events = response_events(orjson.loads(answered.body))
    return Response(events, media_type="text/event-stream", headers=headers)


@router.get("/v1/responses/{response_id}")
async def retrieve_response(response_id: str) -> Response:
    """Responses are not stored (``store: true`` is a 400), so every id is a 404."""
    raise NotFound(
        f"No response with id '{response_id}': the gateway does not store responses",
        param="response_id",
        code="not_found",
    )


def fast_routes(router: ASGIApp) -> list[JSONBodyRoute]:
    """The fast path of both routes, to go ahead of them in ``router``
    (``sdm_router.api.openai.fast_route``): same handler, no FastAPI machinery per request."""
    return [
        JSONBodyRoute(
            "/v1/chat/completions", ChatCompletionRequest, partial(respond, renderer=CHAT), router
        ),
        JSONBodyRoute(
            "/v1/completions", CompletionRequest, partial(respond, renderer=COMPLETION), router
        ),
    ]
