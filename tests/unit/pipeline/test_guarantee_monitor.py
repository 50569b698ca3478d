"""The guarantee monitor: figures per route and live artifact, and on_breach (alert, tighten,
rollback through the hook or, without one, to observe mode)."""

from __future__ import annotations

import dataclasses
import itertools

from sdm_router.config import GuaranteeSettings
from sdm_router.core.decisions import LabelAgreement, LabelledAnswer
from sdm_router.core.guarantee import Guarantee, GuaranteeStatus
from sdm_router.core.routing import OnBreach
from sdm_router.core.verdict import Reason, VerifierInfo
from sdm_router.pipeline.guarantee import GuaranteeMonitor, RouteGuarantee
from sdm_router.pipeline.plan import RoutePlan, Tier
from sdm_router.pipeline.routes import RouteTable
from tests.fakes import FakeBackend, FakeLabelReader
from tests.support.plans import GOOD, plan

clock = itertools.count()


def answer(
    correct: bool, alpha: float, route: str = "route", artifact: str = "a1"
) -> LabelledAnswer:
    return LabelledAnswer(
        request_id=f"r{next(clock)}", created=float(next(clock)), route=route,
        decision="accept", artifact_id=artifact, label="correct" if correct else "incorrect",
        source="judge:grader", logprob=None, region_alpha=alpha + 0.01,
        region_alpha_lower=alpha, answer_model="m",
    )  # fmt: skip


class Published:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[Guarantee, bool, float]] = {}
        self.agreement: dict[str, tuple[float | None, int]] = {}

    def route_guarantee(
        self, route: str, guarantee: Guarantee, observing: bool, accept_alpha: float
    ) -> None:
        self.routes[route] = (guarantee, observing, accept_alpha)

    def label_agreement(self, source: str, rate: float | None, pairs: int) -> None:
        self.agreement[source] = (rate, pairs)


def monitor(
    answers: list[LabelledAnswer], on_breach: OnBreach = OnBreach.ALERT, **settings: float
) -> tuple[GuaranteeMonitor, RouteTable, Published, FakeLabelReader]:
    route: RoutePlan = dataclasses.replace(
        plan(Tier(FakeBackend("a", [GOOD]), model="m")), on_breach=on_breach
    )
    table = RouteTable({"route": route})
    table.refresh(VerifierInfo("a1", "cpu", "test"))
    reader, published = FakeLabelReader(answers), Published()
    config = GuaranteeSettings.model_validate(settings)
    return GuaranteeMonitor(config, table, reader, published), table, published, reader


async def test_figures_count_the_live_artifacts_labelled_accepted_answers() -> None:
    answers = [answer(True, 0.96) for _ in range(28)]
    answers += [answer(False, 0.96, artifact="old"), answer(False, 0.96, route="other")]
    watch, _, published, reader = monitor(answers)
    reader.agreements = [LabelAgreement("judge:grader", {("correct", "correct"): 3})]
    (report,) = await watch.check()
    assert (report.route, report.artifact_id) == ("route", "a1")
    assert (report.guarantee.labelled, report.guarantee.correct) == (28, 28)
    assert report.guarantee.status is GuaranteeStatus.HOLDING
    shown = report.as_dict()
    assert shown["status"] == "holding" and shown["mode"] == "verify"
    assert shown["labels_to_hold"] == 28
    assert published.routes["route"][1:] == (False, 0.95)
    assert published.agreement == {"judge:grader": (1.0, 3)}


async def test_the_window_counts_only_the_newest_answers() -> None:
    answers = [answer(False, 0.96) for _ in range(10)] + [answer(True, 0.96) for _ in range(5)]
    watch, *_ = monitor(answers, window=5)
    (report,) = await watch.read()
    assert (report.guarantee.labelled, report.guarantee.correct) == (5, 5)


async def test_alert_only_reports_the_breach() -> None:
    watch, table, published, _ = monitor([answer(False, 0.96) for _ in range(5)])
    (report,) = await watch.check()
    assert report.breached
    assert published.routes["route"][0].status is GuaranteeStatus.BREACHED
    assert table.state("route")["mode"] == "verify" and not table.events


async def test_tighten_raises_accept_alpha_until_what_it_still_accepts_is_not_breached() -> None:
    answers = [answer(False, 0.96) for _ in range(20)] + [answer(True, 0.99) for _ in range(30)]
    watch, table, published, _ = monitor(answers, OnBreach.TIGHTEN)
    (report,) = await watch.check()
    assert report.breached  # 30 of 50 at the configured 0.95
    assert table.state("route")["accept_alpha"] == 0.97  # 0.96 still counts the bad ones
    assert published.routes["route"][2] == 0.97
    (event,) = table.events
    assert event.change == "tightened" and "30 of 50" in event.detail
    (after,) = await watch.read()
    assert (after.guarantee.labelled, after.guarantee.correct) == (30, 30)
    assert after.guarantee.status is GuaranteeStatus.HOLDING
    assert after.as_dict()["effective_accept_alpha"] == 0.97
    assert after.as_dict()["accept_alpha"] == 0.95  # the promise stays


async def test_rollback_without_an_autopilot_puts_the_route_into_observe_mode() -> None:
    watch, table, _, _ = monitor([answer(False, 0.96) for _ in range(5)], OnBreach.ROLLBACK)
    await watch.check()
    live = table.get("route")
    assert live is not None and live.observing is Reason.ROLLED_BACK
    assert "0 of 5" in table.state("route")["rolled_back"]
    (report,) = await watch.check()  # observing: no artifact judges it any more
    assert report.artifact_id is None
    assert report.guarantee.status is GuaranteeStatus.UNKNOWN


async def test_a_rollback_hook_is_called_once_per_route_and_artifact() -> None:
    calls: list[tuple[str, str | None]] = []

    class Hook:
        async def rollback(self, report: RouteGuarantee) -> str:
            calls.append((report.route, report.artifact_id))
            return "promoted the previous artifact"

    watch, table, _, _ = monitor([answer(False, 0.96) for _ in range(5)], OnBreach.ROLLBACK)
    watch.rollback = Hook()
    await watch.check()
    await watch.check()
    assert calls == [("route", "a1")]
    assert table.state("route")["mode"] == "verify"  # the hook decides what happens
