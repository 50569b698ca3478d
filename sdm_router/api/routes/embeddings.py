"""``POST /v1/embeddings``: proxied to the backend the ``embeddings`` config maps ``model`` to."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sdm_router.api.auth import authorize_name, principal_of
from sdm_router.api.context import context_of, until_disconnected
from sdm_router.core.generation import Usage
from sdm_router.core.openai_responses import EmbeddingOut, EmbeddingsResponse, EmbeddingsUsage
from sdm_router.core.openai_wire import EmbeddingsRequest

router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def embeddings(request: Request, body: EmbeddingsRequest) -> Response:
    """Embed ``input`` with the embedding model ``model`` names (404 when none serves it)."""
    context = context_of(request)
    principal = principal_of(request)
    authorize_name(principal, body.model, model=True)  # 403 for a model the key may not use
    admission = await context.limiter.admit(principal)  # 429 over the key's limits
    try:
        result = await until_disconnected(
            request,
            context.embeddings.embed(body.to_request()),
            timeout=context.server.request_timeout_seconds,
        )
    finally:
        admission.release()
    await admission.spend(Usage(prompt_tokens=result.prompt_tokens))
    reply = EmbeddingsResponse(
        data=[
            EmbeddingOut(index=index, embedding=vector)
            for index, vector in enumerate(result.vectors)
        ],
        model=body.model,
        usage=EmbeddingsUsage(
            prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
        ),
    )
    return Response(
        reply.model_dump_json(), media_type="application/json", headers=admission.headers
    )
