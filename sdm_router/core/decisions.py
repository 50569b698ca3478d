"""What the gateway decided for one request, as stored in the decision store, and labels on it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from sdm_router.core.generation import Message, TokenLogprob

FeedbackLabel = Literal["correct", "incorrect"]


class LabelKind(StrEnum):
    """Who gives a label: a person (``POST /v1/feedback``), a judge model asked whether the
    answer is correct, or a judge comparing it with the route's strongest tier's own answer."""

    HUMAN = "human"
    JUDGE = "judge"
    REFERENCE = "reference"


HUMAN_SOURCE = LabelKind.HUMAN.value


def label_source(kind: LabelKind, backend: str | None = None) -> str:
    """A label's source as stored: ``human``, ``judge:<backend>`` or ``reference:<backend>``
    (the backend that labelled)."""
    if kind is LabelKind.HUMAN:
        return HUMAN_SOURCE
    if not backend:
        raise ValueError(f"a {kind.value} label names its backend")
    return f"{kind.value}:{backend}"


def source_kind(source: str) -> LabelKind:
    """The kind of a stored source (``judge:big`` -> ``JUDGE``); ValueError for anything else."""
    return LabelKind(source.split(":", 1)[0])


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
    verifier read, so that a labelled record can train a verifier) are stored with
    ``storage.keep_text``, and always when ``keep_text`` is set on the record (an ``observed``
    answer, or one sampled for labelling: text a verifier will be built from).
    ``answer_model`` is the model identity of the backend whose answer was served."""

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
    answer_model: str | None = None
    keep_text: bool = False


@dataclass(frozen=True, slots=True)
class LabelWrite:
    """A machine label to record on a request's answer (``DecisionLog.submit_label``): the
    label, which answer, the reply as its note, its source and the judge's logprob."""

    request_id: str
    label: FeedbackLabel
    source: str
    choice: int = 0
    note: str | None = None
    logprob: float | None = None


@dataclass(frozen=True, slots=True)
class LabelledAnswer:
    """A decision's answer (choice 0) with the label that counts for it: a person's when one
    was given, else the newest machine label (``storage/labels.py``). Region alphas are those
    of the attempt that decided (None when nothing was verified: observed, unverified).
    ``conversation``, ``answer`` and ``answer_logprobs`` only where the text was kept and
    asked for."""

    request_id: str
    created: float
    route: str
    decision: str
    artifact_id: str
    label: FeedbackLabel
    source: str
    logprob: float | None
    region_alpha: float | None
    region_alpha_lower: float | None
    answer_model: str | None
    conversation: tuple[Message, ...] | None = None
    answer: str | None = None
    answer_logprobs: tuple[TokenLogprob, ...] | None = None

    @property
    def correct(self) -> bool:
        """Whether the label says the answer is correct."""
        return self.label == "correct"


@dataclass(frozen=True, slots=True)
class LabelAgreement:
    """How a machine label source agrees with people on the answers both labelled:
    ``counts[(human, machine)]`` over the labels ``correct`` / ``incorrect``."""

    source: str
    counts: dict[tuple[str, str], int]

    @property
    def pairs(self) -> int:
        """Answers labelled by both."""
        return sum(self.counts.values())

    @property
    def agreed(self) -> int:
        """Answers where both gave the same label."""
        return sum(n for (human, machine), n in self.counts.items() if human == machine)

    @property
    def rate(self) -> float | None:
        """The share of shared answers labelled alike (None without any)."""
        return self.agreed / self.pairs if self.pairs else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: agreement beyond what the two label rates give by chance (None
        without pairs, or when chance agreement is total)."""
        if not self.pairs:
            return None
        chance = 0.0
        for label in ("correct", "incorrect"):
            human = sum(n for (h, _), n in self.counts.items() if h == label) / self.pairs
            machine = sum(n for (_, m), n in self.counts.items() if m == label) / self.pairs
            chance += human * machine
        if chance >= 1.0:
            return None
        return (self.agreed / self.pairs - chance) / (1.0 - chance)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures (``GET /admin/labels/agreement``)."""
        return {
            "source": self.source,
            "pairs": self.pairs,
            "agreed": self.agreed,
            "agreement": None if self.rate is None else round(self.rate, 6),
            "kappa": None if self.kappa is None else round(self.kappa, 6),
            "confusion": [
                {"human": human, "machine": machine, "count": n}
                for (human, machine), n in sorted(self.counts.items())
            ],
        }


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

    def submit_label(self, label: LabelWrite) -> None:
        """Queue a machine label for writing, like ``submit`` (after the decision it labels)."""
