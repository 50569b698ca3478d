"""Passthrough streaming: tier 0 streams live; the verdict comes after the last token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from service.core.generation import (
    Candidate,
    FinishReason,
    GenerationRequest,
    StreamDelta,
    TokenLogprob,
    Usage,
)
from service.core.verdict import Action, Reason, VerificationInput
from service.pipeline.cascade import (
    Attempt,
    Cascade,
    CascadeResult,
    ScoredCandidate,
    tier_request,
    verification_messages,
)
from service.pipeline.observer import PipelineObserver
from service.pipeline.plan import RoutePlan
from service.pipeline.policy import judge


async def stream_then_verify(
    plan: RoutePlan,
    request: GenerationRequest,
    cascade: Cascade,
    observer: PipelineObserver,
    *,
    nearest_exemplars: int = 0,
) -> AsyncIterator[StreamDelta | CascadeResult]:
    """Yield tier 0's deltas as they come, then one ``CascadeResult`` with the verdict.

    There is no escalation after the first byte: a failing verdict ends in ``abstain``.
    """
    tier = plan.tiers[0]
    backend = tier.backend
    streamed = tier_request(plan, tier, request, n=1)
    started = time.perf_counter()
    pieces: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish: FinishReason = "stop"
    usage = Usage()
    async for delta in backend.stream(streamed):
        if delta.usage is not None:
            usage = delta.usage
        if delta.finish_reason is not None:
            finish = delta.finish_reason
        pieces.append(delta.text)
        logprobs.extend(delta.token_logprobs)
        if delta.text or delta.finish_reason is not None:
            yield delta
    observer.stage("generate", time.perf_counter() - started)
    candidate = Candidate("".join(pieces), finish, tuple(logprobs) or None)
    item = VerificationInput(
        verification_messages(streamed), candidate.text, candidate.token_logprobs
    )
    (verdict,) = await cascade.verify([item], nearest_exemplars)
    reason = judge(verdict, plan.thresholds)
    decision = Action.ACCEPT if reason is Reason.VERIFIED else Action.ABSTAIN
    alpha = verdict.alpha(plan.thresholds.estimator)
    observer.attempt(plan.name, 0, backend.name, decision, reason, alpha)
    observer.tokens(plan.name, backend.name, "input", usage.prompt_tokens)
    observer.tokens(plan.name, backend.name, "output", usage.completion_tokens)
    attempt = Attempt(
        0, backend.name, decision, reason, verdict, (time.perf_counter() - started) * 1000
    )
    yield CascadeResult(
        route=plan.name,
        decision=decision,
        reason=reason,
        choices=[ScoredCandidate(candidate, verdict, 0, backend.name)],
        attempts=[attempt],
        usage=usage,
    )
