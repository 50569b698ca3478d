"""Translate between our generation types and the OpenAI wire format of upstream servers.

Upstream replies are validated with strict pydantic models: extra fields are ignored and optional
parts (``content``, ``logprobs``, ``usage``) may be null or absent, but a wrong type or a missing
required field is an ``UpstreamError`` (``bad_response``) naming the field path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from sdm_router.core.embeddings import EmbeddingRequest, Embeddings
from sdm_router.core.errors import UpstreamError
from sdm_router.core.generation import (
    Candidate,
    FinishReason,
    GenerationRequest,
    Message,
    Param,
    StreamDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

_FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "content_filter", "tool_calls"})

# What an OpenAI-compatible upstream is sent, so what it honours (vLLM, llama.cpp server and
# the hosted API take all of these; a server that does not answers 400, the client's 400).
UPSTREAM_CAPABILITIES: frozenset[Param] = frozenset(Param)


def message_payload(message: Message) -> dict[str, Any]:
    """One chat message as the upstream takes it (an assistant turn that only calls tools has
    ``content: null``)."""
    payload: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        payload["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
        if not message.content:
            payload["content"] = None
    if message.tool_call_id is not None:
        payload["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        payload["name"] = message.name
    return payload


def chat_payload(
    request: GenerationRequest, model: str, top_logprobs: int, *, stream: bool
) -> dict[str, Any]:
    """The upstream request body. Logprobs are always requested: the verifier uses them.
    ``max_tokens``, ``temperature`` and ``top_p`` go only when set (by the client or the tier).
    Every OpenAI field the request sets (tools, ``response_format``, penalties, ``logit_bias``,
    ``seed``, ``stop``, ``user``) is passed on as given."""
    params = request.params
    payload: dict[str, Any] = {
        "model": model,
        "n": params.n,
        "logprobs": True,
        "top_logprobs": max(top_logprobs, params.top_logprobs),
        "stream": stream,
    }
    # only what the client (or the route's tier) set: the upstream's own defaults apply otherwise
    sampling = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    payload.update({key: value for key, value in sampling.items() if value is not None})
    # a prompt goes upstream as one user turn, like everywhere else (GenerationRequest.conversation)
    payload["messages"] = [message_payload(message) for message in request.conversation]
    if params.stop:
        payload["stop"] = list(params.stop)
    if params.seed is not None:
        payload["seed"] = params.seed
    if request.user is not None:
        payload["user"] = request.user
    options = request.options
    if options.tools is not None:
        payload["tools"] = [dict(tool) for tool in options.tools]
    optional = {
        "tool_choice": options.tool_choice,
        "parallel_tool_calls": options.parallel_tool_calls,
        "response_format": options.response_format,
        "presence_penalty": options.presence_penalty,
        "frequency_penalty": options.frequency_penalty,
        "logit_bias": options.logit_bias,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def embeddings_payload(request: EmbeddingRequest) -> dict[str, Any]:
    """The upstream ``/embeddings`` body."""
    payload: dict[str, Any] = {"model": request.model, "input": request.input}
    optional = {
        "encoding_format": request.encoding_format,
        "dimensions": request.dimensions,
        "user": request.user,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    return payload


def _finish_reason(value: str | None) -> FinishReason:
    if value in _FINISH_REASONS:
        return value  # type: ignore[return-value]
    return "stop"


class _WireModel(BaseModel):
    """Strict about types, lenient about extra fields (servers add their own)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class _TopLogprob(_WireModel):
    """One alternative token at a position."""

    token: str
    logprob: float


class _TokenLogprob(_WireModel):
    """``logprobs.content[]``: the sampled token, its log-probability, the alternatives."""

    token: str
    logprob: float
    top_logprobs: list[_TopLogprob] | None = None


class _Logprobs(_WireModel):
    """A choice's ``logprobs``; ``content`` may be null (no tokens)."""

    content: list[_TokenLogprob] | None = None


class _Usage(_WireModel):
    """Token counts; a server may leave either out."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Function(_WireModel):
    """The function of a tool call: its name and JSON arguments (a text)."""

    name: str
    arguments: str


class _ToolCall(_WireModel):
    """A tool call of the assistant message."""

    id: str
    type: str = "function"
    function: _Function


class _Message(_WireModel):
    """The assistant message; ``content`` is null for e.g. tool calls."""

    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _CompletionChoice(_WireModel):
    """One choice of a chat completion; ``index`` defaults to its position."""

    index: int | None = None
    message: _Message
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Completion(_WireModel):
    """A ``chat.completion`` reply: ``choices`` is required, ``usage`` optional."""

    choices: list[_CompletionChoice]
    usage: _Usage | None = None


class _FunctionDelta(_WireModel):
    """A piece of a streamed call's function: the name (first piece), more arguments."""

    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(_WireModel):
    """A piece of a streamed tool call; ``index`` says which call it adds to."""

    index: int = 0
    id: str | None = None
    type: str | None = None
    function: _FunctionDelta | None = None


