"""What the gateway decided for one request, as stored in the decision store, and feedback on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from sdm_router.core.generation import Message, TokenLogprob

FeedbackLabel = Literal["correct", "incorrect"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One generate-and-verify step: the tier, its model, the verdict and what followed."""

    tier: int
    model: str
    action: str
    reason: str
    prediction: int | None
    q: int | None
    d: float | None
    region_alpha: float | None
    region_alpha_lower: float | None
    latency_ms: float
    retrieved_context: bool


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One request's decision; ``conversation``, ``answer`` and its token logprobs (what the
    verifier read, so that a labelled record can train a verifier) only with
    ``storage.keep_text``."""

    request_id: str
    response_id: str | None
    created: float
    route: str
    requested_model: str | None
    decision: str
    reason: str | None
    artifact_id: str
    prompt_tokens: int
    completion_tokens: int
    key_name: str | None
    attempts: tuple[AttemptRecord, ...]
    conversation: tuple[Message, ...] | None = None
    answer: str | None = None
    answer_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """What a shadow (candidate) verifier artifact would have decided for a request's served
    answer, had it been live: stored beside the live decision, never shown to the client."""

    request_id: str
    created: float
    artifact_id: str
    decision: str
    reason: str
    prediction: int
    q: int
    d: float
    region_alpha: float
    region_alpha_lower: float


class DecisionLog(Protocol):
    """Where the pipeline hands every decision; never blocks the request."""

    @property
    def status(self) -> str:
        """``ok``, ``degraded: <why>`` or ``stopped`` (for /readyz)."""

    async def start(self) -> None:
        """Connect and get ready to write."""

    async def close(self) -> None:
        """Write what is queued, then stop."""

    def submit(self, record: DecisionRecord) -> None:
        """Queue ``record`` for writing (a full queue drops it and counts the drop)."""

    def submit_shadow(self, record: ShadowRecord) -> None:
        """Queue a shadow verdict for writing, like ``submit``."""
