"""OpenAI request bodies as validated models, with OpenAI's field names.

Unknown extra fields are ignored (clients send vendor extensions); wrong types are rejected
(strict mode: ``"1"`` is not an integer). Responses are typed in ``openai_responses.py``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from service.core.generation import Message, conversation

_REQUEST_CONFIG = ConfigDict(extra="ignore", strict=True)


class TextContentPart(BaseModel):
    """A ``{"type": "text", "text": ...}`` content part; other part types are refused."""

    model_config = _REQUEST_CONFIG
    type: Literal["text"]
    text: StrictStr


class ChatMessageIn(BaseModel):
    """One message of a chat request."""

    model_config = _REQUEST_CONFIG
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextContentPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        """The message content flattened to text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def to_message(self) -> Message:
        """The internal message: the one conversion from the wire."""
        return Message(role=self.role, content=self.text())


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` is honoured."""

    model_config = _REQUEST_CONFIG
    include_usage: bool = False


class VerificationOptions(BaseModel):
    """Gateway extension: what to include in the ``verification`` object."""

    model_config = _REQUEST_CONFIG
    nearest_exemplars: int = Field(0, ge=0, le=1000)


StopField = StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None


class _SamplingFields(BaseModel):
    model_config = _REQUEST_CONFIG
    model: StrictStr | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: StopField = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=16)
    user: StrictStr | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    verification: VerificationOptions | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        """``stop`` as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        return self

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the deprecated ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions`` (one prompt)."""

    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False

    def prompt_text(self) -> str:
        """The single prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int | None:
        """``max_tokens``."""
        return self.max_tokens

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value


class VerifyRequest(BaseModel):
    """``POST /v1/verify``: verify a given answer without generating."""

    model_config = _REQUEST_CONFIG
    model: StrictStr | None = None
    messages: list[ChatMessageIn] | None = Field(None, min_length=1)
    prompt: StrictStr | None = None
    response: StrictStr
    nearest_exemplars: int = Field(0, ge=0, le=1000)

    @model_validator(mode="after")
    def _one_question(self) -> VerifyRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages and prompt")
        return self

    def conversation(self) -> tuple[Message, ...]:
        """The conversation the answer replies to."""
        messages = None if self.messages is None else tuple(m.to_message() for m in self.messages)
        return conversation(messages, self.prompt)


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a label on one answer of a request the gateway served."""

    model_config = _REQUEST_CONFIG
    request_id: StrictStr = Field(
        min_length=1, max_length=128, description="the x-request-id header or the body's id"
    )
    label: Literal["correct", "incorrect"]
    choice: int = Field(0, ge=0, le=127, description="which of the n answers")
    note: StrictStr | None = Field(None, max_length=4000)
