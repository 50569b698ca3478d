"""OpenAI request bodies as validated models, with OpenAI's field names.

Unknown top-level fields are noted (``RequestOptions.unrecognized``: a 400 unless the route has
``drop_params``); unknown nested fields are ignored; wrong types are rejected
(strict mode: ``"1"`` is not an integer). Responses are typed in ``openai_responses.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sdm_router.core.embeddings import EmbeddingRequest
from sdm_router.core.generation import Message, RequestOptions, ToolCall, conversation

_REQUEST_CONFIG = ConfigDict(extra="ignore", strict=True)


class TextContentPart(BaseModel):
    """A ``{"type": "text", "text": ...}`` content part; other part types are refused."""

    model_config = _REQUEST_CONFIG
    type: Literal["text"]
    text: StrictStr


class FunctionCallIn(BaseModel):
    """The function of a tool call in the history: its name and its JSON arguments (a text)."""

    model_config = _REQUEST_CONFIG
    name: StrictStr
    arguments: StrictStr


class ToolCallIn(BaseModel):
    """A tool call of an assistant message in the history."""

    model_config = _REQUEST_CONFIG
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCallIn


def _check_content(value: object) -> object:
    """One message naming a content part type the gateway does not take (``image_url``...)."""
    if isinstance(value, list):
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind != "text":
                raise ValueError(
                    f"content parts of type {kind!r} are not supported; only 'text' parts are"
                )
    return value


ContentField = Annotated[StrictStr | list[TextContentPart] | None, BeforeValidator(_check_content)]


class ChatMessageIn(BaseModel):
    """One message of a chat request. An assistant turn may carry ``tool_calls`` (its content may
    then be null); a ``tool`` turn answers the call its ``tool_call_id`` names."""

    model_config = _REQUEST_CONFIG
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: ContentField = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None

    @field_validator("tool_calls")
    @classmethod
    def _calls_are_the_assistants(
        cls, value: list[ToolCallIn] | None, info: ValidationInfo
    ) -> list[ToolCallIn] | None:
        if value and info.data.get("role", "assistant") != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return value

    @model_validator(mode="after")
    def _tool_turn_names_its_call(self) -> ChatMessageIn:
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        return self

    def text(self) -> str:
        """The message content flattened to text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def to_message(self) -> Message:
        """The internal message: the one conversion from the wire."""
        calls = tuple(
            ToolCall(call.id, call.function.name, call.function.arguments)
            for call in self.tool_calls or ()
        )
        return Message(
            role=self.role,
            content=self.text(),
            tool_calls=calls,
            tool_call_id=self.tool_call_id,
            name=self.name,
        )


class FunctionDefinition(BaseModel):
    """A function the model may call: its name, what it does, its JSON-schema ``parameters``."""

    model_config = _REQUEST_CONFIG
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(BaseModel):
    """One entry of ``tools``: only ``function`` tools exist in chat completions here."""

    model_config = _REQUEST_CONFIG
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    """The function a named ``tool_choice`` forces."""

    model_config = _REQUEST_CONFIG
    name: StrictStr


class NamedToolChoice(BaseModel):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    model_config = _REQUEST_CONFIG
    type: Literal["function"]
    function: NamedFunction


class TextFormat(BaseModel):
    """``response_format: {"type": "text"}``: the default."""

    model_config = _REQUEST_CONFIG
    type: Literal["text"]


class JSONObjectFormat(BaseModel):
    """``response_format: {"type": "json_object"}``: JSON mode."""

    model_config = _REQUEST_CONFIG
    type: Literal["json_object"]


class JSONSchemaSpec(BaseModel):
    """The schema of structured outputs (``schema`` is the JSON schema itself)."""

    model_config = _REQUEST_CONFIG
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class JSONSchemaFormat(BaseModel):
    """``response_format: {"type": "json_schema", "json_schema": {...}}``: structured outputs."""

    model_config = _REQUEST_CONFIG
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")
]
Penalty = Annotated[float, Field(ge=-2, le=2)]
TokenId = Annotated[str, Field(pattern=r"^[0-9]+$")]
Bias = Annotated[int, Field(ge=-100, le=100)]

# Fields of the OpenAI API the gateway implements for no backend: refused when set (400
# ``unsupported_parameter``) unless the route has ``drop_params: true``. A null, and the values
# listed in ``_NEUTRAL``, change nothing and are accepted.
UNSUPPORTED_CHAT_FIELDS = (
    "audio",
    "functions",
    "function_call",
    "modalities",
    "moderation",
    "prediction",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
)
UNSUPPORTED_COMPLETION_FIELDS = ("best_of", "suffix")
_NEUTRAL: dict[str, tuple[object, ...]] = {"modalities": (["text"],), "best_of": (1,)}


# Fields of the OpenAI API that change nothing the gateway does, accepted and not forwarded.
IGNORED_FIELDS = frozenset(
    {
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
    }
)


