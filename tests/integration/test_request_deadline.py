"""server.request_timeout_seconds bounds a whole request (504); a stream that fails on something
other than a gateway error still ends with an error frame and ``[DONE]``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest

from sdm_router.core.verdict import Verdict, VerificationInput
from tests.fakes import FakeVerifier
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is six times seven?"}]
DEADLINE = 1.0
PATIENT = {"connect": 2, "read": 60, "total": 60}


class SlowVerifier(FakeVerifier):
    """Verifies like the fake, after a pause longer than the request deadline."""

    async def verify(
        self,
        items: Sequence[VerificationInput],
        *,
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        await asyncio.sleep(30)
        return await super().verify(items, nearest_exemplars=nearest_exemplars)


class BrokenVerifier(FakeVerifier):
    """Fails with an exception that is not a gateway error (a bug, a broken artifact)."""

    async def verify(
        self,
        items: Sequence[VerificationInput],
        *,
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        raise RuntimeError("the verifier broke")


def gateway(upstream_url: str, verifier: FakeVerifier) -> Iterator[str]:
    backends = {
        "hang": {"type": "openai", "base_url": f"{upstream_url}/v1", "model": "hang",
                 "timeouts": PATIENT},
        "good": {"type": "openai", "base_url": f"{upstream_url}/v1", "model": "good"},
    }  # fmt: skip
    routes = {
        "auto": {"tiers": [{"backend": "hang"}]},
        "live": {"tiers": [{"backend": "hang"}], "stream_mode": "passthrough"},
        "live-good": {"tiers": [{"backend": "good"}], "stream_mode": "passthrough"},
    }
    app = fake_app(
        upstream_url, backends=backends, routes=routes, retrieval=None, verifier=verifier,
        server={"request_timeout_seconds": DEADLINE},
    )  # fmt: skip
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def slow_gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    yield from gateway(upstream[0], SlowVerifier())


@pytest.fixture(scope="module")
def broken_gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    yield from gateway(upstream[0], BrokenVerifier())


def events(url: str, body: dict[str, object]) -> list[str]:
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_a_request_past_the_deadline_is_a_504_and_the_upstream_is_let_go(
    slow_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    log = upstream[1].log
    before = log.disconnects.count("hang")
    started = time.monotonic()
    reply = httpx.post(
        f"{slow_gateway}/v1/chat/completions",
        json={"model": "auto", "messages": QUESTION},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert reply.status_code == 504, reply.text
    error = reply.json()["error"]
    assert error["code"] == "request_timeout"
    assert "server.request_timeout_seconds" in error["message"]
    assert elapsed < DEADLINE + 5
    deadline = time.monotonic() + 10
    while log.disconnects.count("hang") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.disconnects.count("hang") > before  # the hanging upstream call was cancelled


def test_verify_past_the_deadline_is_a_504(slow_gateway: str) -> None:
    reply = httpx.post(
        f"{slow_gateway}/v1/verify",
        json={"prompt": "What is 6*7?", "response": "42"},
        timeout=30,
    )
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "request_timeout"


def test_a_live_stream_past_the_deadline_ends_with_a_504_frame_and_done(
    slow_gateway: str,
) -> None:
    started = time.monotonic()
    data = events(
        f"{slow_gateway}/v1/chat/completions",
        {"model": "live", "messages": QUESTION, "stream": True},
    )
    assert time.monotonic() - started < DEADLINE + 5
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["code"] == "request_timeout"


def test_a_stream_failing_on_a_non_gateway_error_ends_with_an_error_frame_and_done(
    broken_gateway: str,
) -> None:
    data = events(
        f"{broken_gateway}/v1/chat/completions",
        {"model": "live-good", "messages": QUESTION, "stream": True},
    )
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    assert "the verifier broke" not in error["message"]  # no internals leak
    assert any(json.loads(item)["choices"][0]["delta"].get("content") for item in data[1:-2])
