"""``chat.completion`` responses and ``chat.completion.chunk`` events."""

from __future__ import annotations

from service.api.rendering import ChunkRenderer, RenderContext
from service.api.sse import sse
from service.api.verification_render import usage_out, verification_of
from service.core.generation import Candidate, StreamDelta, TokenLogprob, ToolCallDelta
from service.core.openai_responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
    FunctionCallDeltaOut,
    FunctionCallOut,
    TokenLogprobOut,
    ToolCallDeltaOut,
    ToolCallOut,
    TopLogprobOut,
)
from service.pipeline.serving import Served


def chat_logprobs(tokens: tuple[TokenLogprob, ...] | None, top: int) -> ChatLogprobs | None:
    """``choices[i].logprobs`` of a chat completion."""
    if tokens is None:
        return None
    return ChatLogprobs(
        content=[
            TokenLogprobOut(
                token=token.token,
                logprob=token.logprob,
                bytes=list(token.token.encode("utf-8")),
                top_logprobs=[
                    TopLogprobOut(
                        token=alt.token, logprob=alt.logprob, bytes=list(alt.token.encode("utf-8"))
                    )
                    for alt in token.top_logprobs[:top]
                ],
            )
            for token in tokens
        ]
    )


def assistant_message(candidate: Candidate) -> AssistantMessage:
    """The message of a choice: its text, and its tool calls (then a missing text is null)."""
    if not candidate.tool_calls:
        return AssistantMessage(content=candidate.text)
    return AssistantMessage(
        content=candidate.text or None,
        tool_calls=[
            ToolCallOut(
                id=call.id, function=FunctionCallOut(name=call.name, arguments=call.arguments)
            )
            for call in candidate.tool_calls
        ],
    )


def tool_call_delta(piece: ToolCallDelta) -> ToolCallDeltaOut:
    """A streamed tool call piece: ``id``, ``type`` and ``name`` only where the piece has them."""
    function = FunctionCallDeltaOut(arguments=piece.arguments)
    if piece.name is not None:
        function.name = piece.name
    out = ToolCallDeltaOut(index=piece.index, function=function)
    if piece.id is not None:
        out.id, out.type = piece.id, "function"
    return out


class ChatRenderer(ChunkRenderer[ChatCompletionChunk, ChatChunkChoice]):
    """Renders ``/v1/chat/completions``."""

    id_prefix = "chatcmpl"

    def response(self, context: RenderContext, served: Served) -> ChatCompletion:
        """A non-streamed ``chat.completion``."""
        return ChatCompletion(
            id=context.response_id,
            created=context.created,
            model=served.model,
            choices=[
                ChatChoice(
                    index=index,
                    message=assistant_message(candidate),
                    logprobs=chat_logprobs(candidate.token_logprobs, context.top_logprobs)
                    if context.logprobs
                    else None,
                    finish_reason=candidate.finish_reason,
                )
                for index, candidate in enumerate(served.candidates)
            ],
            usage=usage_out(served.result.usage),
            verification=verification_of(served, context.nearest_exemplars),
        )

    def chunk(
        self, context: RenderContext, model: str, choices: list[ChatChunkChoice]
    ) -> ChatCompletionChunk:
        """A ``chat.completion.chunk``."""
        optional = {"usage": None} if context.include_usage else {}
        return ChatCompletionChunk(
            id=context.response_id,
            object="chat.completion.chunk",
            created=context.created,
            model=model,
            choices=choices,
            system_fingerprint=None,
            **optional,
        )

    def opening(self, context: RenderContext, model: str, choices: int) -> bytes:
        """The role-carrying first chunk."""
        opening = [
            ChatChunkChoice(
                index=i,
                delta=ChatDelta(role="assistant", content=""),
                logprobs=None,
                finish_reason=None,
            )
            for i in range(choices)
        ]
        return sse(self.chunk(context, model, opening))

    def piece_choice(self, context: RenderContext, delta: StreamDelta) -> ChatChunkChoice:
        """New text or tool call pieces of a choice (with logprobs when they were asked for)."""
        logprobs = None
        if context.logprobs and delta.token_logprobs:
            logprobs = chat_logprobs(tuple(delta.token_logprobs), context.top_logprobs)
        content = ChatDelta(content=delta.text)
        if delta.tool_calls:
            content = ChatDelta(tool_calls=[tool_call_delta(piece) for piece in delta.tool_calls])
            if delta.text:
                content.content = delta.text
        return ChatChunkChoice(
            index=delta.index,
            delta=content,
            logprobs=logprobs,
            finish_reason=None,
        )

    def finish_choice(self, index: int, reason: str) -> ChatChunkChoice:
        """The end of a choice."""
        return ChatChunkChoice(index=index, delta=ChatDelta(), logprobs=None, finish_reason=reason)
