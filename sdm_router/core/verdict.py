"""What the verifier says about an answer, and what the pipeline decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.core.states import RecordedStates


class Action(StrEnum):
    """What the cascade does after one attempt."""

    ACCEPT = "accept"
    ESCALATE = "escalate"
    RETRIEVE = "retrieve"
    ABSTAIN = "abstain"
    UNVERIFIED = "unverified"  # returned without a verdict (a route's on_unverified: pass)
    OBSERVED = "observed"  # observe mode: no artifact covers the route; served and recorded
    SKIP = "skip"  # the prompt router skipped this tier before generating (prompt_routing)


# A request's outcome as counted (``sdm_router_requests_total{outcome}``): the final action, or
# this when the request failed before the cascade decided.
ERROR_OUTCOME = "error"
FINAL_ACTIONS: frozenset[Action] = frozenset(
    {Action.ACCEPT, Action.ABSTAIN, Action.UNVERIFIED, Action.OBSERVED}
)


class Reason(StrEnum):
    """Why an action was taken: a closed set, used as a metric label."""

    VERIFIED = "verified"
    BELOW_ALPHA = "below_alpha"
    NO_REGION = "no_region"
    OOD = "ood"
    PREDICTED_INCORRECT = "predicted_incorrect"
    BACKEND_ERROR = "backend_error"
    BUDGET_EXHAUSTED = "budget_exhausted"
    TOOL_CALLS_UNVERIFIED = "tool_calls_unverified"  # the route has verify_tool_calls: false
    # observe mode, why: no artifact is loaded; the live artifact was calibrated on other models
    # than the route's tiers serve; the route's artifact was taken back (a breached guarantee)
    NO_ARTIFACT = "no_artifact"
    UNCALIBRATED_MODEL = "uncalibrated_model"
    ROLLED_BACK = "rolled_back"
    # the prompt router, before generating: a tier it is sure fails (skipped); every tier
    # predicted to fail (the route abstains at once); a prompt unlike its training prompts
    PREDICTED_TO_FAIL = "predicted_to_fail"
    PREDICTED_UNANSWERABLE = "predicted_unanswerable"
    OOD_PROMPT = "ood_prompt"


class Estimator(StrEnum):
    """Which region alpha the policy reads."""

    CENTROID = "centroid"
    LOWER = "lower"


@dataclass(frozen=True, slots=True)
class VerificationInput:
    """One (conversation, answer) pair to verify."""

    messages: tuple[Message, ...]
    response: str
    token_logprobs: tuple[TokenLogprob, ...] | None = None
    # The generator's recorded layer states for this answer (a second forward is then saved).
    recorded: RecordedStates | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NearestExemplar:
    """A support row near the answer, for explanations; ``text``: the row's text when the
    artifact was built with it (``verifier build --exemplar-text``)."""

    id: str
    label: int
    distance: float
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The calibrated verdict on one answer.

    ``prediction`` is the verifier's class (1 = the answer is correct). ``probability`` is the SDM
    output for the predicted class. ``region_alpha``/``region_alpha_lower`` are the centroid and
    DKW-lower assigned alphas (0 when no calibrated region admits the answer).
    """

    prediction: int
    probability: float
    region_alpha: float
    region_alpha_lower: float
    q: int
    d: float
    q_prime: float
    is_ood: bool
    nearest_exemplars: tuple[NearestExemplar, ...] = field(default=())

    def alpha(self, estimator: Estimator) -> float:
        """The assigned alpha under ``estimator``."""
        return self.region_alpha_lower if estimator is Estimator.LOWER else self.region_alpha


NO_ARTIFACT_ID = "none"  # the artifact id while none is loaded (observe mode)


@dataclass(frozen=True, slots=True)
class VerifierInfo:
    """Identity and placement of a loaded verifier, for /readyz and metrics.

    ``calibrated_on``: the model identities the live artifact was calibrated on
    (``metadata.sdmRouter.calibratedOn``); None when it records none (an artifact built before
    the record existed: taken to cover every model). ``regions``: (alpha, minimum rescaled
    similarity) of each calibrated region; ``lineage``: what the artifact records of how it was
    made (created, calibration rows, split, seed, the parent it was updated from), as
    (name, value) pairs for the console."""

    artifact_id: str
    device: str
    description: str
    calibrated_on: frozenset[str] | None = None
    regions: tuple[tuple[float, float], ...] = ()
    lineage: tuple[tuple[str, str], ...] = ()

    @property
    def loaded(self) -> bool:
        """Whether an artifact is loaded (else every route observes)."""
        return self.artifact_id != NO_ARTIFACT_ID
