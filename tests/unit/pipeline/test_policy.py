"""The decision rule on calibrated thresholds."""

from __future__ import annotations

import pytest

from sdm_router.config import RouteSettings
from sdm_router.core.routing import OnOod
from sdm_router.core.verdict import Action, Estimator, Reason, Verdict
from sdm_router.pipeline.policy import (
    CascadePolicy,
    PolicyThresholds,
    Progress,
    Step,
    judge,
    policy_for,
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


OOD = verdict(ood=True, centroid=0.0, lower=0.0)
# at tier 0 of a three-tier route, retrieval unused, calls left
THREE_TIERS = Progress(tier=0, tiers=3, can_retrieve=True, budget_left=3)


@pytest.mark.parametrize(
    ("on_ood", "step"),
    [
        (OnOod.RETRIEVE, Step.retrieve(Reason.OOD)),
        (OnOod.ESCALATE, Step.go_to(1, Reason.OOD)),
        (OnOod.STRONGEST, Step.go_to(2, Reason.OOD)),
        (OnOod.ABSTAIN, Step.abstain(Reason.OOD)),
    ],
)
def test_on_ood_chooses_the_step_after_an_ood_answer(on_ood: OnOod, step: Step) -> None:
    assert CascadePolicy(on_ood=on_ood).after_verdict(OOD, STRICT, THREE_TIERS) == step


@pytest.mark.parametrize("on_ood", list(OnOod))
def test_on_ood_leaves_other_reasons_alone(on_ood: OnOod) -> None:
    policy = CascadePolicy(on_ood=on_ood)
    bad = verdict(centroid=0.95, lower=0.9)
    assert policy.after_verdict(bad, STRICT, THREE_TIERS) == Step.retrieve(Reason.BELOW_ALPHA)
    assert policy.after_verdict(verdict(), STRICT, THREE_TIERS) == Step.accept()


@pytest.mark.parametrize("on_ood", [OnOod.ESCALATE, OnOod.STRONGEST])
def test_on_ood_at_the_last_tier_abstains(on_ood: OnOod) -> None:
    last = Progress(tier=2, tiers=3, can_retrieve=True, budget_left=3)
    assert CascadePolicy(on_ood=on_ood).after_verdict(OOD, STRICT, last) == Step.abstain(Reason.OOD)
    spent = Progress(tier=0, tiers=3, can_retrieve=True, budget_left=0)
    assert CascadePolicy(on_ood=on_ood).after_verdict(OOD, STRICT, spent) == Step.abstain(
        Reason.BUDGET_EXHAUSTED
    )


def test_a_route_s_on_ood_reaches_its_policy() -> None:
    route = RouteSettings.model_validate({"tiers": [{"backend": "a"}], "on_ood": "abstain"})
    assert policy_for(route).after_verdict(OOD, STRICT, THREE_TIERS) == Step.abstain(Reason.OOD)
    default = RouteSettings.model_validate({"tiers": [{"backend": "a"}]})
    assert policy_for(default).after_verdict(OOD, STRICT, THREE_TIERS) == Step.retrieve(Reason.OOD)
