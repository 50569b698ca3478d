"""The gateway the overhead benchmark measures still starts and answers (protocol drift in its
``NoopVerifier`` would otherwise only show when someone runs the benchmark)."""

from __future__ import annotations

import httpx
import pytest

from loadtests.overhead import UPSTREAM_ENV, gateway_app
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration


def test_the_benchmarked_gateway_serves_a_request(
    upstream: tuple[str, FakeUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(UPSTREAM_ENV, upstream[0])
    with serve_in_thread(gateway_app()) as url:
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "6*7?"}]},
            timeout=10,
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["verification"]["decision"] == "accept"
