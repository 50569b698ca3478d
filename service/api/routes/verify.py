"""``POST /v1/verify``: the verdict on a given answer, without generating."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.context import context_of, until_disconnected
from service.api.verification_render import standalone_verification
from service.core.openai_responses import VerifyResponse
from service.core.openai_wire import VerifyRequest

router = APIRouter()


@router.post("/v1/verify", response_model=VerifyResponse)
async def verify(request: Request, body: VerifyRequest) -> Response:
    """Score ``response`` as an answer to ``messages`` (or ``prompt``) under a route's policy."""
    context = context_of(request)
    nearest = min(body.nearest_exemplars, context.max_nearest_exemplars)
    with context.gate:
        judged = await until_disconnected(
            request,
            context.verification.verify(body.model, body.conversation(), body.response, nearest),
            timeout=context.server.request_timeout_seconds,
        )
    reply = VerifyResponse(verification=standalone_verification(judged))
    return Response(reply.model_dump_json(), media_type="application/json")
