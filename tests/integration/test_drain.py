"""SIGTERM drains a real gateway process step by step: readiness 503 at once while it still
accepts, connections refused after the drain delay, in-flight requests finished, the one past
the bound cancelled upstream, exit within the bound, decision records flushed, one log line
per request."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtests.replicas import Child, gateway_config, start_gateway, wait_until_ready
from loadtests.replicas_upstream import DelayedUpstream
from tests.support.servers import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRAIN_DELAY = 2.0
GRACE = 3  # server.graceful_shutdown_seconds
SLOW_MS = 2500  # in flight at SIGTERM, done before the grace period ends
QUESTION = [{"role": "user", "content": "What is six times seven?"}]


@pytest.fixture
def upstream() -> Iterator[tuple[str, DelayedUpstream]]:
    app = DelayedUpstream()
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
def gateway(upstream: tuple[str, DelayedUpstream], tmp_path: Path) -> Iterator[Child]:
    config = gateway_config(
        upstream[0],
        upstream_model="delay-0",
        extra_routes={"slow": f"delay-{SLOW_MS}", "forever": "delay-600000"},
        storage={"path": str(tmp_path / "decisions.sqlite3"), "flush_interval_ms": 50},
        server={"drain_delay_seconds": DRAIN_DELAY, "graceful_shutdown_seconds": GRACE},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    child = start_gateway("gateway", path, tmp_path)
    try:
        wait_until_ready(child)
        yield child
    finally:
        child.stop()


SERVER_IDS: dict[str, str] = {}  # the client's x-request-id -> the gateway's


def chat(url: str, route: str, request_id: str, results: dict[str, Any]) -> None:
    """POST one chat request on a connection of its own; store the status (or the error)."""
    try:
        with httpx.Client(timeout=60) as client:
            reply = client.post(
                f"{url}/v1/chat/completions",
                json={"model": route, "messages": QUESTION},
                headers={"x-request-id": request_id},
            )
        results[request_id] = reply.status_code
        SERVER_IDS[request_id] = reply.headers.get("x-request-id", "")  # the store keys by it
    except httpx.HTTPError as error:
        results[request_id] = type(error).__name__


def refused(port: int) -> bool:
    """Whether a new TCP connection to ``port`` is refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def request_lines(log: Path) -> dict[str, list[dict[str, Any]]]:
    """The gateway's ``request finished`` lines by request id."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for text in log.read_text().splitlines():
        if '"request finished"' in text:
            record = json.loads(text)
            key = record.get("client_request_id") or record.get("request_id")
            lines.setdefault(key, []).append(record)
    return lines


def test_sigterm_drains_step_by_step(
    gateway: Child, upstream: tuple[str, DelayedUpstream], tmp_path: Path
) -> None:
    url, stats = gateway.url, upstream[1].stats
    results: dict[str, Any] = {}
    chat(url, "auto", "before-drain", results)
    assert results["before-drain"] == 200

    in_flight = {f"slow-{n}": "slow" for n in range(3)} | {"forever": "forever"}
    threads = [
        threading.Thread(target=chat, args=(url, route, request_id, results))
        for request_id, route in in_flight.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while stats["requests"] - stats["completed"] < len(in_flight):  # all four reached upstream
        assert time.monotonic() < deadline, dict(stats)
        time.sleep(0.02)

    gateway.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    # 1. readiness answers 503 at once, on a new connection (still accepted), and new requests
    #    are still served during the delay
    deadline = signalled + 1.0
    while (ready := httpx.get(f"{url}/readyz", timeout=2)).status_code != 503:
        assert time.monotonic() < deadline, "readyz did not turn 503 within 1 s of SIGTERM"
        time.sleep(0.02)
    assert ready.json()["status"] == "draining"
    assert ready.headers["connection"] == "close"  # load balancers stop reusing connections
    assert time.monotonic() - signalled < DRAIN_DELAY
    chat(url, "auto", "during-delay", results)
    assert results["during-delay"] == 200
    assert time.monotonic() - signalled < DRAIN_DELAY, "the check ran past the delay"

    # 2. after the delay, new connections are refused
    while not refused(gateway.port):
        assert time.monotonic() - signalled < DRAIN_DELAY + 2.0, "still accepting connections"
        time.sleep(0.05)
    refused_after = time.monotonic() - signalled
    assert refused_after >= DRAIN_DELAY - 0.2, f"refused after {refused_after:.2f} s only"

    # 3. the in-flight requests finish; the one past the grace period is cancelled upstream
    for thread in threads:
        thread.join(timeout=DRAIN_DELAY + GRACE + 10)
    assert [results[f"slow-{n}"] for n in range(3)] == [200, 200, 200]
    assert results["forever"] != 200
    deadline = time.monotonic() + 5
    while stats["disconnects"] < 1:
        assert time.monotonic() < deadline, f"the upstream call was not cancelled: {dict(stats)}"
        time.sleep(0.05)

    # 4. the process exits by itself within drain delay + grace (+ the store's flush), status 0
    code = gateway.process.wait(timeout=DRAIN_DELAY + GRACE + 10)
    exited_after = time.monotonic() - signalled
    assert code == 0, gateway.tail()
    assert exited_after < DRAIN_DELAY + GRACE + 5, f"exited after {exited_after:.1f} s"

    # 5. the decision store was flushed: every answered request is on disk
    answered = {"before-drain", "during-delay", "slow-0", "slow-1", "slow-2"}
    with sqlite3.connect(tmp_path / "decisions.sqlite3") as connection:
        stored = {row[0] for row in connection.execute("select request_id from decisions")}
    assert {SERVER_IDS[name] for name in answered} <= stored, (answered, stored)

    # 6. one request line per request, the cancelled one included
    lines = request_lines(gateway.log)
    for request_id in [*answered, "forever"]:
        assert len(lines.get(request_id, [])) == 1, (request_id, lines.get(request_id))
    assert lines["slow-0"][0]["status"] == 200
    assert (lines["forever"][0]["status"], lines["forever"][0]["cancelled"]) == (500, True)
    readyz = [r for rs in lines.values() for r in rs if r["http_route"] == "/readyz"]
    assert any(r["status"] == 503 for r in readyz)
    log = gateway.tail(100_000)
    assert "SIGTERM: draining" in log and "drain delay over" in log
