"""Route plans for unit tests: a plain verify-then-stream plan, fields overridable; a cascade
plan over given tiers, with the answers the fake verifier accepts (``GOOD``) and rejects
(``BAD``)."""

from __future__ import annotations

from typing import Any

from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.core.routing import OnAbstain, StreamMode
from sdm_router.core.verdict import Estimator
from sdm_router.pipeline.plan import RoutePlan, Tier
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


GOOD, BAD = "The answer is 42.", "I am not sure."
REQUEST = GenerationRequest(
    messages=(Message("user", "What is 6*7?"),), prompt=None, params=SamplingParams(n=1)
)


def plan(
    *tiers: Tier,
    retrieval: bool = False,
    budget: int = 6,
    on_abstain: OnAbstain = OnAbstain.MESSAGE,
) -> RoutePlan:
    """A cascade plan named ``route`` over ``tiers`` (abstain message "no", top-k 2)."""
    return route_plan(
        "route", tiers=tiers, retrieval=retrieval, retrieval_top_k=2,
        max_backend_calls=budget, on_abstain=on_abstain, abstain_message="no",
    )  # fmt: skip
