"""The shared body of ``/v1/chat/completions`` and ``/v1/completions``: parse, admit, call the
pipeline's serving object once, render with the endpoint's renderer."""

from __future__ import annotations

import os
import time

from fastapi import Request
from fastapi.responses import Response

from service.api.context import ClientDisconnected, context_of, until_disconnected
from service.api.rendering import RenderContext, Renderer
from service.api.streaming import SSEResponse, stream_body
from service.api.verification_render import decision_headers
from service.core.generation import GenerationRequest, Message, SamplingParams
from service.core.openai_wire import ChatCompletionRequest, CompletionRequest
from service.pipeline.serving import RequestMeta

DEFAULT_MAX_TOKENS = 256
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
    timeout = context.server.request_timeout_seconds
    deadline = time.monotonic() + timeout
    serving, nearest = context.generation, rendering.nearest_exemplars
    request_id = request.scope.get("state", {}).get("request_id", "unknown")
    meta = RequestMeta(request_id, rendering.response_id)
    context.gate.acquire()
    released_by_stream = False
    try:
        if body.stream:
            streaming = await until_disconnected(
                request, serving.stream(body.model, generation, nearest, meta), timeout
            )
            chunks = stream_body(renderer, rendering, streaming, deadline, timeout, request_id)
            headers = decision_headers(streaming.decided) if streaming.decided else None
            released_by_stream = True  # the stream keeps its admission slot until it closes
            return SSEResponse(chunks, headers, on_close=context.gate.release)
        served = await until_disconnected(
            request, serving.complete(body.model, generation, nearest, meta), timeout
        )
    except ClientDisconnected:
        return Response(status_code=499)
    finally:
        if not released_by_stream:
            context.gate.release()
    body_json = renderer.response(rendering, served).model_dump_json()
    return Response(body_json, media_type="application/json", headers=decision_headers(served))
