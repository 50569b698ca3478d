"""The use cases behind the endpoints: one serving object per endpoint family.

``GenerationServing`` serves chat and legacy completions (they differ only in how ``api/``
renders them): it looks up the plan, chooses the mode (verify-then-stream, passthrough, direct),
runs the one cascade, applies the route's abstain policy, and reports every request once (the
request metric and the log line), streamed or not. ``VerificationServing`` judges a given answer
(``/v1/verify``). ``api/`` parses, authorizes, calls one method and renders.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sdm_router.core.decisions import AttemptRecord, DecisionRecord
from sdm_router.core.generation import (
    Candidate,
    GenerationRequest,
    Message,
    StreamDelta,
    tool_call_pieces,
)
from sdm_router.core.routing import StreamMode
from sdm_router.core.verdict import Action, Reason, Verdict, VerificationInput
from sdm_router.observability.logging import annotate_request
from sdm_router.pipeline.cascade import Attempt, CascadeResult, answer_candidates
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.observer import PipelineObserver
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.policy import final_action, judge

logger = logging.getLogger(__name__)
ERROR_OUTCOME = "error"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who asked and how the request is known: what the decision record keeps besides the
    outcome. ``request_id`` is the ``x-request-id`` header, ``response_id`` the body's ``id``."""

    request_id: str
    response_id: str | None = None
    key_name: str | None = None


@dataclass(frozen=True, slots=True)
class Served:
    """A request's outcome: the plan, the cascade's result and the answers to send back."""

    plan: RoutePlan
    result: CascadeResult
    candidates: list[Candidate]

    @property
    def model(self) -> str:
        """The model a response names: the accepting model, else the route."""
        best = self.result.best
        if self.result.decision is Action.ACCEPT and best is not None:
            return best.model
        return self.plan.name


StreamEvent = StreamDelta | Served


@dataclass(frozen=True, slots=True)
class Streaming:
    """An answer on its way out: ``events`` are deltas, then one ``Served`` last.

    ``decided`` is the outcome when it is known before the first byte (verify-then-stream);
    a live (passthrough) stream learns it at the end.
    """

    plan: RoutePlan
    decided: Served | None
    events: AsyncIterator[StreamEvent]


@dataclass(frozen=True, slots=True)
class Judged:
    """``/v1/verify``'s outcome: the verdict, why, and what the route would decide."""

    plan: RoutePlan
    verdict: Verdict
    reason: Reason

    @property
    def decision(self) -> Action:
        """Accept or abstain."""
        return final_action(self.reason)


_PIECES = re.compile(r"\S+\s*|\s+")


def text_pieces(text: str) -> list[str]:
    """Split an answer into word-sized stream pieces that concatenate back to ``text``."""
    return _PIECES.findall(text) or [""]


