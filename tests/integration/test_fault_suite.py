"""The fault suite: the real gateway over real HTTP in front of a programmable broken upstream
(``tests/support/fault_upstream.py``), one fault per test.

Each test checks three things: the latency is bounded; the answer is clean (a retry that
succeeds, the next tier, or a 502/503/504 in the OpenAI error envelope; mid-stream, one error
frame then ``[DONE]``); and nothing leaks (the upstream has no request left in progress, the
gateway's event loop is back to the tasks it had when idle). Every test adds a row to the
fault -> outcome -> latency table printed at the end of the module (``pytest -s``).

Backends: each test has its own (its own name, circuit breaker and retry series) with
connect/read timeouts of 1 s, three attempts with short backoff, and a breaker that opens after
three failed calls for one second; ``spare`` is a healthy next tier. Routes: ``<name>`` (direct:
one tier, errors reach the client), ``<name>-cascade`` (then ``spare``), ``<name>-live``
(passthrough streaming).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from sdm_router.observability.metrics import GatewayMetrics
from tests.fakes import FakeRetriever, FakeVerifier
from tests.support.fake_upstream import CONFIDENT
from tests.support.fault_upstream import Fault, FaultUpstream, fault_upstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is six times seven?"}]
DEADLINE = 3.0  # server.request_timeout_seconds
FAST = {"connect": 1, "read": 1, "total": 4}
PATIENT = {"connect": 1, "read": 30, "total": 30}
RETRIES = {
    "max_attempts": 3,
    "backoff_initial": 0.05,
    "backoff_max": 0.4,
    "jitter": 0.02,
    "retry_after_max": 2.0,
}
BREAKER = {"failure_threshold": 3, "open_seconds": 1.0}
FAULTY = [
    "delay", "rate", "five", "unavail", "alldown", "hang", "hangstream", "trunc", "nodone",
    "malformed", "reset1", "resetall", "resetstream", "retrylong", "streamretry", "breaker",
]  # fmt: skip
# these wait on the request deadline or the client, not on a read timeout
PATIENT_BACKENDS = ["deadline", "slowpoke", "cancel"]


@dataclass
class Row:
    """One line of the closing table."""

    fault: str
    path: str
    outcome: str
    seconds: float
    upstream_calls: int


TABLE: list[Row] = []


class LoopProbe:
    """Wraps the gateway app to learn the event loop uvicorn runs it on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> int:
        """How many tasks the gateway's loop has now."""
        assert self.loop is not None

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1  # not this one

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(5)


@dataclass
class Rig:
    """The upstream, the gateway in front of it, its metrics and its idle task count."""

    upstream: FaultUpstream
    url: str
    probe: LoopProbe
    metrics: GatewayMetrics
    idle_tasks: int = 0

    def settled(self, timeout: float = 5.0) -> bool:
        """Wait until no upstream request is in progress and the gateway is back to idle."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if self.upstream.in_progress == 0 and self.probe.tasks() <= self.idle_tasks:
                return True
            time.sleep(0.02)
        return False

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the gateway's registry (0 when absent)."""
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def _backend(url: str, model: str, timeouts: Mapping[str, float]) -> dict[str, Any]:
    return {
        "type": "openai", "base_url": f"{url}/v1", "model": model, "timeouts": timeouts,
        "retries": RETRIES, "circuit_breaker": BREAKER,
    }  # fmt: skip


