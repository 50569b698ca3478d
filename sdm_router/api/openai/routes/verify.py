"""``POST /v1/verify``: the verdict on a given answer, without generating."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sdm_router.api.context import context_of
from sdm_router.api.edge.disconnect import until_disconnected
from sdm_router.api.openai.render.verification import standalone_verification
from sdm_router.api.openai.responses import VerifyResponse
from sdm_router.api.openai.wire import VerifyRequest

router = APIRouter()


@router.post("/v1/verify", response_model=VerifyResponse)
async def verify(request: Request, body: VerifyRequest) -> Response:
    """Score ``response`` as an answer to ``messages`` (or ``prompt``) under a route's policy."""
    context = context_of(request)
    nearest = min(body.nearest_exemplars, context.max_nearest_exemplars)
    admitted = await context.edge.open_route(request, body.model)  # 404, 403, 429
    try:
        judged = await until_disconnected(
            request,
            context.verification.verify(
                admitted.scope, body.conversation(), body.response, nearest
            ),
            timeout=context.edge.request_timeout,
        )
    finally:
        admitted.admission.release()
    reply = VerifyResponse(verification=standalone_verification(judged))
    return Response(
        reply.model_dump_json(), media_type="application/json", headers=admitted.admission.headers
    )
