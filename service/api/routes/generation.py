"""``POST /v1/chat/completions`` and ``POST /v1/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.generation_handler import handle_generation
from service.core.openai_wire import ChatCompletionRequest, CompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    """Chat completion through the verified cascade of the route ``model`` names."""
    return await handle_generation(request, body, "chat")


@router.post("/v1/completions", response_model=None)
async def completions(request: Request, body: CompletionRequest) -> Response:
    """Legacy completion of one prompt through the verified cascade."""
    return await handle_generation(request, body, "completion")
