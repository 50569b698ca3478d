"""Observe mode: which routes the live artifact covers (``RouteTable``), and the cascade serving
a route that observes (tier 0's answer, unverified, recorded as ``observed``)."""

from __future__ import annotations

import dataclasses

import pytest

from sdm_router.core.errors import UpstreamError
from sdm_router.core.generation import SamplingParams
from sdm_router.core.routing import StreamMode
from sdm_router.core.verdict import NO_ARTIFACT_ID, Action, Reason, VerifierInfo
from sdm_router.pipeline.cascade import Cascade, CascadeResult, answer_candidates
from sdm_router.pipeline.observer import NullObserver
from sdm_router.pipeline.plan import RoutePlan, Tier
from sdm_router.pipeline.routes import RouteTable, covers
from tests.fakes import FakeBackend, FakeVerifier
from tests.support.plans import BAD, GOOD, REQUEST, plan

SMALL, LARGE = "org/small", "org/large"


def two_tier(small: FakeBackend | None = None) -> RoutePlan:
    return plan(
        Tier(small or FakeBackend("small", [BAD]), n=4, model=SMALL),
        Tier(FakeBackend("large", [GOOD]), model=LARGE),
    )


def info(artifact: str = "a1", calibrated_on: frozenset[str] | None = None) -> VerifierInfo:
    return VerifierInfo(artifact, "cpu", "test", calibrated_on)


def test_coverage_is_decided_by_the_artifact_and_the_tiers_models() -> None:
    route = two_tier()
    assert covers(info(NO_ARTIFACT_ID), route) is Reason.NO_ARTIFACT
    assert covers(info(calibrated_on=None), route) is None  # records nothing: covers all
    assert covers(info(calibrated_on=frozenset({SMALL, LARGE, "x"})), route) is None
    assert covers(info(calibrated_on=frozenset({SMALL})), route) is Reason.UNCALIBRATED_MODEL


def test_the_table_observes_until_an_artifact_covers_the_route_and_records_why() -> None:
    table = RouteTable({"route": two_tier()})
    table.refresh(info(NO_ARTIFACT_ID))
    live = table.get("route")
    assert live is not None and live.observing is Reason.NO_ARTIFACT
    table.refresh(info("a1", frozenset({SMALL})))
    assert table.state("route")["reason"] == "uncalibrated_model"
    table.refresh(info("a2", frozenset({SMALL, LARGE})))
    assert table.state("route")["mode"] == "verify"
    changes = [(event.change, event.detail) for event in table.events]
    assert [change for change, _ in changes] == ["observe", "observe", "verify"]
    assert "calibrated on ['org/small']" in changes[1][1]


def test_rollback_to_observe_mode_and_tightening_last_until_another_artifact_goes_live() -> None:
    table = RouteTable({"route": two_tier()})
    table.refresh(info("a1"))
    table.tighten("route", 0.97, "breached")
    tightened = table.get("route")
    assert tightened is not None and tightened.thresholds.accept_alpha == 0.97
    assert table.configured("route").thresholds.accept_alpha == 0.95
    table.observe("route", "breached on a1")
    assert table.state("route") | {"models": None} == {
        "mode": "observe", "reason": "rolled_back", "accept_alpha": 0.97,
        "configured_accept_alpha": 0.95, "on_breach": "alert", "models": None,
        "rolled_back": "breached on a1",
    }  # fmt: skip
    table.refresh(info("a1"))  # the same artifact again: nothing lifts
    assert table.state("route")["mode"] == "observe"
    table.refresh(info("a2"))
    assert table.state("route")["mode"] == "verify"
    assert table.state("route")["accept_alpha"] == 0.95
    table.observe("route", "again")
    table.resume("route")
    assert table.state("route")["mode"] == "verify"
    with pytest.raises(KeyError):
        table.observe("nope", "no such route")


def observing(route: RoutePlan, reason: Reason = Reason.NO_ARTIFACT) -> RoutePlan:
    return dataclasses.replace(route, observing=reason)


async def test_an_observing_route_serves_tier_0_unverified_without_pinning() -> None:
    verifier = FakeVerifier()
    verifier.artifact_id = NO_ARTIFACT_ID  # no artifact: pinning one would fail
    small = FakeBackend("small", [BAD])
    result = await Cascade(verifier, None, NullObserver()).run(observing(two_tier(small)), REQUEST)
    assert (result.decision, result.reason) == (Action.OBSERVED, Reason.NO_ARTIFACT)
    assert result.artifact_id == NO_ARTIFACT_ID
    assert [(a.tier, a.action, a.verdict) for a in result.attempts] == [(0, Action.OBSERVED, None)]
    assert verifier.seen == [] and verifier.pinned_by == []
    assert [request.params.n for request in small.requests] == [1]  # no best-of-4 to choose
    candidates = answer_candidates(observing(two_tier()), result, REQUEST)
    assert [candidate.text for candidate in candidates] == [BAD]  # served as generated


async def test_an_observing_route_moves_past_a_failed_backend() -> None:
    failing = FakeBackend("small", [], error=UpstreamError("down"))
    result = await Cascade(FakeVerifier(), None, NullObserver()).run(
        observing(two_tier(failing), Reason.UNCALIBRATED_MODEL), REQUEST
    )
    assert [a.action for a in result.attempts] == [Action.ESCALATE, Action.OBSERVED]
    assert result.best is not None and result.best.model == "large"


async def test_an_observing_route_streams_live_and_ends_observed() -> None:
    verifier = FakeVerifier()
    route = dataclasses.replace(
        observing(two_tier(FakeBackend("small", [GOOD]))), stream_mode=StreamMode.PASSTHROUGH
    )
    request = dataclasses.replace(REQUEST, params=SamplingParams(n=1))
    events = [
        event async for event in Cascade(verifier, None, NullObserver()).stream_live(route, request)
    ]
    result = events[-1]
    assert isinstance(result, CascadeResult)
    assert (result.decision, result.reason) == (Action.OBSERVED, Reason.NO_ARTIFACT)
    assert verifier.seen == []
