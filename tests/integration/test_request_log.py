"""One log line and the HTTP metrics per request, whatever path it took (streams at their end,
passthrough, /v1/verify, 4xx, 429, upstream errors, unknown paths), and SSE keep-alives while a
verify-then-stream answer is still being verified."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes import FakeRetriever, FakeVerifier
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is six times seven?"}
]
LOGGER = "sdm_router.api.edge.middleware"


def _server(**server: Any) -> dict[str, Any]:
    return {"server": {"max_concurrency": 2, "sse_keepalive_seconds": 0.1, **server}}


@pytest.fixture(scope="module")
def gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    """A gateway whose streams ping every 0.1 s and that admits two requests at once; two
    extra routes go through the upstream's slow (0.3 s) behaviour."""
    app = fake_app(
        upstream[0],
        verifier=FakeVerifier(),
        retriever=FakeRetriever(),
        **_server(),
        routes={
            **_routes(),
            "slowly": {"tiers": [{"backend": "slow"}]},
            "hanging": {"tiers": [{"backend": "hang"}]},
            "slow-passthrough": {"tiers": [{"backend": "slow"}], "stream_mode": "passthrough"},
        },
    )
    with serve_in_thread(app) as url:
        yield url


def _routes() -> dict[str, Any]:
    from tests.support.gateway import fake_settings

    settings = fake_settings("http://unused")
    return {name: route.model_dump(mode="json") for name, route in settings.routes.items()}


