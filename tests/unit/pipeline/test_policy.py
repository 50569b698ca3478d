"""The decision rule on calibrated thresholds."""

from __future__ import annotations

import pytest

from sdm_router.core.verdict import Action, Estimator, Reason, Verdict
from sdm_router.pipeline.policy import CascadeOptions, PolicyThresholds, decide, judge, ranking_key

STRICT = PolicyThresholds(accept_alpha=0.95, estimator=Estimator.LOWER)
CENTROID = PolicyThresholds(accept_alpha=0.95, estimator=Estimator.CENTROID)
ALL_OPTIONS = CascadeOptions(can_retrieve=True, can_escalate=True, budget_left=3)


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
    assert decide(verdict(), STRICT, ALL_OPTIONS) == (Action.ACCEPT, Reason.VERIFIED)


def test_retrieve_first_then_escalate_then_abstain() -> None:
    bad = verdict(prediction=0)
    assert decide(bad, STRICT, ALL_OPTIONS)[0] is Action.RETRIEVE
    no_retrieval = CascadeOptions(can_retrieve=False, can_escalate=True, budget_left=3)
    assert decide(bad, STRICT, no_retrieval)[0] is Action.ESCALATE
    nothing = CascadeOptions(can_retrieve=False, can_escalate=False, budget_left=3)
    assert decide(bad, STRICT, nothing) == (Action.ABSTAIN, Reason.PREDICTED_INCORRECT)


def test_spent_budget_abstains_with_budget_exhausted() -> None:
    spent = CascadeOptions(can_retrieve=True, can_escalate=True, budget_left=0)
    assert decide(verdict(prediction=0), STRICT, spent) == (Action.ABSTAIN, Reason.BUDGET_EXHAUSTED)
    # an accepted answer is still accepted on the last call
    assert decide(verdict(), STRICT, spent)[0] is Action.ACCEPT


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