def _app(upstream: FaultUpstream, metrics: GatewayMetrics) -> ASGIApp:
    url = upstream.url
    backends = {name: _backend(url, name, FAST) for name in FAULTY}
    backends.update({name: _backend(url, name, PATIENT) for name in PATIENT_BACKENDS})
    # the deadline, not the backend's retry_after_max, is what bounds this one's pauses
    backends["deadline"]["retries"] = {**RETRIES, "retry_after_max": 60.0}
    backends["spare"] = _backend(url, "spare", FAST)
    routes: dict[str, Any] = {"auto": {"tiers": [{"backend": "spare"}]}}
    for name in FAULTY + PATIENT_BACKENDS:
        routes[f"{name}-cascade"] = {"tiers": [{"backend": name}, {"backend": "spare"}]}
        routes[f"{name}-live"] = {"tiers": [{"backend": name}], "stream_mode": "passthrough"}
    return fake_app(
        url, backends=backends, routes=routes, retrieval=None, verifier=FakeVerifier(),
        retriever=FakeRetriever(), metrics=metrics,
        server={"request_timeout_seconds": DEADLINE},
    )  # fmt: skip


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    """One upstream and one gateway for the module; prints the table at the end."""
    with fault_upstream() as upstream:
        metrics = GatewayMetrics()
        probe = LoopProbe(_app(upstream, metrics))
        with serve_in_thread(probe) as url:
            rig = Rig(upstream, url, probe, metrics)
            _post(rig, "auto")  # warm: pools, lazy imports
            time.sleep(0.3)
            rig.idle_tasks = probe.tasks()
            yield rig
        shutdown_ends = time.monotonic() + 5
        while upstream.open_connections and time.monotonic() < shutdown_ends:
            time.sleep(0.02)
        TABLE.append(
            Row("gateway shutdown", "-", f"{upstream.open_connections} upstream connections open",
                0.0, 0)
        )  # fmt: skip
    _print_table()


def _print_table() -> None:
    print("\n\nfault suite: fault -> outcome -> latency")
    print(f"{'fault':<44} {'path':<10} {'outcome':<58} {'latency':>8} {'calls':>5}")
    for row in TABLE:
        print(
            f"{row.fault:<44} {row.path:<10} {row.outcome:<58} {row.seconds * 1000:6.0f}ms"
            f" {row.upstream_calls:>5}"
        )


def _post(rig: Rig, model: str, timeout: float = 30) -> httpx.Response:
    with httpx.Client(timeout=timeout) as client:
        return client.post(
            f"{rig.url}/v1/chat/completions", json={"model": model, "messages": QUESTION}
        )


