"""The routing step before generating: the decision rule and the cascade carrying it out."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from sdm_router.core.generation import Message
from sdm_router.core.routing import OnOodPrompt, RoutingAction
from sdm_router.core.verdict import Action, Reason, Verdict
from sdm_router.pipeline.cascade import Cascade
from sdm_router.pipeline.observer import NullObserver
from sdm_router.pipeline.plan import Tier
from sdm_router.pipeline.prompt_routing import decide, fails_confidently
from tests.fakes import FakeBackend, FakeVerifier
from tests.support.plans import GOOD, REQUEST, plan


def verdict(prediction: int, lower: float, ood: bool = False) -> Verdict:
    return Verdict(
        prediction, 0.99, lower, lower, q=0 if ood else 10, d=0.5, q_prime=5.0, is_ood=ood
    )


FAILS = verdict(0, 0.97)  # sure the tier fails
UNSURE = verdict(0, 0.90)  # predicted to fail, but below skip_alpha 0.95
ANSWERS = verdict(1, 0.97)
OOD = verdict(0, 0.0, ood=True)


def test_only_a_sure_in_distribution_failure_is_skipped() -> None:
    assert fails_confidently(FAILS, 0.95)
    assert not fails_confidently(UNSURE, 0.95)
    assert fails_confidently(UNSURE, 0.9)
    assert not fails_confidently(ANSWERS, 0.95)
    assert not fails_confidently(dataclasses.replace(FAILS, is_ood=True), 0.95)


@pytest.mark.parametrize(
    ("verdicts", "action", "start", "skipped", "reason"),
    [
        ((ANSWERS, ANSWERS), RoutingAction.PROCEED, 0, (), None),
        ((UNSURE, FAILS), RoutingAction.PROCEED, 0, (), None),
        ((FAILS, ANSWERS), RoutingAction.SKIP, 1, (0,), Reason.PREDICTED_TO_FAIL),
        ((FAILS, UNSURE), RoutingAction.SKIP, 1, (0,), Reason.PREDICTED_TO_FAIL),
        ((FAILS, FAILS), RoutingAction.ABSTAIN, None, (0, 1), Reason.PREDICTED_UNANSWERABLE),
    ],
)
def test_the_plan_starts_at_the_first_tier_not_sure_to_fail(
    verdicts: tuple[Verdict, ...],
    action: RoutingAction,
    start: int | None,
    skipped: tuple[int, ...],
    reason: Reason | None,
) -> None:
    step = decide(verdicts, 0.95, OnOodPrompt.CASCADE, "r")
    assert (step.action, step.start, step.skipped, step.reason) == (action, start, skipped, reason)


@pytest.mark.parametrize(
    ("on_ood", "action", "start"),
    [
        (OnOodPrompt.CASCADE, RoutingAction.PROCEED, 0),
        (OnOodPrompt.STRONGEST, RoutingAction.SKIP, 1),
        (OnOodPrompt.ABSTAIN, RoutingAction.ABSTAIN, None),
    ],
)
def test_an_ood_prompt_follows_on_ood_prompt(
    on_ood: OnOodPrompt, action: RoutingAction, start: int | None
) -> None:
    step = decide((OOD, FAILS), 0.95, on_ood, "r")
    assert (step.action, step.start, step.reason) == (action, start, Reason.OOD_PROMPT)


def test_the_routing_object_names_each_tier() -> None:
    shown = decide((FAILS, ANSWERS), 0.95, OnOodPrompt.CASCADE, "r").as_dict()
    assert shown["skipped_tiers"] == [0] and shown["start_tier"] == 1
    assert shown["reason"] == "predicted_to_fail" and shown["action"] == "skip"
    assert [tier["prediction"] for tier in shown["tiers"]] == [0, 1]
    assert shown["tiers"][0]["region_alpha_lower"] == pytest.approx(0.97)


class FixedRouter:
    """A prompt router that answers the same verdicts for every prompt."""

    def __init__(self, verdicts: tuple[Verdict, ...]) -> None:
        self.verdicts = verdicts
        self.prompts: list[tuple[Message, ...]] = []

    @property
    def tiers(self) -> int:
        return len(self.verdicts)

    @property
    def router_id(self) -> str:
        return "fixed"

    async def start(self) -> None:
        return None

    async def predict(self, messages: Sequence[Message]) -> tuple[Verdict, ...]:
        self.prompts.append(tuple(messages))
        return self.verdicts


def routed(router: FixedRouter) -> Cascade:
    return Cascade(FakeVerifier(), None, NullObserver(), router)


async def test_a_skipped_tier_is_never_called() -> None:
    first, second = FakeBackend("a", [GOOD]), FakeBackend("b", [GOOD])
    router = FixedRouter((FAILS, ANSWERS))
    route = dataclasses.replace(plan(Tier(first), Tier(second)), prompt_routing=True)
    result = await routed(router).run(route, REQUEST)
    assert first.requests == [] and len(second.requests) == 1
    assert [(a.tier, a.action) for a in result.attempts] == [(0, Action.SKIP), (1, Action.ACCEPT)]
    assert result.attempts[0].reason is Reason.PREDICTED_TO_FAIL
    assert result.routing is not None and result.routing.skipped == (0,)
    assert router.prompts == [REQUEST.text_conversation]


async def test_every_tier_sure_to_fail_abstains_before_generating() -> None:
    first, second = FakeBackend("a", [GOOD]), FakeBackend("b", [GOOD])
    route = dataclasses.replace(plan(Tier(first), Tier(second)), prompt_routing=True)
    result = await routed(FixedRouter((FAILS, FAILS))).run(route, REQUEST)
    assert (result.decision, result.reason) == (Action.ABSTAIN, Reason.PREDICTED_UNANSWERABLE)
    assert first.requests == [] and second.requests == [] and result.choices == []
    assert [a.action for a in result.attempts] == [Action.SKIP, Action.SKIP]


async def test_routing_off_or_a_router_for_other_tiers_runs_the_cascade_as_before() -> None:
    first = FakeBackend("a", [GOOD])
    two_tiers = plan(Tier(first), Tier(FakeBackend("b", [GOOD])))
    result = await routed(FixedRouter((FAILS, FAILS))).run(two_tiers, REQUEST)  # off
    assert result.decision is Action.ACCEPT and result.routing is None
    one_tier = dataclasses.replace(plan(Tier(first)), prompt_routing=True)
    result = await routed(FixedRouter((FAILS, FAILS))).run(one_tier, REQUEST)
    assert result.decision is Action.ACCEPT and result.routing is None
    assert len(first.requests) == 2


async def test_tier_zero_answers_as_before_when_the_router_is_unsure() -> None:
    first = FakeBackend("a", [GOOD])
    route = dataclasses.replace(plan(Tier(first), Tier(FakeBackend("b", []))), prompt_routing=True)
    result = await routed(FixedRouter((UNSURE, FAILS))).run(route, REQUEST)
    assert result.decision is Action.ACCEPT and result.best is not None
    assert result.best.tier == 0 and len(first.requests) == 1
    assert result.routing is not None and result.routing.action is RoutingAction.PROCEED
