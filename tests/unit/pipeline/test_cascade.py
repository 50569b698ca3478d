"""The cascade over in-process fake backends, verifier and retriever."""

from __future__ import annotations

import dataclasses

import pytest

from sdm_router.core.errors import Abstained, InvalidRequest, UpstreamError, UpstreamTimeout
from sdm_router.core.generation import RequestOptions
from sdm_router.core.routing import OnAbstain
from sdm_router.core.verdict import Action, Reason, Verdict
from sdm_router.pipeline.cascade import Cascade, answer_candidates
from sdm_router.pipeline.observer import NullObserver
from sdm_router.pipeline.plan import Tier
from sdm_router.pipeline.policy import CascadePolicy, PolicyThresholds, Progress, Step
from tests.fakes import FakeBackend, FakeRetriever, FakeVerifier
from tests.support.plans import BAD, GOOD, REQUEST, plan


def cascade(retriever: FakeRetriever | None = None) -> Cascade:
    return Cascade(FakeVerifier(), retriever, NullObserver())


async def test_first_tier_accepted() -> None:
    backend = FakeBackend("a", [GOOD])
    result = await cascade().run(plan(Tier(backend)), REQUEST)
    assert (result.decision, result.reason) == (Action.ACCEPT, Reason.VERIFIED)
    assert [a.action for a in result.attempts] == [Action.ACCEPT]
    assert result.best is not None and result.best.candidate.text == GOOD


async def test_escalates_to_the_next_tier() -> None:
    result = await cascade().run(
        plan(Tier(FakeBackend("a", [BAD])), Tier(FakeBackend("b", [GOOD]))), REQUEST
    )
    assert [a.action for a in result.attempts] == [Action.ESCALATE, Action.ACCEPT]
    assert result.best is not None and result.best.model == "b"
    assert result.usage.total_tokens == 16


async def test_retrieves_once_then_escalates() -> None:
    retriever = FakeRetriever()
    first = FakeBackend("a", [BAD])
    result = await cascade(retriever).run(
        plan(Tier(first), Tier(FakeBackend("b", [BAD])), retrieval=True), REQUEST
    )
    assert [a.action for a in result.attempts] == [Action.RETRIEVE, Action.ESCALATE, Action.ABSTAIN]
    assert retriever.queries == ["What is 6*7?"]
    # the regeneration on the same tier carries the passage before the question
    assert first.requests[1].messages is not None
    assert "The answer to hard questions is 42." in first.requests[1].messages[-1].content


async def test_no_passages_skips_regeneration() -> None:
    first = FakeBackend("a", [BAD])
    result = await cascade(FakeRetriever(passages=[])).run(
        plan(Tier(first), Tier(FakeBackend("b", [GOOD])), retrieval=True), REQUEST
    )
    assert len(first.requests) == 1
    assert result.decision is Action.ACCEPT


async def test_best_of_n_keeps_the_best_candidate() -> None:
    backend = FakeBackend("a", [BAD, GOOD, BAD])
    result = await cascade().run(plan(Tier(backend, n=3, temperature=0.7)), REQUEST)
    assert backend.requests[0].params.n == 3
    assert backend.requests[0].params.temperature == 0.7
    assert result.best is not None and result.best.candidate.text == GOOD


async def test_backend_error_fails_over_and_raises_when_nothing_is_left() -> None:
    failing = FakeBackend("a", [GOOD], error=UpstreamError("boom", code="upstream_server_error"))
    result = await cascade().run(plan(Tier(failing), Tier(FakeBackend("b", [GOOD]))), REQUEST)
    assert result.attempts[0].reason is Reason.BACKEND_ERROR
    assert result.decision is Action.ACCEPT
    with pytest.raises(UpstreamTimeout):
        timeout = FakeBackend("a", [GOOD], error=UpstreamTimeout("slow"))
        await cascade().run(plan(Tier(timeout)), REQUEST)


async def test_a_tier_whose_circuit_is_open_costs_no_backend_call() -> None:
    from sdm_router.backends.resilience import BackendUnavailable

    refused = FakeBackend("a", [GOOD], error=BackendUnavailable("circuit open"))
    result = await cascade().run(
        plan(Tier(refused), Tier(FakeBackend("b", [GOOD])), budget=1), REQUEST
    )
    assert [a.reason for a in result.attempts] == [Reason.BACKEND_ERROR, Reason.VERIFIED]
    assert result.decision is Action.ACCEPT
    # an upstream that was really called spends the one call the budget allows
    called = FakeBackend("a", [GOOD], error=UpstreamError("boom", code="upstream_server_error"))
    with pytest.raises(UpstreamError):
        await cascade().run(plan(Tier(called), Tier(FakeBackend("b", [GOOD])), budget=1), REQUEST)


