"""The decision store through the real gateway: records, feedback, listing, concurrency, on
SQLite and on PostgreSQL (skipped with the reason where none runs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.engine import make_url

from sdm_router.storage.database import make_engine, migrate
from sdm_router.storage.tables import decisions, feedback
from sdm_router.training.records import ROWS_FILE, read_records
from tests.support.databases import database_url, postgres_schema_url
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.integration
__all__ = ["database_url"]  # the fixture, parametrized over both databases

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is six times seven?"}
]


@pytest.fixture
def gateway(upstream: tuple[str, FakeUpstream], database_url: str) -> Iterator[str]:
    """A gateway over the fake upstream whose decision store is ``database_url``."""
    app = fake_app(
        upstream[0], storage={"url": database_url, "keep_text": True, "flush_interval_ms": 20}
    )
    with serve_in_thread(app) as url:
        yield url


def chat(url: str, **extra: Any) -> httpx.Response:
    body = {"model": "auto", "messages": QUESTION, **extra}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply


def test_migrations_apply_to_an_empty_database_and_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        migrate(engine)  # a current schema is left alone
        tables = set(inspect(engine).get_table_names())
        assert {"decisions", "attempts", "feedback", "alembic_version"} <= tables
    finally:
        engine.dispose()


def test_every_request_is_recorded_and_found_by_either_id(gateway: str) -> None:
    reply = chat(gateway)
    request_id, response_id = reply.headers["x-request-id"], reply.json()["id"]
    by_request = httpx.get(f"{gateway}/v1/decisions/{request_id}", timeout=10).json()
    by_response = httpx.get(f"{gateway}/v1/decisions/{response_id}", timeout=10).json()
    assert by_request["request_id"] == by_response["request_id"] == request_id
    assert by_request["response_id"] == response_id
    assert by_request["route"] == "auto" and by_request["decision"] == "accept"
    assert by_request["artifact_id"] == "fake-artifact"
    assert [a["action"] for a in by_request["attempts"]] == ["escalate", "accept"]
    assert by_request["attempts"][1]["region_alpha_lower"] == pytest.approx(0.96)
    assert by_request["usage"]["completion_tokens"] > 0
    assert by_request["conversation"] == QUESTION  # keep_text is on here
    assert by_request["answer"] == "The answer is 42."


def test_feedback_right_after_the_response_is_idempotent_and_keeps_history(
    gateway: str,
) -> None:
    request_id = chat(gateway).headers["x-request-id"]
    post = lambda label: httpx.post(  # noqa: E731
        f"{gateway}/v1/feedback", json={"request_id": request_id, "label": label}, timeout=10
    )
    first, again, changed = post("correct"), post("correct"), post("incorrect")
    assert [r.status_code for r in (first, again, changed)] == [200, 200, 200]
    assert [r.json()["changed"] for r in (first, again, changed)] == [True, False, True]
    record = httpx.get(f"{gateway}/v1/decisions/{request_id}", timeout=10).json()
    assert [(f["label"], f["current"]) for f in record["feedback"]] == [
        ("correct", False),
        ("incorrect", True),
    ]


def test_feedback_errors_are_in_the_envelope_and_name_the_field(gateway: str) -> None:
    unknown = httpx.post(
        f"{gateway}/v1/feedback", json={"request_id": "nope", "label": "correct"}, timeout=10
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "request_not_found"
    bad = httpx.post(
        f"{gateway}/v1/feedback", json={"request_id": "x", "label": "maybe"}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "label"
    missing = httpx.get(f"{gateway}/v1/decisions/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "request_id"


def test_listing_filters_and_pages(gateway: str) -> None:
    started = time.time()
    ids = [chat(gateway).headers["x-request-id"] for _ in range(5)]
    unsure = httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": "always-unsure", "messages": QUESTION},
        timeout=30,
    ).headers["x-request-id"]
    httpx.post(
        f"{gateway}/v1/feedback", json={"request_id": ids[0], "label": "correct"}, timeout=10
    )
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"since": started, "limit": 2, "route": "auto"}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{gateway}/v1/decisions", params=params, timeout=10).json()
        seen += [row["request_id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    labelled = httpx.get(
        f"{gateway}/v1/decisions", params={"since": started, "label": "correct"}, timeout=10
    ).json()["data"]
    assert [row["request_id"] for row in labelled] == [ids[0]]
    abstained = httpx.get(
        f"{gateway}/v1/decisions", params={"since": started, "decision": "abstain"}, timeout=10
    ).json()["data"]
    assert [row["request_id"] for row in abstained] == [unsure]
    bad = httpx.get(f"{gateway}/v1/decisions", params={"since": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_streams_are_recorded_too(gateway: str) -> None:
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="passthrough",
            messages=QUESTION,
            stream=True,
        )
        request_id = raw.headers["x-request-id"]
        list(raw.parse())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        reply = httpx.get(f"{gateway}/v1/decisions/{request_id}", timeout=10)
        if reply.status_code == 200:
            break
        time.sleep(0.05)
    assert reply.status_code == 200 and reply.json()["route"] == "passthrough"


async def test_concurrent_chats_and_feedback_land_exactly_once(
    gateway: str, database_url: str
) -> None:
    """200 chats and 500 feedback posts (each answer labelled 2-3 times, some changes) at once."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits) as client:
        semaphore = asyncio.Semaphore(30)  # the gateway admits 64 at once; stay below

        async def one_chat() -> str:
            async with semaphore:
                reply = await client.post(
                    "/v1/chat/completions", json={"model": "auto", "messages": QUESTION}
                )
            assert reply.status_code == 200, reply.text
            return reply.headers["x-request-id"]

        ids = await asyncio.gather(*(one_chat() for _ in range(200)))

        async def label(request_id: str, value: str) -> int:
            async with semaphore:
                reply = await client.post(
                    "/v1/feedback", json={"request_id": request_id, "label": value}
                )
            return reply.status_code

        posts = [(ids[i % 200], "correct" if i % 7 else "incorrect") for i in range(500)]
        statuses = await asyncio.gather(*(label(rid, value) for rid, value in posts))
    assert set(statuses) == {200}
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(
                select(func.count()).select_from(decisions).where(decisions.c.request_id.in_(ids))
            ).scalar_one()
            current = connection.execute(
                select(feedback.c.request_id, func.count())
                .where(feedback.c.current & feedback.c.request_id.in_(ids))
                .group_by(feedback.c.request_id)
            ).all()
    finally:
        engine.dispose()
    assert stored == 200
    assert len(current) == 200 and all(count == 1 for _, count in current)


