"""``Gateway``: the route table, the cascade, and the lifecycle of the components it drives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sdm_router.backends.base import Backend
from sdm_router.core.decisions import DecisionLog
from sdm_router.core.errors import ModelNotFound
from sdm_router.core.verdict import VerifierInfo
from sdm_router.pipeline.cascade import Cascade
from sdm_router.pipeline.guarantee import GuaranteeMonitor
from sdm_router.pipeline.labeling import Labeler
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.prompt_routing import PromptPredictor
from sdm_router.pipeline.routes import RouteTable
from sdm_router.pipeline.shadow import ShadowRecorder
from sdm_router.retrieval.base import Retriever
from sdm_router.storage.registry import ArtifactRegistry
from sdm_router.verifier.protocol import Verifier


class Companion(Protocol):
    """A background component the gateway starts last and stops first (the registry follower,
    the autopilot loop)."""

    async def start(self) -> None:
        """Start (return at once; run in a task)."""

    async def close(self) -> None:
        """Stop."""


@dataclass(slots=True)
class Readiness:
    """What ``/readyz`` reports."""

    ready: bool
    draining: bool
    components: dict[str, dict[str, str]] = field(default_factory=dict)
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # each route's live state


class Gateway:
    """Resolves ``model`` to a live plan and owns start/stop of backends, verifier, retriever,
    the decision log, the labeller and the guarantee monitor. After every verifier load it
    re-evaluates which routes the live artifact covers (``RouteTable.refresh``)."""

    def __init__(
        self,
        plans: Mapping[str, RoutePlan] | RouteTable,
        default_route: str,
        cascade: Cascade,
        backends: Mapping[str, Backend],
        verifier: Verifier,
        retriever: Retriever | None,
        decision_log: DecisionLog | None = None,
        labeler: Labeler | None = None,
        guarantee: GuaranteeMonitor | None = None,
        prompt_router: PromptPredictor | None = None,
    ) -> None:
        self.routes = plans if isinstance(plans, RouteTable) else RouteTable(plans)
        self.decision_log = decision_log
        self.labeler = labeler
        self.guarantee = guarantee
        self.default_route = default_route
        self.cascade = cascade
        self._backends = dict(backends)
        self._verifier = verifier
        self.shadow = None if decision_log is None else ShadowRecorder(verifier, decision_log)
        self._retriever = retriever
        self._prompt_router = prompt_router
        self._started = False
        self._draining = False
        self.companions: list[Companion] = []  # started after everything else, in order
        self.registry: ArtifactRegistry | None = None  # the artifact registry it follows

    def plan_for(
        self, model: str | None, offered: Callable[[RoutePlan], bool] | None = None
    ) -> RoutePlan:
        """The plan a request's ``model`` names; ``None`` means the default route. The 404 for
        an unknown name lists the plans ``offered`` accepts (all by default): those the
        caller's key may use, so that it names nothing the key's ``/v1/models`` hides."""
        name = model or self.default_route
        plan = self.routes.get(name)
        if plan is None:
            names = sorted(n for n, p in self.routes.items() if offered is None or offered(p))
            available = f" Available: {', '.join(names)}" if names else ""
            raise ModelNotFound(f"The model {name!r} does not exist.{available}", param="model")
        return plan

    @property
    def plans(self) -> dict[str, RoutePlan]:
        """Every live plan by name (routes and direct models)."""
        return dict(self.routes.items())

    async def start(self) -> None:
        """Load every component; the verifier last since it may share a backend's weights."""
        await asyncio.gather(*(backend.start() for backend in self._backends.values()))
        if self._retriever is not None:
            await self._retriever.start()
        await self._verifier.start()
        if self._prompt_router is not None:
            await self._prompt_router.start()
        self.routes.refresh(self._verifier.info)
        if self.decision_log is not None:
            await self.decision_log.start()
        if self.labeler is not None:
            await self.labeler.start()
        if self.guarantee is not None:
            await self.guarantee.start()
        for companion in self.companions:
            await companion.start()
        self._started = True

    async def close(self) -> None:
        """Stop everything that was started, verifier first."""
        self._started = False
        for companion in reversed(self.companions):
            await companion.close()
        if self.guarantee is not None:
            await self.guarantee.close()
        if self.labeler is not None:
            await self.labeler.close()
        if self.shadow is not None:
            await self.shadow.drain()
        if self.decision_log is not None:
            await self.decision_log.close()  # flushes what the last requests queued
        await self._verifier.close()
        if self._retriever is not None:
            await self._retriever.close()
        await asyncio.gather(*(backend.close() for backend in self._backends.values()))

    @property
    def artifact_id(self) -> str:
        """The verifier artifact deciding now."""
        return self._verifier.info.artifact_id

    @property
    def verifier_info(self) -> VerifierInfo:
        """The live verifier artifact's identity, device and what it was calibrated on."""
        return self._verifier.info

    async def reload_verifier(self, artifact: Path | None = None) -> VerifierInfo:
        """Swap in another verifier artifact (``ReloadRefused`` keeps the current one), then
        re-evaluate which routes it covers: a route that observed may verify from the next
        request on, one whose models it was not calibrated on observes."""
        info = await self._verifier.reload(artifact)
        self.routes.refresh(info)
        return info

    def begin_draining(self) -> None:
        """Report not-ready so load balancers stop sending traffic (shutdown)."""
        self._draining = True

    @property
    def draining(self) -> bool:
        """Whether the gateway drains (read on every response: ``readiness()`` builds more)."""
        return self._draining

    def readiness(self) -> Readiness:
        """Ready once every component started; lists the device each one runs on."""
        components = {
            f"backend:{name}": {"device": backend.device}
            for name, backend in self._backends.items()
        }
        if self._started:
            info = self._verifier.info
            components["verifier"] = {"device": info.device, "artifact_id": info.artifact_id}
            if self._verifier.shadow_id is not None:
                components["verifier"]["shadow_artifact_id"] = self._verifier.shadow_id
        if self._prompt_router is not None and self._started:
            components["prompt_router"] = {"router_id": self._prompt_router.router_id}
        if self._retriever is not None:
            components["retriever"] = {"device": getattr(self._retriever, "device", "cpu")}
        if self.decision_log is not None and self._started:
            components["decision_store"] = {"status": self.decision_log.status}
        if self.labeler is not None and self._started:
            components["labeling"] = self.labeler.status
        return Readiness(
            ready=self._started and not self._draining,
            draining=self._draining,
            components=components,
            routes={
                name: self.routes.state(name)
                for name, plan in self.routes.items()
                if not plan.direct
            },
        )
