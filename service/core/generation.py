"""Internal generation types: what the pipeline asks a backend for and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Role = Literal["system", "user", "assistant", "tool", "developer"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message reduced to the text the models see."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding parameters, already validated and defaulted."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = True
    top_logprobs: int = 0


def conversation(messages: tuple[Message, ...] | None, prompt: str | None) -> tuple[Message, ...]:
    """``messages``, or ``prompt`` as one user turn: the one place a prompt becomes a turn."""
    if messages is not None:
        return messages
    return (Message(role="user", content=prompt or ""),)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat conversation or a raw prompt plus sampling parameters.

    Exactly one of ``messages`` and ``prompt`` is set; ``user`` is forwarded to upstreams.
    """

    messages: tuple[Message, ...] | None
    prompt: str | None
    params: SamplingParams
    user: str | None = None

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
                messages[index] = Message(role="user", content=f"{context}\n\n{old.content}")
                break
        return replace(self, messages=tuple(messages))

    @property
    def conversation(self) -> tuple[Message, ...]:
        """The chat messages, or the prompt as one user turn (what the verifier reads)."""
        return conversation(self.messages, self.prompt)

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
    """One generated answer."""

    text: str
    finish_reason: FinishReason = "stop"
    token_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """The result of one backend call: ``n`` candidates and the call's usage."""

    model: str
    candidates: tuple[Candidate, ...]
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer. ``finish_reason`` is set on the last piece of a choice."""

    index: int
    text: str
    finish_reason: FinishReason | None = None
    token_logprobs: tuple[TokenLogprob, ...] = ()
    usage: Usage | None = None
