"""The edge limits of ``sdm-router serve`` (``api/serve/http_protocol.py``) over real sockets:
heads too large or too many, clients that never finish a head or a body, idle keep-alive
connections, the connection cap, HTTP/1.0 framing; and that normal clients are served all the
while, and afterwards."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx
import pytest

from loadtests import hostile_connections as conn
from sdm_router.config import ServerSettings
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_gateway_in_thread

pytestmark = pytest.mark.integration

LIMITS = ServerSettings(
    header_timeout_seconds=1.0,
    body_timeout_seconds=1.0,
    keep_alive_seconds=1.0,
    max_connections=120,
    max_header_bytes=8192,
    max_header_count=40,
)
SLACK = 1.5  # seconds past a limit within which the close must have happened (a busy CI box)
HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is six times seven?"}]}


@pytest.fixture(scope="module")
def edge(upstream: tuple[str, FakeUpstream]) -> Iterator[tuple[str, tuple[str, int]]]:
    """A gateway behind the real server code with tight limits: its URL and address."""
    app = fake_app(upstream[0])
    with serve_gateway_in_thread(app, LIMITS) as url:
        host, port = url.removeprefix("http://").split(":")
        yield url, (host, int(port))


def closes(held: conn.Held, within: float) -> bool:
    return held.seconds is not None and held.seconds <= within


def closed_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    prefix = "sdm_router_http_connections_closed_total{reason="
    return {
        line[len(prefix) + 1 : line.index('"}')]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_heads_past_the_limits_get_431(edge: tuple[str, tuple[str, int]]) -> None:
    url, address = edge
    before = closed_counts(url)
    big = conn.raw_exchange(address, HEAD + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n")
    many = conn.raw_exchange(
        address, HEAD + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n"
    )
    assert conn.Held(0, big).status == 431 and b'"code":"headers_too_large"' in big
    assert conn.Held(0, many).status == 431 and b'"code":"too_many_headers"' in many
    sent, held = conn.endless_header(address, 16 * 2**20)
    assert held.status == 431 and sent < 16 * 2**20  # refused before the 16 MiB were sent
    after = closed_counts(url)
    assert after["headers_too_large"] - before["headers_too_large"] == 2
    assert after["too_many_headers"] - before["too_many_headers"] == 1
    within = conn.raw_exchange(
        address, HEAD + b"X-Ok: " + b"a" * 4000 + b"\r\nConnection: close\r\n\r\n"
    )
    assert conn.Held(0, within).status == 200


def test_clients_that_never_finish_are_closed_on_time(
    edge: tuple[str, tuple[str, int]],
) -> None:
    _, address = edge
    post = b"POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"
    idle, half, trickle, crlf, body = conn.at_once([
        partial(conn.hold, address, b"", 10.0),
        partial(conn.hold, address, HEAD, 10.0),
        partial(conn.hold, address, HEAD, 10.0, b"X", 0.3),  # a byte every 0.3 s
        partial(conn.hold, address, b"", 10.0, b"\r\n", 0.3),  # never a request at all
        partial(conn.hold, address, post, 10.0),
    ])  # fmt: skip
    for held in (idle, half, trickle, crlf, body):
        assert closes(held, 1.0 + SLACK), held
    assert idle.answer == b""  # nothing asked, nothing answered
    assert half.status == 408 and b'"code":"header_timeout"' in half.answer
    assert trickle.status == 408 and crlf.status == 408
    assert body.status == 408 and b'"code":"body_timeout"' in body.answer


def test_an_idle_keep_alive_connection_is_closed(edge: tuple[str, tuple[str, int]]) -> None:
    _, address = edge
    with conn.connect(address) as sock:
        sock.sendall(HEAD + b"\r\n")
        started = time.monotonic()
        held = conn.closed_after(sock, started, 10.0)
    assert conn.Held(0, held.answer).status == 200
    assert closes(held, LIMITS.keep_alive_seconds + SLACK), held


def test_fifty_slow_clients_are_closed_while_others_are_served(
    edge: tuple[str, tuple[str, int]],
) -> None:
    url, address = edge
    watch = LIMITS.header_timeout_seconds + SLACK
    calls = [partial(conn.hold, address, HEAD, watch + 5, b"X", 0.2) for _ in range(25)]
    calls += [partial(conn.hold, address, HEAD, watch + 5) for _ in range(25)]
    latencies: list[float] = []

    def served() -> None:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + watch
            while time.monotonic() < deadline:
                begun = time.monotonic()
                reply = client.post(f"{url}/v1/chat/completions", json=CHAT)
                assert reply.status_code == 200, reply.text
                latencies.append(time.monotonic() - begun)

    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(conn.at_once, calls)
        client = pool.submit(served)
        held, _ = slow.result(), client.result()
    assert len(held) == 50
    assert all(closes(one, watch) for one in held), [one.seconds for one in held]
    assert len(latencies) >= 5 and max(latencies) < 1.0


def test_memory_stays_bounded_under_100_hostile_connections(
    edge: tuple[str, tuple[str, int]],
) -> None:
    """Each of 100 connections tries to park 2 MiB in an unfinished header; the gateway (in this
    process) takes at most the head limit plus one read of each, then closes them."""
    url, address = edge
    before = conn.rss_bytes(os.getpid())
    with conn.open_connections(address, 100, HEAD, most=2 * 2**20) as hostile:
        time.sleep(0.5)
        grown = conn.rss_bytes(os.getpid()) - before
        time.sleep(LIMITS.header_timeout_seconds + SLACK)
        assert conn.still_open(hostile) == 0
    assert grown < 50 * 2**20, f"RSS grew {grown / 2**20:.1f} MB"
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=10).status_code == 200


def test_connections_past_the_cap_are_closed_as_accepted(
    edge: tuple[str, tuple[str, int]],
) -> None:
    url, address = edge
    before = closed_counts(url)["connection_cap"]
    with conn.open_connections(address, LIMITS.max_connections + 30) as crowd:
        time.sleep(0.5)
        assert conn.still_open(crowd) <= LIMITS.max_connections
    deadline = time.monotonic() + 10  # their closes reach the server, then it serves again
    while True:
        try:
            reply = httpx.get(f"{url}/healthz", timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert reply.status_code == 200
    assert closed_counts(url)["connection_cap"] - before >= 30


def test_http_1_0_streams_are_close_delimited(edge: tuple[str, tuple[str, int]]) -> None:
    _, address = edge
    body = json.dumps({**CHAT, "stream": True}).encode()
    answer = conn.raw_exchange(
        address,
        b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body,
    )
    head, _, events = answer.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert b"connection: close" in head.lower()
    assert events.startswith(b"data: {") and events.rstrip().endswith(b"data: [DONE]")
    plain = conn.raw_exchange(address, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert plain.endswith(b'{"status":"ok"}') and b"content-length: 15" in plain.lower()


def test_content_length_is_read_as_http_reads_it(edge: tuple[str, tuple[str, int]]) -> None:
    _, address = edge
    body = json.dumps(CHAT).encode()
    for spelling in (b"%d " % len(body), b"%d\t" % len(body), b" %d" % len(body)):
        answer = conn.raw_exchange(
            address,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + spelling + b"\r\n\r\n" + body,
        )
        assert conn.Held(0, answer).status == 200, answer[:200]
    broken = conn.raw_exchange(
        address, b"POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Length: 4x\r\n\r\n{}"
    )
    assert conn.Held(0, broken).status == 400
    assert json.loads(broken.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_http"


def test_a_trailing_slash_is_a_404_never_a_redirect(edge: tuple[str, tuple[str, int]]) -> None:
    _, address = edge
    answer = conn.raw_exchange(
        address, b"GET /v1/models/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert conn.Held(0, answer).status == 404 and b"evil.example" not in head
    assert json.loads(body)["error"]["code"] == "not_found"
