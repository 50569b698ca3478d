"""Internal generation types: what the pipeline asks a backend for and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from sdm_router.core.states import RecordedStates

Role = Literal["system", "user", "assistant", "tool", "developer"]
JSONObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call an assistant asked for: the id the tool's answer names, the function
    and its arguments (a JSON text, as the model wrote it)."""

    id: str
    name: str
    arguments: str

    @property
    def text(self) -> str:
        """``name(arguments)``: how the verifier reads the call."""
        return f"{self.name}({self.arguments})"


def tool_calls_text(text: str, tool_calls: tuple[ToolCall, ...]) -> str:
    """An answer as the verifier reads it: its text, then one ``name(arguments)`` line per call."""
    return "\n".join(part for part in (text, *(call.text for call in tool_calls)) if part)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message: its text, plus the tool calls of an assistant turn (``tool_calls``),
    the call a ``tool`` turn answers (``tool_call_id``) and the author's ``name``."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def as_text(self) -> Message:
        """The message with its tool calls written into its text (``name(arguments)`` lines):
        what a reader of plain text (the verifier) sees."""
        if not self.tool_calls:
            return self
        return replace(self, content=tool_calls_text(self.content, self.tool_calls), tool_calls=())


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding parameters, already validated. ``max_tokens``, ``temperature`` and ``top_p`` are
    None when neither the client nor the route set them: a remote backend then omits them (the
    upstream's own defaults apply) and the embedded backend uses its own defaults."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = True
    top_logprobs: int = 0


class Param(StrEnum):
    """An optional request parameter a backend may or may not honour (``Backend.capabilities``).

    The core sampling parameters (``max_tokens``, ``temperature``, ``top_p``, ``n``, ``logprobs``,
    ``top_logprobs``) are honoured by every backend and are not listed. ``user`` is metadata
    (forwarded where an upstream takes it) and is never refused.
    """

    TOOLS = "tools"  # also tool_calls in the history (messages[i].tool_calls)
    TOOL_CHOICE = "tool_choice"
    PARALLEL_TOOL_CALLS = "parallel_tool_calls"
    RESPONSE_FORMAT = "response_format"
    PRESENCE_PENALTY = "presence_penalty"
    FREQUENCY_PENALTY = "frequency_penalty"
    LOGIT_BIAS = "logit_bias"
    SEED = "seed"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """The OpenAI request fields beyond sampling, as the client sent them (validated).

    ``unsupported`` names fields of the OpenAI API the client set that the gateway implements
    for no backend (e.g. ``audio``): refused like any parameter a backend cannot honour.
    ``unrecognized`` names top-level fields that are not part of the API at all (a typo, a
    vendor extension): a 400 unless the route has ``drop_params``.
    """

    tools: tuple[JSONObject, ...] | None = None
    tool_choice: str | JSONObject | None = None
    parallel_tool_calls: bool | None = None
    response_format: JSONObject | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, int] | None = None
    unsupported: tuple[str, ...] = ()
    unrecognized: tuple[str, ...] = ()


