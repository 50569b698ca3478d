"""The Backend protocol: one generating model the pipeline can call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from sdm_router.core.embeddings import EmbeddingRequest, Embeddings
from sdm_router.core.generation import Generation, GenerationRequest, Param, StreamDelta


@runtime_checkable
class Backend(Protocol):
    """A model that generates answers.

    Implementations translate their own failures into ``UpstreamError``/``UpstreamTimeout``/
    ``NoHealthyBackend`` from ``sdm_router.core.errors`` at the boundary, by exception type.
    Cancelling the awaiting task must cancel the upstream work.

    Every backend honours the core sampling parameters (``max_tokens``, ``temperature``,
    ``top_p``, ``n``, ``logprobs``, ``top_logprobs``); ``capabilities`` declares which of the
    optional ones (``Param``) it honours too. The pipeline refuses a request that uses any other
    (400 naming the parameter), or drops them for a route with ``drop_params: true``, so a
    backend never sees a parameter it cannot honour.
    """

    @property
    def name(self) -> str:
        """The model id clients use for this backend as a direct model."""
        ...

    @property
    def capabilities(self) -> frozenset[Param]:
        """The optional request parameters this backend honours."""
        ...

    @property
    def device(self) -> str:
        """Where it runs: ``cpu``, ``cuda:0`` or ``remote``."""
        ...

    async def start(self) -> None:
        """Load weights or open connection pools. Called once at start-up."""
        ...

    async def close(self) -> None:
        """Release everything ``start`` acquired."""
        ...

    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate ``request.params.n`` candidates."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Stream one candidate's text as it is generated (``n`` must be 1)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """A backend that also serves ``/v1/embeddings`` (an OpenAI-compatible upstream)."""

    @property
    def name(self) -> str:
        """The backend's name in the config."""
        ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Embed ``request.input`` with ``request.model``."""
        ...
