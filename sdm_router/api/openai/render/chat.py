"""``chat.completion`` responses and ``chat.completion.chunk`` events (JSON-ready dicts shaped
as ``ChatCompletion`` / ``ChatCompletionChunk``; see ``sdm_router.api.openai.render.base``)."""

from __future__ import annotations

from sdm_router.api.openai.render.base import ChunkRenderer, JSONObject, RenderContext
from sdm_router.api.openai.render.sse import sse
from sdm_router.api.openai.render.verification import usage_out, verification_of
from sdm_router.core.generation import Candidate, StreamDelta, TokenLogprob, ToolCallDelta
from sdm_router.pipeline.serving import Served


def _token_logprob(token: TokenLogprob, top: int) -> JSONObject:
    return {
        "token": token.token,
        "logprob": token.logprob,
        "bytes": list(token.token.encode("utf-8")),
        "top_logprobs": [
            {"token": alt.token, "logprob": alt.logprob, "bytes": list(alt.token.encode("utf-8"))}
            for alt in token.top_logprobs[:top]
        ],
    }


def chat_logprobs(
    tokens: tuple[TokenLogprob, ...] | None, top: int, *, streamed: bool = False
) -> JSONObject | None:
    """``choices[i].logprobs`` of a chat completion (a stream chunk's leaves ``refusal`` out)."""
    if tokens is None:
        return None
    content = [_token_logprob(token, top) for token in tokens]
    return {"content": content} if streamed else {"content": content, "refusal": None}


def assistant_message(candidate: Candidate) -> JSONObject:
    """The message of a choice: its text, and its tool calls (then a missing text is null); an
    abstention in the refusal shape has ``content: null`` and the sentence in ``refusal``."""
    if candidate.refusal is not None:
        return {"role": "assistant", "content": None, "refusal": candidate.refusal}
    if not candidate.tool_calls:
        return {"role": "assistant", "content": candidate.text, "refusal": None}
    return {
        "role": "assistant",
        "content": candidate.text or None,
        "refusal": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in candidate.tool_calls
        ],
    }


def tool_call_delta(piece: ToolCallDelta) -> JSONObject:
    """A streamed tool call piece: ``id``, ``type`` and ``name`` only where the piece has them."""
    function: JSONObject = {"arguments": piece.arguments}
    if piece.name is not None:
        function = {"name": piece.name, "arguments": piece.arguments}
    out: JSONObject = {"index": piece.index}
    if piece.id is not None:
        out["id"], out["type"] = piece.id, "function"
    out["function"] = function
    return out


class ChatRenderer(ChunkRenderer[JSONObject]):
    """Renders ``/v1/chat/completions``."""

    id_prefix = "chatcmpl"

    def response(self, context: RenderContext, served: Served) -> JSONObject:
        """A non-streamed ``chat.completion``."""
        return {
            "id": context.response_id,
            "object": "chat.completion",
            "created": context.created,
            "model": served.model,
            "choices": [
                {
                    "index": index,
                    "message": assistant_message(candidate),
                    "logprobs": chat_logprobs(candidate.token_logprobs, context.top_logprobs)
                    if context.logprobs
                    else None,
                    "finish_reason": candidate.finish_reason,
                }
                for index, candidate in enumerate(served.candidates)
            ],
            "usage": usage_out(served.result.usage),
            "system_fingerprint": None,
            "verification": verification_of(served, context.nearest_exemplars),
        }

    def chunk(self, context: RenderContext, model: str, choices: list[JSONObject]) -> JSONObject:
        """A ``chat.completion.chunk``."""
        chunk: JSONObject = {
            "id": context.response_id,
            "object": "chat.completion.chunk",
            "created": context.created,
            "model": model,
            "choices": choices,
            "system_fingerprint": None,
        }
        if context.include_usage:
            chunk["usage"] = None
        return chunk

    def opening(self, context: RenderContext, model: str, choices: int) -> bytes:
        """The role-carrying first chunk."""
        opening = [
            {
                "index": i,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
            for i in range(choices)
        ]
        return sse(self.chunk(context, model, opening))

    def piece_choice(self, context: RenderContext, delta: StreamDelta) -> JSONObject:
        """New text or tool call pieces of a choice (with logprobs when they were asked for)."""
        logprobs = None
        if context.logprobs and delta.token_logprobs:
            logprobs = chat_logprobs(
                tuple(delta.token_logprobs), context.top_logprobs, streamed=True
            )
        content: JSONObject = {"content": delta.text}
        if delta.refusal:
            content = {"refusal": delta.refusal}
        elif delta.tool_calls:
            calls = [tool_call_delta(piece) for piece in delta.tool_calls]
            content = (
                {"content": delta.text, "tool_calls": calls}
                if delta.text
                else {"tool_calls": calls}
            )
        return {"index": delta.index, "delta": content, "logprobs": logprobs, "finish_reason": None}

    def finish_choice(self, index: int, reason: str) -> JSONObject:
        """The end of a choice."""
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}