def conversation(messages: tuple[Message, ...] | None, prompt: str | None) -> tuple[Message, ...]:
    """``messages``, or ``prompt`` as one user turn: the one place a prompt becomes a turn."""
    if messages is not None:
        return messages
    return (Message(role="user", content=prompt or ""),)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat conversation or a raw prompt plus sampling parameters.

    Exactly one of ``messages`` and ``prompt`` is set; ``user`` is forwarded to upstreams;
    ``options`` holds tools, ``response_format``, penalties and ``logit_bias``. ``deadline``
    (``time.monotonic()``) bounds every backend call made for it, retries included.
    """

    messages: tuple[Message, ...] | None
    prompt: str | None
    params: SamplingParams
    user: str | None = None
    options: RequestOptions = field(default_factory=RequestOptions)
    deadline: float | None = None

    def used_params(self) -> list[tuple[Param, str]]:
        """Every optional parameter this request sets to a value that changes decoding, with the
        field path that sets it (``tools``, ``messages[2].tool_calls``). A neutral value (a zero
        penalty, an empty ``logit_bias``, ``response_format: text``) needs no capability."""
        options, params = self.options, self.params
        used: list[tuple[Param, str]] = []
        if options.tools:
            used.append((Param.TOOLS, "tools"))
        for index, message in enumerate(self.messages or ()):
            if message.tool_calls:
                used.append((Param.TOOLS, f"messages[{index}].tool_calls"))
        if options.tool_choice is not None:
            used.append((Param.TOOL_CHOICE, "tool_choice"))
        if options.parallel_tool_calls is not None:
            used.append((Param.PARALLEL_TOOL_CALLS, "parallel_tool_calls"))
        format_type = (options.response_format or {}).get("type", "text")
        if format_type != "text":
            used.append((Param.RESPONSE_FORMAT, "response_format"))
        if options.presence_penalty:
            used.append((Param.PRESENCE_PENALTY, "presence_penalty"))
        if options.frequency_penalty:
            used.append((Param.FREQUENCY_PENALTY, "frequency_penalty"))
        if options.logit_bias:
            used.append((Param.LOGIT_BIAS, "logit_bias"))
        if params.seed is not None:
            used.append((Param.SEED, "seed"))
        if params.stop:
            used.append((Param.STOP, "stop"))
        return used

    def without(self, dropped: frozenset[Param]) -> GenerationRequest:
        """A copy with the ``dropped`` parameters removed (``drop_params``): dropping ``tools``
        also writes the history's tool calls into their messages' text."""
        if not dropped:
            return self
        options, params, messages = self.options, self.params, self.messages
        if Param.TOOLS in dropped:
            options = replace(options, tools=None)
            if messages is not None:
                messages = tuple(message.as_text() for message in messages)
        cleared = {
            Param.TOOL_CHOICE: "tool_choice",
            Param.PARALLEL_TOOL_CALLS: "parallel_tool_calls",
            Param.RESPONSE_FORMAT: "response_format",
            Param.PRESENCE_PENALTY: "presence_penalty",
            Param.FREQUENCY_PENALTY: "frequency_penalty",
            Param.LOGIT_BIAS: "logit_bias",
        }
        changes: dict[str, Any] = {cleared[p]: None for p in dropped if p in cleared}
        options = replace(options, **changes)
        if Param.SEED in dropped:
            params = replace(params, seed=None)
        if Param.STOP in dropped:
            params = replace(params, stop=())
        return replace(self, messages=messages, params=params, options=options)

    def with_params(self, **changes: object) -> GenerationRequest:
        """Return a copy whose sampling parameters have ``changes`` applied."""
        return replace(self, params=replace(self.params, **changes))  # type: ignore[arg-type]

    def with_context(self, context: str) -> GenerationRequest:
        """Return a copy with ``context`` placed before the question (retrieval augmentation)."""
        if self.prompt is not None:
            return replace(self, prompt=f"{context}\n\n{self.prompt}")
        assert self.messages is not None
        messages = list(self.messages)
        for index in range(len(messages) - 1, -1, -1):
            if messages[index].role == "user":
                old = messages[index]
                messages[index] = replace(old, content=f"{context}\n\n{old.content}")
                break
        return replace(self, messages=tuple(messages))

    @property
    def conversation(self) -> tuple[Message, ...]:
        """The chat messages, or the prompt as one user turn."""
        return conversation(self.messages, self.prompt)

    @property
    def text_conversation(self) -> tuple[Message, ...]:
        """The conversation as the verifier reads it: tool calls written as text."""
        return tuple(message.as_text() for message in self.conversation)

    @property
    def question_text(self) -> str:
        """The last user turn (or the prompt): what retrieval searches for."""
        if self.prompt is not None:
            return self.prompt
        assert self.messages is not None
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content if self.messages else ""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One alternative token at a position."""

    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The sampled token at one position, its log-probability and the top alternatives."""

    token: str
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one backend call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One generated answer: its text and the tool calls it asks for (either may be empty)."""

    text: str
    finish_reason: FinishReason = "stop"
    token_logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    # Layer states the generator recorded while writing it (the embedded decoder), for the
    # verifier; never compared or shown.
    recorded: RecordedStates | None = field(default=None, compare=False, repr=False)
    # An abstention in OpenAI's refusal shape: the sentence, shown as ``refusal`` (text empty).
    refusal: str | None = None

    @property
    def verification_text(self) -> str:
        """What the verifier judges: the text, then one ``name(arguments)`` line per call."""
        return tool_calls_text(self.text, self.tool_calls)


@dataclass(frozen=True, slots=True)
class Generation:
    """The result of one backend call: ``n`` candidates and the call's usage."""

    model: str
    candidates: tuple[Candidate, ...]
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of call ``index`` carries its ``id`` and
    ``name``, later ones more ``arguments`` text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


def tool_call_pieces(calls: tuple[ToolCall, ...]) -> tuple[ToolCallDelta, ...]:
    """Whole tool calls as one delta each (a replayed answer)."""
    return tuple(
        ToolCallDelta(index, call.id, call.name, call.arguments) for index, call in enumerate(calls)
    )


def join_tool_calls(pieces: list[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """The tool calls a stream's pieces add up to, ordered by ``index``."""
    calls: dict[int, list[str]] = {}
    for piece in pieces:
        call = calls.setdefault(piece.index, ["", "", ""])
        call[0] = piece.id or call[0]
        call[1] = piece.name or call[1]
        call[2] += piece.arguments
    return tuple(ToolCall(*calls[index]) for index in sorted(calls))


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer. ``finish_reason`` is set on the last piece of a choice."""

    index: int
    text: str
    finish_reason: FinishReason | None = None
    token_logprobs: tuple[TokenLogprob, ...] = ()
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    refusal: str = ""  # a piece of an abstention in the refusal shape (Candidate.refusal)
    # On the last piece: the layer states the generator recorded for the whole answer.
    recorded: RecordedStates | None = field(default=None, compare=False, repr=False)
