"""A real Prometheus scrapes a running gateway; every dashboard query must return data.

Traffic produces both accept and abstain outcomes (prompts containing "hard" abstain). Then
every PromQL expression of ``deploy/grafana/dashboards/sdm-router.json`` is evaluated by
Prometheus (``/api/v1/query``) with Grafana's variables substituted, and must be valid and
non-empty; the outcome ratios must be real ratios (abstention among them).

The gateway comes from the ``metrics_gateway_url`` fixture (tests/integration/conftest.py:
a real uvicorn server running the gateway against a fake upstream, route ``auto``).

vLLM panels are checked against a test double of vLLM's ``/metrics`` (metric and label
names as documented by vLLM's V1 engine), scraped as job ``vllm``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tests.support.prometheus import PrometheusServer, require_prometheus, run_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "sdm-router.json"
ROUTE = "auto"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes for a 1 s scrape over minutes
SUBSTITUTIONS = {
    "__rate_interval": RATE_INTERVAL,
    "__interval": "5s",
    "route": ".*",  # the "All" value of the route variable
    "model_name": ".*",
}


# --------------------------------------------------------------------------- dashboard


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows included."""
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{panel['title']} [{target['refId']}]", target["expr"]))

    walk(dashboard["panels"])
    return found


def substitute(expr: str) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:regex}) by concrete values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in SUBSTITUTIONS:
            raise AssertionError(f"unknown Grafana variable ${name} in {expr!r}")
        return SUBSTITUTIONS[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


# --------------------------------------------------------------------------- servers


class _MetricsServer(ThreadingHTTPServer):
    """An HTTP server whose ``render`` gives the /metrics body and its content type."""

    render: Callable[[], tuple[bytes, str]]


class _MetricsHandler(BaseHTTPRequestHandler):
    """Serves GET /metrics from ``server.render``."""

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        del format, args

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        assert isinstance(self.server, _MetricsServer)
        body, content_type = self.server.render()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scraped_gateway_url(metrics_gateway_url: str) -> str:
    """The running gateway (route ``auto``: "hard" prompts abstain, others are accepted)."""
    return metrics_gateway_url.rstrip("/")


class FakeVLLM:
    """Test double of a vLLM server's /metrics (V1 engine names, label ``model_name``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        reg = self.registry
        self.running = Gauge("vllm:num_requests_running", "running", labels, registry=reg)
        self.waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=reg)
        self.kv = Gauge("vllm:kv_cache_usage_perc", "kv", labels, registry=reg)
        self.prompt = Counter("vllm:prompt_tokens", "prompt", labels, registry=reg)
        self.generation = Counter("vllm:generation_tokens", "gen", labels, registry=reg)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "ttft", labels, registry=reg)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "e2e", labels, registry=reg)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "itl", labels, registry=reg)

    def serve_one_request(self, model: str) -> None:
        """Record what one generation request does to vLLM's metrics."""
        self.running.labels(model).set(1)
        self.waiting.labels(model).set(0)
        self.kv.labels(model).set(0.25)
        self.prompt.labels(model).inc(12)
        self.generation.labels(model).inc(7)
        self.ttft.labels(model).observe(0.03)
        self.e2e.labels(model).observe(0.2)
        self.itl.labels(model).observe(0.01)


@pytest.fixture
def fake_vllm() -> Iterator[tuple[FakeVLLM, str]]:
    vllm = FakeVLLM()
    server = _MetricsServer(("127.0.0.1", 0), _MetricsHandler)
    server.render = lambda: (generate_latest(vllm.registry), "text/plain; version=0.0.4")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield vllm, f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- traffic


def _chat(base_url: str, prompt: str) -> None:
    body = json.dumps(
        {"model": ROUTE, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def _send_traffic(gateway: str, vllm: FakeVLLM, rounds: int = 6) -> None:
    """Accept and abstain traffic spread over several 1 s scrapes (rates need >= 2 samples)."""
    for index in range(rounds):
        for prompt in ("What is 2 + 2?", "Name a colour.", "Capital of France?"):
            _chat(gateway, f"{prompt} ({index})")
        for prompt in ("A hard question about quantum gravity", "Another hard riddle"):
            _chat(gateway, f"{prompt} ({index})")
        vllm.serve_one_request("small-model")
        vllm.serve_one_request("large-model")
        time.sleep(1.1)
    time.sleep(2.5)  # let the last increments be scraped


def _host_port(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _value(result: list[dict[str, Any]], route: str = ROUTE) -> float:
    for sample in result:
        if sample["metric"].get("route") == route:
            return float(sample["value"][1])
    raise AssertionError(f"no sample for route {route!r} in {result}")


# --------------------------------------------------------------------------- tests


@pytest.fixture
def prometheus(
    scraped_gateway_url: str, fake_vllm: tuple[FakeVLLM, str], tmp_path: Path
) -> Iterator[PrometheusServer]:
    require_prometheus()
    targets = {"sdm-router": [_host_port(scraped_gateway_url)], "vllm": [_host_port(fake_vllm[1])]}
    with run_prometheus(targets, tmp_path / "prometheus") as server:
        server.wait_for_targets_up(timeout=30)
        yield server


def test_every_dashboard_query_returns_data(
    prometheus: PrometheusServer, scraped_gateway_url: str, fake_vllm: tuple[FakeVLLM, str]
) -> None:
    _send_traffic(scraped_gateway_url, fake_vllm[0])

    expressions = dashboard_expressions()
    assert len(expressions) >= 20, "the dashboard lost its panels"
    empty: list[str] = []
    for title, expr in expressions:
        result = prometheus.query(substitute(expr))  # raises PromQLError when invalid
        if not result:
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    # The template variables' label_values() sources exist and carry their labels.
    routes = {s["metric"]["route"] for s in prometheus.query("sdm_router_requests_total")}
    assert ROUTE in routes
    models = {s["metric"]["model_name"] for s in prometheus.query("vllm:num_requests_running")}
    assert models == {"small-model", "large-model"}


def test_outcome_ratios_are_real_ratios(
    prometheus: PrometheusServer, scraped_gateway_url: str, fake_vllm: tuple[FakeVLLM, str]
) -> None:
    _send_traffic(scraped_gateway_url, fake_vllm[0], rounds=4)
    ratios = {
        title.split(" [")[0]: _value(prometheus.query(substitute(expr)))
        for title, expr in dashboard_expressions()
        if title.split(" [")[0] in {"Acceptance rate", "Abstention rate", "Error rate"}
    }
    assert set(ratios) == {"Acceptance rate", "Abstention rate", "Error rate"}
    # 2 of every 5 prompts are "hard" and abstain; rate extrapolation blurs the exact 0.4.
    assert 0.2 < ratios["Abstention rate"] < 0.6, ratios
    assert 0.4 < ratios["Acceptance rate"] < 0.8, ratios
    assert ratios["Error rate"] == 0.0, ratios
    assert sum(ratios.values()) == pytest.approx(1.0), ratios
