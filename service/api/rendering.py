"""What every renderer of a generation endpoint shares: per-request choices and the protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from service.core.generation import StreamDelta, Usage
from service.core.openai_responses import Verification
from service.pipeline.serving import Served


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