async def test_backend_error_after_an_answer_abstains_with_that_answer() -> None:
    failing = FakeBackend("b", [GOOD], error=UpstreamError("boom"))
    result = await cascade().run(plan(Tier(FakeBackend("a", [BAD])), Tier(failing)), REQUEST)
    assert (result.decision, result.reason) == (Action.ABSTAIN, Reason.BACKEND_ERROR)
    assert result.best is not None and result.best.candidate.text == BAD


async def test_client_errors_are_not_failed_over() -> None:
    failing = FakeBackend("a", [GOOD], error=InvalidRequest("bad max_tokens"))
    with pytest.raises(InvalidRequest):
        await cascade().run(plan(Tier(failing), Tier(FakeBackend("b", [GOOD]))), REQUEST)


async def test_budget_caps_backend_calls() -> None:
    second = FakeBackend("b", [GOOD])
    result = await cascade().run(
        plan(Tier(FakeBackend("a", [BAD])), Tier(second), budget=1), REQUEST
    )
    assert result.reason is Reason.BUDGET_EXHAUSTED
    assert second.requests == []


async def test_on_abstain_policies() -> None:
    route = plan(Tier(FakeBackend("a", [BAD])))
    result = await cascade().run(route, REQUEST)
    two = REQUEST.with_params(n=2)
    assert [c.text for c in answer_candidates(route, result, two)] == ["no", "no"]
    best_effort = plan(Tier(FakeBackend("a", [BAD])), on_abstain=OnAbstain.BEST_EFFORT)
    assert [c.text for c in answer_candidates(best_effort, result, REQUEST)] == [BAD]
    with pytest.raises(Abstained):
        answer_candidates(
            plan(Tier(FakeBackend("a", [BAD])), on_abstain=OnAbstain.ERROR), result, REQUEST
        )
    refusing = plan(Tier(FakeBackend("a", [BAD])), on_abstain=OnAbstain.REFUSAL)
    (refusal,) = answer_candidates(refusing, result, REQUEST)
    assert (refusal.text, refusal.refusal, refusal.finish_reason) == ("", "no", "stop")


async def test_an_abstention_with_a_shape_is_a_refusal_cut_to_max_tokens() -> None:
    route = dataclasses.replace(
        plan(Tier(FakeBackend("a", [BAD]))), abstain_message="I will not guess this."
    )
    result = await cascade().run(route, REQUEST)
    structured = dataclasses.replace(
        REQUEST, options=RequestOptions(response_format={"type": "json_schema", "json_schema": {}})
    )
    (answer,) = answer_candidates(route, result, structured)
    assert (answer.text, answer.refusal) == ("", "I will not guess this.")
    text_mode = dataclasses.replace(
        REQUEST, options=RequestOptions(response_format={"type": "text"})
    )
    assert answer_candidates(route, result, text_mode)[0].refusal is None
    (cut,) = answer_candidates(route, result, REQUEST.with_params(max_tokens=6))
    assert (cut.text, cut.finish_reason) == ("I will", "length")


async def test_tier_limits_cap_the_clients_max_tokens() -> None:
    backend = FakeBackend("a", [GOOD])
    await cascade().run(plan(Tier(backend, max_tokens=10)), REQUEST.with_params(max_tokens=50))
    assert backend.requests[0].params.max_tokens == 10


class StraightToTheStrongest(CascadePolicy):
    """An out-of-distribution answer goes to the last tier at once; anything else as usual.
    Written as a policy only: the cascade carries out whatever step it returns."""

    def after_verdict(
        self, verdict: Verdict, thresholds: PolicyThresholds, progress: Progress
    ) -> Step:
        if verdict.is_ood and progress.tier < progress.last_tier:
            return Step.go_to(progress.last_tier, Reason.OOD)
        return super().after_verdict(verdict, thresholds, progress)


async def test_a_policy_can_jump_from_tier_0_to_the_last_tier() -> None:
    middle = FakeBackend("b", [GOOD])
    tiers = (Tier(FakeBackend("a", ["An OOD answer."])), Tier(middle))
    route = dataclasses.replace(
        plan(*tiers, Tier(FakeBackend("c", [GOOD]))), policy=StraightToTheStrongest()
    )
    result = await cascade().run(route, REQUEST)
    assert [(a.tier, a.action, a.reason) for a in result.attempts] == [
        (0, Action.ESCALATE, Reason.OOD),
        (2, Action.ACCEPT, Reason.VERIFIED),
    ]
    assert middle.requests == []  # tier 1 was skipped
    assert result.best is not None and result.best.model == "c"