def unrecognized_fields(data: object, known: frozenset[str]) -> tuple[str, ...]:
    """The top-level keys of ``data`` (a request body) that are neither ``known`` nor ignored."""
    if not isinstance(data, dict):
        return ()
    return tuple(sorted(str(key) for key in data if key not in known | IGNORED_FIELDS))


def unsupported_fields(data: object, names: tuple[str, ...]) -> tuple[str, ...]:
    """The ``names`` that ``data`` (a request body) sets to a value that is not neutral."""
    if not isinstance(data, dict):
        return ()
    return tuple(
        name
        for name in names
        if data.get(name) is not None and data[name] not in _NEUTRAL.get(name, ())
    )


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` is honoured."""

    model_config = _REQUEST_CONFIG
    include_usage: bool = False


class VerificationOptions(BaseModel):
    """Gateway extension: what to include in the ``verification`` object."""

    model_config = _REQUEST_CONFIG
    nearest_exemplars: int = Field(0, ge=0, le=1000)


MAX_STOP = 4


def _check_stop(value: object) -> object:
    """One message for any wrong ``stop``: what it must be, not which union branch failed."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"stop must be a string or a list of up to {MAX_STOP} strings")
    if len(value) > MAX_STOP:
        raise ValueError(f"stop takes at most {MAX_STOP} sequences; {len(value)} were given")
    return value


StopField = Annotated[
    StrictStr | Annotated[list[StrictStr], Field(max_length=MAX_STOP)] | None,
    BeforeValidator(_check_stop),
]


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
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[TokenId, Bias] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    verification: VerificationOptions | None = None
    _unsupported: tuple[str, ...] = PrivateAttr(default=())
    _unrecognized: tuple[str, ...] = PrivateAttr(default=())
    UNSUPPORTED: ClassVar[tuple[str, ...]] = ()  # the API fields this endpoint implements nowhere

    @model_validator(mode="wrap")
    @classmethod
    def _note_unsupported(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        model._unsupported = unsupported_fields(data, cls.UNSUPPORTED)
        known = frozenset(cls.model_fields) | frozenset(cls.UNSUPPORTED)
        model._unrecognized = unrecognized_fields(data, known)
        return model

    def options(self) -> RequestOptions:
        """The fields beyond sampling, for the pipeline."""
        return RequestOptions(
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias=self.logit_bias,
            unsupported=self._unsupported,
            unrecognized=self._unrecognized,
        )

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

    UNSUPPORTED = UNSUPPORTED_CHAT_FIELDS
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @field_validator("tool_choice", "parallel_tool_calls")
    @classmethod
    def _only_with_tools(cls, value: object, info: ValidationInfo) -> object:
        if value is None or "tools" not in info.data:  # tools itself failed validation
            return value
        tools: list[ToolIn] | None = info.data["tools"]
        if not tools:
            raise ValueError(f"{info.field_name} is only allowed when tools are given")
        if isinstance(value, NamedToolChoice) and value.function.name not in {
            tool.function.name for tool in tools
        }:
            raise ValueError(f"no tool is named {value.function.name!r}")
        return value

    def options(self) -> RequestOptions:
        """The fields beyond sampling, for the pipeline (tools and formats as JSON objects)."""
        choice = self.tool_choice
        return replace(
            super().options(),
            tools=tuple(tool.model_dump(exclude_none=True) for tool in self.tools)
            if self.tools
            else None,  # an empty list is no tools
            tool_choice=choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
            parallel_tool_calls=self.parallel_tool_calls,
            response_format=None
            if self.response_format is None
            else self.response_format.model_dump(by_alias=True, exclude_none=True),
        )

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

    UNSUPPORTED = UNSUPPORTED_COMPLETION_FIELDS
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
        """The conversation the answer replies to, tool calls written as text (``name(args)``,
        as the cascade's verifier reads them)."""
        messages = (
            None
            if self.messages is None
            else tuple(m.to_message().as_text() for m in self.messages)
        )
        return conversation(messages, self.prompt)


MAX_EMBEDDING_INPUTS = 2048


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: proxied to the backend the ``embeddings`` config maps
    ``model`` to."""

    model_config = _REQUEST_CONFIG
    model: StrictStr
    input: StrictStr | list[StrictStr] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: StrictStr | None = None

    @field_validator("input")
    @classmethod
    def _something_to_embed(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        empty_item = isinstance(value, list) and any(
            isinstance(item, str | list) and not item for item in value
        )
        if not value or empty_item:
            raise ValueError("the input and each of its items must not be empty")
        if isinstance(value, list) and len(value) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
        return value

    def to_request(self) -> EmbeddingRequest:
        """The internal request (``model`` still the client's name)."""
        return EmbeddingRequest(
            model=self.model,
            input=self.input,
            encoding_format=self.encoding_format,
            dimensions=self.dimensions,
            user=self.user,
        )
