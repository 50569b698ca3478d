"""``POST /v1/verify``: the verdict on a given answer, without generating."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sdm_router.api.context import context_of, until_disconnected
from sdm_router.api.limits import admit
from sdm_router.api.verification_render import standalone_verification
from sdm_router.core.openai_responses import VerifyResponse
from sdm_router.core.openai_wire import VerifyRequest
from sdm_router.observability.logging import annotate_request

router = APIRouter()


@router.post("/v1/verify", response_model=VerifyResponse)
async def verify(request: Request, body: VerifyRequest) -> Response:
    """Score ``response`` as an answer to ``messages`` (or ``prompt``) under a route's policy."""
    context = context_of(request)
    nearest = min(body.nearest_exemplars, context.max_nearest_exemplars)
    admission = await admit(request, body.model)  # 403 for the key, 429 over its limits
    try:
        judged = await until_disconnected(
            request,
            context.verification.verify(body.model, body.conversation(), body.response, nearest),
            timeout=context.server.request_timeout_seconds,
        )
    finally:
        admission.release()
    annotate_request(
        {"route": judged.plan.name, "decision": judged.decision.value,
         "reason": judged.reason.value}
    )  # fmt: skip
    reply = VerifyResponse(verification=standalone_verification(judged))
    return Response(
        reply.model_dump_json(), media_type="application/json", headers=admission.headers
    )
