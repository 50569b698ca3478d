"""Label sources in the decision store, on SQLite and on PostgreSQL (skipped with the reason
where none runs): every source keeps its own current label, a person's label is the one that
counts, judge–human agreement, the migration of labels given before sources existed, and
``data import --from-store`` exporting the label that counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from sdm_router.config import StorageSettings
from sdm_router.core.decisions import (
    AttemptRecord,
    DecisionRecord,
    FeedbackLabel,
    LabelKind,
    LabelWrite,
)
from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.storage.database import make_engine, migrate
from sdm_router.storage.store import DecisionStore
from sdm_router.training.importing import labelled_decisions
from tests.support.databases import database_url

pytestmark = pytest.mark.integration
__all__ = ["database_url"]  # the fixture, parametrized over both databases

JUDGE = "judge:grader"


def record(request_id: str, *, keep_text: bool = False, alpha: float = 0.97) -> DecisionRecord:
    attempt = AttemptRecord(
        tier=0, model="small", action="accept", reason="verified", prediction=1, q=9,
        d=0.1, region_alpha=alpha, region_alpha_lower=alpha - 0.01, latency_ms=3.0,
        retrieved_context=False,
    )  # fmt: skip
    return DecisionRecord(
        request_id=request_id, response_id=f"chatcmpl-{request_id}", created=time.time(),
        route="auto", requested_model="auto", decision="accept", reason="verified",
        artifact_id="artifact-a", prompt_tokens=5, completion_tokens=3, key_name=None,
        attempts=(attempt,),
        conversation=(Message(role="user", content=f"question {request_id}?"),),
        answer=f"answer {request_id}", answer_logprobs=(TokenLogprob("answer", -0.1),),
        answer_model="org/small-model", keep_text=keep_text,
    )  # fmt: skip


def settings(url: str, keep_text: bool = False) -> StorageSettings:
    return StorageSettings(url=url, keep_text=keep_text, flush_interval_ms=10)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[DecisionStore]:
    store = DecisionStore(settings(database_url), GatewayMetrics())
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def test_each_source_keeps_its_label_and_a_persons_label_counts(
    store: DecisionStore,
) -> None:
    for request_id in ("a", "b", "c"):
        store.submit(record(request_id, keep_text=True))
    assert await store.label("a", "correct", 0, "correct, it says so", source=JUDGE, logprob=-0.02)
    assert await store.label("a", "incorrect", 0, None)  # a person disagrees
    assert await store.label("b", "incorrect", 0, None, source=JUDGE, logprob=-0.4)
    # the same label from the same source again changes nothing; a new one replaces it
    assert await store.label("b", "incorrect", 0, None, source=JUDGE) == ("b", False)
    assert await store.label("b", "correct", 0, None, source=JUDGE) == ("b", True)

    answers = {answer.request_id: answer for answer in await store.labelled()}
    assert set(answers) == {"a", "b"}  # "c" has no label
    assert (answers["a"].label, answers["a"].source) == ("incorrect", "human")
    assert (answers["b"].label, answers["b"].source) == ("correct", JUDGE)
    assert answers["a"].region_alpha_lower == pytest.approx(0.96)
    assert answers["a"].answer_model == "org/small-model"
    judged_only = {a.request_id: a for a in await store.labelled(kinds={LabelKind.JUDGE})}
    assert (judged_only["a"].label, judged_only["a"].logprob) == ("correct", -0.02)

    shown = await store.decision("a")
    assert shown is not None and shown["label"] == {"label": "incorrect", "source": "human"}
    assert [(f["source"], f["label"], f["current"]) for f in shown["feedback"]] == [
        (JUDGE, "correct", True),
        ("human", "incorrect", True),
    ]
    listed, _ = await store.decisions(label="correct")
    assert [row["request_id"] for row in listed] == ["b"]  # "a" counts as incorrect
    unlabelled, _ = await store.decisions(label="unlabeled")
    assert [row["request_id"] for row in unlabelled] == ["c"]


async def test_judge_agreement_with_people(store: DecisionStore) -> None:
    pairs: list[tuple[FeedbackLabel, FeedbackLabel]] = [("correct", "correct")] * 6
    pairs += [("incorrect", "incorrect")] * 2
    pairs += [("correct", "incorrect"), ("incorrect", "correct")]
    for index, (human, judge) in enumerate(pairs):
        store.submit(record(f"r{index}"))
        await store.label(f"r{index}", judge, 0, None, source=JUDGE)
        await store.label(f"r{index}", human, 0, None)
    store.submit(record("judge-only"))
    await store.label("judge-only", "correct", 0, None, source=JUDGE)
    (agreement,) = await store.agreement()
    assert agreement.source == JUDGE
    assert (agreement.pairs, agreement.agreed) == (10, 8)
    assert agreement.rate == pytest.approx(0.8)
    # chance: 0.7 * 0.7 + 0.3 * 0.3 = 0.58; kappa = (0.8 - 0.58) / 0.42
    assert agreement.kappa == pytest.approx(0.22 / 0.42)


async def test_the_text_of_a_record_marked_keep_text_is_kept_when_storage_keeps_none(
    store: DecisionStore,
) -> None:
    store.submit(record("kept", keep_text=True))
    store.submit(record("dropped"))
    await store.label("kept", "correct", 0, None, source=JUDGE)
    await store.label("dropped", "correct", 0, None, source=JUDGE)
    with_text = await store.labelled(with_text=True)
    assert [answer.request_id for answer in with_text] == ["kept"]
    assert with_text[0].answer == "answer kept"
    assert with_text[0].conversation == (Message(role="user", content="question kept?"),)


async def test_import_from_the_store_exports_the_label_that_counts(
    store: DecisionStore, database_url: str
) -> None:
    for request_id in ("x", "y"):
        store.submit(record(request_id, keep_text=True))
    await store.label("x", "correct", 0, None, source=JUDGE)
    await store.label("x", "incorrect", 0, None)  # humans win
    await store.label("y", "correct", 0, None, source=JUDGE)
    rows = {row.id: row for row in labelled_decisions(settings(database_url))}
    assert {rid: row.label for rid, row in rows.items()} == {"x": 0, "y": 1}
    assert rows["y"].model == "org/small-model"
    people_only = list(labelled_decisions(settings(database_url), kinds={LabelKind.HUMAN}))
    assert [(row.id, row.label) for row in people_only] == [("x", 0)]


def _alembic(url: str) -> tuple[Config, Engine]:
    from importlib import resources

    config = Config()
    location = resources.files("sdm_router.storage") / "migrations"
    config.set_main_option("script_location", str(location))
    return config, make_engine(url)


def test_labels_given_before_sources_existed_become_human_and_the_migration_reverses(
    database_url: str,
) -> None:
    config, engine = _alembic(database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002_shadow_decisions")
            connection.execute(
                text(
                    "INSERT INTO decisions (request_id, created, route, decision, artifact_id, "
                    "prompt_tokens, completion_tokens) VALUES ('old', 1, 'auto', 'accept', 'a', "
                    "1, 1)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO feedback (request_id, choice, label, created, current) "
                    "VALUES ('old', 0, 'correct', 1, true)"
                )
            )
        migrate(engine)
        with engine.begin() as connection:
            assert connection.execute(text("SELECT source FROM feedback")).scalar_one() == "human"
            connection.execute(
                text(
                    "INSERT INTO feedback (request_id, choice, label, created, current, source) "
                    "VALUES ('old', 0, 'incorrect', 2, true, 'judge:grader')"
                )
            )
            config.attributes["connection"] = connection
            command.downgrade(config, "0002_shadow_decisions")
        columns = {column["name"] for column in inspect(engine).get_columns("feedback")}
        assert "source" not in columns
        with engine.begin() as connection:
            current: list[str] = list(
                connection.execute(text("SELECT label FROM feedback WHERE current")).scalars()
            )
            assert list(current) == ["correct"]  # the person's label stays current
            count: int = connection.execute(text("SELECT count(*) FROM decisions")).scalar_one()
            assert count == 1  # nothing cascaded away
    finally:
        engine.dispose()


async def test_queued_machine_labels_are_written_after_their_decision(database_url: str) -> None:
    metrics = GatewayMetrics()
    store = DecisionStore(settings(database_url), metrics)
    await store.start()
    try:
        store.submit(record("q1", keep_text=True))
        store.submit_label(LabelWrite("q1", "incorrect", JUDGE, note="incorrect.", logprob=-0.3))
        store.submit_label(LabelWrite("never-recorded", "correct", JUDGE))
        deadline = time.monotonic() + 10
        while not await store.labelled() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        (answer,) = await store.labelled()
        assert (answer.request_id, answer.label, answer.source, answer.logprob) == (
            "q1", "incorrect", JUDGE, -0.3,
        )  # fmt: skip
    finally:
        await store.close()
    body = metrics.render()[0].decode()
    assert 'sdm_router_decision_store_records_total{event="label_orphaned"} 1.0' in body
