"""OpenAI response bodies and stream chunks as typed models, plus the ``verification`` extension.

They document the responses in ``/openapi.json`` and are what ``api/`` renders. Optional
extensions (``verification`` before a stream's last chunk, ``nearest_exemplars`` unless asked
for) are left out when ``None``. Chunks are serialized with ``exclude_unset``: ``usage`` is sent
as ``null`` on every chunk only when the client asked for ``include_usage`` (as OpenAI does;
parsers double-count otherwise), and a delta carries only what it sets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_RESPONSE_CONFIG = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = _RESPONSE_CONFIG


def _absent_when_none(value: object) -> bool:
    return value is None


class UsageOut(_Response):
    """Token counts of a request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprobOut(_Response):
    """An alternative token at one position (chat)."""

    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobOut(_Response):
    """A sampled token with its alternatives (chat)."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprobOut]


class ChatLogprobs(_Response):
    """``choices[i].logprobs`` of a chat completion."""

    content: list[TokenLogprobOut]
    refusal: None = None


class CompletionLogprobs(_Response):
    """``choices[i].logprobs`` of a legacy completion."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class NearestExemplarOut(_Response):
    """A support exemplar close to the answer: its id, label and squared distance."""

    id: str
    label: int
    distance: float


class AttemptOut(_Response):
    """One generate-and-verify step of the cascade and what it did next."""

    tier: int
    model: str
    action: str
    reason: str
    region_alpha: float | None
    q: int | None
    d: float | None
    retrieved_context: bool
    latency_ms: float


class VerdictFields(_Response):
    """What the verifier said about the answer and what the policy decided."""

    decision: Literal["accept", "abstain", "unverified", "observed"]
    reason: str
    route: str
    estimator: str
    accept_alpha: float
    prediction: int | None
    probability: float | None
    region_alpha: float | None
    region_alpha_lower: float | None
    q: int | None
    d: float | None
    is_ood: bool | None
    nearest_exemplars: list[NearestExemplarOut] | None = Field(None, exclude_if=_absent_when_none)


class RoutingTierOut(_Response):
    """The prompt router's verdict on one tier (class 1: the tier will answer correctly)."""

    tier: int
    prediction: int
    probability: float
    region_alpha: float
    region_alpha_lower: float
    ood: bool


class RoutingOut(_Response):
    """The routing step before generating: where the route started, what it skipped, why."""

    action: Literal["proceed", "skip", "abstain"]
    reason: str | None
    start_tier: int | None
    skipped_tiers: list[int]
    router: str
    latency_ms: float
    tiers: list[RoutingTierOut]


class Verification(VerdictFields):
    """The ``verification`` object on completions and on the last stream chunk. ``routing``:
    the routing step (None when the route does not route before generating)."""

    tier: int | None
    model: str | None
    attempts: list[AttemptOut]
    routing: RoutingOut | None = None


class VerifyResponse(_Response):
    """``POST /v1/verify``: the verdict on a given answer."""

    object: Literal["verification"] = "verification"
    verification: VerdictFields


class FunctionCallOut(_Response):
    """The function a tool call invokes, with its JSON arguments (a text)."""

    name: str
    arguments: str


class ToolCallOut(_Response):
    """A tool call of an answer."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(_Response):
    """The answer of a chat choice: ``content`` is null when it only calls tools."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = Field(None, exclude_if=_absent_when_none)


class ChatChoice(_Response):
    """One choice of a chat completion."""

    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str


class ChatCompletion(_Response):
    """A non-streamed ``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    system_fingerprint: None = None
    verification: Verification


class FunctionCallDeltaOut(_Response):
    """A piece of a streamed call's function: the name first, then arguments text."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDeltaOut(_Response):
    """A piece of a streamed tool call (``id`` and ``type`` on its first piece)."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDeltaOut | None = None


class ChatDelta(_Response):
    """What a chat chunk adds to a choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None


class ChatChunkChoice(_Response):
    """A choice of a chat stream chunk."""

    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(_Response):
    """One ``chat.completion.chunk`` event."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    system_fingerprint: None = None
    usage: UsageOut | None = None
    verification: Verification | None = Field(None, exclude_if=_absent_when_none)


class CompletionChoice(_Response):
    """One choice of a legacy completion, or of one of its stream chunks."""

    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class TextCompletion(_Response):
    """A non-streamed ``text_completion`` (also the object of its stream chunks)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut | None = None
    verification: Verification | None = Field(None, exclude_if=_absent_when_none)


class EmbeddingOut(_Response):
    """One vector of ``/v1/embeddings``: floats, or base64 float32 (``encoding_format``)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(_Response):
    """Tokens the inputs took."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(_Response):
    """``POST /v1/embeddings``."""

    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingsUsage
