"""The Backend protocol: one generating model the pipeline can call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from service.core.generation import Generation, GenerationRequest, StreamDelta


@runtime_checkable
class Backend(Protocol):
    """A model that generates answers.

    Implementations translate their own failures into ``UpstreamError``/``UpstreamTimeout``/
    ``NoHealthyBackend`` from ``service.core.errors`` at the boundary, by exception type.
    Cancelling the awaiting task must cancel the upstream work.
    """

    @property
    def name(self) -> str:
        """The model id clients use for this backend as a direct model."""
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
