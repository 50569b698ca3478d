"""The guarantee, live: each route's labelled accepted answers against its accept_alpha, read
from the decision store, published, and acted on (``on_breach``).

For each configured route that verifies, the figures count the newest ``guarantee.window``
accepted answers of the live artifact that carry a label (the label that counts: a person's
over a judge's), and of those only the ones whose deciding region alpha reaches the route's
effective accept_alpha (all of them unless the route was tightened). ``core/guarantee.py``
turns the counts into precision, bounds and a status against the route's configured
accept_alpha (the promise). A route in observe mode has no artifact judging it: ``unknown``.

Every ``guarantee.refresh_seconds`` (``check``) the figures go to the gauges and a breached
route is acted on by its ``on_breach``:

- ``alert``: nothing more (the status gauge and the alert rule);
- ``tighten``: the effective accept_alpha rises by ``tighten_step`` while the answers that
  would still be accepted read ``breached`` (``RouteTable.tighten``, recorded);
- ``rollback``: the ``rollback`` hook takes the artifact back, once per route and artifact. The
  autopilot plugs its hook in (``GuaranteeMonitor.rollback``); without one the route goes to
  observe mode (``ObserveRollback``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from sdm_router.config import GuaranteeSettings
from sdm_router.core.decisions import LabelAgreement, LabelledAnswer
from sdm_router.core.errors import StoreUnavailable
from sdm_router.core.guarantee import Guarantee, GuaranteeStatus, assess, labels_to_hold
from sdm_router.core.routing import OnBreach
from sdm_router.core.verdict import Action, Estimator
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.routes import RouteTable

logger = logging.getLogger(__name__)
ALPHA_TOLERANCE = 1e-9


class LabelReader(Protocol):
    """Reads labelled answers and label agreement (``storage.DecisionStore``)."""

    async def labelled(
        self,
        *,
        route: str | None = None,
        artifact_id: str | None = None,
        decision: Collection[str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[LabelledAnswer]:
        """Labelled answers, filtered."""

    async def agreement(self) -> list[LabelAgreement]:
        """Per machine label source, its agreement with people."""


class GuaranteeObserver(Protocol):
    """Publishes the figures (``GatewayMetrics`` implements it)."""

    def route_guarantee(
        self, route: str, guarantee: Guarantee, observing: bool, accept_alpha: float
    ) -> None:
        """A route's figures, whether it observes, and its effective accept_alpha."""

    def label_agreement(self, source: str, rate: float | None, pairs: int) -> None:
        """A machine label source's agreement with people."""


@dataclass(frozen=True, slots=True)
class RouteGuarantee:
    """One route's guarantee against its live artifact."""

    route: str
    artifact_id: str | None  # None: the route observes, no artifact judges it
    state: dict[str, Any]  # the route table's live state (mode, accept_alphas, on_breach)
    guarantee: Guarantee

    @property
    def breached(self) -> bool:
        """Whether the status is ``breached``."""
        return self.guarantee.status is GuaranteeStatus.BREACHED

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``GET /admin/guarantee``'s entry for the route."""
        figures = self.guarantee.as_dict()
        needed = labels_to_hold(
            self.guarantee.accept_alpha,
            incorrect=self.guarantee.labelled - self.guarantee.correct,
            confidence=self.guarantee.confidence,
            margin=self.guarantee.margin,
        )
        return {
            "route": self.route,
            "artifact_id": self.artifact_id,
            **self.state,
            **figures,
            "effective_accept_alpha": self.state["accept_alpha"],
            "accept_alpha": self.guarantee.accept_alpha,
            # with every further label correct: how many labels in all the status needs to hold
            "labels_to_hold": needed,
        }


class RollbackHook(Protocol):
    """Takes a breached route's artifact back (the autopilot implements it)."""

    async def rollback(self, report: RouteGuarantee) -> str:
        """Roll ``report.route`` back from ``report.artifact_id``; returns what was done.
        Called once per route and artifact while the guarantee reads breached."""


class ObserveRollback:
    """The rollback without an autopilot: no previous artifact is known, so the route goes to
    observe mode (its answers served unverified and recorded, labelled, as ``observed``)."""

    def __init__(self, routes: RouteTable) -> None:
        self._routes = routes

    async def rollback(self, report: RouteGuarantee) -> str:
        """Put the route into observe mode."""
        figures = report.guarantee
        why = (
            f"guarantee breached on artifact {report.artifact_id}: {figures.correct} of "
            f"{figures.labelled} labelled accepted answers correct, upper bound "
            f"{figures.upper:.3f} < {figures.accept_alpha}"
        )
        self._routes.observe(report.route, why)
        return f"observe mode: {why}"


def _alpha(answer: LabelledAnswer, estimator: Estimator) -> float:
    value = answer.region_alpha_lower if estimator is Estimator.LOWER else answer.region_alpha
    return 0.0 if value is None else value