def test_a_database_outage_costs_no_request_and_no_record(
    upstream: tuple[str, FakeUpstream],
) -> None:
    """PostgreSQL cut off mid-run (through a proxy that resets every connection), then back:
    every request is answered meanwhile, /readyz says the store is degraded, and each record
    queued during the outage arrives exactly once afterwards."""
    schemas = postgres_schema_url()
    url = next(schemas)
    parsed = make_url(url)
    with tcp_proxy((parsed.host or "127.0.0.1", parsed.port or 5432)) as proxy:
        proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        app = fake_app(upstream[0], storage={"url": proxied, "flush_interval_ms": 20})
        with serve_in_thread(app) as gateway:
            before = [chat(gateway).headers["x-request-id"] for _ in range(5)]
            proxy.down()
            during = [chat(gateway).headers["x-request-id"] for _ in range(20)]
            for path in ("/v1/decisions", f"/v1/decisions/{before[0]}"):
                unreadable = httpx.get(f"{gateway}{path}", timeout=30)
                assert unreadable.status_code == 503, unreadable.text  # in the envelope
                assert unreadable.json()["error"]["code"] == "store_unavailable"
            readiness = httpx.get(f"{gateway}/readyz", timeout=10)
            assert readiness.status_code == 200  # still serving
            store_status = readiness.json()["components"]["decision_store"]["status"]
            assert store_status.startswith("degraded"), store_status
            proxy.up()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = httpx.get(f"{gateway}/readyz", timeout=10).json()
                if status["components"]["decision_store"]["status"] == "ok":
                    break
                time.sleep(0.2)
            after = [chat(gateway).headers["x-request-id"] for _ in range(5)]
            time.sleep(0.5)
            metrics = httpx.get(f"{gateway}/metrics", timeout=10).text
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows: Sequence[str] = connection.execute(select(decisions.c.request_id)).scalars().all()
    finally:
        engine.dispose()
        for _ in schemas:  # drops the schema
            pass
    assert sorted(rows) == sorted(before + during + after)
    assert 'sdm_router_decision_store_records_total{event="write_error"}' in metrics


