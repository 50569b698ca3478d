"""The Retriever protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Passage:
    """A short text passage with its similarity score to the query (higher is closer)."""

    id: str
    text: str
    score: float
    source: str = ""


@runtime_checkable
class Retriever(Protocol):
    """Finds passages relevant to a question. Embedding never runs on the event loop."""

    async def start(self) -> None:
        """Load the embedding model and the index."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...

    async def retrieve(self, query: str, top_k: int) -> list[Passage]:
        """The ``top_k`` passages closest to ``query``, best first."""
        ...
