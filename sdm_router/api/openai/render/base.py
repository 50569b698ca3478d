"""What every renderer of a generation endpoint shares: per-request choices and the protocol.

Renderers build JSON-ready dicts, serialized with orjson (:func:`json_bytes`, and
``sdm_router.api.openai.render.sse.sse`` for stream events). They follow the models of
``sdm_router.api.openai.responses`` (which document the responses in ``/openapi.json``) key for
key and in field order: a non-streamed body carries every field, defaults included (the
models' ``model_dump_json()``), a stream chunk only the fields it sets (``exclude_unset``). The
values are ones we computed with the models' types, so building the models per request would
only validate what we built ourselves; ``tests/unit/api/test_render.py`` checks every shape
against the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from sdm_router.api.openai.render.sse import sse
from sdm_router.api.openai.render.verification import usage_out
from sdm_router.core.generation import StreamDelta, Usage
from sdm_router.pipeline.serving import Served

JSONObject = dict[str, Any]
ChoiceT = TypeVar("ChoiceT", bound=JSONObject)


def json_bytes(body: JSONObject) -> bytes:
    """A rendered body as JSON bytes."""
    return orjson.dumps(body)


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

    def response(self, context: RenderContext, served: Served) -> JSONObject:
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
        verification: JSONObject | None,
    ) -> bytes:
        """The chunk that ends choice ``index`` (carrying ``verification`` when it is last)."""

    def usage(
        self, context: RenderContext, model: str, usage: Usage, verification: JSONObject
    ) -> bytes:
        """The usage chunk: no choices, the request's usage and the verdict."""


class ChunkRenderer(Generic[ChoiceT]):
    """The stream chunks every format builds the same way; a format supplies the envelope
    (``chunk``) and its choice objects (``piece_choice``, ``finish_choice``)."""

    def chunk(self, context: RenderContext, model: str, choices: list[ChoiceT]) -> JSONObject:
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
        verification: JSONObject | None,
    ) -> bytes:
        """The chunk that ends a choice, carrying ``verification`` when it is the last one."""
        chunk = self.chunk(context, model, [self.finish_choice(index, reason)])
        if verification is not None:
            chunk["verification"] = verification
        return sse(chunk)

    def usage(
        self, context: RenderContext, model: str, usage: Usage, verification: JSONObject
    ) -> bytes:
        """The usage chunk: no choices, the request's usage and the verdict."""
        chunk = self.chunk(context, model, [])
        chunk["usage"] = usage_out(usage)
        chunk["verification"] = verification
        return sse(chunk)
