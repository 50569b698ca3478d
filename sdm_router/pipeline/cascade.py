"""The cascade use case: generate -> verify -> decide -> retrieve / escalate / abstain."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

from sdm_router.backends.base import Backend
from sdm_router.backends.resilience import BackendUnavailable
from sdm_router.core.errors import (
    Abstained,
    GatewayError,
    InvalidRequest,
    NoHealthyBackend,
    failure_type,
)
from sdm_router.core.generation import (
    Candidate,
    FinishReason,
    GenerationRequest,
    Param,
    StreamDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
    join_tool_calls,
)
from sdm_router.core.routing import OnAbstain
from sdm_router.core.verdict import NO_ARTIFACT_ID, Action, Reason, Verdict, VerificationInput
from sdm_router.pipeline.observer import PipelineObserver
from sdm_router.pipeline.plan import RoutePlan, Tier
from sdm_router.pipeline.policy import Progress, Step, final_action, judge, ranking_key, unjudged
from sdm_router.pipeline.prompt_routing import PromptPredictor, RoutingStep, decide
from sdm_router.pipeline.scope import UsageSink
from sdm_router.retrieval.base import Retriever
from sdm_router.retrieval.context import format_context
from sdm_router.verifier.protocol import Verifier


@dataclass(frozen=True, slots=True)
class Attempt:
    """One generate-and-verify step and what the cascade did next."""

    tier: int
    model: str
    action: Action
    reason: Reason
    verdict: Verdict | None
    latency_ms: float
    retrieved_context: bool = False


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    """A candidate answer with its verdict (``None``: the route does not verify it, e.g. tool
    calls under ``verify_tool_calls: false``)."""

    candidate: Candidate
    verdict: Verdict | None
    tier: int
    model: str


@dataclass(slots=True)
class CascadeResult:
    """The outcome of one request: the final decision, the answers to return and the trail."""

    route: str
    decision: Action
    reason: Reason
    choices: list[ScoredCandidate]
    attempts: list[Attempt]
    usage: Usage = field(default_factory=Usage)
    artifact_id: str = ""  # the verifier artifact that judged every attempt ("none": observed)
    routing: RoutingStep | None = None  # the routing step before generating, when it ran

    @property
    def best(self) -> ScoredCandidate | None:
        """The chosen answer, if any answer was produced."""
        return self.choices[0] if self.choices else None


def unhonoured(backend: Backend, request: GenerationRequest) -> list[tuple[Param, str]]:
    """The optional parameters ``request`` uses that ``backend`` does not honour, with the field
    path that sets each."""
    return [
        (param, path) for param, path in request.used_params() if param not in backend.capabilities
    ]


def check_params(plan: RoutePlan, request: GenerationRequest) -> None:
    """Refuse (400 ``unsupported_parameter``, naming it) a parameter no backend of the plan can
    honour, before any backend is called: a field the gateway implements nowhere, or one a
    tier's backend does not declare in ``capabilities``. A route with ``drop_params: true``
    drops them instead (``tier_request``)."""
    if plan.drop_params:
        return
    hint = "(a route with drop_params: true drops it)"
    if request.options.unrecognized:
        name = request.options.unrecognized[0]
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {name} {hint}.",
            param=name,
            code="unrecognized_argument",
        )
    if request.options.unsupported:
        name = request.options.unsupported[0]
        raise InvalidRequest(
            f"The parameter '{name}' is not supported by this gateway {hint}.",
            param=name,
            code="unsupported_parameter",
        )
    for tier in plan.tiers:
        refused = unhonoured(tier.backend, request)
        if refused:
            _, path = refused[0]
            where = "model" if plan.direct else f"route {plan.name!r}: backend"
            raise InvalidRequest(
                f"The parameter '{path}' is not supported by {where} {tier.backend.name!r} {hint}.",
                param=path,
                code="unsupported_parameter",
            )


def _log_dropped(plan: RoutePlan, request: GenerationRequest) -> None:
    """One log line per request whose route drops parameters (``drop_params``)."""
    if not plan.drop_params:
        return
    dropped = {
        tier.backend.name: sorted({path for _, path in unhonoured(tier.backend, request)})
        for tier in plan.tiers
    }
    dropped = {name: paths for name, paths in dropped.items() if paths}
    unsupported = [*request.options.unsupported, *request.options.unrecognized]
    if dropped or unsupported:
        logger.info(
            "parameters dropped (drop_params)",
            extra={"route": plan.name, "dropped": dropped, "unsupported": unsupported},
        )


def tier_request(
    plan: RoutePlan, tier: Tier, request: GenerationRequest, n: int
) -> GenerationRequest:
    """The request one tier receives: its ``n`` candidates, the tier's temperature and top_p
    over the client's, and the lower of the two ``max_tokens``. A direct plan passes the
    client's sampling through. Under ``drop_params`` the parameters the tier's backend cannot
    honour are removed. The one place that builds a tier's request."""
    if plan.drop_params:
        request = request.without(
            frozenset(param for param, _ in unhonoured(tier.backend, request))
        )
    params = request.params
    if plan.direct:
        return request.with_params(n=n)
    limits = [value for value in (params.max_tokens, tier.max_tokens) if value is not None]
    return request.with_params(
        n=n,
        temperature=tier.temperature if tier.temperature is not None else params.temperature,
        top_p=tier.top_p if tier.top_p is not None else params.top_p,
        max_tokens=min(limits) if limits else params.max_tokens,
    )