class Lines:
    """The ``request finished`` records, by request id (they come after the response ends)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def _found(self, request_id: str) -> list[logging.LogRecord]:
        return [
            record
            for record in self.caplog.records
            if record.name == LOGGER
            and record.getMessage() == "request finished"
            and getattr(record, "client_request_id", None) == request_id
        ]

    def of(self, request_id: str, timeout: float = 5.0) -> logging.LogRecord:
        """The one line of ``request_id`` (fails on none, or on a second one)."""
        deadline = time.monotonic() + timeout
        while not self._found(request_id):
            assert time.monotonic() < deadline, f"no log line for {request_id}"
            time.sleep(0.02)
        time.sleep(0.1)  # a second line would be a bug: give it the chance to show
        (record,) = self._found(request_id)
        return record


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[Lines]:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        yield Lines(caplog)


def rid() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def post(url: str, path: str, body: Any, request_id: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{url}{path}", json=body, headers={"x-request-id": request_id}, timeout=10, **kwargs
    )


def field(record: logging.LogRecord, name: str) -> Any:
    return getattr(record, name, None)


def test_a_completion_logs_one_line_with_the_decision(gateway: str, lines: Lines) -> None:
    request_id = rid()
    reply = post(gateway, "/v1/chat/completions", {"model": "auto", "messages": QUESTION},
                 request_id)  # fmt: skip
    assert reply.status_code == 200
    record = lines.of(request_id)
    assert field(record, "status") == 200
    assert field(record, "method") == "POST"
    assert field(record, "http_route") == "/v1/chat/completions"
    assert (field(record, "route"), field(record, "decision"), field(record, "tier")) == (
        "auto",
        "accept",
        1,
    )
    assert field(record, "attempts") == ["0:escalate:predicted_incorrect", "1:accept:verified"]
    assert field(record, "retries") == 0
    assert field(record, "duration_ms") >= field(record, "pipeline_ms") > 0
    assert field(record, "first_byte_ms") > 0
    assert field(record, "prompt") is None and field(record, "response") is None
    assert field(record, "aborted") is None


def test_a_verify_then_stream_logs_once_at_its_end(gateway: str, lines: Lines) -> None:
    request_id = rid()
    body = {"model": "auto", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"x-request-id": request_id}, timeout=10) as reply:  # fmt: skip
        text = b"".join(reply.iter_bytes()).decode()
    assert text.endswith("data: [DONE]\n\n")
    record = lines.of(request_id)
    assert (field(record, "status"), field(record, "decision")) == (200, "accept")
    assert field(record, "duration_ms") >= field(record, "first_byte_ms")


def test_a_passthrough_stream_logs_its_verdict_at_its_end(gateway: str, lines: Lines) -> None:
    request_id = rid()
    body = {"model": "passthrough", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"x-request-id": request_id}, timeout=10) as reply:  # fmt: skip
        assert b"".join(reply.iter_bytes()).endswith(b"data: [DONE]\n\n")
    record = lines.of(request_id)
    assert (field(record, "route"), field(record, "decision")) == ("passthrough", "accept")
    assert field(record, "attempts") == ["0:accept:verified"]


def test_verify_logs_its_decision(gateway: str, lines: Lines) -> None:
    request_id = rid()
    body = {"model": "auto", "messages": QUESTION, "response": "The answer is 42."}
    assert post(gateway, "/v1/verify", body, request_id).status_code == 200
    record = lines.of(request_id)
    assert field(record, "http_route") == "/v1/verify"
    assert (field(record, "route"), field(record, "decision")) == ("auto", "accept")


@pytest.mark.parametrize(
    ("path", "body", "status", "expected"),
    [
        ("/v1/chat/completions", {"model": "auto"}, 400, {"decision": None}),
        ("/v1/chat/completions", {"model": "nope", "messages": QUESTION}, 404, {"route": None}),
        ("/v1/chat/completions", {"model": "only-failing", "messages": QUESTION}, 502,
         {"route": "only-failing", "decision": "error"}),
        ("/v1/chat/completions", {"model": "unsure-error", "messages": QUESTION}, 422,
         {"route": "unsure-error", "reason": "predicted_incorrect", "decision": "abstain"}),
        ("/v1/no-such-thing", {}, 404, {"decision": None}),
    ],
)  # fmt: skip
def test_errors_log_one_line_with_their_status(
    gateway: str, lines: Lines, path: str, body: Any, status: int, expected: dict[str, Any]
) -> None:
    request_id = rid()
    assert post(gateway, path, body, request_id).status_code == status
    record = lines.of(request_id)
    assert field(record, "status") == status
    assert {name: field(record, name) for name in expected} == expected
    expected_route = "other" if path == "/v1/no-such-thing" else path
    assert field(record, "http_route") == expected_route
    if status >= 500:
        assert record.levelno == logging.WARNING


def test_an_oversized_body_is_logged_under_its_route(gateway: str, lines: Lines) -> None:
    request_id = rid()
    reply = httpx.post(f"{gateway}/v1/chat/completions", content=b"x" * 5_000_000,
                       headers={"x-request-id": request_id, "content-type": "application/json"},
                       timeout=10)  # fmt: skip
    assert reply.status_code == 413
    record = lines.of(request_id)
    assert (field(record, "status"), field(record, "http_route")) == (413, "/v1/chat/completions")


def test_an_overloaded_gateway_logs_the_429(gateway: str, lines: Lines) -> None:
    # max_concurrency 2: two hanging requests in flight (until the 2 s read timeout), the
    # third is refused at once
    body = {"model": "hanging", "messages": QUESTION}
    held = [
        threading.Thread(target=post, args=(gateway, "/v1/chat/completions", body, rid()))
        for _ in range(2)
    ]
    for thread in held:
        thread.start()
    deadline = time.monotonic() + 5
    while "sdm_router_inflight_requests 2.0" not in httpx.get(f"{gateway}/metrics").text:
        assert time.monotonic() < deadline, "the two requests never were in flight together"
        time.sleep(0.02)
    request_id = rid()
    reply = post(gateway, "/v1/chat/completions", body, request_id)
    for thread in held:
        thread.join()
    assert reply.status_code == 429
    assert field(lines.of(request_id), "status") == 429


def test_http_metrics_count_every_response_by_route_template_and_status(gateway: str) -> None:
    post(gateway, "/v1/chat/completions", {"model": "auto", "messages": QUESTION}, rid())
    post(gateway, "/v1/chat/completions", {"model": "nope", "messages": QUESTION}, rid())
    httpx.get(f"{gateway}/v1/decisions/req-{uuid.uuid4().hex}", timeout=10)
    httpx.get(f"{gateway}/definitely/not/here/{uuid.uuid4().hex}", timeout=10)
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("sdm_router_http_")
    }
    assert (
        samples['sdm_router_http_responses_total{route="/v1/chat/completions",status="200"}'] >= 1
    )
    assert (
        samples['sdm_router_http_responses_total{route="/v1/chat/completions",status="404"}'] >= 1
    )
    assert (
        samples['sdm_router_http_responses_total{route="/v1/decisions/{identifier}",status="404"}']
        >= 1
    )
    assert samples['sdm_router_http_responses_total{route="other",status="404"}'] >= 1
    assert not any(name for name in samples if "definitely" in name)  # closed label set
    count = 'sdm_router_http_request_duration_seconds_count{route="/v1/chat/completions",'
    assert samples[count + 'status_class="2xx"}'] >= 1
    assert samples[count + 'status_class="4xx"}'] >= 1


def test_a_slow_verification_opens_the_stream_and_pings(gateway: str, lines: Lines) -> None:
    request_id = rid()
    body = {"model": "slowly", "messages": QUESTION, "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"x-request-id": request_id}, timeout=10) as reply:  # fmt: skip
        assert reply.status_code == 200
        pieces = reply.iter_raw()
        first = next(pieces)
        opened = time.monotonic() - started
        text = (first + b"".join(pieces)).decode()
    assert first.startswith(b": ping\n\n"), first
    assert opened < 0.3, "the stream opened before the 0.3 s answer was ready"
    events = [block for block in text.split("\n\n") if block]
    pings = [block for block in events if block == ": ping"]
    assert len(pings) >= 2
    data = [json.loads(b[6:]) for b in events if b.startswith("data: {")]
    assert data[-1]["verification"]["decision"] == "accept"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in data if c["choices"])
    assert text.endswith("data: [DONE]\n\n")
    assert "x-sdm-decision" not in reply.headers  # the verdict was not known at the first byte
    assert field(lines.of(request_id), "decision") == "accept"


def test_the_openai_client_reads_a_pinged_stream(gateway: str) -> None:
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        chunks = list(client.chat.completions.create(model="slowly", messages=QUESTION,
                                                     stream=True))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The answer is 42."


def test_a_fast_answer_streams_without_pings_and_keeps_its_headers(gateway: str) -> None:
    body = {"model": "auto", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body, timeout=10) as reply:
        text = b"".join(reply.iter_bytes()).decode()
    assert ": ping" not in text
    assert reply.headers["x-sdm-decision"] == "accept"


def test_the_deadline_after_the_pings_is_an_error_frame(
    upstream: tuple[str, FakeUpstream],
) -> None:
    app = fake_app(
        upstream[0], verifier=FakeVerifier(), retriever=FakeRetriever(),
        **_server(request_timeout_seconds=0.5),
        routes={**_routes(), "hanging": {"tiers": [{"backend": "hang"}]}},
    )  # fmt: skip
    with serve_in_thread(app) as url:
        body = {"model": "hanging", "messages": QUESTION, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as reply:
            text = b"".join(reply.iter_bytes()).decode()
    assert reply.status_code == 200
    assert text.startswith(": ping\n\n")
    events = [block for block in text.split("\n\n") if block and block != ": ping"]
    assert json.loads(events[0][6:])["error"]["code"] == "request_timeout"
    assert events[1:] == ["data: [DONE]"]


def test_a_client_leaving_a_pinged_stream_cancels_the_upstream_call(
    upstream: tuple[str, FakeUpstream],
) -> None:
    app = fake_app(
        upstream[0], verifier=FakeVerifier(), retriever=FakeRetriever(), **_server(),
        routes={**_routes(), "hanging": {"tiers": [{"backend": "hang"}]}},
    )  # fmt: skip
    log = upstream[1].log
    before = len(log.disconnects)
    with serve_in_thread(app) as url:
        body = {"model": "hanging", "messages": QUESTION, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as reply:
            assert next(reply.iter_raw()).startswith(b": ping")
        deadline = time.monotonic() + 5
        while len(log.disconnects) == before:
            assert time.monotonic() < deadline, "the upstream call was not cancelled"
            time.sleep(0.05)


def test_log_prompts_puts_the_text_on_the_line(
    upstream: tuple[str, FakeUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    app = fake_app(upstream[0], verifier=FakeVerifier(), retriever=FakeRetriever(),
                   observability={"log_prompts": True})  # fmt: skip
    with caplog.at_level(logging.INFO, logger=LOGGER), serve_in_thread(app) as url:
        request_id = rid()
        post(url, "/v1/chat/completions", {"model": "auto", "messages": QUESTION}, request_id)
        record = Lines(caplog).of(request_id)
    assert field(record, "prompt") == "What is six times seven?"
    assert field(record, "response") == "The answer is 42."


def test_upstream_retries_are_counted_on_the_line(
    gateway: str, lines: Lines, upstream: tuple[str, FakeUpstream]
) -> None:
    before = upstream[1].log.models_called().count("fail-500")
    request_id = rid()
    body = {"model": "only-failing", "messages": QUESTION}
    assert post(gateway, "/v1/chat/completions", body, request_id).status_code == 502
    calls = upstream[1].log.models_called().count("fail-500") - before
    assert calls >= 2, "the backend retries a 500"
    assert field(lines.of(request_id), "retries") == calls - 1
