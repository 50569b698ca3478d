"""GatewayMetrics: names, labels, closed sets, rendering (single process and multiprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sdm_router.observability.metrics import (
    ACTIONS,
    ERROR_TYPES,
    OUTCOMES,
    REASONS,
    ROUTING_ACTIONS,
    STAGES,
    TOKEN_TYPES,
    GatewayMetrics,
    clear_multiprocess_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> GatewayMetrics:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return GatewayMetrics(CollectorRegistry())


def samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_closed_sets_match_the_brief() -> None:
    assert {"accept", "abstain", "unverified", "observed", "error"} == OUTCOMES
    assert {
        "accept",
        "escalate",
        "retrieve",
        "abstain",
        "unverified",
        "observed",
        "skip",
    } == ACTIONS
    assert {"route", "generate", "encode", "score", "verify", "retrieve"} == STAGES
    assert {"proceed", "skip", "abstain"} == ROUTING_ACTIONS
    assert {"predicted_to_fail", "predicted_unanswerable", "ood_prompt"} <= REASONS
    assert {"input", "output"} == TOKEN_TYPES
    assert {"verified", "below_alpha", "no_region", "ood", "predicted_incorrect"} <= REASONS
    assert {"backend_error", "budget_exhausted"} <= REASONS and "retrieval_used" not in REASONS
    assert "tool_calls_unverified" in REASONS
    assert {"no_artifact", "uncalibrated_model", "rolled_back"} <= REASONS  # observe mode
    assert {"timeout", "connection", "rate_limited", "server_error"} <= ERROR_TYPES


def test_request_finished_counts_outcome_and_observes_latency(metrics: GatewayMetrics) -> None:
    metrics.request_finished("auto", "accept", 0.3)
    metrics.request_finished("auto", "abstain", 1.5)
    metrics.request_finished("auto", "abstain", 0.05)
    assert value(metrics, "sdm_router_requests_total", route="auto", outcome="accept") == 1
    assert value(metrics, "sdm_router_requests_total", route="auto", outcome="abstain") == 2
    assert value(metrics, "sdm_router_request_duration_seconds_count", route="auto") == 3
    assert value(metrics, "sdm_router_request_duration_seconds_sum", route="auto") == (
        pytest.approx(1.85)
    )
    assert (
        value(metrics, "sdm_router_request_duration_seconds_bucket", route="auto", le="0.08") == 1
    )


def test_attempt_counts_decision_and_region_alpha(metrics: GatewayMetrics) -> None:
    metrics.attempt("auto", 0, "small", "escalate", "below_alpha", 0.6)
    metrics.attempt("auto", 1, "large", "accept", "verified", 0.95)
    metrics.attempt("auto", 1, "large", "abstain", "backend_error", None)
    labels = {"route": "auto", "tier": "0", "model": "small"}
    assert (
        value(
            metrics, "sdm_router_decisions_total", **labels, action="escalate", reason="below_alpha"
        )
        == 1
    )
    # region alpha observed only for verified attempts, in per-rung buckets
    assert value(metrics, "sdm_router_region_alpha_count", route="auto", tier="1") == 1
    assert value(metrics, "sdm_router_region_alpha_bucket", route="auto", tier="1", le="0.9") == 0
    assert value(metrics, "sdm_router_region_alpha_bucket", route="auto", tier="1", le="0.95") == 1
    assert value(metrics, "sdm_router_region_alpha_bucket", route="auto", tier="0", le="0.6") == 1
    assert value(metrics, "sdm_router_region_alpha_bucket", route="auto", tier="0", le="0.55") == 0


def test_routing_counts_each_step_by_route_and_action(metrics: GatewayMetrics) -> None:
    metrics.routing("auto", "skip")
    metrics.routing("auto", "skip")
    metrics.routing("auto", "abstain")
    assert value(metrics, "sdm_router_routing_total", route="auto", action="skip") == 2
    assert value(metrics, "sdm_router_routing_total", route="auto", action="abstain") == 1
    with pytest.raises(ValueError):
        metrics.routing("auto", "jump")


def test_no_region_alpha_zero_lands_in_the_first_bucket(metrics: GatewayMetrics) -> None:
    metrics.attempt("auto", 0, "small", "abstain", "no_region", 0.0)
    assert value(metrics, "sdm_router_region_alpha_bucket", route="auto", tier="0", le="0.0") == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.request_finished("auto", "accepted", 1.0), "outcome"),
        (lambda m: m.attempt("auto", 0, "s", "reject", "verified", 0.9), "action"),
        (lambda m: m.attempt("auto", 0, "s", "accept", "because", 0.9), "reason"),
        (lambda m: m.attempt("auto", -1, "s", "accept", "verified", 0.9), "tier"),
        (lambda m: m.attempt("auto", 0, "s", "accept", "verified", 1.5), "region_alpha"),
        (lambda m: m.attempt("", 0, "s", "accept", "verified", 0.9), "route"),
        (lambda m: m.stage("decode", 0.1), "stage"),
        (lambda m: m.backend_error("b", "timed_out"), "error_type"),
        (lambda m: m.tokens("auto", "s", "total", 3), "token_type"),
        (lambda m: m.tokens("auto", "s", "input", -1), "token count"),
        (lambda m: m.verifier_batch(0), "batch size"),
    ],
)
def test_labels_outside_the_closed_sets_are_rejected(
    metrics: GatewayMetrics, call: Callable[[GatewayMetrics], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(metrics)
    # nothing was recorded for the rejected call
    assert not [
        k
        for k, v in samples(metrics).items()
        if k[0].startswith("sdm_router_") and not k[0].endswith("_created") and v
    ]


def test_stage_backend_batch_and_tokens(metrics: GatewayMetrics) -> None:
    metrics.stage("verify", 0.004)
    with metrics.time_stage("generate"):
        pass
    with pytest.raises(RuntimeError), metrics.time_stage("retrieve"):
        raise RuntimeError("the retrieval failed; its time still counts")
    metrics.backend_error("vllm-small", "timeout")
    metrics.verifier_batch(8)
    metrics.tokens("auto", "small", "input", 120)
    metrics.tokens("auto", "small", "output", 30)
    for stage in ("verify", "generate", "retrieve"):
        assert value(metrics, "sdm_router_stage_duration_seconds_count", stage=stage) == 1
    assert (
        value(
            metrics, "sdm_router_backend_errors_total", backend="vllm-small", error_type="timeout"
        )
        == 1
    )
    assert value(metrics, "sdm_router_verifier_batch_size_bucket", le="4.0") == 0
    assert value(metrics, "sdm_router_verifier_batch_size_bucket", le="8.0") == 1
    assert (
        value(
            metrics, "sdm_router_token_usage_sum", route="auto", model="small", token_type="input"
        )
        == 120
    )


def test_inflight_gauge_tracks_the_block(metrics: GatewayMetrics) -> None:
    with metrics.track_inflight():
        with metrics.track_inflight():
            assert value(metrics, "sdm_router_inflight_requests") == 2
        assert value(metrics, "sdm_router_inflight_requests") == 1
    assert value(metrics, "sdm_router_inflight_requests") == 0


def test_verifier_info_is_replaced_not_accumulated(metrics: GatewayMetrics) -> None:
    metrics.set_verifier_info("artifact-a", "cpu")
    metrics.set_verifier_info("artifact-b", "cuda:0")
    info = {k: v for k, v in samples(metrics).items() if k[0] == "sdm_router_verifier_info"}
    assert info == {
        (
            "sdm_router_verifier_info",
            frozenset({("artifact_id", "artifact-b"), ("device", "cuda:0")}),
        ): 1
    }


def test_declare_route_creates_zero_outcome_series(metrics: GatewayMetrics) -> None:
    metrics.declare_route("auto")
    for outcome in OUTCOMES:
        assert value(metrics, "sdm_router_requests_total", route="auto", outcome=outcome) == 0


def test_render_is_prometheus_text_with_process_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    body, content_type = GatewayMetrics().render()
    assert content_type.startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"sdm_router_requests", "sdm_router_decisions", "sdm_router_inflight_requests"} <= names
    assert "process_cpu_seconds" in names or sys.platform != "linux"


def test_two_instances_with_their_own_registries_are_independent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first, second = GatewayMetrics(), GatewayMetrics()
    first.request_finished("auto", "accept", 0.1)
    assert value(first, "sdm_router_requests_total", route="auto", outcome="accept") == 1
    assert (
        "sdm_router_requests_total",
        frozenset({("route", "auto"), ("outcome", "accept")}),
    ) not in (samples(second))


WORKER = textwrap.dedent(
    """
    import sys
    from sdm_router.observability.metrics import GatewayMetrics
    metrics = GatewayMetrics()
    outcome = sys.argv[1]
    metrics.request_finished("auto", outcome, 0.1)
    metrics.attempt("auto", 0, "small", "accept" if outcome == "accept" else "abstain",
                    "verified" if outcome == "accept" else "ood", 0.9)
    metrics.set_verifier_info("artifact-a", "cpu")
    if sys.argv[2] == "stay-inflight":
        metrics._inflight.inc()  # a request still running when the worker is sampled
    if sys.argv[2] == "exit-cleanly":
        metrics._inflight.inc()
        metrics.shutdown()
    sys.stdout.write(metrics.render()[0].decode())
    """
)


def test_multiprocess_render_aggregates_over_workers(tmp_path: Path) -> None:
    """Several worker processes (as uvicorn --workers) share PROMETHEUS_MULTIPROC_DIR."""
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_999.db").write_bytes(b"")  # stale file from an earlier run
    assert clear_multiprocess_dir(directory) == 1
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO_ROOT)}

    def worker(outcome: str, mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, outcome, mode],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout

    worker("accept", "stay-inflight")
    worker("accept", "exit-cleanly")
    last = worker("abstain", "stay-inflight")
    families = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(last)
        for s in f.samples
    }
    accept = frozenset({("route", "auto"), ("outcome", "accept")})
    abstain = frozenset({("route", "auto"), ("outcome", "abstain")})
    assert families[("sdm_router_requests_total", accept)] == 2
    assert families[("sdm_router_requests_total", abstain)] == 1
    assert (
        families[("sdm_router_request_duration_seconds_count", frozenset({("route", "auto")}))] == 3
    )
    # livesum: the cleanly exited worker's in-flight request is gone, the two others remain
    assert families[("sdm_router_inflight_requests", frozenset())] == 2
    # livemax: one info series, not one per worker
    info = [k for k in families if k[0] == "sdm_router_verifier_info"]
    assert info == [
        ("sdm_router_verifier_info", frozenset({("artifact_id", "artifact-a"), ("device", "cpu")}))
    ]
    # process metrics are not aggregated over workers
    assert not any(name.startswith("process_") for name, _ in families)