@dataclass(slots=True)
class _State:
    """Mutable progress of one request through the cascade."""

    request: GenerationRequest
    choices_wanted: int
    artifact: str
    usage_sink: UsageSink | None = None
    tier_index: int = 0
    calls: int = 0
    retrieved: bool = False
    usage: Usage = field(default_factory=Usage)
    attempts: list[Attempt] = field(default_factory=list)
    best: list[ScoredCandidate] = field(default_factory=list)
    routing: RoutingStep | None = None


class Cascade:
    """Runs route plans against backends, the verifier and the retriever."""

    def __init__(
        self,
        verifier: Verifier,
        retriever: Retriever | None,
        observer: PipelineObserver,
        router: PromptPredictor | None = None,
    ) -> None:
        self._verifier = verifier
        self._retriever = retriever
        self._observer = observer
        self._router = router

    def routes(self, plan: RoutePlan) -> bool:
        """Whether ``plan`` runs the routing step: prompt routing on, a prompt router loaded
        that predicts for as many tiers as the plan has, the plan verifies and may escalate."""
        return (
            self._router is not None
            and plan.prompt_routing
            and not plan.direct
            and plan.observing is None
            and self._router.tiers == len(plan.tiers)
        )

    async def run(
        self,
        plan: RoutePlan,
        request: GenerationRequest,
        *,
        nearest_exemplars: int = 0,
        usage_sink: UsageSink | None = None,
    ) -> CascadeResult:
        """Execute ``plan`` for ``request`` until an answer is accepted or the route abstains.
        One verifier artifact judges the whole request, even if another is loaded meanwhile.
        Each backend call's usage goes to ``usage_sink`` as it returns. Parameters were
        checked before (``check_params``). In observe mode nothing is verified (and no
        artifact pinned): tier 0's answer is served as ``observed``."""
        _log_dropped(plan, request)
        with self._pinned(plan) as artifact:
            state = _State(request, request.params.n, artifact, usage_sink)
            if self.routes(plan):
                routed = await self._route(plan, state)
                if routed is not None:
                    return routed
            return await self._run(plan, state, nearest_exemplars)

    async def _route(self, plan: RoutePlan, state: _State) -> CascadeResult | None:
        """The routing step: ask the prompt router, record each skipped tier as a ``skip``
        attempt, then start at the chosen tier (None) or abstain at once (the result)."""
        assert self._router is not None
        started = time.perf_counter()
        verdicts = await self._router.predict(state.request.text_conversation)
        seconds = time.perf_counter() - started
        self._observer.stage("route", seconds)
        step = decide(verdicts, plan.skip_alpha, plan.on_ood_prompt, self._router.router_id)
        step = replace(step, latency_ms=seconds * 1000)
        state.routing = step
        self._observer.routing(plan.name, step.action.value)
        for tier in step.skipped:
            reason = step.reason or Reason.PREDICTED_TO_FAIL
            model = plan.tiers[tier].backend.name
            state.attempts.append(
                Attempt(tier, model, Action.SKIP, reason, step.verdicts[tier], 0.0)
            )
            self._observer.attempt(plan.name, tier, model, Action.SKIP, reason, None)
        if step.start is None:
            reason = step.reason or Reason.PREDICTED_UNANSWERABLE
            return self._finish(plan, state, Action.ABSTAIN, reason, [])
        state.tier_index = step.start
        return None

    def _pinned(self, plan: RoutePlan) -> AbstractContextManager[str]:
        """The artifact the request is judged by, held for the request; none in observe mode."""
        return nullcontext(NO_ARTIFACT_ID) if plan.observing else self._verifier.pinned()

    async def _run(self, plan: RoutePlan, state: _State, nearest_exemplars: int) -> CascadeResult:
        while True:
            tier = plan.tiers[state.tier_index]
            started = time.perf_counter()
            try:
                scored = await self._attempt(plan, tier, state, nearest_exemplars)
            except InvalidRequest:
                raise
            except GatewayError as error:
                outcome = self._after_backend_error(plan, tier, state, error, started)
                if outcome is not None:
                    return outcome
                continue
            top = scored[0]
            if top.verdict is None:  # not verified: observed, or by the route's on_unverified
                action, reason = unjudged(plan.observing, plan.on_unverified)
                self._record(plan, state, top, action, reason, started)
                chosen = state.best if action is Action.ABSTAIN else scored
                return self._finish(plan, state, action, reason, chosen)
            step = plan.policy.after_verdict(
                top.verdict, plan.thresholds, self._progress(plan, state)
            )
            self._record(plan, state, top, step.action, step.reason, started)
            if step.action is Action.RETRIEVE:
                if await self._retrieve(plan, state):
                    continue
                # nothing retrieved: the policy chooses again, retrieval now spent
                retried = plan.policy.after_verdict(
                    top.verdict, plan.thresholds, self._progress(plan, state)
                )
                step = Step(retried.action, step.reason, retried.tier)
            if step.action is Action.ACCEPT:
                return self._finish(plan, state, Action.ACCEPT, step.reason, scored)
            if step.action is Action.ESCALATE and step.tier is not None:
                state.tier_index = step.tier
                continue
            return self._finish(plan, state, Action.ABSTAIN, step.reason, state.best)

    async def stream_live(
        self,
        plan: RoutePlan,
        request: GenerationRequest,
        *,
        nearest_exemplars: int = 0,
        usage_sink: UsageSink | None = None,
    ) -> AsyncIterator[StreamDelta | CascadeResult]:
        """Passthrough, the cascade's live mode: tier 0 streams one answer as it is generated,
        then one ``CascadeResult`` carries the verdict. Nothing can be escalated after the
        first byte, so a failing verdict ends in ``abstain``. Tool call pieces stream as they
        come; the whole calls are judged at the end like any answer."""
        _log_dropped(plan, request)
        with self._verifier.pinned() as artifact:
            state = _State(request, 1, artifact, usage_sink)
            async for event in self._stream_live(plan, state, nearest_exemplars):
                yield event

    async def _stream_live(
        self, plan: RoutePlan, state: _State, nearest_exemplars: int
    ) -> AsyncIterator[StreamDelta | CascadeResult]:
        request = state.request
        tier = plan.tiers[0]
        streamed = tier_request(plan, tier, request, n=1)
        started = time.perf_counter()
        state.calls = 1
        pieces: list[str] = []
        calls: list[ToolCallDelta] = []
        logprobs: list[TokenLogprob] = []
        finish: FinishReason = "stop"
        recorded = None
        async for delta in tier.backend.stream(streamed):
            if delta.usage is not None:
                state.usage = delta.usage
            if delta.finish_reason is not None:
                finish, recorded = delta.finish_reason, delta.recorded
            pieces.append(delta.text)
            calls.extend(delta.tool_calls)
            logprobs.extend(delta.token_logprobs)
            if delta.text or delta.tool_calls or delta.finish_reason is not None:
                yield delta
        self._observer.stage("generate", time.perf_counter() - started)
        self._count_tokens(plan, tier.backend.name, state.usage, state.usage_sink)
        candidate = Candidate(
            "".join(pieces), finish, tuple(logprobs) or None, join_tool_calls(calls), recorded
        )
        verdict: Verdict | None = None
        if plan.observing or (candidate.tool_calls and not plan.verify_tool_calls):
            action, reason = unjudged(plan.observing, plan.on_unverified)
        else:
            item = VerificationInput(
                streamed.text_conversation,
                candidate.verification_text,
                candidate.token_logprobs,
                candidate.recorded,
            )
            (verdict,) = await self.verify([item], nearest_exemplars, state.artifact)
            reason = judge(verdict, plan.thresholds)
            action = final_action(reason)
        top = ScoredCandidate(candidate, verdict, 0, tier.backend.name)
        self._record(plan, state, top, action, reason, started)
        yield self._finish(plan, state, action, reason, [top])

    async def verify(
        self,
        items: Sequence[VerificationInput],
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        """Verify answers (also without generating, ``/v1/verify``) by the pinned ``artifact``."""
        started = time.perf_counter()
        verdicts = await self._verifier.verify(
            items, nearest_exemplars=nearest_exemplars, artifact=artifact
        )
        self._observer.stage("verify", time.perf_counter() - started)
        return verdicts

    async def _attempt(
        self, plan: RoutePlan, tier: Tier, state: _State, nearest_exemplars: int
    ) -> list[ScoredCandidate]:
        request = self._tier_request(plan, tier, state)
        backend = tier.backend
        started = time.perf_counter()
        state.calls += 1
        generation = await backend.generate(request)
        self._observer.stage("generate", time.perf_counter() - started)
        state.usage = state.usage + generation.usage
        self._count_tokens(plan, backend.name, generation.usage, state.usage_sink)
        if not generation.candidates:
            raise NoHealthyBackend(f"backend {backend.name!r} returned no choices")
        messages = request.text_conversation
        judged = [
            not plan.observing and (plan.verify_tool_calls or not c.tool_calls)
            for c in generation.candidates
        ]
        items = [
            VerificationInput(
                messages,
                candidate.verification_text,
                candidate.token_logprobs,
                candidate.recorded,
            )
            for candidate, judge_it in zip(generation.candidates, judged, strict=True)
            if judge_it
        ]
        found = await self.verify(items, nearest_exemplars, state.artifact) if items else []
        verdicts = iter(found)
        scored = [
            ScoredCandidate(
                candidate, next(verdicts) if judge_it else None, state.tier_index, backend.name
            )
            for candidate, judge_it in zip(generation.candidates, judged, strict=True)
        ]
        estimator = plan.thresholds.estimator
        scored.sort(key=lambda item: ranking_key(item.verdict, estimator), reverse=True)
        if not state.best or ranking_key(scored[0].verdict, estimator) > ranking_key(
            state.best[0].verdict, estimator
        ):
            state.best = scored[: state.choices_wanted]
        return scored[: state.choices_wanted]

    def _count_tokens(
        self, plan: RoutePlan, model: str, usage: Usage, sink: UsageSink | None
    ) -> None:
        if sink is not None:
            sink(usage)
        self._observer.tokens(plan.name, model, "input", usage.prompt_tokens)
        self._observer.tokens(plan.name, model, "output", usage.completion_tokens)

    def _tier_request(self, plan: RoutePlan, tier: Tier, state: _State) -> GenerationRequest:
        # best-of-n needs a verifier to choose: observe mode asks for what the client wants
        n = state.choices_wanted if plan.observing else max(tier.n, state.choices_wanted)
        return tier_request(plan, tier, state.request, n)

    async def _retrieve(self, plan: RoutePlan, state: _State) -> bool:
        """Fetch context once; True when the same tier should regenerate with it."""
        state.retrieved = True
        if self._retriever is None:
            return False
        started = time.perf_counter()
        passages = await self._retriever.retrieve(state.request.question_text, plan.retrieval_top_k)
        self._observer.stage("retrieve", time.perf_counter() - started)
        if not passages:
            return False
        state.request = state.request.with_context(format_context(passages))
        return True

    def _progress(self, plan: RoutePlan, state: _State) -> Progress:
        return Progress(
            tier=state.tier_index,
            tiers=1 if plan.direct else len(plan.tiers),
            can_retrieve=plan.retrieval and self._retriever is not None and not state.retrieved,
            budget_left=plan.max_backend_calls - state.calls,
        )

    def _record(
        self,
        plan: RoutePlan,
        state: _State,
        top: ScoredCandidate,
        action: Action,
        reason: Reason,
        started: float,
    ) -> None:
        alpha = None if top.verdict is None else top.verdict.alpha(plan.thresholds.estimator)
        state.attempts.append(
            Attempt(
                tier=state.tier_index,
                model=top.model,
                action=action,
                reason=reason,
                verdict=top.verdict,
                latency_ms=(time.perf_counter() - started) * 1000,
                retrieved_context=state.retrieved,
            )
        )
        self._observer.attempt(plan.name, state.tier_index, top.model, action, reason, alpha)

    def _after_backend_error(
        self, plan: RoutePlan, tier: Tier, state: _State, error: GatewayError, started: float
    ) -> CascadeResult | None:
        """Move past a failed backend; None means continue with the next tier. A backend whose
        circuit is open refused without being called: that costs no backend call."""
        self._observer.backend_error(tier.backend.name, failure_type(error))
        if isinstance(error, BackendUnavailable):
            state.calls -= 1
        step = plan.policy.after_backend_error(self._progress(plan, state))
        state.attempts.append(
            Attempt(
                tier=state.tier_index,
                model=tier.backend.name,
                action=step.action,
                reason=step.reason,
                verdict=None,
                latency_ms=(time.perf_counter() - started) * 1000,
                retrieved_context=state.retrieved,
            )
        )
        self._observer.attempt(
            plan.name, state.tier_index, tier.backend.name, step.action, step.reason, None
        )
        if step.action is Action.ESCALATE and step.tier is not None:
            state.tier_index = step.tier
            return None
        if not state.best:
            raise error
        return self._finish(plan, state, Action.ABSTAIN, step.reason, state.best)

    @staticmethod
    def _finish(
        plan: RoutePlan,
        state: _State,
        decision: Action,
        reason: Reason,
        choices: list[ScoredCandidate],
    ) -> CascadeResult:
        return CascadeResult(
            route=plan.name,
            decision=decision,
            reason=reason,
            choices=list(choices),
            attempts=state.attempts,
            usage=state.usage,
            artifact_id=state.artifact,
            routing=state.routing,
        )


def answer_candidates(
    plan: RoutePlan, result: CascadeResult, request: GenerationRequest
) -> list[Candidate]:
    """The candidates to send back, after the route's ``on_abstain`` policy.

    Raises ``Abstained`` when the policy is ``error``. An ``unverified`` answer (the route's
    ``on_unverified: pass``) and an ``observed`` one (observe mode) are returned as generated.
    The abstention sentence is a ``refusal`` (no content) under ``on_abstain: refusal`` and
    for every request whose content has a shape (``response_format`` other than text, or
    ``tools``); it is cut to ``max_tokens`` (``abstention_candidate``).
    """
    n = request.params.n
    if result.decision in (Action.ACCEPT, Action.UNVERIFIED, Action.OBSERVED):
        return [item.candidate for item in result.choices]
    if plan.on_abstain is OnAbstain.ERROR:
        raise Abstained(
            f"route {plan.name!r} abstained ({result.reason.value}): no answer passed verification",
            code="abstained",
        )
    if plan.on_abstain is OnAbstain.BEST_EFFORT and result.choices:
        return [item.candidate for item in result.choices]
    return [abstention_candidate(plan, request) for _ in range(n)]


def abstention_candidate(plan: RoutePlan, request: GenerationRequest) -> Candidate:
    """The route's abstention sentence as an answer. Cut to ``max_tokens`` characters when
    longer (a token covers at least one character, so the cut never exceeds the limit; finish
    reason ``length``). A refusal when the route says so or the content has a shape."""
    text = plan.abstain_message
    finish_reason: FinishReason = "stop"
    limit = request.params.max_tokens
    if limit is not None and len(text) > limit:
        text, finish_reason = text[:limit].rstrip(), "length"
    options = request.options
    formatted = options.response_format is not None and options.response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    if plan.on_abstain is OnAbstain.REFUSAL or formatted or bool(options.tools):
        return Candidate(text="", finish_reason=finish_reason, refusal=text)
    return Candidate(text=text, finish_reason=finish_reason)
