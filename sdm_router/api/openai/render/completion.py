"""Legacy ``text_completion`` responses and their stream chunks (JSON-ready dicts shaped as
``TextCompletion``; see ``sdm_router.api.openai.render.base``)."""

from __future__ import annotations

from sdm_router.api.openai.render.base import ChunkRenderer, JSONObject, RenderContext
from sdm_router.api.openai.render.verification import usage_out, verification_of
from sdm_router.core.generation import StreamDelta, TokenLogprob
from sdm_router.pipeline.serving import Served


def completion_logprobs(tokens: tuple[TokenLogprob, ...] | None, top: int) -> JSONObject | None:
    """``choices[i].logprobs`` of a legacy completion."""
    if tokens is None:
        return None
    offsets: list[int] = []
    position = 0
    for token in tokens:
        offsets.append(position)
        position += len(token.token)
    return {
        "tokens": [token.token for token in tokens],
        "token_logprobs": [token.logprob for token in tokens],
        "top_logprobs": [
            {alt.token: alt.logprob for alt in token.top_logprobs[:top]} for token in tokens
        ]
        if top
        else None,
        "text_offset": offsets,
    }


class CompletionRenderer(ChunkRenderer[JSONObject]):
    """Renders ``/v1/completions``."""

    id_prefix = "cmpl"

    def response(self, context: RenderContext, served: Served) -> JSONObject:
        """A non-streamed ``text_completion``."""
        return {
            "id": context.response_id,
            "object": "text_completion",
            "created": context.created,
            "model": served.model,
            "choices": [
                {
                    "index": index,
                    "text": candidate.text if candidate.refusal is None else candidate.refusal,
                    "logprobs": completion_logprobs(candidate.token_logprobs, context.top_logprobs)
                    if context.logprobs
                    else None,
                    "finish_reason": candidate.finish_reason,
                }
                for index, candidate in enumerate(served.candidates)
            ],
            "usage": usage_out(served.result.usage),
            "verification": verification_of(served, context.nearest_exemplars),
        }

    def chunk(self, context: RenderContext, model: str, choices: list[JSONObject]) -> JSONObject:
        """A ``text_completion`` stream chunk."""
        chunk: JSONObject = {
            "id": context.response_id,
            "object": "text_completion",
            "created": context.created,
            "model": model,
            "choices": choices,
        }
        if context.include_usage:
            chunk["usage"] = None
        return chunk

    def opening(self, context: RenderContext, model: str, choices: int) -> None:
        """Legacy completions have no opening chunk."""
        return None

    def piece_choice(self, context: RenderContext, delta: StreamDelta) -> JSONObject:
        """New text of a choice."""
        logprobs = None
        if context.logprobs and delta.token_logprobs:
            logprobs = completion_logprobs(tuple(delta.token_logprobs), context.top_logprobs)
        return {
            "index": delta.index,
            "text": delta.text or delta.refusal,
            "logprobs": logprobs,
            "finish_reason": None,
        }

    def finish_choice(self, index: int, reason: str) -> JSONObject:
        """The end of a choice."""
        return {"index": index, "text": "", "logprobs": None, "finish_reason": reason}
