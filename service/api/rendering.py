"""What every renderer of a generation endpoint shares: per-request choices and the protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from service.api.sse import sse
from service.api.verification_render import usage_out
from service.core.generation import StreamDelta, Usage
from service.core.openai_responses import (
    ChatChunkChoice,
    ChatCompletionChunk,
    CompletionChoice,
    TextCompletion,
    Verification,
)
from service.pipeline.serving import Served

ChunkT = TypeVar("ChunkT", ChatCompletionChunk, TextCompletion)
ChoiceT = TypeVar("ChoiceT", ChatChunkChoice, CompletionChoice)


@dataclass(frozen=True, slots=True)
class RenderContext:
    """Per-request rendering choices."""

    response_id: str
    created: int
    logprobs: bool
    top_logprobs: int
    include_usage: bool
    nearest_exemplars: int


class Renderer(Protocol):
    """Renders one endpoint family's responses and stream chunks (chat, or legacy completion)."""

    id_prefix: str

    def response(self, context: RenderContext, served: Served) -> BaseModel:
        """The non-streamed response body."""

    def opening(self, context: RenderContext, model: str, choices: int) -> bytes | None:
        """The first chunk of a stream, if the format has one."""

    def piece(self, context: RenderContext, model: str, delta: StreamDelta) -> bytes:
        """A content chunk."""

    def finish(
        self,
        context: RenderContext,
        model: str,
        index: int,
        reason: str,
        verification: Verification | None,
    ) -> bytes:
        """The chunk that ends choice ``index`` (carrying ``verification`` when it is last)."""

    def usage(
        self, context: RenderContext, model: str, usage: Usage, verification: Verification
    ) -> bytes:
        """The usage chunk: no choices, the request's usage and the verdict."""


class ChunkRenderer(Generic[ChunkT, ChoiceT]):
    """The stream chunks every format builds the same way; a format supplies the envelope
    (``chunk``) and its choice objects (``piece_choice``, ``finish_choice``)."""

    def chunk(self, context: RenderContext, model: str, choices: list[ChoiceT]) -> ChunkT:
        """A chunk carrying ``choices`` (``usage: null`` on each when ``include_usage``)."""
        raise NotImplementedError

    def piece_choice(self, context: RenderContext, delta: StreamDelta) -> ChoiceT:
        """The choice of a content chunk."""
        raise NotImplementedError

    def finish_choice(self, index: int, reason: str) -> ChoiceT:
        """The choice of the chunk that ends choice ``index``."""
        raise NotImplementedError

    def piece(self, context: RenderContext, model: str, delta: StreamDelta) -> bytes:
        """A content chunk."""
        return sse(self.chunk(context, model, [self.piece_choice(context, delta)]))

    def finish(
        self,
        context: RenderContext,
        model: str,
        index: int,
        reason: str,
        verification: Verification | None,
    ) -> bytes:
        """The chunk that ends a choice, carrying ``verification`` when it is the last one."""
        chunk = self.chunk(context, model, [self.finish_choice(index, reason)])
        chunk.verification = verification
        return sse(chunk)

    def usage(
        self, context: RenderContext, model: str, usage: Usage, verification: Verification
    ) -> bytes:
        """The usage chunk: no choices, the request's usage and the verdict."""
        chunk = self.chunk(context, model, [])
        chunk.usage = usage_out(usage)
        chunk.verification = verification
        return sse(chunk)
