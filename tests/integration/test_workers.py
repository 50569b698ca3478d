"""``serve --workers 2`` on a real port: both workers take a fair share of many connections,
``/metrics`` sums both, a dead run's metric files are removed at start, and SIGTERM to the
supervisor drains both workers (readiness 503, in-flight requests finished) and exits 0.

The gateway is ``loadtests.replicas_gateway`` (``build_app`` with ``NoopVerifier`` and the
``serve --workers`` code, ``sdm_router.api.serve.workers.serve_workers``): ``sdm-router serve``
itself needs a trained verifier artifact."""

from __future__ import annotations

import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from loadtests.replicas import Child, free_port, gateway_config, start, wait_until_ready
from loadtests.replicas_upstream import DelayedUpstream
from tests.support.servers import serve_in_thread

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing"),
]

WORKERS = 2
DRAIN_DELAY = 1.5
GRACE = 4
REQUESTS = 200
QUESTION = [{"role": "user", "content": "What is six times seven?"}]
STALE = "counter_999999.db"  # a file left by a worker of a previous run


@pytest.fixture
def upstream() -> Iterator[tuple[str, DelayedUpstream]]:
    app = DelayedUpstream()
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / STALE).write_bytes(b"not a metrics file")
    return directory


@pytest.fixture
def gateway(
    upstream: tuple[str, DelayedUpstream], tmp_path: Path, metrics_dir: Path
) -> Iterator[Child]:
    config = gateway_config(
        upstream[0],
        upstream_model="delay-0",
        extra_routes={"slow": "delay-1500"},
        storage={"path": str(tmp_path / "decisions.sqlite3"), "flush_interval_ms": 50},
        server={"drain_delay_seconds": DRAIN_DELAY, "graceful_shutdown_seconds": GRACE},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    command = [sys.executable, "-m", "loadtests.replicas_gateway", "--config", str(path)]
    command += ["--port", str(port), "--workers", str(WORKERS)]
    child = start("gateway", command, tmp_path, port, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        wait_until_ready(child)
        deadline = time.monotonic() + 180
        while child.tail(1_000_000).count("Application startup complete") < WORKERS:
            assert child.process.poll() is None, child.tail()
            assert time.monotonic() < deadline, child.tail()
            time.sleep(0.1)
        time.sleep(0.3)  # the last one listens right after its startup
        yield child
    finally:
        child.stop()


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def worker_pids(directory: Path) -> set[int]:
    return {int(m[1]) for p in directory.iterdir() if (m := re.fullmatch(r"\w+_(\d+)\.db", p.name))}


def requests_served(directory: Path, pid: int, scratch: Path) -> float:
    """``sdm_router_requests_total`` (all labels) of one worker, from its own counter file."""
    own = scratch / str(pid)
    own.mkdir()
    shutil.copy(directory / f"counter_{pid}.db", own)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(own))
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == "sdm_router_requests"
        for sample in family.samples
        if sample.name == "sdm_router_requests_total"
    )


def aggregated_requests(url: str) -> float:
    """The accepted requests of route ``auto`` in ``/metrics`` (on a new connection)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(
        r'^sdm_router_requests_total\{outcome="accept",route="auto"\} (\S+)$', text, re.M
    )
    assert match, text[:2000]
    return float(match[1])


def chat(url: str, route: str = "auto") -> int:
    """One chat request on a connection of its own."""
    with httpx.Client(timeout=60) as client:
        reply = client.post(
            f"{url}/v1/chat/completions", json={"model": route, "messages": QUESTION}
        )
    return reply.status_code


def test_workers_share_load_aggregate_metrics_and_drain(
    gateway: Child, metrics_dir: Path, tmp_path: Path
) -> None:
    supervisor = gateway.process.pid
    assert not (metrics_dir / STALE).exists(), "the previous run's files were not removed"
    pids = worker_pids(metrics_dir)
    assert len(pids) == WORKERS and supervisor not in pids, pids
    assert all(parent_pid(pid) == supervisor for pid in pids)

    # 1. many connections: each worker serves a fair share
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: chat(gateway.url), range(REQUESTS)))
    assert statuses == [200] * REQUESTS
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    served = {pid: requests_served(metrics_dir, pid, scratch) for pid in pids}
    assert sum(served.values()) == REQUESTS, served
    assert all(count >= 0.3 * REQUESTS for count in served.values()), served

    # 2. /metrics sums both workers, whichever answers
    assert {aggregated_requests(gateway.url) for _ in range(6)} == {REQUESTS}

    # 3. SIGTERM to the supervisor: both workers drain, in-flight requests finish
    results: dict[int, Any] = {}

    def slow(number: int) -> None:
        try:
            results[number] = chat(gateway.url, "slow")
        except httpx.HTTPError as error:
            results[number] = type(error).__name__

    threads = [threading.Thread(target=slow, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # all six reached the upstream (1.5 s each)
    gateway.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    for _ in range(6):  # new connections land on both workers: all of them drain
        assert httpx.get(f"{gateway.url}/readyz", timeout=2).status_code == 503
    assert time.monotonic() - signalled < DRAIN_DELAY
    for thread in threads:
        thread.join(timeout=DRAIN_DELAY + GRACE + 10)
    assert results == dict.fromkeys(range(6), 200)

    code = gateway.process.wait(timeout=DRAIN_DELAY + GRACE + 15)
    assert code == 0, gateway.tail()
    assert time.monotonic() - signalled < DRAIN_DELAY + GRACE + 10
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
        assert not (metrics_dir / f"gauge_livesum_{pid}.db").exists()  # live gauges dropped
    log = gateway.tail(10_000_000)
    assert log.count("SIGTERM: draining") == WORKERS, log[-3000:]
    assert log.count("drain delay over") == WORKERS
