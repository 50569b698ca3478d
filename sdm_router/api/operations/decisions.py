"""``POST /v1/feedback``, ``GET /v1/decisions/{id}`` and ``GET /v1/decisions``: the decision log."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from sdm_router.api.context import context_of
from sdm_router.api.edge.auth import principal_of
from sdm_router.core.decisions import HUMAN_SOURCE
from sdm_router.core.errors import NotFound
from sdm_router.pipeline.feedback import give_feedback, owned_decision
from sdm_router.storage.query_params import decode_cursor, encode_cursor, instant
from sdm_router.storage.store import DecisionStore


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a label on one answer of a request the gateway served."""

    model_config = ConfigDict(extra="ignore", strict=True)
    request_id: StrictStr = Field(
        min_length=1, max_length=128, description="the x-request-id header or the body's id"
    )
    label: Literal["correct", "incorrect"]
    choice: int = Field(0, ge=0, le=127, description="which of the n answers")
    note: StrictStr | None = Field(None, max_length=4000)


router = APIRouter()
MAX_PAGE = 500


def store_of(request: Request) -> DecisionStore:
    """The decision store (404 ``store_off`` when storage is disabled)."""
    store = context_of(request).store
    if store is None:
        raise NotFound("The decision store is off (storage.enabled: false).", code="store_off")
    return store


def owner_of(request: Request) -> str | None:
    """The key name whose records the caller may see and label: None for everything (no keys
    configured, or an admin key), else the caller's own key."""
    principal = principal_of(request)
    return None if principal is None or principal.admin else principal.name


@router.post("/v1/feedback")
async def post_feedback(request: Request, body: FeedbackRequest) -> dict[str, Any]:
    """Label one answer as a person (source ``human``: it overrides a judge's label); the same
    label again changes nothing, a new one replaces it. A user key labels only its own
    requests."""
    request_id, changed = await give_feedback(
        store_of(request), context_of(request).metrics, owner=owner_of(request),
        request_id=body.request_id, label=body.label, choice=body.choice, note=body.note,
    )  # fmt: skip
    return {
        "object": "feedback",
        "request_id": request_id,
        "choice": body.choice,
        "label": body.label,
        "source": HUMAN_SOURCE,
        "changed": changed,
    }


@router.get("/v1/decisions/{identifier}")
async def get_decision(request: Request, identifier: str) -> dict[str, Any]:
    """The recorded decision of one request (its x-request-id or its response id); a user key
    sees only its own requests."""
    record = await owned_decision(store_of(request), identifier, owner_of(request))
    return {"object": "decision", **record}


@router.get("/v1/decisions")
async def list_decisions(
    request: Request,
    route: str | None = None,
    since: str | None = None,
    until: str | None = None,
    label: str | None = Query(None, pattern="^(correct|incorrect|unlabeled)$"),
    decision: str | None = Query(None, pattern="^(accept|abstain|unverified|observed)$"),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    cursor: str | None = None,
) -> dict[str, Any]:
    """Recorded decisions, newest first, in pages of ``limit``; ``next_cursor`` continues. A
    user key lists only its own requests."""
    page, following = await store_of(request).decisions(
        route=route, since=instant(since, "since"), until=instant(until, "until"),
        decision=decision, label=label, key_name=owner_of(request), limit=limit,
        cursor=decode_cursor(cursor),
    )  # fmt: skip
    return {
        "object": "list",
        "data": page,
        "next_cursor": encode_cursor(following) if following is not None else None,
    }
