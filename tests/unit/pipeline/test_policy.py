"""The decision rule on calibrated thresholds."""

from __future__ import annotations

import pytest

from sdm_router.core.verdict import Action, Estimator, Reason, Verdict
from sdm_router.pipeline.policy import (
    CascadePolicy,
    PolicyThresholds,
    Progress,
    Step,
    judge,
    ranking_key,
)

STRICT = PolicyThresholds(accept_alpha=0.95, estimator=Estimator.LOWER)
CENTROID = PolicyThresholds(accept_alpha=0.95, estimator=Estimator.CENTROID)
POLICY = CascadePolicy()
# at tier 0 of a two-tier route, retrieval unused, calls left
ALL_OPTIONS = Progress(tier=0, tiers=2, can_retrieve=True, budget_left=3)


def verdict(
    prediction: int = 1,
    centroid: float = 0.95,
    lower: float = 0.95,
    ood: bool = False,
    probability: float = 0.97,
) -> Verdict:
    return Verdict(
        prediction, probability, centroid, lower, q=0 if ood else 10, d=0.5, q_prime=5.0, is_ood=ood
    )


@pytest.mark.parametrize(
    ("item", "thresholds", "reason"),
    [
        (verdict(), STRICT, Reason.VERIFIED),
        (verdict(centroid=0.95, lower=0.9), STRICT, Reason.BELOW_ALPHA),
        (verdict(centroid=0.95, lower=0.9), CENTROID, Reason.VERIFIED),
        (verdict(centroid=0.0, lower=0.0), STRICT, Reason.NO_REGION),
        (verdict(prediction=0), STRICT, Reason.PREDICTED_INCORRECT),
        (verdict(ood=True, centroid=0.0, lower=0.0), STRICT, Reason.OOD),
        (verdict(prediction=0, ood=True), STRICT, Reason.OOD),
    ],
)
def test_judge(item: Verdict, thresholds: PolicyThresholds, reason: Reason) -> None:
    assert judge(item, thresholds) is reason


def test_accept_wins_over_every_option() -> None:
    assert POLICY.after_verdict(verdict(), STRICT, ALL_OPTIONS) == Step.accept()


def test_retrieve_first_then_the_next_tier_then_abstain() -> None:
    bad = verdict(prediction=0)
    assert POLICY.after_verdict(bad, STRICT, ALL_OPTIONS) == Step.retrieve(
        Reason.PREDICTED_INCORRECT
    )
    no_retrieval = Progress(tier=0, tiers=2, can_retrieve=False, budget_left=3)
    step = POLICY.after_verdict(bad, STRICT, no_retrieval)
    assert (step.action, step.tier) == (Action.ESCALATE, 1)
    at_the_last_tier = Progress(tier=1, tiers=2, can_retrieve=False, budget_left=3)
    assert POLICY.after_verdict(bad, STRICT, at_the_last_tier) == Step.abstain(
        Reason.PREDICTED_INCORRECT
    )


def test_spent_budget_abstains_with_budget_exhausted() -> None:
    spent = Progress(tier=0, tiers=2, can_retrieve=True, budget_left=0)
    assert POLICY.after_verdict(verdict(prediction=0), STRICT, spent) == Step.abstain(
        Reason.BUDGET_EXHAUSTED
    )
    # an accepted answer is still accepted on the last call
    assert POLICY.after_verdict(verdict(), STRICT, spent).action is Action.ACCEPT


def test_a_failed_backend_moves_on_while_tiers_and_calls_are_left() -> None:
    assert POLICY.after_backend_error(ALL_OPTIONS) == Step.go_to(1, Reason.BACKEND_ERROR)
    spent = Progress(tier=0, tiers=2, can_retrieve=False, budget_left=0)
    assert POLICY.after_backend_error(spent) == Step.abstain(Reason.BACKEND_ERROR)
    last = Progress(tier=1, tiers=2, can_retrieve=False, budget_left=2)
    assert POLICY.after_backend_error(last) == Step.abstain(Reason.BACKEND_ERROR)


def test_ranking_prefers_correct_then_alpha_then_probability() -> None:
    items = [
        verdict(prediction=0, probability=0.99),
        verdict(lower=0.9, probability=0.99),
        verdict(lower=0.95, probability=0.8),
        verdict(lower=0.95, probability=0.9),
        verdict(ood=True, lower=0.99),
    ]
    ranked = sorted(items, key=lambda v: ranking_key(v, Estimator.LOWER), reverse=True)
    assert ranked[0] is items[3]
    assert ranked[1] is items[2]
    assert ranked[2] is items[1]
