"""Labels without a person, the live guarantee and observe mode through the real gateway: the
judge is a real HTTP server speaking the OpenAI API that knows the answers to its questions
(tests/support/oracle_judge.py); the model is the fake upstream (it answers "The answer is 42."
to everything, right for six times seven and wrong for six times eight); the decision store is
SQLite (and PostgreSQL where one runs, for the label flow)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from sdm_router.core.guarantee import labels_to_breach
from tests.fakes import FakeVerifier
from tests.support.databases import database_url, sqlite_url
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.openai_extra import extra_fields
from tests.support.oracle_judge import VERDICT_TOKEN_LOGPROBS, OracleJudge
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration
__all__ = ["database_url"]  # the fixture, parametrized over both databases

RIGHT, WRONG = "What is six times seven?", "What is six times eight?"
ROUTE = "answers"


@pytest.fixture(scope="module")
def judge() -> Iterator[tuple[str, OracleJudge]]:
    oracle = OracleJudge(answers={RIGHT: "42", WRONG: "48"})
    with serve_in_thread(oracle) as url:
        yield url, oracle


@pytest.fixture
def oracle(judge: tuple[str, OracleJudge]) -> OracleJudge:
    judge[1].mode = "honest"
    return judge[1]


@contextmanager
def gateway(
    upstream: tuple[str, FakeUpstream],
    judge: tuple[str, OracleJudge],
    store_url: str,
    *,
    route: dict[str, Any] | None = None,
    labeling: dict[str, Any] | None = None,
    verifier: FakeVerifier | None = None,
) -> Iterator[str]:
    """A gateway over the fake upstream whose answers the oracle judges, every one sampled."""
    judge_backend = {
        "type": "openai", "base_url": f"{judge[0]}/v1", "model": "oracle",
        "timeouts": {"connect": 2, "read": 5, "total": 5}, "retries": {"max_attempts": 1},
        "circuit_breaker": {"enabled": False},
    }  # fmt: skip
    routes = {
        "auto": {"tiers": [{"backend": "unsure"}, {"backend": "good"}]},
        ROUTE: {"tiers": [{"backend": "good"}], **(route or {})},
        "streamed": {"tiers": [{"backend": "good"}], "stream_mode": "passthrough"},
    }
    app = fake_app(
        upstream[0],
        verifier=verifier,
        extra_backends={"judge": judge_backend},
        routes=routes,
        storage={"url": store_url, "flush_interval_ms": 20},  # keep_text off
        labeling={
            "judge": "judge",
            "sample_rate": 1.0,
            "calls_per_minute": 100_000,
            "decisions": ["accept", "observed"],
            **(labeling or {}),
        },
        guarantee={"refresh_seconds": 0.1},
    )
    with serve_in_thread(app) as url:
        yield url


def ask(url: str, question: str, model: str = ROUTE) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply


def label_of(url: str, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The decision once it carries a label (the judge works off the request path)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.get(f"{url}/v1/decisions/{request_id}", timeout=10)
        if reply.status_code == 200 and reply.json()["label"] is not None:
            record: dict[str, Any] = reply.json()
            return record
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} was not labelled within {timeout} s")


def guarantee_of(url: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/admin/guarantee", timeout=10)
    assert reply.status_code == 200, reply.text
    (entry,) = [route for route in reply.json()["routes"] if route["route"] == ROUTE]
    return dict(entry)


def metric(url: str, line_start: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_judge_labels_answers_and_a_person_overrides_it(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    database_url: str,
) -> None:  # fmt: skip
    with gateway(upstream, judge, database_url) as url:
        right = ask(url, RIGHT).headers["x-request-id"]
        wrong = ask(url, WRONG).headers["x-request-id"]
        judged = {rid: label_of(url, rid) for rid in (right, wrong)}
        assert judged[right]["label"] == {"label": "correct", "source": "judge:judge"}
        assert judged[wrong]["label"] == {"label": "incorrect", "source": "judge:judge"}
        (feedback,) = judged[right]["feedback"]
        assert feedback["logprob"] == pytest.approx(sum(VERDICT_TOKEN_LOGPROBS))
        assert feedback["note"].startswith("correct.")
        # sampled for labelling: the text is kept though storage.keep_text is off
        assert judged[right]["answer"] == "The answer is 42."
        # a person disagrees with the judge on one answer: the person's label counts
        person = httpx.post(
            f"{url}/v1/feedback", json={"request_id": wrong, "label": "correct"}, timeout=10
        )
        assert person.json()["source"] == "human"
        record = httpx.get(f"{url}/v1/decisions/{wrong}", timeout=10).json()
        assert record["label"] == {"label": "correct", "source": "human"}
        listed = httpx.get(f"{url}/v1/decisions", params={"label": "incorrect"}, timeout=10)
        assert listed.json()["data"] == []
        (agreement,) = httpx.get(f"{url}/admin/labels/agreement", timeout=10).json()["data"]
        assert agreement | {"confusion": None} == {
            "source": "judge:judge", "pairs": 1, "agreed": 0, "agreement": 0.0, "kappa": 0.0,
            "confusion": None,
        }  # fmt: skip
        assert metric(url, 'sdm_router_labels_total{kind="judge",label="correct"}') == 1
        assert metric(url, 'sdm_router_labels_total{kind="human",label="correct"}') == 1
        assert metric(url, 'sdm_router_label_agreement{source="judge:judge"}') == 0.0
    assert (RIGHT, "The answer is 42.", "correct") in oracle.graded


def test_the_guarantee_holds_then_an_adversarial_judge_breaks_it_within_100_labels(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    tmp_path: Path,
) -> None:  # fmt: skip
    with gateway(upstream, judge, sqlite_url(tmp_path)) as url:
        assert guarantee_of(url)["status"] == "unknown"
        for index in range(28):  # all correct: 28 is the fewest that can hold (0.921 >= 0.92)
            request_id = ask(url, RIGHT).headers["x-request-id"]
            if index == 19:
                label_of(url, request_id)
                twenty = guarantee_of(url)
                assert (twenty["labelled"], twenty["status"]) == (20, "provisional")
                assert twenty["lower_bound"] == pytest.approx(0.891251, abs=1e-6)
        label_of(url, request_id)
        held = guarantee_of(url)
        assert (held["labelled"], held["correct"], held["status"]) == (28, 28, "holding")
        assert held["artifact_id"] == "fake-artifact" and held["accept_alpha"] == 0.95
        oracle.mode = "adversarial"
        adversarial = 0
        while guarantee_of(url)["status"] != "breached":
            label_of(url, ask(url, RIGHT).headers["x-request-id"])
            adversarial += 1
            assert adversarial <= 100, guarantee_of(url)
        print(f"\nadversarial judge: breached after {adversarial} labelled accepted answers")
        assert adversarial == labels_to_breach(0.95, correct_before=28)
        deadline = time.monotonic() + 5
        status = 'sdm_router_guarantee_status{route="answers",status="breached"}'
        while metric(url, status) != 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(url, status) == 1.0
        assert ask(url, RIGHT).headers["x-sdm-decision"] == "accept"  # on_breach: alert


def test_on_breach_rollback_stops_accepting_within_the_window(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    tmp_path: Path,
) -> None:  # fmt: skip
    oracle.mode = "adversarial"
    with gateway(upstream, judge, sqlite_url(tmp_path), route={"on_breach": "rollback"}) as url:
        accepted = 0
        while True:
            reply = ask(url, RIGHT)
            if reply.headers["x-sdm-decision"] != "accept":
                break
            accepted += 1
            label_of(url, reply.headers["x-request-id"])
            assert accepted <= 100
        assert reply.headers["x-sdm-decision"] == "observed"
        verification = reply.json()["verification"]
        assert (verification["decision"], verification["reason"]) == ("observed", "rolled_back")
        state = httpx.get(f"{url}/readyz", timeout=10).json()["routes"][ROUTE]
        assert (state["mode"], state["reason"]) == ("observe", "rolled_back")
        assert "labelled accepted answers correct" in state["rolled_back"]
        report = httpx.get(f"{url}/admin/guarantee", timeout=10).json()
        assert [e["change"] for e in report["events"] if e["route"] == ROUTE] == ["rolled_back"]
        print(f"\non_breach rollback: stopped accepting after {accepted} accepted answers")


def test_on_breach_tighten_raises_the_routes_accept_alpha(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Every answer is accepted at region alpha 0.96 (the fake verifier) and judged wrong:
    tightening goes to 0.97, where nothing is accepted any more."""
    oracle.mode = "adversarial"
    with gateway(upstream, judge, sqlite_url(tmp_path), route={"on_breach": "tighten"}) as url:
        for _ in range(2):
            label_of(url, ask(url, RIGHT).headers["x-request-id"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = httpx.get(f"{url}/readyz", timeout=10).json()["routes"][ROUTE]
            if state["accept_alpha"] > 0.95:
                break
            time.sleep(0.05)
        assert (state["accept_alpha"], state["configured_accept_alpha"]) == (0.97, 0.95)
        reply = ask(url, RIGHT)
        verification = reply.json()["verification"]
        assert (verification["decision"], verification["reason"]) == ("abstain", "below_alpha")
        assert verification["accept_alpha"] == 0.97
        report = guarantee_of(url)
        assert report["effective_accept_alpha"] == 0.97 and report["status"] == "unknown"


def test_a_judge_outage_or_nonsense_costs_no_request(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    tmp_path: Path,
) -> None:  # fmt: skip
    labeling = {"max_attempts": 2, "concurrency": 8}
    with gateway(upstream, judge, sqlite_url(tmp_path), labeling=labeling) as url:
        oracle.mode = "down"
        ids = [ask(url, RIGHT).headers["x-request-id"] for _ in range(10)]
        failed = 'sdm_router_labeling_events_total{event="dropped_failed"}'
        deadline = time.monotonic() + 20
        while metric(url, failed) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(url, failed) == 10
        assert metric(url, 'sdm_router_labeling_events_total{event="judge_error"}') == 20
        oracle.mode = "garbage"
        ask(url, RIGHT)
        unusable = 'sdm_router_labeling_events_total{event="unusable"}'
        while metric(url, unusable) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(url, unusable) == 1
        for request_id in ids:
            assert httpx.get(f"{url}/v1/decisions/{request_id}", timeout=10).json()["label"] is None


def test_the_reference_kind_compares_with_the_strongest_tiers_answer(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    tmp_path: Path,
) -> None:  # fmt: skip
    route = {"tiers": [{"backend": "good"}, {"backend": "slow"}]}
    with gateway(
        upstream, judge, sqlite_url(tmp_path), route=route, labeling={"kind": "reference"}
    ) as url:
        request_id = ask(url, WRONG).headers["x-request-id"]
        record = label_of(url, request_id)
    assert record["label"] == {"label": "incorrect", "source": "reference:judge"}
    assert "slow" in upstream[1].log.models_called()  # the strongest tier answered too


def test_observe_mode_serves_records_and_labels_until_an_artifact_covers_the_route(
    upstream: tuple[str, FakeUpstream], judge: tuple[str, OracleJudge], oracle: OracleJudge,
    tmp_path: Path,
) -> None:  # fmt: skip
    verifier = FakeVerifier()
    verifier.calibrated_on = frozenset({"someone-elses-model"})
    with gateway(upstream, judge, sqlite_url(tmp_path), verifier=verifier) as url:
        state = httpx.get(f"{url}/readyz", timeout=10).json()["routes"][ROUTE]
        assert (state["mode"], state["reason"], state["models"]) == (
            "observe", "uncalibrated_model", ["good"]
        )  # fmt: skip
        reply = ask(url, WRONG)
        assert reply.headers["x-sdm-decision"] == "observed"
        verification = reply.json()["verification"]
        assert verification["decision"] == "observed"
        assert verification["reason"] == "uncalibrated_model"
        assert verification["region_alpha"] is None and verification["prediction"] is None
        assert reply.json()["model"] == "good"
        assert verifier.seen == []  # nothing judged with someone else's verifier
        record = label_of(url, reply.headers["x-request-id"])
        assert record["decision"] == "observed" and record["artifact_id"] == "none"
        assert record["label"]["label"] == "incorrect"
        with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            chunks = list(
                client.chat.completions.create(
                    model="streamed", messages=[{"role": "user", "content": RIGHT}], stream=True
                )
            )
        assert extra_fields(chunks[-1])["verification"]["decision"] == "observed"
        refused = httpx.post(
            f"{url}/v1/verify",
            json={
                "model": ROUTE,
                "messages": [{"role": "user", "content": RIGHT}],
                "response": "42",
            },
            timeout=10,
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "route_observing"
        assert metric(url, 'sdm_router_requests_total{outcome="observed",route="answers"}') == 1
        assert metric(url, 'sdm_router_guarantee_observing{route="answers"}') == 1
        # an artifact calibrated on this model goes live: the route verifies from now on
        verifier.calibrated_on = frozenset({"good"})
        reload = httpx.post(
            f"{url}/admin/verifier/reload",
            json={"artifact": "/models/ours.sdmkitmodel"},
            timeout=10,
        )
        assert reload.status_code == 200
        assert ask(url, RIGHT).headers["x-sdm-decision"] == "accept"
        changes = [
            event["change"]
            for event in httpx.get(f"{url}/admin/guarantee", timeout=10).json()["events"]
            if event["route"] == ROUTE
        ]
        assert changes == ["observe", "verify"]
    # the observed answer's text was kept for labelling though storage.keep_text is off
    from sdm_router.config import StorageSettings
    from sdm_router.training.importing import labelled_decisions

    rows = list(labelled_decisions(StorageSettings(url=sqlite_url(tmp_path))))
    assert [row.response for row in rows if row.messages[-1].content == WRONG] == [
        "The answer is 42."
    ]
