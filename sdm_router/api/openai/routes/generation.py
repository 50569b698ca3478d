"""``POST /v1/chat/completions`` and ``POST /v1/completions``."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp

from sdm_router.api.openai.fast_route import JSONBodyRoute
from sdm_router.api.openai.generation_handler import respond
from sdm_router.api.openai.render.chat import ChatRenderer
from sdm_router.api.openai.render.completion import CompletionRenderer
from sdm_router.api.openai.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    TextCompletion,
)
from sdm_router.api.openai.wire import ChatCompletionRequest, CompletionRequest

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
