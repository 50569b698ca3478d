"""Client disconnects cancel upstream calls; auth, overload, body limit and readiness."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes import FakeVerifier
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.keys import key_entry
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is six times seven?"}
]
PATIENT = {"connect": 2, "read": 60, "total": 60}


@pytest.fixture(scope="module")
def patient_gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    """A gateway whose hanging backend would wait 60 s: only a client disconnect ends it early."""
    url = upstream[0]
    backends = {
        "hang": {"type": "openai", "base_url": f"{url}/v1", "model": "hang", "timeouts": PATIENT},
        "slow": {"type": "openai", "base_url": f"{url}/v1", "model": "slow", "timeouts": PATIENT},
    }
    routes = {
        "auto": {"tiers": [{"backend": "hang"}]},
        "live": {"tiers": [{"backend": "hang"}], "stream_mode": "passthrough"},
    }
    app = fake_app(
        url,
        backends=backends,
        routes=routes,
        server={"max_concurrency": 1, "max_body_bytes": 2048},
        auth={
            "keys": [key_entry("tests", "sekret")],
            "public_paths": ["/healthz", "/readyz", "/metrics"],
        },
        retrieval=None,
    )
    with serve_in_thread(app) as gateway:
        yield gateway


def _wait_for(predicate: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _headers() -> dict[str, str]:
    return {"authorization": "Bearer sekret"}


def test_disconnect_during_a_non_streamed_request_cancels_the_upstream(
    patient_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    log = upstream[1].log
    before = log.disconnects.count("hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{patient_gateway}/v1/chat/completions",
            json={"model": "auto", "messages": QUESTION},
            headers=_headers(),
            timeout=httpx.Timeout(0.5),
        )
    # The upstream would hang for 60 s; it must see the gateway hang up within seconds.
    assert _wait_for(lambda: log.disconnects.count("hang") > before)


def test_disconnect_during_a_live_stream_cancels_the_upstream(
    patient_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    log = upstream[1].log
    before = log.disconnects.count("hang")
    body = {"model": "live", "messages": QUESTION, "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", f"{patient_gateway}/v1/chat/completions", json=body, headers=_headers()
        ) as response,
    ):
        assert response.status_code == 200
        # read until the upstream is mid-stream (its first token arrived), then hang up
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["choices"][0]["delta"].get(
                "content"
            ):
                break
    assert _wait_for(lambda: log.disconnects.count("hang") > before)
    # the stream gave its admission slot back: this gateway admits one request at a time
    assert _wait_for(
        lambda: (
            httpx.post(
                f"{patient_gateway}/v1/chat/completions",
                json={"model": "slow", "messages": QUESTION},
                headers=_headers(),
                timeout=10,
            ).status_code
            == 200
        )
    )


def test_missing_or_wrong_api_key_is_401(patient_gateway: str) -> None:
    sdk = openai.OpenAI(base_url=f"{patient_gateway}/v1", api_key="wrong", max_retries=0)
    with sdk, pytest.raises(openai.AuthenticationError) as caught:
        sdk.models.list()
    assert caught.value.status_code == 401
    response = httpx.get(f"{patient_gateway}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_health_endpoints_need_no_key(patient_gateway: str) -> None:
    assert httpx.get(f"{patient_gateway}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{patient_gateway}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}  # the state only: details need an admin key


def _in_flight(gateway: str) -> float:
    for line in httpx.get(f"{gateway}/metrics").text.splitlines():
        if line.startswith("sdm_router_inflight_requests "):
            return float(line.split()[1])
    return 0.0


def test_overload_is_a_429_not_a_queue(patient_gateway: str) -> None:
    def occupy_the_only_slot() -> None:
        with contextlib.suppress(httpx.ReadTimeout):
            httpx.post(
                f"{patient_gateway}/v1/chat/completions",
                json={"model": "auto", "messages": QUESTION},
                headers=_headers(),
                timeout=6,
            )

    first = threading.Thread(target=occupy_the_only_slot)
    first.start()
    assert _wait_for(lambda: _in_flight(patient_gateway) >= 1)
    sdk = openai.OpenAI(base_url=f"{patient_gateway}/v1", api_key="sekret", max_retries=0)
    with sdk, pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="slow", messages=QUESTION)
    first.join()
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "overloaded"


def test_oversized_body_is_a_413(patient_gateway: str) -> None:
    huge = [{"role": "user", "content": "x" * 5000}]
    response = httpx.post(
        f"{patient_gateway}/v1/chat/completions",
        json={"model": "auto", "messages": huge},
        headers=_headers(),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    chunked = httpx.post(
        f"{patient_gateway}/v1/chat/completions", content=chunks(), headers=_headers()
    )
    assert chunked.status_code == 413


def test_not_json_is_a_400(patient_gateway: str) -> None:
    response = httpx.post(
        f"{patient_gateway}/v1/chat/completions",
        content=b"{nope",
        headers={**_headers(), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_unknown_path_is_an_openai_envelope(patient_gateway: str) -> None:
    response = httpx.get(f"{patient_gateway}/v1/nothing-here", headers=_headers())
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_verify_endpoint(gateway_url: str, fake_components: tuple[FakeVerifier, Any]) -> None:
    good = httpx.post(
        f"{gateway_url}/v1/verify",
        json={"messages": QUESTION, "response": "It is 42.", "nearest_exemplars": 2},
    ).json()["verification"]
    assert good["decision"] == "accept"
    assert good["reason"] == "verified"
    assert [item["id"] for item in good["nearest_exemplars"]] == ["support-0", "support-1"]
    bad = httpx.post(
        f"{gateway_url}/v1/verify", json={"prompt": "6*7?", "response": "I am not sure."}
    ).json()["verification"]
    assert (bad["decision"], bad["reason"]) == ("abstain", "predicted_incorrect")
    assert fake_components[0].seen[-1].messages[0].content == "6*7?"
    both = httpx.post(
        f"{gateway_url}/v1/verify", json={"prompt": "a", "messages": QUESTION, "response": "b"}
    )
    assert both.status_code == 400


def test_metrics_count_decisions(gateway_url: str) -> None:
    httpx.post(f"{gateway_url}/v1/chat/completions", json={"model": "auto", "messages": QUESTION})
    text = httpx.get(f"{gateway_url}/metrics").text
    assert 'sdm_router_requests_total{outcome="accept",route="auto"}' in text
    assert 'action="escalate"' in text
