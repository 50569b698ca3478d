"""Response bodies and stream chunks in the OpenAI wire format, plus the ``verification`` object."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.core.generation import Candidate, TokenLogprob, Usage
from service.core.verdict import Action, Reason, Verdict
from service.pipeline.cascade import Attempt, CascadeResult
from service.pipeline.plan import RoutePlan


@dataclass(frozen=True, slots=True)
class Rendering:
    """Per-request rendering choices."""

    response_id: str
    created: int
    model: str
    logprobs: bool
    top_logprobs: int
    nearest_exemplars: int


def _rounded(value: float) -> float:
    return round(float(value), 6)


def _verdict_fields(verdict: Verdict | None) -> dict[str, Any]:
    if verdict is None:
        return {
            "prediction": None,
            "probability": None,
            "region_alpha": None,
            "region_alpha_lower": None,
            "q": None,
            "d": None,
            "is_ood": None,
        }
    return {
        "prediction": verdict.prediction,
        "probability": _rounded(verdict.probability),
        "region_alpha": _rounded(verdict.region_alpha),
        "region_alpha_lower": _rounded(verdict.region_alpha_lower),
        "q": verdict.q,
        "d": _rounded(verdict.d),
        "is_ood": verdict.is_ood,
    }


def _attempt(attempt: Attempt, plan: RoutePlan) -> dict[str, Any]:
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


def verification_object(
    plan: RoutePlan, result: CascadeResult, nearest_exemplars: int
) -> dict[str, Any]:
    """The ``verification`` object that rides along on responses."""
    best = result.best
    body: dict[str, Any] = {
        "decision": result.decision.value,
        "reason": result.reason.value,
        "route": plan.name,
        "tier": best.tier if best else None,
        "model": best.model if best else None,
        "estimator": plan.thresholds.estimator.value,
        "accept_alpha": plan.thresholds.accept_alpha,
        **_verdict_fields(best.verdict if best else None),
        "attempts": [_attempt(attempt, plan) for attempt in result.attempts],
    }
    if nearest_exemplars and best is not None:
        body["nearest_exemplars"] = [
            {"id": item.id, "label": item.label, "distance": _rounded(item.distance)}
            for item in best.verdict.nearest_exemplars[:nearest_exemplars]
        ]
    return body


def standalone_verification(plan: RoutePlan, verdict: Verdict, reason: Reason) -> dict[str, Any]:
    """The verification object of ``/v1/verify`` (no generation, no attempts)."""
    decision = Action.ACCEPT if reason is Reason.VERIFIED else Action.ABSTAIN
    body: dict[str, Any] = {
        "decision": decision.value,
        "reason": reason.value,
        "route": plan.name,
        "estimator": plan.thresholds.estimator.value,
        "accept_alpha": plan.thresholds.accept_alpha,
        **_verdict_fields(verdict),
    }
    if verdict.nearest_exemplars:
        body["nearest_exemplars"] = [
            {"id": item.id, "label": item.label, "distance": _rounded(item.distance)}
            for item in verdict.nearest_exemplars
        ]
    return body


def decision_headers(result: CascadeResult, plan: RoutePlan) -> dict[str, str]:
    """``x-sdm-*`` headers summarising the verdict."""
    best = result.best
    alpha = best.verdict.alpha(plan.thresholds.estimator) if best else 0.0
    return {
        "x-sdm-decision": result.decision.value,
        "x-sdm-region-alpha": f"{alpha:.4f}",
        "x-sdm-tier": str(best.tier) if best else "-1",
        "x-sdm-route": plan.name,
    }


def usage_object(usage: Usage) -> dict[str, int]:
    """OpenAI ``usage``."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_logprobs(tokens: tuple[TokenLogprob, ...] | None, top: int) -> dict[str, Any] | None:
    """``choices[i].logprobs`` of a chat completion."""
    if tokens is None:
        return None
    return {
        "content": [
            {
                "token": token.token,
                "logprob": token.logprob,
                "bytes": list(token.token.encode("utf-8")),
                "top_logprobs": [
                    {
                        "token": alt.token,
                        "logprob": alt.logprob,
                        "bytes": list(alt.token.encode("utf-8")),
                    }
                    for alt in token.top_logprobs[:top]
                ],
            }
            for token in tokens
        ],
        "refusal": None,
    }


def completion_logprobs(tokens: tuple[TokenLogprob, ...] | None, top: int) -> dict[str, Any] | None:
    """``choices[i].logprobs`` of a legacy completion."""
    if tokens is None:
        return None
    offsets: list[int] = []
    position = 0
    for token in tokens:
        offsets.append(position)
        position += len(token.token)
    return {
        "tokens": [token.token for token in tokens],
        "token_logprobs": [token.logprob for token in tokens],
        "top_logprobs": [
            {alt.token: alt.logprob for alt in token.top_logprobs[:top]} for token in tokens
        ]
        if top
        else None,
        "text_offset": offsets,
    }


def chat_completion(
    rendering: Rendering, candidates: list[Candidate], usage: Usage, verification: dict[str, Any]
) -> dict[str, Any]:
    """A non-streamed ``chat.completion``."""
    return {
        "id": rendering.response_id,
        "object": "chat.completion",
        "created": rendering.created,
        "model": rendering.model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": candidate.text, "refusal": None},
                "logprobs": chat_logprobs(candidate.token_logprobs, rendering.top_logprobs)
                if rendering.logprobs
                else None,
                "finish_reason": candidate.finish_reason,
            }
            for index, candidate in enumerate(candidates)
        ],
        "usage": usage_object(usage),
        "system_fingerprint": None,
        "verification": verification,
    }


def text_completion(
    rendering: Rendering, candidates: list[Candidate], usage: Usage, verification: dict[str, Any]
) -> dict[str, Any]:
    """A non-streamed ``text_completion``."""
    return {
        "id": rendering.response_id,
        "object": "text_completion",
        "created": rendering.created,
        "model": rendering.model,
        "choices": [
            {
                "index": index,
                "text": candidate.text,
                "logprobs": completion_logprobs(candidate.token_logprobs, rendering.top_logprobs)
                if rendering.logprobs
                else None,
                "finish_reason": candidate.finish_reason,
            }
            for index, candidate in enumerate(candidates)
        ],
        "usage": usage_object(usage),
        "verification": verification,
    }


_PIECES = re.compile(r"\S+\s*|\s+")


def text_pieces(text: str) -> list[str]:
    """Split an answer into word-sized stream pieces that concatenate back to ``text``."""
    return _PIECES.findall(text) or [""]
