"""The shared body of ``/v1/chat/completions`` and ``/v1/completions``: parse, run, render."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from service.api.context import (
    ApiContext,
    ClientDisconnected,
    context_of,
    request_timeout,
    until_disconnected,
)
from service.api.errors import internal_error_body
from service.api.render import (
    Rendering,
    chat_completion,
    decision_headers,
    text_completion,
    verification_object,
)
from service.api.streaming import (
    DONE,
    ChunkWriter,
    SSEResponse,
    delta_chunk,
    error_event,
    replay_answer,
    sse,
)
from service.core.errors import GatewayError
from service.core.generation import GenerationRequest, Message, SamplingParams
from service.core.openai_wire import ChatCompletionRequest, CompletionRequest
from service.core.routing import StreamMode
from service.core.verdict import Action
from service.pipeline.cascade import CascadeResult, answer_candidates
from service.pipeline.passthrough import stream_then_verify
from service.pipeline.plan import RoutePlan

logger = logging.getLogger(__name__)
Kind = Literal["chat", "completion"]
DEFAULT_MAX_TOKENS = 256


def to_generation_request(body: ChatCompletionRequest | CompletionRequest) -> GenerationRequest:
    """The internal request for a validated wire request."""
    if isinstance(body, ChatCompletionRequest):
        top_logprobs = body.top_logprobs or 0
        messages: tuple[Message, ...] | None = tuple(
            Message(role=message.role, content=message.text()) for message in body.messages
        )
        prompt = None
    else:
        top_logprobs = body.logprobs or 0
        messages = None
        prompt = body.prompt_text()
    params = SamplingParams(
        max_tokens=body.token_limit() or DEFAULT_MAX_TOKENS,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=body.stop_sequences(),
        seed=body.seed,
        n=body.n,
        logprobs=True,
        top_logprobs=top_logprobs,
    )
    return GenerationRequest(messages=messages, prompt=prompt, params=params, user=body.user)


def _rendering(
    body: ChatCompletionRequest | CompletionRequest, kind: Kind, plan: RoutePlan, limit: int
) -> Rendering:
    if isinstance(body, ChatCompletionRequest):
        wants_logprobs, top = body.logprobs, body.top_logprobs or 0
    else:
        wants_logprobs, top = body.logprobs is not None, body.logprobs or 0
    nearest = body.verification.nearest_exemplars if body.verification else 0
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return Rendering(
        response_id=f"{prefix}-{os.urandom(16).hex()}",
        created=int(time.time()),
        model=plan.name,
        logprobs=wants_logprobs,
        top_logprobs=top,
        nearest_exemplars=min(nearest, limit),
    )


async def handle_generation(
    request: Request, body: ChatCompletionRequest | CompletionRequest, kind: Kind
) -> Response:
    """Run the route ``body.model`` names and render the answer, streamed or not."""
    context = context_of(request)
    started = time.perf_counter()
    context.gate.acquire()
    released_by_stream = False
    try:
        plan = context.gateway.plan_for(body.model)
        generation_request = to_generation_request(body)
        rendering = _rendering(body, kind, plan, context.max_nearest_exemplars)
        writer = ChunkWriter(kind, rendering, body.include_usage)
        if body.stream and plan.stream_mode is StreamMode.PASSTHROUGH and body.n == 1:
            # the live stream keeps the admission slot until the response closes
            request_id = request.scope.get("state", {}).get("request_id", "unknown")
            stream = _passthrough_body(
                context, plan, generation_request, writer, started, request_id
            )
            released_by_stream = True
            return SSEResponse(stream, on_close=context.gate.release)
        with context.metrics.track_inflight():
            try:
                result = await until_disconnected(
                    request,
                    context.gateway.cascade.run(
                        plan, generation_request, nearest_exemplars=rendering.nearest_exemplars
                    ),
                    timeout=context.server.request_timeout_seconds,
                )
                candidates = answer_candidates(plan, result, body.n)
            except ClientDisconnected:
                context.metrics.request_finished(plan.name, "error", time.perf_counter() - started)
                return Response(status_code=499)
            except GatewayError:
                context.metrics.request_finished(plan.name, "error", time.perf_counter() - started)
                raise
    finally:
        if not released_by_stream:
            context.gate.release()
    elapsed = time.perf_counter() - started
    context.metrics.request_finished(plan.name, result.decision.value, elapsed)
    _log_request(context, generation_request, result, elapsed)
    best = result.best
    if result.decision is Action.ACCEPT and best is not None:
        rendering = _with_model(rendering, best.model)
    verification = verification_object(plan, result, rendering.nearest_exemplars)
    headers = decision_headers(result, plan)
    if body.stream:
        writer = ChunkWriter(kind, rendering, body.include_usage)
        return SSEResponse(replay_answer(writer, candidates, result.usage, verification), headers)
    render = chat_completion if kind == "chat" else text_completion
    return JSONResponse(render(rendering, candidates, result.usage, verification), headers=headers)


def _log_request(
    context: ApiContext, request: GenerationRequest, result: CascadeResult, seconds: float
) -> None:
    """One structured line per request; text only when ``log_prompts`` is on."""
    best = result.best
    fields: dict[str, Any] = {
        "route": result.route,
        "decision": result.decision.value,
        "reason": result.reason.value,
        "tier": best.tier if best else None,
        "model": best.model if best else None,
        "attempts": [f"{a.tier}:{a.action.value}:{a.reason.value}" for a in result.attempts],
        "duration_ms": round(seconds * 1000, 2),
        "completion_tokens": result.usage.completion_tokens,
    }
    if context.observability.log_prompts:
        fields["prompt"] = request.question_text
        fields["response"] = best.candidate.text if best else None
    logger.info("request finished", extra=fields)


def _with_model(rendering: Rendering, model: str) -> Rendering:
    return Rendering(
        response_id=rendering.response_id,
        created=rendering.created,
        model=model,
        logprobs=rendering.logprobs,
        top_logprobs=rendering.top_logprobs,
        nearest_exemplars=rendering.nearest_exemplars,
    )


async def _passthrough_body(
    context: ApiContext,
    plan: RoutePlan,
    request: GenerationRequest,
    writer: ChunkWriter,
    started: float,
    request_id: str,
) -> AsyncIterator[bytes]:
    """Stream tier 0 live; the verdict rides on the last chunk. Any failure, and running past
    ``server.request_timeout_seconds``, becomes an error frame followed by ``[DONE]``."""
    outcome = "error"
    events = stream_then_verify(
        plan,
        request,
        context.gateway.cascade,
        context.metrics,
        nearest_exemplars=writer.rendering.nearest_exemplars,
    )
    timeout = context.server.request_timeout_seconds
    deadline = time.monotonic() + timeout
    try:
        with context.metrics.track_inflight():
            opening = writer.opening(1)
            if opening is not None:
                yield opening
            while True:
                try:
                    remaining = max(0.0, deadline - time.monotonic())
                    event = await asyncio.wait_for(anext(events), remaining)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise request_timeout(timeout) from None
                if isinstance(event, CascadeResult):
                    outcome = event.decision.value
                    yield _passthrough_ending(writer, plan, event)
                    if writer.include_usage:
                        verification = verification_object(
                            plan, event, writer.rendering.nearest_exemplars
                        )
                        yield writer.usage(event.usage, verification)
                    yield DONE
                    return
                chunk = delta_chunk(writer, event)
                if chunk is not None:
                    yield chunk
    except GatewayError as error:
        yield error_event(error)
        yield DONE
    except Exception:
        logger.exception("passthrough stream failed", extra={"request_id": request_id})
        yield sse(internal_error_body(request_id))
        yield DONE
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        context.metrics.request_finished(plan.name, outcome, time.perf_counter() - started)


def _passthrough_ending(writer: ChunkWriter, plan: RoutePlan, result: CascadeResult) -> bytes:
    best = result.best
    reason = best.candidate.finish_reason if best else "stop"
    carries: dict[str, Any] | None = None
    if not writer.include_usage:
        carries = verification_object(plan, result, writer.rendering.nearest_exemplars)
    return writer.finish(0, reason, carries)
