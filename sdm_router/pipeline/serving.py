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
from dataclasses import dataclass, replace
from typing import Any

from sdm_router.core.decisions import AttemptRecord, DecisionRecord
from sdm_router.core.errors import InvalidRequest
from sdm_router.core.generation import (
    Candidate,
    GenerationRequest,
    Message,
    StreamDelta,
    tool_call_pieces,
)
from sdm_router.core.routing import StreamMode
from sdm_router.core.verdict import ERROR_OUTCOME, Action, Reason, Verdict, VerificationInput
from sdm_router.pipeline.cascade import Attempt, CascadeResult, answer_candidates, check_params
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.observer import PipelineObserver
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.policy import final_action, judge
from sdm_router.pipeline.scope import RequestScope

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    """A request's outcome: the plan, the cascade's result and the answers to send back."""

    plan: RoutePlan
    result: CascadeResult
    candidates: list[Candidate]

    @property
    def model(self) -> str:
        """The model a response names: the accepting (or observed) model, else the route."""
        best = self.result.best
        if self.result.decision in (Action.ACCEPT, Action.OBSERVED) and best is not None:
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
        self, scope: RequestScope, request: GenerationRequest, nearest_exemplars: int
    ) -> Served:
        """Run the plan ``scope`` resolved; raises ``Abstained`` for ``on_abstain: error``.
        A parameter no backend of the plan can honour is a 400 before any backend call."""
        plan = scope.route
        check_params(plan, request)
        return await self._complete(scope, plan, self._bounded(scope, request), nearest_exemplars)

    async def _complete(
        self,
        scope: RequestScope,
        plan: RoutePlan,
        request: GenerationRequest,
        nearest_exemplars: int,
    ) -> Served:
        started = time.perf_counter()
        outcome = ERROR_OUTCOME
        result: CascadeResult | None = None
        try:
            with self._observer.track_inflight():
                result = await self._gateway.cascade.run(
                    plan,
                    request,
                    nearest_exemplars=nearest_exemplars,
                    usage_sink=scope.usage_sink,
                )
            outcome = result.decision.value  # an abstention the policy answers 422 included
            return Served(plan, result, answer_candidates(plan, result, request))
        finally:
            self._report(scope, plan, request, result, outcome, started)

    async def stream(
        self, scope: RequestScope, request: GenerationRequest, nearest_exemplars: int
    ) -> Streaming:
        """Start a streamed answer. A passthrough route (with ``n`` = 1) streams tier 0 live;
        any other runs the cascade first (errors are raised here, before the first byte) and
        replays the verified answers. Parameters are checked before either starts."""
        plan = scope.route
        check_params(plan, request)
        request = self._bounded(scope, request)
        if plan.stream_mode is StreamMode.PASSTHROUGH and request.params.n == 1:
            return Streaming(plan, None, self._live(scope, plan, request, nearest_exemplars))
        served = await self._complete(scope, plan, request, nearest_exemplars)
        return Streaming(plan, served, replay(served))

    @staticmethod
    def _bounded(scope: RequestScope, request: GenerationRequest) -> GenerationRequest:
        """``request`` bounded by the scope's deadline (every backend call and retry)."""
        if request.deadline == scope.deadline:
            return request
        return replace(request, deadline=scope.deadline)

    async def _live(
        self,
        scope: RequestScope,
        plan: RoutePlan,
        request: GenerationRequest,
        nearest_exemplars: int,
    ) -> AsyncIterator[StreamEvent]:
        started = time.perf_counter()
        outcome = ERROR_OUTCOME
        result: CascadeResult | None = None
        events = self._gateway.cascade.stream_live(
            plan, request, nearest_exemplars=nearest_exemplars, usage_sink=scope.usage_sink
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
            self._report(scope, plan, request, result, outcome, started)

    def _report(
        self,
        scope: RequestScope,
        plan: RoutePlan,
        request: GenerationRequest,
        result: CascadeResult | None,
        outcome: str,
        started: float,
    ) -> None:
        """The one place a request is counted, logged and recorded, whatever path it took."""
        seconds = time.perf_counter() - started
        self._observer.request_finished(plan.name, outcome, seconds)
        log = self._gateway.decision_log
        if log is not None and result is not None:
            record = self._record(scope, plan, request, result)
            labeler = self._gateway.labeler
            sampled = labeler is not None and labeler.wants(record)
            if sampled or result.decision is Action.OBSERVED:
                record = replace(record, keep_text=True)  # text to label, and to build from
            log.submit(record)
            if labeler is not None and sampled:
                labeler.submit(record, plan)
            if self._gateway.shadow is not None:
                self._gateway.shadow.observe(plan, result, scope.request_id)
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
            if result.routing is not None:  # the routing step before generating
                fields["routing"] = result.routing.action.value
                fields["routing_skipped"] = list(result.routing.skipped)
            if self._log_prompts:
                fields["prompt"] = request.question_text
                fields["response"] = best.candidate.text if best else None
        scope.annotate(fields)  # the HTTP middleware writes the line when the response ends

    @staticmethod
    def _record(
        scope: RequestScope, plan: RoutePlan, request: GenerationRequest, result: CascadeResult
    ) -> DecisionRecord:
        best = result.best
        return DecisionRecord(
            request_id=scope.request_id,
            response_id=scope.response_id,
            created=time.time(),
            route=plan.name,
            requested_model=scope.requested_model,
            decision=result.decision.value,
            reason=result.reason.value,
            artifact_id=result.artifact_id,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            key_name=scope.key_name,
            attempts=tuple(attempt_record(attempt) for attempt in result.attempts),
            # what the verifier read (tool calls as text), so a labelled record can train one
            conversation=request.text_conversation,
            answer=best.candidate.verification_text if best else None,
            answer_logprobs=best.candidate.token_logprobs if best else None,
            answer_model=(plan.tiers[best.tier].model or None) if best else None,
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
        if candidate.refusal is not None:
            yield StreamDelta(index=index, text="", refusal=candidate.refusal)
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
        scope: RequestScope,
        messages: Sequence[Message],
        response: str,
        nearest_exemplars: int,
    ) -> Judged:
        """The verdict on ``response`` as the answer to ``messages`` under the scope's plan."""
        plan = scope.route
        if plan.observing is not None:
            raise InvalidRequest(
                f"The route {plan.name!r} is in observe mode ({plan.observing.value}): no "
                "verifier artifact covers it, so there is no verdict to give.",
                param="model",
                code="route_observing",
            )
        (verdict,) = await self._gateway.cascade.verify(
            [VerificationInput(tuple(messages), response)], nearest_exemplars
        )
        judged = Judged(plan, verdict, judge(verdict, plan.thresholds))
        scope.annotate(
            {"route": plan.name, "decision": judged.decision.value, "reason": judged.reason.value}
        )
        return judged
