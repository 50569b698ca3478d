"""A person's label on an answer: the one path ``POST /v1/feedback`` and the console share."""

from __future__ import annotations

from typing import Any, Protocol

from sdm_router.core.decisions import HUMAN_SOURCE, FeedbackLabel
from sdm_router.core.errors import NotFound
from sdm_router.storage.store import DecisionStore


class LabelCounter(Protocol):
    """Counts labels given (``GatewayMetrics`` implements it)."""

    def label_given(self, kind: str, label: str) -> None:
        """One more ``label`` from ``kind``."""


def not_found(identifier: str) -> NotFound:
    """The 404 of a decision that is not there, or not the caller's (alike)."""
    return NotFound(
        f"No decision is recorded for request {identifier!r}.",
        param="request_id",
        code="request_not_found",
    )


async def owned_decision(
    store: DecisionStore, identifier: str, owner: str | None
) -> dict[str, Any]:
    """The record, if it exists and ``owner`` (a key name; None: anyone) may see it; the same
    404 otherwise, so a user key learns nothing of other keys' requests."""
    record = await store.decision(identifier)  # StoreUnavailable: a 503
    if record is None or (owner is not None and record.get("key_name") != owner):
        raise not_found(identifier)
    return record


async def give_feedback(
    store: DecisionStore,
    counter: LabelCounter,
    *,
    owner: str | None,
    request_id: str,
    label: FeedbackLabel,
    choice: int,
    note: str | None,
) -> tuple[str, bool]:
    """Record a person's label (source ``human``, it overrides a judge's) on one answer of a
    request ``owner`` may see; counted when it changed something. Returns (request id,
    changed)."""
    if owner is not None:
        await owned_decision(store, request_id, owner)
    outcome = await store.label(request_id, label, choice, note)
    if outcome is None:
        raise not_found(request_id)
    if outcome[1]:
        counter.label_given(HUMAN_SOURCE, label)
    return outcome
