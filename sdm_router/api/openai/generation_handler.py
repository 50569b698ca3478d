"""The shared body of ``/v1/chat/completions`` and ``/v1/completions``: parse, admit, call the
pipeline's serving object once, render with the endpoint's renderer."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sdm_router.api.context import context_of
from sdm_router.api.edge.disconnect import client_left, request_timeout, until_disconnected
from sdm_router.api.errors import ClientDisconnected
from sdm_router.api.openai.fast_route import JSONBytesResponse
from sdm_router.api.openai.render.base import RenderContext, Renderer, json_bytes
from sdm_router.api.openai.render.streaming import SSEResponse, decided_stream, pending_stream
from sdm_router.api.openai.render.verification import decision_headers
from sdm_router.api.openai.wire import ChatCompletionRequest, CompletionRequest
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.pipeline.serving import Streaming

WireRequest = ChatCompletionRequest | CompletionRequest


def to_generation_request(body: WireRequest) -> GenerationRequest:
    """The internal request for a validated wire request."""
    messages: tuple[Message, ...] | None = None
    prompt = None
    if isinstance(body, ChatCompletionRequest):
        top_logprobs = body.top_logprobs or 0
        messages = tuple(message.to_message() for message in body.messages)
    else:
        top_logprobs = body.logprobs or 0
        prompt = body.prompt_text()
    params = SamplingParams(
        max_tokens=body.token_limit(),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_sequences(),
        seed=body.seed,
        n=body.n,
        logprobs=True,
        top_logprobs=top_logprobs,
    )
    return GenerationRequest(
        messages=messages, prompt=prompt, params=params, user=body.user, options=body.options()
    )


def render_context(body: WireRequest, renderer: Renderer, max_nearest: int) -> RenderContext:
    """The per-request rendering choices of a wire request."""
    if isinstance(body, ChatCompletionRequest):
        wants_logprobs, top = body.logprobs, body.top_logprobs or 0
    else:
        wants_logprobs, top = body.logprobs is not None, body.logprobs or 0
    nearest = body.verification.nearest_exemplars if body.verification else 0
    return RenderContext(
        response_id=f"{renderer.id_prefix}-{os.urandom(16).hex()}",
        created=int(time.time()),
        logprobs=wants_logprobs,
        top_logprobs=top,
        include_usage=body.include_usage,
        nearest_exemplars=min(nearest, max_nearest),
    )


async def respond(request: Request, body: WireRequest, renderer: Renderer) -> Response:
    """Serve ``body`` through the route its ``model`` names and render the answer."""
    context = context_of(request)
    generation = to_generation_request(body)
    rendering = render_context(body, renderer, context.max_nearest_exemplars)
    timeout = context.edge.request_timeout
    serving, nearest = context.generation, rendering.nearest_exemplars
    # 404 for an unknown model, 403 for the key, 429 over its limits
    admitted = await context.edge.open_route(request, body.model, response_id=rendering.response_id)
    scope, admission = admitted.scope, admitted.admission
    deadline, request_id = scope.deadline, scope.request_id
    released_by_stream = False
    try:
        if body.stream:
            # Verify-then-stream runs the cascade before the first byte. An answer ready within
            # one keep-alive interval goes out as before (errors as HTTP statuses, x-sdm-*
            # headers); a slower one opens the stream and sends ': ping' until it is ready, so
            # a proxy's idle timeout does not cut a long verification.
            interval = context.server.sse_keepalive_seconds
            work = asyncio.ensure_future(
                admission.metered(serving.stream(scope, generation, nearest))
            )
            first_wait = min(interval, timeout) if interval > 0 else timeout
            headers = dict(admission.headers)
            if await _finished_or_left(request, work, first_wait):
                streaming = work.result()
                chunks = decided_stream(
                    renderer, rendering, streaming, deadline, timeout, request_id
                )
                if streaming.decided:
                    headers.update(decision_headers(streaming.decided))
            elif first_wait >= timeout:
                await _cancel(work)
                raise request_timeout(timeout)
            else:
                chunks = pending_stream(
                    work, interval, renderer, rendering, deadline, timeout, request_id
                )
            released_by_stream = True  # the stream keeps its admission slot until it closes
            return SSEResponse(chunks, headers, on_close=admission.release)
        served = await until_disconnected(
            request, serving.complete(scope, generation, nearest), timeout
        )
    except ClientDisconnected:
        return Response(status_code=499)
    finally:
        if not released_by_stream:
            try:  # the tokens the backend calls reported: also if the request failed after them
                await admission.settle()
            finally:
                admission.release()
    body_json = json_bytes(renderer.response(rendering, served))
    return JSONBytesResponse(body_json, {**admission.headers, **decision_headers(served)})


async def _cancel(task: asyncio.Future[Streaming]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _finished_or_left(
    request: Request, task: asyncio.Future[Streaming], seconds: float
) -> bool:
    """Wait up to ``seconds`` for ``task``: True when it is done (its result or error is
    ready), False when it is still running; ``ClientDisconnected`` (the task cancelled) when
    the client left first."""
    watcher = asyncio.ensure_future(client_left(request.receive))
    waited: set[asyncio.Future[Any]] = {task, watcher}
    try:
        done, _ = await asyncio.wait(waited, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _cancel(task)
        raise
    finally:
        watcher.cancel()
    if task in done:
        return True
    if watcher in done:
        await _cancel(task)
        raise ClientDisconnected
    return False
