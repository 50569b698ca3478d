"""Replicas follow the artifact registry: every ``poll_seconds`` each gateway reads the live
artifact from the store's database and hot-swaps to it with the gateway's own reload (a request
keeps the artifact it pinned, so none fails; a refused artifact leaves the old one serving).
When the registry holds no live artifact because the one served was rolled back, the routes go
to observe mode.

``RegistryRollback`` is the guarantee monitor's rollback hook under the autopilot: the breached
artifact goes back to the previous one in the registry (or none: observe mode), recorded, and
this replica follows at once; the others within a poll.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from sdm_router.core.errors import StoreUnavailable
from sdm_router.core.verdict import VerifierInfo
from sdm_router.pipeline.guarantee import ObserveRollback, RouteGuarantee
from sdm_router.pipeline.routes import RouteTable
from sdm_router.storage.registry import ArtifactRegistry, ArtifactStatus

logger = logging.getLogger(__name__)


class Reloads(Protocol):
    """What the follower drives (``Gateway``)."""

    routes: RouteTable

    async def reload_verifier(self, artifact: Path | None = None) -> VerifierInfo:
        """Swap in another artifact (``ReloadRefused`` keeps the current one)."""


class FollowObserver(Protocol):
    """Counts what the follower does (``GatewayMetrics`` implements it)."""

    def autopilot_event(self, event: str) -> None:
        """``followed``, ``follow_refused``, ``follow_error``, ``rolled_back``."""


class RegistryFollower:
    """Keeps this replica on the registry's live artifact (see the module)."""

    def __init__(
        self,
        registry: ArtifactRegistry,
        gateway: Reloads,
        observer: FollowObserver,
        poll_seconds: float = 10.0,
    ) -> None:
        self._registry = registry
        self._gateway = gateway
        self._observer = observer
        self._poll = poll_seconds
        self._refused: str | None = None  # the live artifact this replica refused (logged once)
        self._observing_since: str | None = None  # the rolled-back artifact that sent us there
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def registry(self) -> ArtifactRegistry:
        """The registry followed (the console reads its artifacts and steps)."""
        return self._registry

    async def sync(self) -> str | None:
        """Read the registry once and follow it; returns what changed (None: nothing)."""
        async with self._lock:
            return await self._sync()

    async def _sync(self) -> str | None:
        live = await asyncio.to_thread(self._registry.live)
        routes = self._gateway.routes
        serving = routes.artifact_id
        if live is None:
            return await self._observe_if_rolled_back(serving)
        if live.id in (serving, self._refused):
            return None
        try:
            info = await self._gateway.reload_verifier(Path(live.path))
        except Exception as error:  # ReloadRefused and anything else: the old one serves
            self._refused = live.id
            self._observer.autopilot_event("follow_refused")
            logger.error("the registry's live artifact %s was refused: %s", live.id, error)
            return None
        self._refused = self._observing_since = None
        self._observer.autopilot_event("followed")
        logger.info("following the registry: artifact %s is live", info.artifact_id)
        return f"reloaded {info.artifact_id}"

    async def _observe_if_rolled_back(self, serving: str) -> str | None:
        if not serving or serving == self._observing_since:
            return None
        record = await asyncio.to_thread(self._registry.get, serving)
        if record is None or record.status is not ArtifactStatus.ROLLED_BACK:
            return None  # an artifact from the config, never promoted: left alone
        self._observing_since = serving
        why = f"artifact {serving} was rolled back and the registry has no earlier one"
        routes = self._gateway.routes
        for name, plan in routes.items():
            if not plan.direct:
                routes.observe(name, why)
        return f"observe mode: {why}"

    async def start(self) -> None:
        """Follow once now, then every ``poll_seconds`` until closed."""
        self._task = asyncio.create_task(self._follow(), name="registry-follower")

    async def close(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self._registry.close)

    async def _follow(self) -> None:
        while True:
            try:
                await self.sync()
            except (StoreUnavailable, OSError) as error:
                self._observer.autopilot_event("follow_error")
                logger.warning("reading the artifact registry failed: %s", error)
            except Exception:  # never let the follower die (the database may be away)
                self._observer.autopilot_event("follow_error")
                logger.exception("following the artifact registry failed")
            await asyncio.sleep(self._poll)


class RegistryRollback:
    """The rollback hook under the autopilot (see the module). An artifact the registry does not
    know (the config's) goes to observe mode, as without an autopilot."""

    def __init__(
        self, registry: ArtifactRegistry, follower: RegistryFollower, observer: FollowObserver
    ) -> None:
        self._registry = registry
        self._follower = follower
        self._observer = observer
        self._fallback: ObserveRollback | None = None

    def fallback(self, routes: RouteTable) -> None:
        """Where an unregistered artifact's rollback goes (observe mode on ``routes``)."""
        self._fallback = ObserveRollback(routes)

    async def rollback(self, report: RouteGuarantee) -> str:
        """Take the breached artifact back to the previous registry artifact (or none)."""
        artifact = report.artifact_id or ""
        known = await asyncio.to_thread(self._registry.get, artifact)
        if known is None:
            assert self._fallback is not None
            return await self._fallback.rollback(report)
        done, live = await asyncio.to_thread(self._registry.roll_back, artifact)
        figures = report.guarantee.as_dict()
        target = "observe mode" if live is None else f"artifact {live.id}"
        if done:
            self._observer.autopilot_event("rolled_back")
            await asyncio.to_thread(
                self._registry.record_step, "rollback", "rolled_back",
                f"route {report.route}: guarantee breached ({figures['correct']} of "
                f"{figures['labelled']} correct, upper bound {figures['upper_bound']} < "
                f"{figures['accept_alpha']}); back to {target}",
                route=report.route, artifact_id=artifact, figures=figures,
            )  # fmt: skip
        await self._follower.sync()
        return f"registry: {artifact} rolled back, now {target}"
