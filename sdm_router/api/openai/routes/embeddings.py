"""``POST /v1/embeddings``: proxied to the backend the ``embeddings`` config maps ``model`` to."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sdm_router.api.context import context_of
from sdm_router.api.edge.disconnect import until_disconnected
from sdm_router.api.openai.responses import EmbeddingOut, EmbeddingsResponse, EmbeddingsUsage
from sdm_router.api.openai.wire import EmbeddingsRequest

router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def embeddings(request: Request, body: EmbeddingsRequest) -> Response:
    """Embed ``input`` with the embedding model ``model`` names (404 when none serves it)."""
    context = context_of(request)
    admitted = await context.edge.open_embedding(request, body.model)  # 403, 429
    admission = admitted.admission
    try:
        result = await until_disconnected(
            request,
            context.embeddings.embed(admitted.scope, body.to_request()),
            timeout=context.edge.request_timeout,
        )
    finally:
        try:  # the tokens the backend reported: also if the request failed after them
            await admission.settle()
        finally:
            admission.release()
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