def test_labelled_decisions_import_as_rows_a_verifier_build_reads(
    gateway: str, database_url: str, tmp_path: Path
) -> None:
    """``data import --from-store`` (the console script, the store named by the environment)."""
    labelled = {}
    for label in ("correct", "incorrect"):
        request_id = chat(gateway).headers["x-request-id"]
        reply = httpx.post(
            f"{gateway}/v1/feedback", json={"request_id": request_id, "label": label}, timeout=10
        )
        assert reply.status_code == 200
        labelled[request_id] = 1 if label == "correct" else 0
    chat(gateway)  # unlabelled: not imported
    out = tmp_path / "rows"
    done = subprocess.run(
        [sys.executable, "-m", "sdm_router.cli", "data", "import", "--from-store",
         "--route", "auto", "--output", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "SDM_ROUTER_STORAGE__URL": database_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = read_records(out / ROWS_FILE)
    mine = {record.id: record for record in records if record.id in labelled}
    assert {rid: record.label for rid, record in mine.items()} == labelled
    for record in mine.values():
        assert record.messages[-1].content == QUESTION[0]["content"]
        assert record.response == "The answer is 42."
        assert record.token_logprobs  # what the verifier read at serving time
        assert record.family == "auto"


def test_a_queued_record_is_listed_before_it_is_written(
    upstream: tuple[str, FakeUpstream], database_url: str
) -> None:
    """The writer gathers for 3 s: the listing shows the record from the queue meanwhile,
    once only after it is written, and never under a label it cannot have yet."""
    app = fake_app(upstream[0], storage={"url": database_url, "flush_interval_ms": 3000})
    with serve_in_thread(app) as url:
        request_id = chat(url).headers["x-request-id"]
        listed = httpx.get(f"{url}/v1/decisions", timeout=10).json()["data"]
        assert [record["request_id"] for record in listed] == [request_id]
        assert listed[0]["key_name"] is None and listed[0]["decision"] == "accept"
        labelled = httpx.get(f"{url}/v1/decisions", params={"label": "correct"}, timeout=10)
        assert labelled.json()["data"] == []
        unlabelled = httpx.get(f"{url}/v1/decisions", params={"label": "unlabeled"}, timeout=10)
        assert [record["request_id"] for record in unlabelled.json()["data"]] == [request_id]
        time.sleep(3.5)  # written by now
        again = httpx.get(f"{url}/v1/decisions", timeout=10).json()["data"]
        assert [record["request_id"] for record in again] == [request_id]


def test_a_bad_query_parameter_is_a_400_naming_it(gateway: str) -> None:
    for params, name in (({"limit": 0}, "limit"), ({"decision": "maybe"}, "decision")):
        reply = httpx.get(f"{gateway}/v1/decisions", params=params, timeout=10)
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == name
    cursor = httpx.get(f"{gateway}/v1/decisions", params={"cursor": "%%%"}, timeout=10)
    assert cursor.status_code == 400 and cursor.json()["error"]["param"] == "cursor"
