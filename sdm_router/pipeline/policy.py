"""The decision rule: accept, retrieve, escalate or abstain, on calibrated thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from sdm_router.core.routing import OnUnverified
from sdm_router.core.verdict import Action, Estimator, Reason, Verdict


@dataclass(frozen=True, slots=True)
class PolicyThresholds:
    """What a route requires of a verdict before accepting."""

    accept_alpha: float
    estimator: Estimator


@dataclass(frozen=True, slots=True)
class CascadeOptions:
    """What the cascade can still do for this request."""

    can_retrieve: bool
    can_escalate: bool
    budget_left: int


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


def decide(
    verdict: Verdict, thresholds: PolicyThresholds, options: CascadeOptions
) -> tuple[Action, Reason]:
    """The next action after verifying one attempt's best answer.

    Accept a verified answer. Otherwise retrieve (once per request) when a retriever is
    available, else escalate to the next tier, else abstain. A spent budget abstains with
    ``budget_exhausted`` when the cascade could otherwise have continued.
    """
    reason = judge(verdict, thresholds)
    if reason is Reason.VERIFIED:
        return Action.ACCEPT, reason
    wants_more = options.can_retrieve or options.can_escalate
    if wants_more and options.budget_left <= 0:
        return Action.ABSTAIN, Reason.BUDGET_EXHAUSTED
    if options.can_retrieve:
        return Action.RETRIEVE, reason
    if options.can_escalate:
        return Action.ESCALATE, reason
    return Action.ABSTAIN, reason


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
