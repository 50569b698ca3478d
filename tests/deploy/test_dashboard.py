"""The Grafana dashboard: structure, variables, and PromQL that names real metrics and parses.

Whether every query returns data against a live gateway is checked by
tests/integration/test_prometheus_dashboard.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sdm_router.core.guarantee import assess
from sdm_router.observability.metrics import GatewayMetrics
from tests.support.prometheus import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_PATH = REPO_ROOT / "deploy/grafana/dashboards/sdm-router.json"
VARIABLE_VALUES = {"__rate_interval": "1m", "__interval": "15s", "route": ".*", "model_name": ".*"}
# vLLM V1 engine metric names the dashboard relies on (vllm docs/design/metrics.md).
VLLM_METRICS = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket",
    "vllm:inter_token_latency_seconds_bucket",
}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "or", "on", "vector", "max"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return loaded


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def exported_sample_names() -> set[str]:
    """Every sample name GatewayMetrics can export, each metric touched once."""
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.request_finished("r", "accept", 0.1)
    metrics.attempt("r", 0, "m", "accept", "verified", 0.9)
    metrics.routing("r", "skip")
    metrics.stage("verify", 0.01)
    metrics.backend_error("b", "timeout")
    metrics.verifier_batch(2)
    metrics.set_verifier_info("a", "cpu")
    metrics.tokens("r", "m", "input", 3)
    metrics.labeling_event("labelled")
    metrics.labeling_queue(1)
    metrics.label_agreement("judge:j", 0.9, 10)
    metrics.route_guarantee("r", assess(28, 28, 0.95), observing=False, accept_alpha=0.95)
    body, _ = metrics.render()
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def substitute(expr: str) -> str:
    return re.sub(
        r"\$\{(\w+)(?::\w+)?\}|\$(\w+)",
        lambda m: VARIABLE_VALUES[m.group(1) or m.group(2)],
        expr,
    )


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_selectors = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", without_strings)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_selectors))
    labels = set(re.findall(r"(?:by|on)\s*\(([^)]*)\)", without_selectors))
    label_names = {name.strip() for group in labels for name in group.split(",")}
    return tokens - PROMQL_WORDS - label_names


def test_layout_and_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "sdm-router"
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_shows_what_the_brief_asks_for(dashboard: dict[str, Any]) -> None:
    titles = {panel["title"] for panel in all_panels(dashboard)}
    for wanted in (
        "Acceptance rate",
        "Abstention rate",
        "Escalation rate",
        "Retrieval rate",
        "OOD rate",
        "Decisions by tier and action",
        "Region alpha distribution",
        "Request latency",
        "Stage latency",
        "Backend errors",
        "Verifier batch size",
        "Observed rate",
        "Guarantee status",
        "Guarantee: precision and lower bound against accept_alpha",
        "Labelled accepted answers",
        "Labelling",
        "Judge-human agreement",
    ):
        assert wanted in titles
    assert any(title.startswith("vLLM") for title in titles)
    by_title = {panel["title"]: panel for panel in all_panels(dashboard)}
    for ratio in ("Acceptance rate", "Abstention rate", "Escalation rate", "Retrieval rate"):
        panel = by_title[ratio]
        assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
        assert "by (route)" in panel["targets"][0]["expr"], "ratios are shown per route"
    latency = [t["expr"] for t in by_title["Request latency"]["targets"]]
    assert [e.split(",")[0] for e in latency] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]


def test_variables_are_defined_and_used(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["route"]["query"]["query"] == "label_values(sdm_router_requests_total, route)"
    used = {
        m.group(1) or m.group(2)
        for _, expr in expressions(dashboard)
        for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr)
    }
    assert used <= set(variables) | {"__rate_interval"}


def test_every_query_names_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_sample_names()
    for title, expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        unknown = names - exported - VLLM_METRICS
        assert not unknown, f"{title}: {unknown} not exported by GatewayMetrics ({expr})"


def test_every_query_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each expression (as a recording rule) after variable substitution."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": substitute(expr)}
                    for index, (_, expr) in enumerate(expressions(dashboard))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(expressions(dashboard))} rules found" in done.stdout


def test_provisioning_points_at_the_dashboard_folder() -> None:
    provider = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/dashboards/sdm-router.yml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    datasource = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
