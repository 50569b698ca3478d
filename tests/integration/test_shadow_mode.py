"""Shadow mode through the real gateway: a candidate artifact's would-be decisions are stored
beside the live ones, off the response path, and ``verifier compare`` reads both (SQLite and
PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sdm_router.config import StorageSettings
from sdm_router.training.shadow_compare import compare_shadow
from tests.fakes import FakeVerifier
from tests.support.databases import database_url
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration
__all__ = ["database_url"]

QUESTION = [{"role": "user", "content": "What is six times seven?"}]


@pytest.fixture
def gateway(upstream: tuple[str, FakeUpstream], database_url: str) -> Iterator[str]:
    verifier = FakeVerifier()
    verifier.shadow_id = "candidate-artifact"  # the fake's candidate rejects what live accepts
    app = fake_app(
        upstream[0],
        verifier=verifier,
        storage={"url": database_url, "keep_text": True, "flush_interval_ms": 20},
    )
    with serve_in_thread(app) as url:
        yield url


def _chat(url: str) -> str:
    body: dict[str, Any] = {"model": "auto", "messages": QUESTION}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert "shadow" not in reply.text  # the client never sees the candidate
    return reply.headers["x-request-id"]


def _shadowed(url: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record: dict[str, Any] = httpx.get(f"{url}/v1/decisions/{request_id}", timeout=10).json()
        if record.get("shadow"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"no shadow decision was stored for {request_id}")


def test_shadow_decisions_are_stored_beside_live_ones_and_compared(
    gateway: str, database_url: str
) -> None:
    ready = httpx.get(f"{gateway}/readyz", timeout=10).json()
    assert ready["components"]["verifier"]["shadow_artifact_id"] == "candidate-artifact"
    ids = [_chat(gateway) for _ in range(6)]
    for request_id, label in zip(ids, ("correct", "correct", "correct", "incorrect"), strict=False):
        reply = httpx.post(
            f"{gateway}/v1/feedback", json={"request_id": request_id, "label": label}, timeout=10
        )
        assert reply.status_code == 200, reply.text
    for request_id in ids:
        record = _shadowed(gateway, request_id)
        assert record["decision"] == "accept"
        (shadow,) = record["shadow"]
        assert shadow["artifact_id"] == "candidate-artifact"
        assert (shadow["decision"], shadow["reason"], shadow["prediction"]) == (
            "abstain", "predicted_incorrect", 0,
        )  # fmt: skip
    (comparison,) = compare_shadow(StorageSettings(url=database_url))
    assert comparison.candidate == "candidate-artifact"
    assert comparison.live_artifacts == ("fake-artifact",)
    assert (comparison.requests, comparison.labelled, comparison.agreement) == (6, 4, 0.0)
    assert (comparison.live.accepted, comparison.live.coverage) == (6, 1.0)
    assert comparison.live.precision == pytest.approx(0.75)
    assert (comparison.shadow.accepted, comparison.shadow.precision) == (0, None)
    # the console script prints the same figures
    done = subprocess.run(
        [sys.executable, "-m", "sdm_router.cli", "verifier", "compare", "--store", database_url],
        capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "requests 6, labelled 4, agreement 0.000" in done.stdout
    assert "0.750 of 4" in done.stdout


def test_compare_says_when_there_is_nothing_to_compare(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    from sdm_router.storage.database import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "sdm_router.cli", "verifier", "compare", "--store", url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no shadow decisions" in done.stderr
