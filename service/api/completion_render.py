"""Legacy ``text_completion`` responses and their stream chunks."""

from __future__ import annotations

from service.api.rendering import RenderContext
from service.api.sse import sse
from service.api.verification_render import usage_out, verification_of
from service.core.generation import StreamDelta, TokenLogprob, Usage
from service.core.openai_responses import (
    CompletionChoice,
    CompletionLogprobs,
    TextCompletion,
    Verification,
)
from service.pipeline.serving import Served


def completion_logprobs(
    tokens: tuple[TokenLogprob, ...] | None, top: int
) -> CompletionLogprobs | None:
    """``choices[i].logprobs`` of a legacy completion."""
    if tokens is None:
        return None
    offsets: list[int] = []
    position = 0
    for token in tokens:
        offsets.append(position)
        position += len(token.token)
    return CompletionLogprobs(
        tokens=[token.token for token in tokens],
        token_logprobs=[token.logprob for token in tokens],
        top_logprobs=[
            {alt.token: alt.logprob for alt in token.top_logprobs[:top]} for token in tokens
        ]
        if top
        else None,
        text_offset=offsets,
    )


class CompletionRenderer:
    """Renders ``/v1/completions``."""

    id_prefix = "cmpl"

    def response(self, context: RenderContext, served: Served) -> TextCompletion:
        """A non-streamed ``text_completion``."""
        return TextCompletion(
            id=context.response_id,
            created=context.created,
            model=served.model,
            choices=[
                CompletionChoice(
                    index=index,
                    text=candidate.text,
                    logprobs=completion_logprobs(candidate.token_logprobs, context.top_logprobs)
                    if context.logprobs
                    else None,
                    finish_reason=candidate.finish_reason,
                )
                for index, candidate in enumerate(served.candidates)
            ],
            usage=usage_out(served.result.usage),
            verification=verification_of(served, context.nearest_exemplars),
        )

    def _chunk(
        self, context: RenderContext, model: str, choices: list[CompletionChoice]
    ) -> TextCompletion:
        optional = {"usage": None} if context.include_usage else {}
        return TextCompletion(
            id=context.response_id,
            object="text_completion",
            created=context.created,
            model=model,
            choices=choices,
            **optional,
        )

    def opening(self, context: RenderContext, model: str, choices: int) -> None:
        """Legacy completions have no opening chunk."""
        return None

    def piece(self, context: RenderContext, model: str, delta: StreamDelta) -> bytes:
        """A content chunk."""
        logprobs = None
        if context.logprobs and delta.token_logprobs:
            logprobs = completion_logprobs(tuple(delta.token_logprobs), context.top_logprobs)
        choice = CompletionChoice(
            index=delta.index, text=delta.text, logprobs=logprobs, finish_reason=None
        )
        return sse(self._chunk(context, model, [choice]))

    def finish(
        self,
        context: RenderContext,
        model: str,
        index: int,
        reason: str,
        verification: Verification | None,
    ) -> bytes:
        """The chunk that ends a choice."""
        choice = CompletionChoice(index=index, text="", logprobs=None, finish_reason=reason)
        chunk = self._chunk(context, model, [choice])
        chunk.verification = verification
        return sse(chunk)

    def usage(
        self, context: RenderContext, model: str, usage: Usage, verification: Verification
    ) -> bytes:
        """The usage chunk."""
        chunk = self._chunk(context, model, [])
        chunk.usage = usage_out(usage)
        chunk.verification = verification
        return sse(chunk)
