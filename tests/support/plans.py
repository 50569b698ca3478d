"""Route plans for unit tests: a plain verify-then-stream plan, fields overridable."""

from __future__ import annotations

from typing import Any

from sdm_router.core.routing import OnAbstain, StreamMode
from sdm_router.core.verdict import Estimator
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.policy import PolicyThresholds


def route_plan(name: str = "auto", **fields: Any) -> RoutePlan:
    """A plan named ``name`` with no tiers, accept alpha 0.95 (lower estimator), no retrieval,
    verify-then-stream; ``fields`` override any ``RoutePlan`` field."""
    defaults: dict[str, Any] = {
        "tiers": (),
        "thresholds": PolicyThresholds(0.95, Estimator.LOWER),
        "retrieval": False,
        "retrieval_top_k": 0,
        "max_backend_calls": 1,
        "on_abstain": OnAbstain.MESSAGE,
        "abstain_message": "",
        "stream_mode": StreamMode.VERIFY_THEN_STREAM,
    }
    return RoutePlan(name=name, **{**defaults, **fields})