class GuaranteeMonitor:
    """Reads, publishes and acts on every route's guarantee (see the module)."""

    def __init__(
        self,
        settings: GuaranteeSettings,
        routes: RouteTable,
        reader: LabelReader,
        observer: GuaranteeObserver,
    ) -> None:
        self._settings = settings
        self._routes = routes
        self._reader = reader
        self._observer = observer
        self.rollback: RollbackHook = ObserveRollback(routes)
        self._rolled_back: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def settings_json(self) -> dict[str, Any]:
        """The rule's settings, for reports."""
        settings = self._settings
        return {
            "confidence": settings.confidence,
            "breach_confidence": settings.breach_confidence,
            "margin": settings.margin,
            "window": settings.window,
        }

    def _assess(
        self, answers: list[LabelledAnswer], plan: RoutePlan, threshold: float
    ) -> Guarantee:
        """The guarantee of the answers accepted at ``threshold`` against the promise."""
        estimator = plan.thresholds.estimator
        counted = [a for a in answers if _alpha(a, estimator) >= threshold - ALPHA_TOLERANCE]
        settings = self._settings
        return assess(
            sum(answer.correct for answer in counted), len(counted),
            self._routes.configured(plan.name).thresholds.accept_alpha,
            confidence=settings.confidence, breach_confidence=settings.breach_confidence,
            margin=settings.margin,
        )  # fmt: skip

    async def _answers(self, plan: RoutePlan, artifact: str) -> list[LabelledAnswer]:
        return await self._reader.labelled(
            route=plan.name, artifact_id=artifact, decision=(Action.ACCEPT.value,),
            newest_first=True, limit=self._settings.window,
        )  # fmt: skip

    async def read(self) -> list[RouteGuarantee]:
        """Every configured route's guarantee now (``StoreUnavailable`` when the store is)."""
        return [report for report, _ in await self._read()]

    async def _read(self) -> list[tuple[RouteGuarantee, list[LabelledAnswer]]]:
        artifact = self._routes.artifact_id
        reports = []
        for name, plan in self._routes.items():
            if plan.direct:
                continue
            answers = [] if plan.observing else await self._answers(plan, artifact)
            guarantee = self._assess(answers, plan, plan.thresholds.accept_alpha)
            state = self._routes.state(name)
            live = None if plan.observing else artifact
            reports.append((RouteGuarantee(name, live, state, guarantee), answers))
        return reports

    async def check(self) -> list[RouteGuarantee]:
        """Read every route's guarantee, publish it and act on breaches (``on_breach``)."""
        reports = []
        for report, answers in await self._read():
            plan = self._routes.get(report.route)
            assert plan is not None
            if report.breached and plan.on_breach is OnBreach.TIGHTEN:
                self._tighten(plan, answers, report.guarantee)
            elif report.breached and plan.on_breach is OnBreach.ROLLBACK:
                await self._roll_back(report)
            live = self._routes.get(report.route)
            assert live is not None
            self._observer.route_guarantee(
                report.route, report.guarantee, live.observing is not None,
                live.thresholds.accept_alpha,
            )  # fmt: skip
            reports.append(report)
        for agreement in await self._reader.agreement():
            self._observer.label_agreement(agreement.source, agreement.rate, agreement.pairs)
        return reports

    def _tighten(self, plan: RoutePlan, answers: list[LabelledAnswer], before: Guarantee) -> None:
        """Raise the effective accept_alpha step by step while the answers it would still
        accept read breached."""
        threshold = plan.thresholds.accept_alpha
        guarantee = before
        while guarantee.status is GuaranteeStatus.BREACHED:
            raised = round(threshold + self._settings.tighten_step, 6)
            if raised >= 1.0:
                break
            threshold = raised
            guarantee = self._assess(answers, plan, threshold)
        if threshold > plan.thresholds.accept_alpha:
            why = (
                f"breached: {before.correct} of {before.labelled} correct, upper bound "
                f"{before.upper:.3f} < {before.accept_alpha}; at {threshold:.4f}: "
                f"{guarantee.correct} of {guarantee.labelled}, {guarantee.status.value}"
            )
            self._routes.tighten(plan.name, threshold, why)

    async def _roll_back(self, report: RouteGuarantee) -> None:
        key = (report.route, report.artifact_id or "")
        if report.artifact_id is None or key in self._rolled_back:
            return
        self._rolled_back.add(key)
        try:
            done = await self.rollback.rollback(report)
        except Exception:  # the monitor keeps watching; the next artifact is judged afresh
            logger.exception("rolling back route %s failed", report.route)
            self._rolled_back.discard(key)
            return
        logger.warning("route %s rolled back: %s", report.route, done)

    async def start(self) -> None:
        """Check every ``refresh_seconds`` until closed."""
        self._task = asyncio.create_task(self._watch(), name="guarantee-monitor")

    async def close(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except StoreUnavailable as error:
                logger.warning("the guarantee could not be read: %s", error)
            except Exception:  # never let the watch die
                logger.exception("checking the guarantee failed")
            await asyncio.sleep(self._settings.refresh_seconds)
