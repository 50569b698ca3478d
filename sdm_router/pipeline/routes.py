"""``RouteTable``: the plans requests run, as configured and as the live state changes them.

A configured route is changed at run time in three ways, each decided here and nowhere else:

- **coverage** (``covers``): a route verifies only when the live artifact covers it: one is
  loaded, and it was calibrated on every model the route's tiers serve (an artifact recording
  no ``calibratedOn`` covers every model). Otherwise the route is in *observe mode* (reason
  ``no_artifact`` or ``uncalibrated_model``). Re-evaluated at start and whenever the live
  artifact changes (``refresh``: the gateway calls it after every reload);
- **rollback to observe mode** (``observe`` / ``resume``): the route's artifact was taken back
  (reason ``rolled_back``) until ``resume`` or until another artifact goes live;
- **tightening** (``tighten``): the route's effective accept_alpha, raised by the guarantee
  monitor under ``on_breach: tighten``; reset when another artifact goes live (its guarantee
  starts afresh).

Each request resolves its plan once (``plan``), so a change applies from the next request on;
a request keeps the artifact it pinned. Every change is recorded (``events``) and logged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sdm_router.core.verdict import Reason, VerifierInfo
from sdm_router.pipeline.plan import RoutePlan

logger = logging.getLogger(__name__)
EVENTS_KEPT = 200


def covers(info: VerifierInfo, plan: RoutePlan) -> Reason | None:
    """Whether the live artifact may judge ``plan``'s answers: None when it may, else why the
    route observes. The one place this is decided."""
    if not info.loaded:
        return Reason.NO_ARTIFACT
    if info.calibrated_on is None:  # the artifact records nothing: it covers every model
        return None
    return None if plan.models <= info.calibrated_on else Reason.UNCALIBRATED_MODEL


@dataclass(frozen=True, slots=True)
class RouteEvent:
    """One recorded change of a route's live state."""

    at: float
    route: str
    change: str  # observe | verify | rolled_back | resumed | tightened | reset
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"at": self.at, "route": self.route, "change": self.change, "detail": self.detail}


class RouteTable:
    """The live plans by name (routes and direct models); see the module."""

    def __init__(self, plans: Mapping[str, RoutePlan]) -> None:
        self._configured = dict(plans)
        self._live = dict(plans)
        self._info = VerifierInfo("", "none", "not started")
        self._coverage: dict[str, Reason | None] = dict.fromkeys(plans)
        self._rolled_back: dict[str, str] = {}  # route -> why
        self._alpha: dict[str, float] = {}  # route -> effective accept_alpha, when tightened
        self.events: deque[RouteEvent] = deque(maxlen=EVENTS_KEPT)

    def __iter__(self) -> Iterator[str]:
        return iter(self._live)

    def __len__(self) -> int:
        return len(self._live)

    def get(self, name: str) -> RoutePlan | None:
        """The live plan ``name`` (None when unknown)."""
        return self._live.get(name)

    def items(self) -> list[tuple[str, RoutePlan]]:
        """Every live plan by name."""
        return list(self._live.items())

    def configured(self, name: str) -> RoutePlan:
        """The plan as configured (the accept_alpha before any tightening)."""
        return self._configured[name]

    @property
    def artifact_id(self) -> str:
        """The artifact the table was last refreshed with."""
        return self._info.artifact_id

    def refresh(self, info: VerifierInfo) -> None:
        """Re-evaluate every route against the live artifact ``info``. Another artifact going
        live lifts rollbacks and tightenings: its guarantee starts afresh."""
        if info.artifact_id != self._info.artifact_id:
            for name in sorted(self._rolled_back):
                self._record(name, "resumed", f"artifact {info.artifact_id} went live")
            for name in sorted(self._alpha):
                self._record(name, "reset", f"accept_alpha back to configured ({info.artifact_id})")
            self._rolled_back.clear()
            self._alpha.clear()
        self._info = info
        for name, plan in self._configured.items():
            reason = covers(info, plan)
            if reason != self._coverage.get(name) and not plan.direct:
                if reason is None:
                    self._record(name, "verify", f"artifact {info.artifact_id} covers it")
                else:
                    self._record(name, "observe", self._why(reason, plan))
            self._coverage[name] = reason
        self._derive_all()

    def observe(self, name: str, why: str) -> None:
        """Put route ``name`` into observe mode (reason ``rolled_back``): its artifact was taken
        back and no other is to judge it (the rollback hook without an autopilot, or the
        autopilot with no previous artifact)."""
        self._configured_plan(name)
        self._rolled_back[name] = why
        self._record(name, "rolled_back", why)
        self._derive(name)

    def resume(self, name: str) -> None:
        """Lift a rollback to observe mode: the route verifies again if the artifact covers it."""
        if self._rolled_back.pop(name, None) is not None:
            self._record(name, "resumed", "rollback lifted")
            self._derive(name)

    def tighten(self, name: str, accept_alpha: float, why: str) -> None:
        """Set route ``name``'s effective accept_alpha (``on_breach: tighten``)."""
        plan = self._configured_plan(name)
        self._alpha[name] = accept_alpha
        self._record(
            name, "tightened",
            f"accept_alpha {accept_alpha:.4f} (configured {plan.thresholds.accept_alpha}): {why}",
        )  # fmt: skip
        self._derive(name)

    def state(self, name: str) -> dict[str, Any]:
        """A route's live state (``/readyz``, ``GET /admin/guarantee``)."""
        live, configured = self._live[name], self._configured[name]
        state: dict[str, Any] = {
            "mode": "observe" if live.observing else "verify",
            "reason": None if live.observing is None else live.observing.value,
            "accept_alpha": live.thresholds.accept_alpha,
            "configured_accept_alpha": configured.thresholds.accept_alpha,
            "on_breach": live.on_breach.value,
            "models": sorted(live.models),
        }
        if name in self._rolled_back:
            state["rolled_back"] = self._rolled_back[name]
        return state

    def _configured_plan(self, name: str) -> RoutePlan:
        plan = self._configured.get(name)
        if plan is None:
            raise KeyError(f"unknown route {name!r}")
        return plan

    def _why(self, reason: Reason, plan: RoutePlan) -> str:
        if reason is Reason.NO_ARTIFACT:
            return "no verifier artifact is loaded"
        calibrated = sorted(self._info.calibrated_on or ())
        return (
            f"artifact {self._info.artifact_id} was calibrated on {calibrated}, the route's "
            f"tiers serve {sorted(plan.models)}"
        )

    def _derive_all(self) -> None:
        for name in self._configured:
            self._derive(name)

    def _derive(self, name: str) -> None:
        plan = self._configured[name]
        observing = Reason.ROLLED_BACK if name in self._rolled_back else self._coverage.get(name)
        thresholds = plan.thresholds
        if name in self._alpha:
            thresholds = replace(thresholds, accept_alpha=self._alpha[name])
        self._live[name] = replace(plan, observing=observing, thresholds=thresholds)

    def _record(self, name: str, change: str, detail: str) -> None:
        self.events.append(RouteEvent(time.time(), name, change, detail))
        logger.info("route %s: %s (%s)", name, change, detail, extra={"route": name})
