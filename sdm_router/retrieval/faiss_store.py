"""A small in-memory document store: sentence embeddings in a faiss ``IndexFlatIP``.

All model and faiss work runs on one dedicated worker thread owned by the store, never on the
event loop. Embeddings are L2-normalised, so inner product = cosine similarity in [-1, 1].
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sdm_router.core.provenance import library_versions
from sdm_router.retrieval.base import Passage
from sdm_router.retrieval.embedding_model import SentenceEncoder, load_sentence_encoder

logger = logging.getLogger(__name__)

WORKER_THREAD_PREFIX = "retrieval-worker"

EncoderFactory = Callable[[], SentenceEncoder]


@dataclass(frozen=True, slots=True)
class Document:
    """A passage to index: stable ``id``, ``text`` and the ``source`` it came from."""

    id: str
    text: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What ``start()`` did: model load time, index build time, whether the cache was used."""

    documents: int
    dimension: int
    model_load_seconds: float
    build_seconds: float
    from_cache: bool


def load_jsonl_documents(path: str | Path) -> list[Document]:
    """Documents from a JSONL file, one ``{"id", "text", "source"?}`` object per line."""
    documents = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or not record.get("id") or not record.get("text"):
            raise ValueError(f"{path}:{number}: each line needs a non-empty 'id' and 'text'")
        documents.append(
            Document(str(record["id"]), str(record["text"]), str(record.get("source", "")))
        )
    return documents


# The libraries whose versions can change the embeddings a cache file holds.
EMBEDDING_LIBRARIES = ("sentence-transformers", "transformers", "tokenizers", "torch")


def embedding_cache_key(model_id: str, documents: Iterable[Document]) -> str:
    """A hash of the model, the documents' ids and texts, and the versions of
    :data:`EMBEDDING_LIBRARIES` (the embedding cache file name)."""
    payload = json.dumps(
        [model_id, library_versions(EMBEDDING_LIBRARIES), [[doc.id, doc.text] for doc in documents]]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class FaissDocumentStore:
    """A ``Retriever`` over a fixed list of documents, exact cosine search with faiss.

    ``min_score`` drops passages less similar than it (cosine, -1..1). With ``cache_dir`` the
    document embeddings are saved to ``embeddings-<hash>.npy`` and reused while the documents
    and the model are unchanged. ``encoder_factory`` replaces the packaged MiniLM model (it is
    called on the worker thread).
    """

    def __init__(
        self,
        documents: Iterable[Document],
        *,
        min_score: float = 0.0,
        cache_dir: str | Path | None = None,
        model_path: str | Path | None = None,
        device: str = "cpu",
        encoder_factory: EncoderFactory | None = None,
    ) -> None:
        self._documents = tuple(documents)
        ids = [doc.id for doc in self._documents]
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique")
        if not -1.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be a cosine similarity in [-1, 1], got {min_score}")
        self.min_score = min_score
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._encoder_factory = encoder_factory or (
            lambda: load_sentence_encoder(model_path, device=device)
        )
        self._executor: ThreadPoolExecutor | None = None
        self._encoder: SentenceEncoder | None = None
        self._index: Any = None
        self._start_lock = asyncio.Lock()
        self.stats: IndexStats | None = None

    @property
    def documents(self) -> tuple[Document, ...]:
        """The indexed documents, in index order."""
        return self._documents

    @property
    def ready(self) -> bool:
        """True between a successful ``start()`` and ``close()``."""
        return self._index is not None

    async def start(self) -> None:
        """Load the model and build (or load from cache) the index, on the worker thread."""
        async with self._start_lock:
            if self.ready:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=WORKER_THREAD_PREFIX)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._start_sync)

    async def close(self) -> None:
        """Stop the worker thread and drop the model and the index."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        self._encoder = None
        self._index = None

    async def retrieve(self, query: str, top_k: int) -> list[Passage]:
        """The ``top_k`` documents closest to ``query`` scoring at least ``min_score``."""
        return (await self.retrieve_batch([query], top_k))[0]

    async def retrieve_batch(self, queries: list[str], top_k: int) -> list[list[Passage]]:
        """``retrieve`` for several queries in one embedding call."""
        if self._executor is None or not self.ready:
            raise RuntimeError("FaissDocumentStore.start() must be awaited before retrieve()")
        if top_k <= 0 or not queries:
            return [[] for _ in queries]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._search_sync, queries, top_k)

    # ------------------------------------------------------------------ worker thread only

    def _start_sync(self) -> None:
        import faiss  # heavy import, worker thread only

        began = time.perf_counter()
        encoder = self._encoder or self._encoder_factory()
        loaded = time.perf_counter()
        embeddings, from_cache = self._embeddings(encoder)
        index = faiss.IndexFlatIP(embeddings.shape[1])
        if len(embeddings):
            index.add(embeddings)
        self._encoder, self._index = encoder, index
        self.stats = IndexStats(
            documents=len(self._documents),
            dimension=int(embeddings.shape[1]),
            model_load_seconds=loaded - began,
            build_seconds=time.perf_counter() - loaded,
            from_cache=from_cache,
        )

    def _embeddings(self, encoder: SentenceEncoder) -> tuple[npt.NDArray[np.float32], bool]:
        texts = [doc.text for doc in self._documents]
        cache_file = None
        if self._cache_dir is not None:
            key = embedding_cache_key(encoder.model_id, self._documents)
            cache_file = self._cache_dir / f"embeddings-{key}.npy"
            cached = _load_cached(cache_file, len(texts))
            if cached is not None:
                return cached, True
        vectors = encoder.encode(texts or [""])[: len(texts)]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if cache_file is not None:
            _save_atomically(cache_file, vectors)
        return vectors, False

    def _search_sync(self, queries: list[str], top_k: int) -> list[list[Passage]]:
        assert self._encoder is not None and self._index is not None
        k = min(top_k, len(self._documents))
        if k == 0:
            return [[] for _ in queries]
        vectors = np.ascontiguousarray(self._encoder.encode(queries), dtype=np.float32)
        scores, indices = self._index.search(vectors, k)
        return [
            self._passages(row, positions) for row, positions in zip(scores, indices, strict=True)
        ]

    def _passages(
        self, scores: npt.NDArray[np.float32], positions: npt.NDArray[np.int64]
    ) -> list[Passage]:
        passages = []
        for score, position in zip(scores.tolist(), positions.tolist(), strict=True):
            if position < 0 or score < self.min_score:
                continue
            doc = self._documents[position]
            passages.append(Passage(doc.id, doc.text, float(score), doc.source))
        return passages


def _load_cached(path: Path, rows: int) -> npt.NDArray[np.float32] | None:
    """The cached embeddings at ``path`` if present and well-formed, else None."""
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        logger.warning("embedding cache %s is unreadable (%s); rebuilding it", path, error)
        return None
    if array.ndim != 2 or array.shape[0] != rows or array.dtype != np.float32:
        logger.warning(
            "embedding cache %s has shape %s, not %d rows; rebuilding", path, array.shape, rows
        )
        return None
    return np.ascontiguousarray(array)


def _save_atomically(path: Path, array: npt.NDArray[np.float32]) -> None:
    """Write ``array`` to ``path`` via a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array, allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
