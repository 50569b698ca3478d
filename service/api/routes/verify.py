"""``POST /v1/verify``: the verdict on a given answer, without generating."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.api.context import context_of, until_disconnected
from service.api.render import standalone_verification
from service.core.generation import Message
from service.core.openai_wire import VerifyRequest
from service.core.verdict import VerificationInput
from service.pipeline.policy import judge

router = APIRouter()


@router.post("/v1/verify")
async def verify(request: Request, body: VerifyRequest) -> dict[str, Any]:
    """Score ``response`` as an answer to ``messages`` (or ``prompt``) under a route's policy."""
    context = context_of(request)
    plan = context.gateway.plan_for(body.model)
    if body.messages is not None:
        messages = tuple(Message(role=m.role, content=m.text()) for m in body.messages)
    else:
        messages = (Message(role="user", content=body.prompt or ""),)
    nearest = min(body.nearest_exemplars, context.max_nearest_exemplars)
    with context.gate:
        (verdict,) = await until_disconnected(
            request,
            context.gateway.cascade.verify(
                [VerificationInput(messages, body.response)], nearest_exemplars=nearest
            ),
            timeout=context.server.request_timeout_seconds,
        )
    return {
        "object": "verification",
        "verification": standalone_verification(plan, verdict, judge(verdict, plan.thresholds)),
    }
