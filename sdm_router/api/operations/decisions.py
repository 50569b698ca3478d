"""``POST /v1/feedback``, ``GET /v1/decisions/{id}`` and ``GET /v1/decisions``: the decision log."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from sdm_router.api.context import context_of
from sdm_router.api.edge.auth import principal_of
from sdm_router.core.decisions import HUMAN_SOURCE
from sdm_router.core.errors import InvalidRequest, NotFound
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


def _not_found(identifier: str) -> NotFound:
    return NotFound(
        f"No decision is recorded for request {identifier!r}.",
        param="request_id",
        code="request_not_found",
    )


def _owner(request: Request) -> str | None:
    """The key name whose records the caller may see and label: None for everything (no keys
    configured, or an admin key), else the caller's own key."""
    principal = principal_of(request)
    return None if principal is None or principal.admin else principal.name


async def _owned_decision(request: Request, identifier: str) -> dict[str, Any]:
    """The record, if it exists and the caller may see it (404 alike otherwise: a user key
    learns nothing of other keys' requests)."""
    record = await store_of(request).decision(identifier)  # StoreUnavailable: a 503
    owner = _owner(request)
    if record is None or (owner is not None and record.get("key_name") != owner):
        raise _not_found(identifier)
    return record


@router.post("/v1/feedback")
async def post_feedback(request: Request, body: FeedbackRequest) -> dict[str, Any]:
    """Label one answer as a person (source ``human``: it overrides a judge's label); the same
    label again changes nothing, a new one replaces it. A user key labels only its own
    requests."""
    store = store_of(request)
    if _owner(request) is not None:
        await _owned_decision(request, body.request_id)
    outcome = await store.label(body.request_id, body.label, body.choice, body.note)
    if outcome is None:
        raise _not_found(body.request_id)
    request_id, changed = outcome
    if changed:
        context_of(request).metrics.label_given(HUMAN_SOURCE, body.label)
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
    return {"object": "decision", **await _owned_decision(request, identifier)}


def instant(value: str | None, param: str) -> float | None:
    """Seconds since the epoch from epoch seconds or an ISO 8601 time."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InvalidRequest(
            f"Invalid value for '{param}': give epoch seconds or an ISO 8601 time.", param=param
        ) from None


def encode_cursor(cursor: tuple[float, str]) -> str:
    """An opaque page cursor."""
    return base64.urlsafe_b64encode(f"{cursor[0]!r}|{cursor[1]}".encode()).decode()


def _decode_cursor(value: str | None) -> tuple[float, str] | None:
    if value is None:
        return None
    try:
        created, _, request_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return float(created), request_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("Invalid value for 'cursor'.", param="cursor") from None


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
        decision=decision, label=label, key_name=_owner(request), limit=limit,
        cursor=_decode_cursor(cursor),
    )  # fmt: skip
    return {
        "object": "list",
        "data": page,
        "next_cursor": encode_cursor(following) if following is not None else None,
    }