class _Delta(_WireModel):
    """The new text (and tool call pieces) of one streamed choice."""

    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _ChunkChoice(_WireModel):
    """One choice of a stream chunk; the final one may carry no delta."""

    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _StreamError(_WireModel):
    """The ``error`` of a mid-stream error event (an object, or just a string)."""

    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        return {"message": data} if isinstance(data, str) else data


class _Chunk(_WireModel):
    """A ``chat.completion.chunk``: choices, a usage-only chunk, or an error event."""

    choices: list[_ChunkChoice] | None = None
    usage: _Usage | None = None
    error: _StreamError | None = None

    @model_validator(mode="before")
    @classmethod
    def _error_wins(cls, data: object) -> object:
        # an error event is reported as such, whatever else the chunk holds
        if isinstance(data, dict) and data.get("error") is not None:
            return {"error": data["error"]}
        return data


class _Embedding(_WireModel):
    """One vector: floats, or a base64 text (``encoding_format: base64``)."""

    index: int | None = None
    embedding: list[float] | str


class _Embeddings(_WireModel):
    """An ``/embeddings`` reply."""

    data: list[_Embedding]
    usage: _Usage | None = None


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _malformed(what: str, error: ValidationError) -> UpstreamError:
    """A validation failure as a ``bad_response`` that names the first offending field."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    message = "Input should be an object" if first["type"] == "model_type" else first["msg"]
    path = _location(tuple(first["loc"]))
    text = f"upstream {what} is malformed: {path + ': ' if path else ''}{message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return UpstreamError(text, code="bad_response")


def _token_logprobs(logprobs: _Logprobs | None) -> tuple[TokenLogprob, ...] | None:
    if logprobs is None or logprobs.content is None:
        return None
    return tuple(
        TokenLogprob(
            entry.token,
            entry.logprob,
            tuple(TopLogprob(alt.token, alt.logprob) for alt in entry.top_logprobs or ()),
        )
        for entry in logprobs.content
    )


def _usage(usage: _Usage | None) -> Usage | None:
    if usage is None:
        return None
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def parse_completion(body: object) -> tuple[tuple[Candidate, ...], Usage]:
    """Candidates (ordered by ``index``) and usage from a non-streamed chat completion."""
    try:
        completion = _Completion.model_validate(body)
    except ValidationError as error:
        raise _malformed("reply", error) from error
    candidates = sorted(
        (
            (
                position if choice.index is None else choice.index,
                Candidate(
                    text=choice.message.content or "",
                    finish_reason=_finish_reason(choice.finish_reason),
                    token_logprobs=_token_logprobs(choice.logprobs),
                    tool_calls=tuple(
                        ToolCall(call.id, call.function.name, call.function.arguments)
                        for call in choice.message.tool_calls or ()
                    ),
                ),
            )
            for position, choice in enumerate(completion.choices)
        ),
        key=lambda pair: pair[0],
    )
    return tuple(candidate for _, candidate in candidates), _usage(completion.usage) or Usage()


def _tool_call_deltas(delta: _Delta | None) -> tuple[ToolCallDelta, ...]:
    if delta is None or not delta.tool_calls:
        return ()
    return tuple(
        ToolCallDelta(
            index=call.index,
            id=call.id,
            name=call.function.name if call.function else None,
            arguments=(call.function.arguments or "") if call.function else "",
        )
        for call in delta.tool_calls
    )


def parse_embeddings(body: object) -> Embeddings:
    """The vectors (in input order) and token count of an ``/embeddings`` reply."""
    try:
        reply = _Embeddings.model_validate(body)
    except ValidationError as error:
        raise _malformed("embeddings reply", error) from error
    ordered = sorted(
        enumerate(reply.data),
        key=lambda pair: pair[0] if pair[1].index is None else pair[1].index,
    )
    usage = reply.usage
    return Embeddings(
        vectors=[item.embedding for _, item in ordered],
        prompt_tokens=(usage.prompt_tokens or 0) if usage is not None else 0,
    )


def parse_chunk(body: object) -> list[StreamDelta]:
    """The deltas in one streamed chunk (the usage-only chunk yields one delta with usage)."""
    try:
        chunk = _Chunk.model_validate(body)
    except ValidationError as error:
        raise _malformed("stream chunk", error) from error
    if chunk.error is not None:
        message = chunk.error.message or "no message"
        raise UpstreamError(f"upstream stream error: {message}", code="upstream_stream_error")
    if chunk.choices is None and chunk.usage is None:
        raise UpstreamError(
            "upstream stream chunk is malformed: choices: Field required", code="bad_response"
        )
    deltas = [
        StreamDelta(
            index=choice.index,
            text=(choice.delta.content or "") if choice.delta is not None else "",
            finish_reason=(_finish_reason(choice.finish_reason) if choice.finish_reason else None),
            token_logprobs=_token_logprobs(choice.logprobs) or (),
            tool_calls=_tool_call_deltas(choice.delta),
        )
        for choice in chunk.choices or ()
    ]
    usage = _usage(chunk.usage)
    if usage is not None:
        deltas.append(StreamDelta(index=0, text="", usage=usage))
    return deltas