def _stream(rig: Rig, model: str) -> list[str]:
    body = {"model": model, "messages": QUESTION, "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{rig.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _record(rig: Rig, fault: str, path: str, outcome: str, seconds: float, name: str) -> None:
    TABLE.append(Row(fault, path, outcome, seconds, rig.upstream.calls[name]))
    assert rig.settled(), (
        f"leak after {fault}: upstream in progress {rig.upstream.in_progress}, "
        f"gateway tasks {rig.probe.tasks()} (idle {rig.idle_tasks})"
    )


def _envelope(reply: httpx.Response) -> dict[str, Any]:
    error = reply.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    return dict(error)


def _verification(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == CONFIDENT
    return dict(body["verification"])


def _stream_error(data: list[str]) -> dict[str, Any]:
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert any(json.loads(item).get("choices") for item in data[:-2])  # some text came first
    return dict(error)


# ---------------------------------------------------------------- before the first byte


def test_a_slow_upstream_is_waited_for(rig: Rig) -> None:
    rig.upstream.script("delay", Fault.delay(0.5))
    reply, seconds = _timed(lambda: _post(rig, "delay"))
    assert _verification(reply)["tier"] == 0
    assert 0.5 <= seconds < 1.5
    _record(rig, "delay 0.5 s (read timeout 1 s)", "direct", "200, no retry", seconds, "delay")
    assert rig.upstream.calls["delay"] == 1


def test_a_429_is_retried_after_its_retry_after(rig: Rig) -> None:
    rig.upstream.script("rate", Fault.error(429, retry_after="0.4"))
    reply, seconds = _timed(lambda: _post(rig, "rate"))
    assert _verification(reply)["tier"] == 0
    assert 0.4 <= seconds < 1.5  # the upstream's 0.4 s, not the 0.05 s backoff
    assert rig.upstream.calls["rate"] == 2
    assert rig.metric("sdm_router_backend_retries_total", backend="rate", reason="rate_limited")
    _record(rig, "429 retry-after 0.4 s, then ok", "direct", "200 after 1 retry", seconds, "rate")


def test_a_500_is_retried_with_backoff(rig: Rig) -> None:
    rig.upstream.script("five", Fault.error(500), Fault.error(500))
    reply, seconds = _timed(lambda: _post(rig, "five"))
    assert _verification(reply)["tier"] == 0
    assert rig.upstream.calls["five"] == 3
    assert seconds < 1.5
    retries = rig.metric("sdm_router_backend_retries_total", backend="five", reason="server_error")
    assert retries == 2
    _record(rig, "500, 500, then ok", "direct", "200 after 2 retries", seconds, "five")


def test_a_503_on_every_attempt_moves_to_the_next_tier(rig: Rig) -> None:
    rig.upstream.script("unavail", *[Fault.error(503)] * 3)
    reply, seconds = _timed(lambda: _post(rig, "unavail-cascade"))
    verification = _verification(reply)
    assert verification["tier"] == 1
    assert verification["attempts"][0]["reason"] == "backend_error"
    assert rig.upstream.calls["unavail"] == 3
    assert seconds < 1.5
    _record(
        rig, "503 x3 (every attempt)", "cascade", "tier 1 answers (backend_error)", seconds,
        "unavail",
    )  # fmt: skip


def test_a_500_on_every_attempt_is_a_502_in_the_envelope(rig: Rig) -> None:
    rig.upstream.script("alldown", *[Fault.error(500)] * 3)
    reply, seconds = _timed(lambda: _post(rig, "alldown"))
    assert reply.status_code == 502
    error = _envelope(reply)
    assert error["code"] == "upstream_server_error"
    assert "scripted 500" in error["message"]
    assert seconds < 1.5
    _record(
        rig, "500 x3 (every attempt)", "direct", "502 upstream_server_error", seconds, "alldown"
    )


def _disconnects(rig: Rig, model: str, expected: int, within: float = 3.0) -> int:
    """The upstream's hang-up count for ``model`` once it reaches ``expected`` (or the wait
    ends)."""
    ends = time.monotonic() + within
    while rig.upstream.disconnects[model] < expected and time.monotonic() < ends:
        time.sleep(0.02)
    return rig.upstream.disconnects[model]


def test_a_hang_before_the_headers_times_out_to_the_next_tier(rig: Rig) -> None:
    rig.upstream.script("hang", Fault.hang_before_headers(), Fault.hang_before_headers())
    reply, seconds = _timed(lambda: _post(rig, "hang-cascade"))
    verification = _verification(reply)
    assert verification["tier"] == 1
    assert 1.0 <= seconds < 2.0  # one read timeout; a timeout is not retried
    assert rig.upstream.calls["hang"] == 1
    _record(rig, "hang before headers", "cascade", "read timeout 1 s, tier 1", seconds, "hang")
    reply, seconds = _timed(lambda: _post(rig, "hang"))
    assert reply.status_code == 504
    assert _envelope(reply)["code"] == "upstream_timeout"
    # both hung requests were let go (the upstream may see the second hang-up just after the
    # gateway answered)
    assert _disconnects(rig, "hang", 2) == 2
    _record(rig, "hang before headers", "direct", "504 upstream_timeout", seconds, "hang")


def test_a_reset_before_any_response_is_retried(rig: Rig) -> None:
    rig.upstream.script("reset1", Fault.reset())
    reply, seconds = _timed(lambda: _post(rig, "reset1"))
    assert _verification(reply)["tier"] == 0
    assert rig.upstream.calls["reset1"] == 2
    assert rig.metric("sdm_router_backend_retries_total", backend="reset1", reason="connection")
    assert seconds < 2.5  # one short backoff, not a timeout
    _record(
        rig, "connection reset (RST), then ok", "direct", "200 after 1 retry", seconds, "reset1"
    )


def test_a_reset_on_every_attempt_is_a_502(rig: Rig) -> None:
    rig.upstream.script("resetall", *[Fault.reset()] * 3)
    reply, seconds = _timed(lambda: _post(rig, "resetall"))
    assert reply.status_code == 502
    assert _envelope(reply)["code"] == "upstream_connection"
    assert rig.upstream.calls["resetall"] == 3
    assert seconds < 2.5  # short backoffs, not a timeout
    _record(rig, "connection reset x3", "direct", "502 upstream_connection", seconds, "resetall")


def test_a_retry_after_beyond_the_limit_is_not_waited_for(rig: Rig) -> None:
    rig.upstream.script("retrylong", Fault.error(429, retry_after="30"))
    reply, seconds = _timed(lambda: _post(rig, "retrylong-cascade"))
    assert _verification(reply)["tier"] == 1
    assert rig.upstream.calls["retrylong"] == 1
    assert seconds < 10.0  # not 30 s
    _record(
        rig, "429 retry-after 30 s (> retry_after_max)", "cascade", "no wait, tier 1", seconds,
        "retrylong",
    )  # fmt: skip


def test_a_retry_after_past_the_deadline_fails_fast_instead(rig: Rig) -> None:
    # retry_after_max is 60 s for this backend: only the 3 s request deadline says no
    rig.upstream.script("deadline", Fault.error(429, retry_after="5"))
    reply, seconds = _timed(lambda: _post(rig, "deadline"))
    assert reply.status_code == 502
    error = _envelope(reply)
    assert error["code"] == "upstream_rate_limited"
    assert seconds < 2.5  # not a 504 at the 3 s deadline
    _record(
        rig, "429 retry-after 5 s (> deadline left)", "direct", "502 at once, no sleep", seconds,
        "deadline",
    )  # fmt: skip


def test_the_request_deadline_is_a_504_and_lets_the_upstream_go(rig: Rig) -> None:
    rig.upstream.script("slowpoke", Fault.delay(20))
    reply, seconds = _timed(lambda: _post(rig, "slowpoke"))
    assert reply.status_code == 504
    assert _envelope(reply)["code"] == "request_timeout"
    assert DEADLINE <= seconds < DEADLINE + 1
    _record(rig, "delay 20 s (deadline 3 s)", "direct", "504 request_timeout", seconds, "slowpoke")
    assert _disconnects(rig, "slowpoke", 1) == 1


def test_a_client_that_hangs_up_cancels_the_upstream_call(rig: Rig) -> None:
    rig.upstream.script("cancel", Fault.hang_before_headers())
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _post(rig, "cancel", timeout=0.5)
    ends = time.monotonic() + 5
    while not rig.upstream.disconnects["cancel"] and time.monotonic() < ends:
        time.sleep(0.02)
    seconds = time.monotonic() - started
    assert rig.upstream.disconnects["cancel"] == 1
    assert seconds < 2.0
    _record(
        rig, "client hangs up at 0.5 s (upstream hung)", "direct", "upstream let go", seconds,
        "cancel",
    )  # fmt: skip


# ---------------------------------------------------------------- streams


def test_a_stream_is_retried_before_its_first_byte(rig: Rig) -> None:
    rig.upstream.script("streamretry", Fault.error(503))
    data, seconds = _timed(lambda: _stream(rig, "streamretry-live"))
    assert data[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for item in data[:-1]
        for choice in json.loads(item).get("choices", [])
    )
    assert text == CONFIDENT
    assert rig.upstream.calls["streamretry"] == 2
    _record(rig, "503 before the first byte", "stream", "retried, streamed", seconds, "streamretry")


@pytest.mark.parametrize(
    ("name", "fault", "code", "bound"),
    [
        ("hangstream", Fault.hang_mid_stream(), "upstream_timeout", 2.0),
        ("trunc", Fault.truncated(), "upstream_protocol", 1.0),
        ("nodone", Fault.no_done(), "upstream_protocol", 1.0),
        ("malformed", Fault.malformed_chunk(), "bad_response", 1.0),
        ("resetstream", Fault.reset_mid_stream(), "upstream_protocol", 1.0),
    ],
)
def test_a_failure_after_the_first_byte_is_one_error_frame_and_no_retry(
    rig: Rig, name: str, fault: Fault, code: str, bound: float
) -> None:
    rig.upstream.script(name, fault)
    data, seconds = _timed(lambda: _stream(rig, f"{name}-live"))
    error = _stream_error(data)
    assert error["code"] == code
    assert rig.upstream.calls[name] == 1  # never retried after the first byte
    assert seconds < bound
    _record(
        rig, f"{fault.kind} mid-stream", "stream", f"error frame {code} + [DONE]", seconds, name
    )


# ---------------------------------------------------------------- the circuit breaker


def test_the_circuit_opens_skips_the_tier_and_closes_after_a_probe(rig: Rig) -> None:
    upstream, state = rig.upstream, "sdm_router_backend_circuit_state"
    upstream.script("breaker", *[Fault.error(500)] * 9)  # three calls, three attempts each
    for _ in range(3):
        assert _post(rig, "breaker").status_code == 502
    assert rig.metric(state, backend="breaker") == 2  # open
    calls = upstream.calls["breaker"]
    assert calls == 9

    refused, seconds = _timed(lambda: _post(rig, "breaker"))
    assert refused.status_code == 503
    assert _envelope(refused)["code"] == "circuit_open"
    assert upstream.calls["breaker"] == calls  # not called at all
    assert seconds < 2.0  # refused at once: no connect, no retry pause
    _record(rig, "circuit open (3 failed calls)", "direct", "503 circuit_open", seconds, "breaker")

    reply, seconds = _timed(lambda: _post(rig, "breaker-cascade"))
    verification = _verification(reply)
    assert verification["tier"] == 1
    assert verification["attempts"][0]["reason"] == "backend_error"
    assert upstream.calls["breaker"] == calls
    assert seconds < 2.0
    _record(rig, "circuit open", "cascade", "tier skipped (backend_error)", seconds, "breaker")

    time.sleep(BREAKER["open_seconds"] + 0.1)
    reply, seconds = _timed(lambda: _post(rig, "breaker"))  # the half-open probe; it succeeds
    assert _verification(reply)["tier"] == 0
    assert rig.metric(state, backend="breaker") == 0  # closed again
    _record(rig, "circuit half-open, probe ok", "direct", "200, circuit closed", seconds, "breaker")


# ---------------------------------------------------------------- the inbound side


def test_slowloris_clients_do_not_hold_up_others(rig: Rig) -> None:
    host, port = rig.url.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(32):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(sock)
        for _ in range(3):  # drip one byte each, never finishing the headers
            for sock in sockets:
                sock.sendall(b"a")
            time.sleep(0.05)
        reply, seconds = _timed(lambda: _post(rig, "auto"))
        assert reply.status_code == 200
        assert seconds < 2.0
    finally:
        for sock in sockets:
            sock.close()
    _record(
        rig, "32 slowloris connections (headers dripped)", "inbound", "others served", seconds,
        "spare",
    )  # fmt: skip


# ---------------------------------------------------------------- the pool


def test_the_pool_keeps_connections_alive_within_its_limit() -> None:
    with fault_upstream() as upstream:
        backends = {
            "pooled": {**_backend(upstream.url, "pooled", FAST), "max_connections": 2},
        }
        routes = {"auto": {"tiers": [{"backend": "pooled"}]}}
        app = fake_app(upstream.url, backends=backends, routes=routes, retrieval=None)
        with serve_in_thread(app) as url:
            with httpx.Client(base_url=url, timeout=30) as client:
                for _ in range(5):  # one after another: one connection, kept alive
                    chat = {"model": "pooled", "messages": QUESTION}
                    assert client.post("/v1/chat/completions", json=chat).status_code == 200
            assert upstream.accepted == 1
            upstream.script("pooled", *[Fault.delay(0.3)] * 6)

            async def six_at_once() -> list[int]:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    chat = {"model": "pooled", "messages": QUESTION}
                    replies = await asyncio.gather(
                        *(client.post("/v1/chat/completions", json=chat) for _ in range(6))
                    )
                return [reply.status_code for reply in replies]

            statuses, seconds = _timed(lambda: asyncio.run(six_at_once()))
            assert statuses == [200] * 6
            assert upstream.peak_connections <= 2  # max_connections
            assert seconds >= 0.9  # three rounds of two
        ends = time.monotonic() + 5
        while upstream.open_connections and time.monotonic() < ends:
            time.sleep(0.02)
        assert upstream.open_connections == 0  # closing the gateway closed the pool
    TABLE.append(
        Row("6 concurrent, max_connections 2", "direct", "peak 2 upstream connections", seconds, 6)
    )
