"""The decision rule: accept, retrieve, escalate or abstain, on calibrated thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sdm_router.config import RouteSettings
from sdm_router.core.routing import OnOod, OnUnverified
from sdm_router.core.verdict import Action, Estimator, Reason, Verdict


@dataclass(frozen=True, slots=True)
class PolicyThresholds:
    """What a route requires of a verdict before accepting."""

    accept_alpha: float
    estimator: Estimator


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a request stands in its route when a policy chooses the next step."""

    tier: int  # the tier that just answered (or failed)
    tiers: int  # how many tiers the route has
    can_retrieve: bool  # a retriever is configured for the route and was not used yet
    budget_left: int  # backend calls left under max_backend_calls

    @property
    def last_tier(self) -> int:
        """The index of the route's strongest (last) tier."""
        return self.tiers - 1


@dataclass(frozen=True, slots=True)
class Step:
    """What the cascade does next, with why: a value a policy returns and the cascade carries
    out. ``tier`` is the tier to go to for ``ESCALATE`` (any later tier, not only the next)."""

    action: Action
    reason: Reason
    tier: int | None = None

    @classmethod
    def accept(cls) -> Step:
        """Return the answer."""
        return cls(Action.ACCEPT, Reason.VERIFIED)

    @classmethod
    def retrieve(cls, reason: Reason) -> Step:
        """Fetch context once and regenerate at the same tier."""
        return cls(Action.RETRIEVE, reason)

    @classmethod
    def go_to(cls, tier: int, reason: Reason) -> Step:
        """Generate again at ``tier``."""
        return cls(Action.ESCALATE, reason, tier)

    @classmethod
    def abstain(cls, reason: Reason) -> Step:
        """Stop; the route's ``on_abstain`` answers."""
        return cls(Action.ABSTAIN, reason)


class Policy(Protocol):
    """Chooses a route's next step. The cascade asks after each verified attempt and after a
    failed backend call, and carries the step out; it never decides what "next" means."""

    def after_verdict(
        self, verdict: Verdict, thresholds: PolicyThresholds, progress: Progress
    ) -> Step:
        """The step after an attempt whose best answer got ``verdict``."""

    def after_backend_error(self, progress: Progress) -> Step:
        """The step after the tier's backend failed (reason ``backend_error``)."""


def judge(verdict: Verdict, thresholds: PolicyThresholds) -> Reason:
    """Why a verdict is (or is not) good enough: ``VERIFIED`` means accept."""
    if verdict.is_ood:
        return Reason.OOD
    if verdict.prediction != 1:
        return Reason.PREDICTED_INCORRECT
    alpha = verdict.alpha(thresholds.estimator)
    if alpha <= 0.0:
        return Reason.NO_REGION
    if alpha < thresholds.accept_alpha:
        return Reason.BELOW_ALPHA
    return Reason.VERIFIED


def final_action(reason: Reason) -> Action:
    """The decision when nothing more can be tried (a live stream, ``/v1/verify``): accept a
    verified answer, abstain on anything else. The one mapping of a reason to a decision."""
    return Action.ACCEPT if reason is Reason.VERIFIED else Action.ABSTAIN


def unverified(on_unverified: OnUnverified) -> tuple[Action, Reason]:
    """The decision on an answer the route does not verify (tool calls under
    ``verify_tool_calls: false``): final, whatever tiers are left. ``pass`` returns it marked
    ``unverified``; ``abstain`` abstains (then ``on_abstain`` applies)."""
    action = Action.UNVERIFIED if on_unverified is OnUnverified.PASS else Action.ABSTAIN
    return action, Reason.TOOL_CALLS_UNVERIFIED


def unjudged(observing: Reason | None, on_unverified: OnUnverified) -> tuple[Action, Reason]:
    """The decision on an answer the cascade did not verify: in observe mode (``observing``,
    why the route observes) it is served as ``observed``; otherwise it is a tool call the
    route does not verify, decided by ``on_unverified`` (``unverified``)."""
    if observing is not None:
        return Action.OBSERVED, observing
    return unverified(on_unverified)


@dataclass(frozen=True, slots=True)
class CascadePolicy:
    """The default policy. Accept a verified answer. Otherwise retrieve (once per request)
    when a retriever is available, else go to the next tier, else abstain. An out-of-distribution
    answer follows ``on_ood`` instead (``retrieve``, the default, is the rule above). A spent
    budget abstains with ``budget_exhausted`` when the cascade could otherwise have continued. A
    failed backend moves on to the next tier while calls are left."""

    on_ood: OnOod = OnOod.RETRIEVE

    def after_verdict(
        self, verdict: Verdict, thresholds: PolicyThresholds, progress: Progress
    ) -> Step:
        """Accept, retrieve, a later tier, or abstain (see the class)."""
        reason = judge(verdict, thresholds)
        if reason is Reason.VERIFIED:
            return Step.accept()
        can_retrieve = progress.can_retrieve
        next_tier = progress.tier + 1
        if reason is Reason.OOD and self.on_ood is not OnOod.RETRIEVE:
            can_retrieve = False
            if self.on_ood is OnOod.ABSTAIN:
                return Step.abstain(reason)
            if self.on_ood is OnOod.STRONGEST:
                next_tier = progress.last_tier
        can_escalate = progress.tier < next_tier <= progress.last_tier
        if (can_retrieve or can_escalate) and progress.budget_left <= 0:
            return Step.abstain(Reason.BUDGET_EXHAUSTED)
        if can_retrieve:
            return Step.retrieve(reason)
        if can_escalate:
            return Step.go_to(next_tier, reason)
        return Step.abstain(reason)

    def after_backend_error(self, progress: Progress) -> Step:
        """The next tier while one is left and calls remain, else abstain."""
        if progress.tier < progress.last_tier and progress.budget_left > 0:
            return Step.go_to(progress.tier + 1, Reason.BACKEND_ERROR)
        return Step.abstain(Reason.BACKEND_ERROR)


DEFAULT_POLICY = CascadePolicy()


def policy_for(route: RouteSettings) -> Policy:
    """The policy of a configured route: the one place a route's settings choose its steps."""
    if route.on_ood is DEFAULT_POLICY.on_ood:
        return DEFAULT_POLICY
    return CascadePolicy(on_ood=route.on_ood)


def ranking_key(verdict: Verdict | None, estimator: Estimator) -> tuple[int, float, float]:
    """Best-of-n sort key (larger is better): predicted correct, then alpha, then probability;
    an unverified answer (no verdict) ranks below every verified one."""
    if verdict is None:
        return (-1, 0.0, 0.0)
    correct = verdict.prediction == 1 and not verdict.is_ood
    probability_correct = (
        verdict.probability if verdict.prediction == 1 else 1 - verdict.probability
    )
    return (int(correct), verdict.alpha(estimator) if correct else 0.0, probability_correct)
