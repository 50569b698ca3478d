"""Translate between our generation types and the OpenAI wire format of upstream servers."""

from __future__ import annotations

from typing import Any

from service.core.errors import UpstreamError
from service.core.generation import (
    Candidate,
    FinishReason,
    GenerationRequest,
    StreamDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
)

_FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "content_filter", "tool_calls"})


def chat_payload(
    request: GenerationRequest, model: str, top_logprobs: int, *, stream: bool
) -> dict[str, Any]:
    """The upstream request body. Logprobs are always requested: the verifier uses them."""
    params = request.params
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": params.n,
        "logprobs": True,
        "top_logprobs": max(top_logprobs, params.top_logprobs),
        "stream": stream,
    }
    if request.messages is not None:
        payload["messages"] = [
            {"role": message.role, "content": message.content} for message in request.messages
        ]
    else:
        payload["messages"] = [{"role": "user", "content": request.prompt or ""}]
    if params.stop:
        payload["stop"] = list(params.stop)
    if params.seed is not None:
        payload["seed"] = params.seed
    if request.user is not None:
        payload["user"] = request.user
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def _finish_reason(value: object) -> FinishReason:
    if isinstance(value, str) and value in _FINISH_REASONS:
        return value  # type: ignore[return-value]
    return "stop"


def _token_logprobs(logprobs: object) -> tuple[TokenLogprob, ...] | None:
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list):
        return None
    tokens: list[TokenLogprob] = []
    for entry in content:
        if not isinstance(entry, dict):
            raise UpstreamError("upstream logprobs entry is not an object", code="bad_response")
        alternatives = tuple(
            TopLogprob(str(alt.get("token", "")), float(alt.get("logprob", 0.0)))
            for alt in entry.get("top_logprobs") or ()
            if isinstance(alt, dict)
        )
        tokens.append(
            TokenLogprob(
                str(entry.get("token", "")), float(entry.get("logprob", 0.0)), alternatives
            )
        )
    return tuple(tokens)


def parse_usage(body: object) -> Usage | None:
    """The ``usage`` object of a response or final chunk, if present."""
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        return None
    usage = body["usage"]
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def parse_completion(body: object) -> tuple[tuple[Candidate, ...], Usage]:
    """Candidates and usage from a non-streamed chat completion."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise UpstreamError("upstream response has no choices list", code="bad_response")
    candidates: list[tuple[int, Candidate]] = []
    try:
        for position, choice in enumerate(body["choices"]):
            message = choice.get("message") or {}
            text = message.get("content") or ""
            candidate = Candidate(
                text=str(text),
                finish_reason=_finish_reason(choice.get("finish_reason")),
                token_logprobs=_token_logprobs(choice.get("logprobs")),
            )
            candidates.append((int(choice.get("index", position)), candidate))
    except (AttributeError, TypeError, ValueError) as error:
        raise UpstreamError(
            f"upstream choice is malformed: {error}", code="bad_response"
        ) from error
    candidates.sort(key=lambda pair: pair[0])
    return tuple(candidate for _, candidate in candidates), parse_usage(body) or Usage()


def parse_chunk(body: object) -> list[StreamDelta]:
    """The deltas in one streamed chunk (the usage-only chunk yields one delta with usage)."""
    if not isinstance(body, dict):
        raise UpstreamError("upstream stream chunk is not an object", code="bad_response")
    if "error" in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(f"upstream stream error: {message}", code="upstream_stream_error")
    deltas: list[StreamDelta] = []
    try:
        for choice in body.get("choices") or ():
            delta = choice.get("delta") or {}
            reason = choice.get("finish_reason")
            deltas.append(
                StreamDelta(
                    index=int(choice.get("index", 0)),
                    text=str(delta.get("content") or ""),
                    finish_reason=_finish_reason(reason) if reason else None,
                    token_logprobs=_token_logprobs(choice.get("logprobs")) or (),
                )
            )
    except (AttributeError, TypeError, ValueError) as error:
        raise UpstreamError(f"upstream chunk is malformed: {error}", code="bad_response") from error
    usage = parse_usage(body)
    if usage is not None:
        deltas.append(StreamDelta(index=0, text="", usage=usage))
    return deltas