class GenerationServing:
    """Chat and completion requests through the verified cascade."""

    def __init__(self, gateway: Gateway, observer: PipelineObserver, log_prompts: bool) -> None:
        self._gateway = gateway
        self._observer = observer
        self._log_prompts = log_prompts

    async def complete(
        self,
        model: str | None,
        request: GenerationRequest,
        nearest_exemplars: int,
        meta: RequestMeta,
    ) -> Served:
        """Run the route ``model`` names; raises ``Abstained`` for ``on_abstain: error``."""
        plan = self._gateway.plan_for(model)
        started = time.perf_counter()
        outcome = ERROR_OUTCOME
        result: CascadeResult | None = None
        try:
            with self._observer.track_inflight():
                result = await self._gateway.cascade.run(
                    plan, request, nearest_exemplars=nearest_exemplars
                )
            outcome = result.decision.value  # an abstention the policy answers 422 included
            return Served(plan, result, answer_candidates(plan, result, request.params.n))
        finally:
            self._report(plan, request, result, outcome, started, meta, model)

    async def stream(
        self,
        model: str | None,
        request: GenerationRequest,
        nearest_exemplars: int,
        meta: RequestMeta,
    ) -> Streaming:
        """Start a streamed answer. A passthrough route (with ``n`` = 1) streams tier 0 live;
        any other runs the cascade first (errors are raised here, before the first byte) and
        replays the verified answers."""
        plan = self._gateway.plan_for(model)
        if plan.stream_mode is StreamMode.PASSTHROUGH and request.params.n == 1:
            return Streaming(plan, None, self._live(plan, request, nearest_exemplars, meta, model))
        served = await self.complete(model, request, nearest_exemplars, meta)
        return Streaming(plan, served, replay(served))

    async def _live(
        self,
        plan: RoutePlan,
        request: GenerationRequest,
        nearest_exemplars: int,
        meta: RequestMeta,
        model: str | None,
    ) -> AsyncIterator[StreamEvent]:
        started = time.perf_counter()
        outcome = ERROR_OUTCOME
        result: CascadeResult | None = None
        events = self._gateway.cascade.stream_live(
            plan, request, nearest_exemplars=nearest_exemplars
        )
        try:
            with self._observer.track_inflight():
                async for event in events:
                    if isinstance(event, CascadeResult):
                        result, outcome = event, event.decision.value
                        best = event.best
                        yield Served(plan, event, [best.candidate] if best else [])
                        return
                    yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            self._report(plan, request, result, outcome, started, meta, model)

    def _report(
        self,
        plan: RoutePlan,
        request: GenerationRequest,
        result: CascadeResult | None,
        outcome: str,
        started: float,
        meta: RequestMeta,
        requested_model: str | None,
    ) -> None:
        """The one place a request is counted, logged and recorded, whatever path it took."""
        seconds = time.perf_counter() - started
        self._observer.request_finished(plan.name, outcome, seconds)
        log = self._gateway.decision_log
        if log is not None and result is not None:
            log.submit(self._record(plan, request, result, meta, requested_model))
            if self._gateway.shadow is not None:
                self._gateway.shadow.observe(plan, result, meta.request_id)
        fields: dict[str, Any] = {
            "route": plan.name,
            "decision": outcome,
            "pipeline_ms": round(seconds * 1000, 2),
        }
        if result is not None:
            best = result.best
            fields.update(
                reason=result.reason.value,
                tier=best.tier if best else None,
                model=best.model if best else None,
                attempts=[f"{a.tier}:{a.action.value}:{a.reason.value}" for a in result.attempts],
                completion_tokens=result.usage.completion_tokens,
            )
            if self._log_prompts:
                fields["prompt"] = request.question_text
                fields["response"] = best.candidate.text if best else None
        annotate_request(fields)  # the HTTP middleware writes the line when the response ends

    def _record(
        self,
        plan: RoutePlan,
        request: GenerationRequest,
        result: CascadeResult,
        meta: RequestMeta,
        requested_model: str | None,
    ) -> DecisionRecord:
        best = result.best
        return DecisionRecord(
            request_id=meta.request_id,
            response_id=meta.response_id,
            created=time.time(),
            route=plan.name,
            requested_model=requested_model,
            decision=result.decision.value,
            reason=result.reason.value,
            artifact_id=result.artifact_id,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            key_name=meta.key_name,
            attempts=tuple(attempt_record(attempt) for attempt in result.attempts),
            # what the verifier read (tool calls as text), so a labelled record can train one
            conversation=request.text_conversation,
            answer=best.candidate.verification_text if best else None,
            answer_logprobs=best.candidate.token_logprobs if best else None,
        )


def attempt_record(attempt: Attempt) -> AttemptRecord:
    """An attempt as the decision store keeps it."""
    verdict = attempt.verdict
    return AttemptRecord(
        tier=attempt.tier,
        model=attempt.model,
        action=attempt.action.value,
        reason=attempt.reason.value,
        prediction=None if verdict is None else verdict.prediction,
        q=None if verdict is None else verdict.q,
        d=None if verdict is None else float(verdict.d),
        region_alpha=None if verdict is None else float(verdict.region_alpha),
        region_alpha_lower=None if verdict is None else float(verdict.region_alpha_lower),
        latency_ms=attempt.latency_ms,
        retrieved_context=attempt.retrieved_context,
    )


async def replay(served: Served) -> AsyncIterator[StreamEvent]:
    """Verify-then-stream: the verified answers as word-sized deltas (logprobs on each answer's
    first piece), then each answer's tool calls in one delta, each answer's finish, then the
    outcome."""
    for index, candidate in enumerate(served.candidates):
        tokens = candidate.token_logprobs or ()
        for number, piece in enumerate(text_pieces(candidate.text)):
            yield StreamDelta(index=index, text=piece, token_logprobs=tokens if number == 0 else ())
        if candidate.tool_calls:
            pieces = tool_call_pieces(candidate.tool_calls)
            yield StreamDelta(index=index, text="", tool_calls=pieces)
    for index, candidate in enumerate(served.candidates):
        yield StreamDelta(index=index, text="", finish_reason=candidate.finish_reason)
    yield served


class VerificationServing:
    """Judges a given answer under a route's policy, without generating."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def verify(
        self,
        model: str | None,
        messages: Sequence[Message],
        response: str,
        nearest_exemplars: int,
    ) -> Judged:
        """The verdict on ``response`` as the answer to ``messages``."""
        plan = self._gateway.plan_for(model)
        (verdict,) = await self._gateway.cascade.verify(
            [VerificationInput(tuple(messages), response)], nearest_exemplars
        )
        return Judged(plan, verdict, judge(verdict, plan.thresholds))
