"""The faiss store with the real packaged MiniLM model over the fact-table passages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sdm_router.retrieval.context import format_context
from sdm_router.retrieval.fact_passages import build_passages
from sdm_router.retrieval.faiss_store import FaissDocumentStore
from sdm_router.training.suites import get_suite

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MIN_SCORE = 0.4  # relevant questions score ~0.7-0.9, unrelated ones below ~0.35


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaissDocumentStore]:
    cache: Path = tmp_path_factory.mktemp("embeddings")
    documents = FaissDocumentStore(build_passages(), min_score=MIN_SCORE, cache_dir=cache)
    await documents.start()
    yield documents
    await documents.close()


async def _top_ids(store: FaissDocumentStore, query: str, top_k: int = 3) -> list[str]:
    return [passage.id for passage in await store.retrieve(query, top_k)]


async def test_index_covers_every_passage(store: FaissDocumentStore) -> None:
    assert store.stats is not None
    assert store.stats.documents == len(build_passages()) >= 190 + 118
    assert store.stats.dimension == 384
    assert not store.stats.from_cache


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is the capital of France?", "capitals/france"),
        ("Which city is the capital of Japan?", "capitals/japan"),
        ("Name the capital city of the Netherlands.", "capitals/netherlands"),
        ("What is the capital of Bolivia?", "capitals/bolivia"),
    ],
)
async def test_capital_questions_find_their_country(
    store: FaissDocumentStore, query: str, expected: str
) -> None:
    assert expected in await _top_ids(store, query)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is the chemical symbol for iron?", "elements/26"),
        ("Which element has the chemical symbol Na?", "elements/11"),
        ("What is the atomic number of gold?", "elements/79"),
        ("Which element has atomic number 26?", "elements/26"),
    ],
)
async def test_element_questions_find_their_element(
    store: FaissDocumentStore, query: str, expected: str
) -> None:
    assert expected in await _top_ids(store, query)


async def test_retrieval_keys_of_the_capitals_suite(store: FaissDocumentStore) -> None:
    items = [item for item in get_suite("capitals").generate(seed=0) if item.id.endswith("/p0")]
    keys = [item.retrieval_key or "" for item in items]
    results = await store.retrieve_batch(keys, top_k=3)
    found = sum(
        item.group_id in [passage.id for passage in passages]
        for item, passages in zip(items, results, strict=True)
    )
    assert found / len(items) >= 0.98, f"{found}/{len(items)}"


async def test_unrelated_questions_fall_under_min_score(store: FaissDocumentStore) -> None:
    assert await store.retrieve("How do I bake sourdough bread at home?", top_k=3) == []
    assert await store.retrieve("Write the word 'apple' backwards.", top_k=3) == []
    best = await store.retrieve("What is the capital of France?", top_k=1)
    assert best[0].score >= MIN_SCORE


async def test_retrieval_does_not_block_the_event_loop(store: FaissDocumentStore) -> None:
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    query = "Which element has the chemical symbol Na and what is its atomic number? " * 2
    results = await asyncio.gather(*(store.retrieve(query, 3) for _ in range(6)))
    elapsed = time.perf_counter() - began
    done.set()
    await beating
    assert all(result and result[0].id == "elements/11" for result in results)
    # Run on the loop, 6 retrievals would stall it for their whole duration in one gap.
    assert len(gaps) >= 5
    assert max(gaps) < max(0.25, elapsed / 3), (max(gaps), elapsed)


async def test_context_block_from_retrieved_passages(store: FaissDocumentStore) -> None:
    passages = await store.retrieve("What is the capital of France?", top_k=2)
    context = format_context(passages)
    assert context.startswith("Use these facts if they help:\n- ")
    assert "- The capital of France is Paris." in context.splitlines()
