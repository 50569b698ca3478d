"""``POST /v1/responses`` request bodies, translated to the chat request the one serving path
takes (``to_chat``): instructions and input items become messages, flat function tools become
chat tools, ``text.format`` becomes ``response_format``, ``max_output_tokens`` the token limit.

Conversation state is not kept: ``store: true`` and ``previous_response_id`` are 400s (send the
whole conversation as ``input`` items). A stream is served verified, then replayed as events
(``render/responses_stream.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from sdm_router.api.errors import validation_error
from sdm_router.api.openai.wire import ChatCompletionRequest
from sdm_router.core.errors import InvalidRequest

_CONFIG = ConfigDict(extra="allow", strict=True)
_PART_TYPES = ("input_text", "output_text", "text")
# Responses fields the gateway does not implement, at values that change nothing (what SDKs
# send by default): accepted. Null is always accepted; any other value is refused by name.
_NEUTRAL: dict[str, tuple[object, ...]] = {
    "include": ([],),
    "truncation": ("disabled",),
    "background": (False,),
    "top_logprobs": (0,),
    "reasoning": ({},),
}


class FunctionTool(BaseModel):
    """A Responses function tool (flat: ``name`` and ``parameters`` at the top)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["function"]
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``: the fields the gateway honours; any other top-level field is
    carried to the chat request, where it is refused by name (or dropped: ``drop_params``)."""

    model_config = _CONFIG
    model: StrictStr | None = None
    input: StrictStr | list[dict[str, Any]]
    instructions: StrictStr | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, StrictStr] | None = None
    user: StrictStr | None = None
    store: bool | None = None
    previous_response_id: StrictStr | None = None
    stream: bool = False
    verification: dict[str, Any] | None = None

    def to_chat(self) -> ChatCompletionRequest:
        """The chat request this response is served as (400 naming a field it cannot honour)."""
        if self.store:
            raise InvalidRequest(
                "store: true is not supported: the gateway keeps no response state; send "
                "store: false (or leave it out) and the whole conversation as input items",
                param="store",
                code="unsupported_parameter",
            )
        if self.previous_response_id is not None:
            raise InvalidRequest(
                "previous_response_id is not supported: the gateway keeps no response state; "
                "send the whole conversation as input items",
                param="previous_response_id",
                code="unsupported_parameter",
            )
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self._messages(),
            **{  # other fields: refused by name downstream, unless null or neutral
                name: value
                for name, value in (self.model_extra or {}).items()
                if value is not None and value not in _NEUTRAL.get(name, ())
            },
        }
        optional: dict[str, Any] = {
            "max_completion_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "parallel_tool_calls": self.parallel_tool_calls,
            "user": self.user,
            "verification": self.verification,
            "tools": [
                {
                    "type": "function",
                    "function": tool.model_dump(exclude={"type"}, exclude_none=True),
                }
                for tool in self.tools
            ]
            if self.tools
            else None,
            "tool_choice": self._tool_choice(),
            "response_format": self._response_format(),
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        try:
            return ChatCompletionRequest.model_validate(body)
        except ValidationError as error:  # named by the chat field it became
            raise validation_error(RequestValidationError(error.errors())) from None

    def _tool_choice(self) -> object:
        choice = self.tool_choice
        if isinstance(choice, dict):
            if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
                raise InvalidRequest(
                    'tool_choice must be none, auto, required or {"type": "function", "name": ...}',
                    param="tool_choice",
                )
            return {"type": "function", "function": {"name": choice["name"]}}
        return choice

    def _response_format(self) -> dict[str, Any] | None:
        if self.text is None:
            return None
        unknown = sorted(set(self.text) - {"format", "verbosity"})
        if unknown or self.text.get("verbosity") not in (None, "medium"):
            name = unknown[0] if unknown else "verbosity"
            raise InvalidRequest(f"text.{name} is not supported", param=f"text.{name}")
        fmt = self.text.get("format")
        if fmt is None:
            return None
        if not isinstance(fmt, dict) or fmt.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            raise InvalidRequest(
                "text.format.type must be text, json_object or json_schema", param="text.format"
            )
        if fmt["type"] != "json_schema":
            return {"type": fmt["type"]}
        spec = {key: value for key, value in fmt.items() if key != "type"}
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise InvalidRequest(
                "text.format.name is required for json_schema", param="text.format.name"
            )
        return {"type": "json_schema", "json_schema": spec}

    def _messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            return [*messages, {"role": "user", "content": self.input}]
        for index, item in enumerate(self.input):
            messages.extend(_item_messages(item, f"input[{index}]", messages))
        if not messages:
            raise InvalidRequest("input must not be empty", param="input")
        return messages


def _item_messages(
    item: dict[str, Any], path: str, so_far: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The chat messages of one input item (a function call joins the assistant turn before
    it, as chat keeps parallel calls in one message)."""
    kind = item.get("type", "message")
    if kind == "message":
        return [{"role": item.get("role"), "content": _content(item.get("content"), path)}]
    if kind == "function_call":
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments")},
        }
        last = so_far[-1] if so_far else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
            return []
        return [{"role": "assistant", "content": None, "tool_calls": [call]}]
    if kind == "function_call_output":
        output = item.get("output")
        return [
            {"role": "tool", "tool_call_id": item.get("call_id"), "content": _content(output, path)}
        ]
    raise InvalidRequest(
        f"input item type {kind!r} is not supported (message, function_call, function_call_output)",
        param=f"{path}.type",
    )


def _content(content: object, path: str) -> object:
    """A string, or text parts joined; any other part type is a 400 naming it."""
    if not isinstance(content, list):
        return content
    texts: list[str] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _PART_TYPES or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"content part type {kind!r} is not supported (input_text, output_text)",
                param=f"{path}.content[{index}].type",
            )
        texts.append(part["text"])
    return "".join(texts)
