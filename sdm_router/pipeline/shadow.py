"""Shadow mode: a candidate verifier artifact judges every served answer off the response path,
and its would-be decision is stored beside the live one (``verifier compare`` reads both)."""

from __future__ import annotations

import asyncio
import logging
import time

from sdm_router.core.decisions import DecisionLog, ShadowRecord
from sdm_router.core.verdict import Verdict
from sdm_router.pipeline.cascade import CascadeResult
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.policy import final_action, judge
from sdm_router.verifier.protocol import Verifier

logger = logging.getLogger(__name__)


class ShadowRecorder:
    """Turns the shadow artifact's verdict on a request's served answer into a ``ShadowRecord``.

    The would-be decision is what the route's policy makes of the candidate's verdict on the
    answer the gateway served (``final_action(judge(...))``: accept or abstain); the cascade is
    not re-run, so the candidate never escalates. Requests without a verified answer are not
    shadowed.
    """

    def __init__(self, verifier: Verifier, log: DecisionLog) -> None:
        self._verifier = verifier
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def artifact_id(self) -> str | None:
        """The candidate's id, or None when no shadow is configured."""
        return self._verifier.shadow_id

    def observe(self, plan: RoutePlan, result: CascadeResult, request_id: str) -> None:
        """Schedule recording the candidate's would-be decision; returns at once."""
        best = result.best
        if self._verifier.shadow_id is None or best is None or best.verdict is None:
            return
        task = asyncio.get_running_loop().create_task(self._record(plan, best.verdict, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, plan: RoutePlan, live: Verdict, request_id: str) -> None:
        try:
            verdict = await self._verifier.shadow(live)
        except Exception:  # the shadow must never disturb serving
            logger.exception("the shadow verifier failed")
            return
        artifact = self._verifier.shadow_id
        if verdict is None or artifact is None:
            return
        reason = judge(verdict, plan.thresholds)
        self._log.submit_shadow(
            ShadowRecord(
                request_id=request_id,
                created=time.time(),
                artifact_id=artifact,
                decision=final_action(reason).value,
                reason=reason.value,
                prediction=verdict.prediction,
                q=verdict.q,
                d=float(verdict.d),
                region_alpha=float(verdict.region_alpha),
                region_alpha_lower=float(verdict.region_alpha_lower),
            )
        )

    async def drain(self) -> None:
        """Wait for the verdicts still being recorded (before the store flushes at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
