"""The ``verification`` object and the ``x-sdm-*`` headers of a response.

``verification_of`` and ``usage_out`` are JSON-ready dicts shaped as the ``Verification`` and
``UsageOut`` models (see ``sdm_router.api.openai.render.base``); ``/v1/verify`` (not a hot
path) still builds its ``VerdictFields`` model from the same values.
"""

from __future__ import annotations

from typing import Any

from sdm_router.api.openai.responses import VerdictFields
from sdm_router.core.generation import Usage
from sdm_router.core.verdict import NearestExemplar, Verdict
from sdm_router.pipeline.cascade import Attempt
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.serving import Judged, Served

JSONObject = dict[str, Any]
_NO_VERDICT: JSONObject = dict.fromkeys(
    ("prediction", "probability", "region_alpha", "region_alpha_lower", "q", "d", "is_ood")
)


def _rounded(value: float) -> float:
    return round(float(value), 6)


def _exemplars(items: tuple[NearestExemplar, ...]) -> list[JSONObject]:
    return [
        {"id": item.id, "label": item.label, "distance": _rounded(item.distance)} for item in items
    ]


def _verdict(verdict: Verdict | None) -> JSONObject:
    if verdict is None:
        return _NO_VERDICT
    return {
        "prediction": verdict.prediction,
        "probability": _rounded(verdict.probability),
        "region_alpha": _rounded(verdict.region_alpha),
        "region_alpha_lower": _rounded(verdict.region_alpha_lower),
        "q": verdict.q,
        "d": _rounded(verdict.d),
        "is_ood": verdict.is_ood,
    }


def _attempt(attempt: Attempt, plan: RoutePlan) -> JSONObject:
    verdict = attempt.verdict
    return {
        "tier": attempt.tier,
        "model": attempt.model,
        "action": attempt.action.value,
        "reason": attempt.reason.value,
        "region_alpha": None
        if verdict is None
        else _rounded(verdict.alpha(plan.thresholds.estimator)),
        "q": None if verdict is None else verdict.q,
        "d": None if verdict is None else _rounded(verdict.d),
        "retrieved_context": attempt.retrieved_context,
        "latency_ms": round(attempt.latency_ms, 3),
    }


def verification_of(served: Served, nearest_exemplars: int) -> JSONObject:
    """The ``verification`` object of a completion or of a stream's last chunk."""
    plan, result = served.plan, served.result
    best = result.best
    verdict = best.verdict if best is not None else None
    verification: JSONObject = {
        "decision": result.decision.value,
        "reason": result.reason.value,
        "route": plan.name,
        "estimator": plan.thresholds.estimator.value,
        "accept_alpha": plan.thresholds.accept_alpha,
        **_verdict(verdict),
    }
    if nearest_exemplars and verdict is not None:  # absent unless asked for
        verification["nearest_exemplars"] = _exemplars(
            verdict.nearest_exemplars[:nearest_exemplars]
        )
    verification["tier"] = best.tier if best else None
    verification["model"] = best.model if best else None
    verification["attempts"] = [_attempt(attempt, plan) for attempt in result.attempts]
    verification["routing"] = None if result.routing is None else result.routing.as_dict()
    return verification


def standalone_verification(judged: Judged) -> VerdictFields:
    """The verdict object of ``/v1/verify`` (no generation, so no tier or attempts)."""
    verdict, plan = judged.verdict, judged.plan
    return VerdictFields.model_validate(
        {
            "decision": judged.decision.value,
            "reason": judged.reason.value,
            "route": plan.name,
            "estimator": plan.thresholds.estimator.value,
            "accept_alpha": plan.thresholds.accept_alpha,
            **_verdict(verdict),
            "nearest_exemplars": _exemplars(verdict.nearest_exemplars)
            if verdict.nearest_exemplars
            else None,
        }
    )


def decision_headers(served: Served) -> dict[str, str]:
    """``x-sdm-*`` headers summarising the verdict."""
    best = served.result.best
    verdict = best.verdict if best is not None else None
    alpha = verdict.alpha(served.plan.thresholds.estimator) if verdict is not None else 0.0
    return {
        "x-sdm-decision": served.result.decision.value,
        "x-sdm-region-alpha": f"{alpha:.4f}",
        "x-sdm-tier": str(best.tier) if best else "-1",
        "x-sdm-route": served.plan.name,
    }


def usage_out(usage: Usage) -> JSONObject:
    """OpenAI ``usage``."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
