"""FaissDocumentStore with a deterministic fake encoder: search, threshold, thread, cache."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sdm_router.config import RetrievalSettings
from sdm_router.retrieval.base import Retriever
from sdm_router.retrieval.corpus import make_retriever
from sdm_router.retrieval.faiss_store import (
    WORKER_THREAD_PREFIX,
    Document,
    FaissDocumentStore,
    embedding_cache_key,
    load_jsonl_documents,
)

DIM = 64
DOCUMENTS = [
    Document("capitals/france", "The capital of France is Paris.", "capitals.csv"),
    Document("capitals/japan", "The capital of Japan is Tokyo.", "capitals.csv"),
    Document("elements/26", "The element with atomic number 26 is Iron.", "elements.csv"),
]


class FakeEncoder:
    """Bag-of-words hashing into 64 dims, normalised; records calls and their threads."""

    model_id = "fake-bow-v1"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[str] = []

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        self.threads.append(threading.current_thread().name)
        vectors = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").replace("?", " ").split():
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM
                vectors[row, bucket] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalized: npt.NDArray[np.float32] = vectors / np.maximum(norms, 1e-9)
        return normalized


def make_store(
    encoder: FakeEncoder, documents: list[Document] = DOCUMENTS, **options: Any
) -> FaissDocumentStore:
    return FaissDocumentStore(documents, encoder_factory=lambda: encoder, **options)


async def test_implements_the_retriever_protocol_and_finds_the_closest_passage() -> None:
    store = make_store(FakeEncoder())
    assert isinstance(store, Retriever)
    await store.start()
    try:
        passages = await store.retrieve("What is the capital of Japan?", top_k=2)
    finally:
        await store.close()
    assert passages[0].id == "capitals/japan"
    assert len(passages) == 2
    assert passages[0].score >= passages[1].score
    assert passages[0].source == "capitals.csv"
    assert passages[0].text == "The capital of Japan is Tokyo."


async def test_top_k_caps_and_min_score_filters() -> None:
    store = make_store(FakeEncoder(), min_score=0.9)
    await store.start()
    try:
        assert await store.retrieve("capital of France Paris", top_k=0) == []
        found = await store.retrieve("the capital of France is Paris", top_k=10)
        nothing = await store.retrieve("zebra quantum sourdough", top_k=3)
    finally:
        await store.close()
    assert [passage.id for passage in found] == ["capitals/france"]
    assert found[0].score == pytest.approx(1.0, abs=1e-5)
    assert nothing == []


async def test_model_and_search_run_on_the_worker_thread_only() -> None:
    encoder = FakeEncoder()
    store = make_store(encoder)
    await store.start()
    try:
        await store.retrieve("Paris", top_k=1)
        await store.retrieve_batch(["Tokyo", "Iron"], top_k=1)
    finally:
        await store.close()
    assert len(encoder.threads) == 3
    assert all(name.startswith(WORKER_THREAD_PREFIX) for name in encoder.threads)
    assert threading.current_thread().name not in encoder.threads
    assert len(set(encoder.threads)) == 1


async def test_retrieve_before_start_or_after_close_raises() -> None:
    store = make_store(FakeEncoder())
    with pytest.raises(RuntimeError, match="start"):
        await store.retrieve("Paris", top_k=1)
    await store.start()
    assert store.ready
    await store.close()
    assert not store.ready
    with pytest.raises(RuntimeError, match="start"):
        await store.retrieve("Paris", top_k=1)


async def test_start_twice_builds_once_and_records_stats() -> None:
    encoder = FakeEncoder()
    store = make_store(encoder)
    await store.start()
    await store.start()
    await store.close()
    assert len(encoder.calls) == 1
    assert store.stats is not None
    assert (store.stats.documents, store.stats.dimension) == (3, DIM)
    assert store.stats.build_seconds >= 0 and not store.stats.from_cache


async def test_embedding_cache_is_reused_while_documents_and_model_are_unchanged(
    tmp_path: Path,
) -> None:
    first = FakeEncoder()
    store = make_store(first, cache_dir=tmp_path)
    await store.start()
    await store.close()
    assert len(list(tmp_path.glob("embeddings-*.npy"))) == 1

    second = FakeEncoder()
    cached = make_store(second, cache_dir=tmp_path)
    await cached.start()
    passages = await cached.retrieve("capital of Japan", top_k=1)
    await cached.close()
    assert cached.stats is not None and cached.stats.from_cache
    assert second.calls == [["capital of Japan"]]  # documents were not re-embedded
    assert passages[0].id == "capitals/japan"

    changed = [*DOCUMENTS, Document("capitals/peru", "The capital of Peru is Lima.")]
    third = FakeEncoder()
    rebuilt = make_store(third, documents=changed, cache_dir=tmp_path)
    await rebuilt.start()
    await rebuilt.close()
    assert rebuilt.stats is not None and not rebuilt.stats.from_cache
    assert len(third.calls[0]) == 4


async def test_a_corrupt_cache_file_is_rebuilt(tmp_path: Path) -> None:
    key = embedding_cache_key(FakeEncoder.model_id, DOCUMENTS)
    (tmp_path / f"embeddings-{key}.npy").write_bytes(b"not an array")
    encoder = FakeEncoder()
    store = make_store(encoder, cache_dir=tmp_path)
    await store.start()
    found = await store.retrieve("capital of France", top_k=1)
    await store.close()
    assert store.stats is not None and not store.stats.from_cache
    assert found[0].id == "capitals/france"
    assert np.load(tmp_path / f"embeddings-{key}.npy").shape == (3, DIM)


def test_cache_key_depends_on_model_texts_and_library_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = embedding_cache_key("m1", DOCUMENTS)
    real_version = importlib.metadata.version
    with monkeypatch.context() as patched:
        patched.setattr(
            importlib.metadata,
            "version",
            lambda name: "0.0" if name == "sentence-transformers" else real_version(name),
        )
        assert embedding_cache_key("m1", DOCUMENTS) != base
    assert base == embedding_cache_key("m1", list(DOCUMENTS))
    assert base != embedding_cache_key("m2", DOCUMENTS)
    edited = [Document(DOCUMENTS[0].id, "The capital of France is Lyon."), *DOCUMENTS[1:]]
    assert base != embedding_cache_key("m1", edited)


def test_rejects_duplicate_ids_and_out_of_range_threshold() -> None:
    with pytest.raises(ValueError, match="unique"):
        FaissDocumentStore([DOCUMENTS[0], DOCUMENTS[0]])
    with pytest.raises(ValueError, match="min_score"):
        FaissDocumentStore(DOCUMENTS, min_score=1.5)


def test_jsonl_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "Alpha.", "source": "s"}),
        "",
        '{"id": "b", "text": "B."}',
    ]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    assert load_jsonl_documents(corpus) == [Document("a", "Alpha.", "s"), Document("b", "B.", "")]
    corpus.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":1:"):
        load_jsonl_documents(corpus)


def test_make_retriever_reads_the_corpus_and_threshold(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Alpha."}) + "\n", encoding="utf-8")
    store = make_retriever(RetrievalSettings(corpus=str(corpus), min_score=0.42))
    assert isinstance(store, FaissDocumentStore)
    assert store.min_score == 0.42
    assert [doc.id for doc in store.documents] == ["a"]
    embedded = make_retriever(RetrievalSettings())
    assert isinstance(embedded, FaissDocumentStore)
    assert len(embedded.documents) >= 190 + 118
