"""``response`` objects of ``POST /v1/responses`` (the Responses API's shape), non-streamed.

An abstention in the refusal shape is a ``refusal`` content part; tool calls are
``function_call`` output items; a cut answer is ``status: incomplete``.
"""

from __future__ import annotations

import os
from typing import Any

from sdm_router.api.openai.render.base import JSONObject, RenderContext
from sdm_router.api.openai.render.verification import verification_of
from sdm_router.api.openai.wire_responses import ResponsesRequest
from sdm_router.core.generation import Candidate, StreamDelta, Usage
from sdm_router.pipeline.serving import Served


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def output_items(candidate: Candidate) -> list[JSONObject]:
    """The output items of one answer: its message (text or refusal), then its calls."""
    items: list[JSONObject] = []
    content: list[JSONObject] = []
    if candidate.refusal is not None:
        content.append({"type": "refusal", "refusal": candidate.refusal})
    elif candidate.text or not candidate.tool_calls:
        content.append(
            {"type": "output_text", "text": candidate.text, "annotations": [], "logprobs": []}
        )
    if content:
        items.append(
            {
                "type": "message",
                "id": _id("msg"),
                "status": "completed",
                "role": "assistant",
                "content": content,
            }
        )
    items += [
        {
            "type": "function_call",
            "id": _id("fc"),
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        for call in candidate.tool_calls
    ]
    return items


class ResponsesRenderer:
    """Renders one ``/v1/responses`` request's answer, echoing the request's settings."""

    id_prefix = "resp"

    def __init__(self, body: ResponsesRequest) -> None:
        self._body = body

    def response(self, context: RenderContext, served: Served) -> JSONObject:
        """The ``response`` object."""
        body = self._body
        candidate = served.candidates[0] if served.candidates else Candidate(text="")
        cut = candidate.finish_reason == "length"
        usage = served.result.usage
        text: dict[str, Any] = body.text or {"format": {"type": "text"}}
        return {
            "id": context.response_id.replace("resp-", "resp_", 1),
            "object": "response",
            "created_at": context.created,
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "error": None,
            "model": served.model,
            "instructions": body.instructions,
            "output": output_items(candidate),
            "max_output_tokens": body.max_output_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tools": [tool.model_dump(exclude_none=True) for tool in body.tools or ()],
            "tool_choice": body.tool_choice or "auto",
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "text": text,
            "metadata": body.metadata or {},
            "store": False,
            "previous_response_id": None,
            "user": body.user,
            "usage": {
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.total_tokens,
            },
            "verification": verification_of(served, context.nearest_exemplars),
        }

    # A stream is the rendered response replayed (render/responses_stream.py): never called.
    def opening(self, context: RenderContext, model: str, choices: int) -> bytes | None:
        """Not streamed (see the class)."""
        raise NotImplementedError

    def piece(self, context: RenderContext, model: str, delta: StreamDelta) -> bytes:
        """Not streamed (see the class)."""
        raise NotImplementedError

    def finish(
        self,
        context: RenderContext,
        model: str,
        index: int,
        reason: str,
        verification: JSONObject | None,
    ) -> bytes:
        """Not streamed (see the class)."""
        raise NotImplementedError

    def usage(
        self, context: RenderContext, model: str, usage: Usage, verification: JSONObject
    ) -> bytes:
        """Not streamed (see the class)."""
        raise NotImplementedError
