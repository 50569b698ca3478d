"""The console's reads of the decision store, on SQLite and on PostgreSQL (skipped with the
reason where none runs): the overview's counts and slices, the review queue's reasons, the
listing's new filters, and migration ``0005_console`` filling the attempt counts of older
decisions and reversing without losing a row."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from importlib import resources

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from sdm_router.config import StorageSettings
from sdm_router.core.decisions import AttemptRecord, DecisionRecord, LabelKind
from sdm_router.core.generation import Message
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.storage.database import make_engine, migrate
from sdm_router.storage.store import DecisionStore
from tests.support.databases import database_url

pytestmark = pytest.mark.integration
__all__ = ["database_url"]
JUDGE = "judge:grader"


def attempt(tier: int, action: str, retrieved: bool = False) -> AttemptRecord:
    return AttemptRecord(
        tier=tier, model=f"tier-{tier}", action=action, reason="verified", prediction=1, q=9,
        d=0.1, region_alpha=0.97, region_alpha_lower=0.96, latency_ms=3.0,
        retrieved_context=retrieved,
    )  # fmt: skip


def record(
    request_id: str,
    decision: str,
    tiers: tuple[AttemptRecord, ...],
    age_s: float,
    route: str = "auto",
    key: str | None = "alice",
    answer: str = "42",
) -> DecisionRecord:
    return DecisionRecord(
        request_id=request_id, response_id=None, created=time.time() - age_s, route=route,
        requested_model=route, decision=decision, reason="verified", artifact_id="a",
        prompt_tokens=1, completion_tokens=1, key_name=key, attempts=tiers,
        conversation=(Message(role="user", content=f"question {request_id}"),),
        answer=answer, keep_text=True,
    )  # fmt: skip


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[DecisionStore]:
    store = DecisionStore(StorageSettings(url=database_url, flush_interval_ms=10), GatewayMetrics())
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def written(store: DecisionStore, *records: DecisionRecord) -> None:
    for item in records:
        store.submit(item)
    for item in records:  # a label waits for its record to be written
        await store.label(item.request_id, "correct", 5, None, source="probe")


async def test_the_overview_counts_shares_labels_and_slices(store: DecisionStore) -> None:
    await written(
        store,
        record("a1", "accept", (attempt(0, "accept"),), 100),
        record("a2", "accept", (attempt(0, "escalate"), attempt(1, "accept")), 200),
        record("a3", "abstain", (attempt(0, "retrieve", True), attempt(1, "abstain")), 300),
        record("b1", "observed", (), 400, route="other", key="bob"),
        record("old", "accept", (attempt(0, "accept"),), 3 * 86400),  # outside the window
    )
    await store.label("a1", "correct", 0, None)
    await store.label("a2", "incorrect", 0, None, source=JUDGE)
    await store.label("a3", "correct", 0, None)  # an abstention: not an accepted answer
    now = time.time()
    counts, series = await store.overview(now - 86400, now, None, 24)
    auto, other = counts
    assert (auto.route, auto.requests, other.route, other.requests) == ("auto", 3, "other", 1)
    assert auto.by_decision == {"accept": 2, "abstain": 1}
    assert (auto.escalated, auto.retrieved) == (2, 1)
    assert (auto.accepted_labelled, auto.accepted_correct) == (2, 1)
    assert other.by_decision == {"observed": 1}
    assert sum(point["requests"] for point in series["auto"]) == 3
    assert series["auto"][-1] == {"requests": 3, "accepted": 2}  # all in the last hour-slice
    mine, _ = await store.overview(now - 86400, now, "bob", 24)
    assert [(entry.route, entry.requests) for entry in mine] == [("other", 1)]


async def test_the_review_queue_and_the_listings_new_filters(store: DecisionStore) -> None:
    await written(
        store,
        record("none", "accept", (attempt(0, "accept"),), 500, answer="Paris, of course"),
        record("judged-wrong", "accept", (attempt(0, "accept"),), 400),
        record("judged-right", "accept", (attempt(0, "accept"),), 300),
        record("disputed", "abstain", (attempt(0, "abstain"),), 200),
        record("settled", "accept", (attempt(0, "accept"),), 100),
    )
    await store.label("judged-wrong", "incorrect", 0, None, source=JUDGE)
    await store.label("judged-right", "correct", 0, None, source=JUDGE)
    await store.label("disputed", "correct", 0, None, source=JUDGE)
    await store.label("disputed", "incorrect", 0, None)  # a person disagrees with the judge
    await store.label("settled", "correct", 0, None)
    queue = await store.review_queue(None, 50)
    # the probe labels are on another answer (choice 5): the answer shown is what counts
    assert [(row["request_id"], row["why"]) for row in queue] == [
        ("none", "unlabeled"),
        ("judged-wrong", "judge_vs_verifier"),
        ("disputed", "judge_vs_human"),
    ]
    page, _ = await store.decisions(source=LabelKind.JUDGE, label="correct")
    assert [row["request_id"] for row in page] == ["judged-right"]
    page, _ = await store.decisions(source=LabelKind.HUMAN)
    assert {row["request_id"] for row in page} == {"disputed", "settled"}
    page, _ = await store.decisions(text="PARIS")
    assert [row["request_id"] for row in page] == ["none"]
    page, _ = await store.decisions(text="%")  # a literal percent sign, not a wildcard
    assert page == []
    page, _ = await store.decisions(reason="no-such-reason")
    assert page == []


def test_migration_0005_fills_attempt_counts_and_reverses(database_url: str) -> None:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("sdm_router.storage") / "migrations")
    )
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003_label_sources")
            connection.execute(text(
                "INSERT INTO decisions (request_id, created, route, decision, artifact_id, "
                "prompt_tokens, completion_tokens) VALUES ('old', 1, 'auto', 'accept', 'a', 1, 1)"
            ))  # fmt: skip
            for position, retrieved in ((0, "false"), (1, "true")):
                connection.execute(text(
                    "INSERT INTO attempts (request_id, position, tier, model, action, reason, "
                    f"latency_ms, retrieved_context) VALUES ('old', {position}, {position}, 'm', "
                    f"'accept', 'verified', 1, {retrieved})"
                ))  # fmt: skip
        migrate(engine)
        with engine.begin() as connection:
            row = connection.execute(text("SELECT attempt_count, retrieved FROM decisions")).one()
            assert (row[0], bool(row[1])) == (2, True)
            config.attributes["connection"] = connection
            command.downgrade(config, "0003_label_sources")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM attempts")).scalar_one() == 2
            assert connection.execute(text("SELECT count(*) FROM decisions")).scalar_one() == 1
    finally:
        engine.dispose()
