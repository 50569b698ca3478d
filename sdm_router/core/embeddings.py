"""Internal embedding types: what ``/v1/embeddings`` asks an embedding backend for."""

from __future__ import annotations

from dataclasses import dataclass

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """Texts (or token ids) to embed with the upstream ``model``; the OpenAI options as given;
    ``deadline`` (``time.monotonic()``) bounds the backend call, retries included."""

    model: str
    input: EmbeddingInput
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One vector per input, in input order: floats, or base64 of little-endian float32 when
    ``encoding_format`` was ``base64``; and the tokens the inputs took."""

    vectors: list[list[float] | str]
    prompt_tokens: int = 0
