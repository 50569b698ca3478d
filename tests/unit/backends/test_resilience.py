"""``backends/resilience.py``: the retry schedule (backoff, retry-after, the deadline), no retry
after the first byte, and the circuit breaker's states; with ``GatewayMetrics`` as observer."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sdm_router.backends.openai_http import OpenAIHTTPBackend
from sdm_router.backends.resilience import (
    BackendUnavailable,
    CircuitBreaker,
    CircuitState,
    RetryableError,
    RetryPolicy,
    parse_retry_after,
)
from sdm_router.config import CircuitBreakerSettings, OpenAIBackendSettings, RetrySettings
from sdm_router.core.errors import (
    GatewayError,
    InvalidRequest,
    NoHealthyBackend,
    UpstreamError,
    UpstreamTimeout,
)
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.observability.metrics import GatewayMetrics

REQUEST = GenerationRequest(
    messages=(Message(role="user", content="What is six times seven?"),),
    prompt=None,
    params=SamplingParams(max_tokens=16, temperature=0.0),
)


class Clock:
    """A fake monotonic clock; ``sleep`` advances it and records the pause."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _policy(clock: Clock, metrics: GatewayMetrics, **settings: Any) -> RetryPolicy:
    defaults: dict[str, Any] = {"backoff_initial": 0.1, "backoff_max": 1.0, "jitter": 0.0}
    return RetryPolicy(
        "up",
        RetrySettings(**(defaults | settings)),
        metrics,
        clock=clock,
        sleep=clock.sleep,
    )


def _failing(
    *failures: BaseException, result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An attempt that raises ``failures`` in turn, then returns ``result``; and its call count."""
    calls = [0]

    async def attempt() -> str:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return result

    return attempt, calls


def _server_error(retry_after: float | None = None) -> RetryableError:
    return RetryableError(
        UpstreamError("answered 500", code="upstream_server_error"), "server_error", retry_after
    )


def _retries(metrics: GatewayMetrics, reason: str) -> float:
    sample = metrics.registry.get_sample_value(
        "sdm_router_backend_retries_total", {"backend": "up", "reason": reason}
    )
    return sample or 0.0


# ---------------------------------------------------------------- the retry schedule


async def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    clock, metrics = Clock(), GatewayMetrics()
    policy = _policy(clock, metrics, max_attempts=6, backoff_initial=0.1, backoff_max=0.5)
    attempt, calls = _failing(*[_server_error() for _ in range(5)])
    assert await policy.call(attempt) == "ok"
    assert calls[0] == 6
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert _retries(metrics, "server_error") == 5


async def test_jitter_adds_at_most_its_bound() -> None:
    clock = Clock()
    policy = _policy(clock, GatewayMetrics(), max_attempts=3, jitter=0.05)
    attempt, _ = _failing(_server_error(), _server_error())
    await policy.call(attempt)
    first, second = clock.sleeps
    assert 0.1 <= first <= 0.15
    assert 0.2 <= second <= 0.25


async def test_the_upstreams_retry_after_is_honoured_when_longer() -> None:
    clock = Clock()
    policy = _policy(clock, GatewayMetrics(), max_attempts=3)
    attempt, _ = _failing(_server_error(retry_after=0.7), _server_error(retry_after=0.0))
    await policy.call(attempt)
    assert clock.sleeps == pytest.approx([0.7, 0.2])  # retry-after, then the backoff


async def test_a_retry_after_above_the_limit_is_not_waited_for() -> None:
    clock = Clock()
    policy = _policy(clock, GatewayMetrics(), max_attempts=3, retry_after_max=5.0)
    attempt, calls = _failing(_server_error(retry_after=6.0))
    with pytest.raises(UpstreamError) as caught:
        await policy.call(attempt)
    assert caught.value.code == "upstream_server_error"  # the upstream's error, unwrapped
    assert (calls[0], clock.sleeps) == (1, [])


async def test_a_retry_after_past_the_deadline_fails_at_once() -> None:
    clock = Clock()
    policy = _policy(clock, GatewayMetrics(), max_attempts=3, retry_after_max=60.0)
    attempt, calls = _failing(_server_error(retry_after=2.0))
    with pytest.raises(UpstreamError):
        await policy.call(attempt, until=clock.now + 1.5)
    assert (calls[0], clock.sleeps) == (1, [])


async def test_pauses_never_reach_the_deadline() -> None:
    clock = Clock()
    policy = _policy(clock, GatewayMetrics(), max_attempts=10, backoff_initial=0.1)
    attempt, calls = _failing(*[_server_error() for _ in range(9)])
    with pytest.raises(UpstreamError):
        await policy.call(attempt, until=clock.now + 0.5)
    # 0.1 + 0.2 = 0.3 s slept; the next 0.4 s would end past the deadline
    assert clock.sleeps == pytest.approx([0.1, 0.2])
    assert calls[0] == 3
    assert clock.now < 1000.5


async def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    clock, metrics = Clock(), GatewayMetrics()
    policy = _policy(clock, metrics, max_attempts=3)
    limited = RetryableError(UpstreamError("429", code="upstream_rate_limited"), "rate_limited")
    unreachable = RetryableError(UpstreamError("refused", code="upstream_connection"), "connection")
    attempt, calls = _failing(limited, unreachable, _server_error())
    with pytest.raises(UpstreamError) as caught:
        await policy.call(attempt)
    assert caught.value.code == "upstream_server_error"
    assert calls[0] == 3
    assert (_retries(metrics, "rate_limited"), _retries(metrics, "connection")) == (1, 1)
    assert _retries(metrics, "server_error") == 0  # the last failure is not retried


async def test_other_errors_are_not_retried() -> None:
    clock = Clock()
    policy = _policy(clock, GatewayMetrics(), max_attempts=3)
    attempt, calls = _failing(UpstreamTimeout("read timeout"))
    with pytest.raises(UpstreamTimeout):
        await policy.call(attempt)
    assert (calls[0], clock.sleeps) == (1, [])


async def test_one_attempt_means_no_retry_and_may_retry_can_stop_them() -> None:
    clock = Clock()
    attempt, calls = _failing(_server_error())
    with pytest.raises(UpstreamError):
        await _policy(clock, GatewayMetrics(), max_attempts=1).call(attempt)
    assert calls[0] == 1
    attempt, calls = _failing(_server_error())
    with pytest.raises(UpstreamError):
        await _policy(clock, GatewayMetrics()).call(attempt, may_retry=lambda: False)
    assert (calls[0], clock.sleeps) == (1, [])


async def test_a_cancelled_pause_cancels_the_call() -> None:
    policy = RetryPolicy("up", RetrySettings(backoff_initial=30.0), GatewayMetrics())
    attempt, calls = _failing(_server_error())
    task = asyncio.ensure_future(policy.call(attempt))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls[0] == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        ("0.25", 0.25),
        ("-4", 0.0),
        ("soon", None),
        (email.utils.formatdate(1_000_010.0, usegmt=True), 10.0),
        (email.utils.formatdate(999_990.0, usegmt=True), 0.0),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=1_000_000.0) == expected


# ---------------------------------------------------------------- the circuit breaker


def _breaker(clock: Clock, metrics: GatewayMetrics, **settings: Any) -> CircuitBreaker:
    config = CircuitBreakerSettings(**({"failure_threshold": 3, "open_seconds": 5.0} | settings))
    return CircuitBreaker("up", config, metrics, clock=clock)


def _state(metrics: GatewayMetrics) -> float | None:
    return metrics.registry.get_sample_value("sdm_router_backend_circuit_state", {"backend": "up"})


def _circuit(breaker: CircuitBreaker) -> CircuitState:
    """``breaker.state`` read afresh: mypy keeps the narrowing of a first
    ``assert breaker.state is ...`` for every later read of the property."""
    return breaker.state


def _fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.failed(breaker.admit())


def test_the_circuit_opens_after_consecutive_failures_only() -> None:
    clock, metrics = Clock(), GatewayMetrics()
    breaker = _breaker(clock, metrics)
    assert _state(metrics) == 0
    _fail(breaker, 2)
    breaker.succeeded(breaker.admit())  # a success starts the count again
    _fail(breaker, 2)
    assert _circuit(breaker) is CircuitState.CLOSED
    _fail(breaker)
    assert _circuit(breaker) is CircuitState.OPEN
    assert breaker.is_open
    assert _state(metrics) == 2
    with pytest.raises(BackendUnavailable) as caught:
        breaker.admit()
    assert isinstance(caught.value, NoHealthyBackend)  # the cascade's backend_error path
    assert caught.value.code == "circuit_open"
    assert "next probe is in 5.0 s" in caught.value.message


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock, metrics = Clock(), GatewayMetrics()
    breaker = _breaker(clock, metrics)
    _fail(breaker, 3)
    clock.now += 5.0
    assert _circuit(breaker) is CircuitState.HALF_OPEN
    probe = breaker.admit()
    assert probe is True
    assert _state(metrics) == 1
    with pytest.raises(BackendUnavailable):
        breaker.admit()  # one probe at a time
    breaker.succeeded(probe)
    assert _circuit(breaker) is CircuitState.CLOSED
    assert _state(metrics) == 0
    assert breaker.admit() is False


def test_a_failed_probe_opens_the_circuit_again() -> None:
    clock, metrics = Clock(), GatewayMetrics()
    breaker = _breaker(clock, metrics)
    _fail(breaker, 3)
    clock.now += 5.0
    breaker.failed(breaker.admit())
    assert _circuit(breaker) is CircuitState.OPEN
    assert _state(metrics) == 2
    clock.now += 4.9
    with pytest.raises(BackendUnavailable):
        breaker.admit()  # the wait starts again from the failed probe
    clock.now += 0.1
    assert breaker.admit() is True


def test_a_cancelled_probe_passes_the_turn_on() -> None:
    clock = Clock()
    breaker = _breaker(clock, GatewayMetrics())
    _fail(breaker, 3)
    clock.now += 5.0
    breaker.abandoned(breaker.admit())
    assert _circuit(breaker) is CircuitState.HALF_OPEN
    assert breaker.admit() is True


def test_a_client_error_says_the_backend_is_well() -> None:
    breaker = _breaker(Clock(), GatewayMetrics(), failure_threshold=1)
    errors: list[GatewayError] = [
        InvalidRequest("answered 400"),
        UpstreamError("answered 404", code="upstream_client_error"),
    ]
    for error in errors:
        breaker.record(breaker.admit(), error)
    assert _circuit(breaker) is CircuitState.CLOSED
    breaker.record(breaker.admit(), UpstreamError("answered 429", code="upstream_rate_limited"))
    assert _circuit(breaker) is CircuitState.OPEN


def test_a_disabled_breaker_never_opens() -> None:
    breaker = _breaker(Clock(), GatewayMetrics(), enabled=False, failure_threshold=1)
    _fail(breaker, 10)
    assert _circuit(breaker) is CircuitState.CLOSED
    assert not breaker.is_open


def test_metrics_refuse_unknown_labels() -> None:
    metrics = GatewayMetrics()
    with pytest.raises(ValueError, match="reason"):
        metrics.backend_retry("up", "bored")
    with pytest.raises(ValueError, match="state"):
        metrics.backend_circuit_state("up", "ajar")


# ---------------------------------------------------------------- the backend: first byte, breaker


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve an aiohttp handler on loopback; yields a function returning the ``/v1`` URL."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/v1"

    yield start
    for server in servers:
        await server.close()


def _chunk(text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def _backend(url: str, **settings: Any) -> OpenAIHTTPBackend:
    config = OpenAIBackendSettings(
        type="openai",
        base_url=url,
        model="m",
        retries={"backoff_initial": 0.01, "jitter": 0.0, **settings.pop("retries", {})},
        **settings,
    )
    backend = OpenAIHTTPBackend("up", config)
    await backend.start()
    return backend


async def test_a_stream_is_retried_before_its_first_byte_and_never_after(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        if len(calls) == 1:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk("The"))
        assert request.transport is not None
        request.transport.abort()  # then the connection breaks
        return response

    backend = await _backend(await serve(handler))
    received: list[str] = []
    try:
        with pytest.raises(UpstreamError) as caught:
            async for delta in backend.stream(REQUEST):
                received.append(delta.text)
    finally:
        await backend.close()
    assert received == ["The"]
    assert caught.value.code == "upstream_protocol"
    assert len(calls) == 2  # the 503 was retried; the broken stream was not


async def test_the_request_deadline_bounds_the_backends_retries(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        return web.json_response(
            {"error": {"message": "later"}}, status=429, headers={"Retry-After": "0.6"}
        )

    backend = await _backend(await serve(handler))
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await backend.generate(dataclasses.replace(REQUEST, deadline=started + 0.5))
        assert time.monotonic() - started < 0.45  # no 0.6 s pause: it would pass the deadline
        started = time.monotonic()
        with pytest.raises(UpstreamError):
            await backend.generate(REQUEST)  # without a deadline: two pauses of 0.6 s
        assert time.monotonic() - started >= 1.2
    finally:
        await backend.close()
    assert caught.value.code == "upstream_rate_limited"
    assert len(calls) == 1 + 3


async def test_an_open_circuit_refuses_without_calling_the_upstream(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        return web.json_response({"error": {"message": "down"}}, status=500)

    backend = await _backend(
        await serve(handler),
        retries={"max_attempts": 1},
        circuit_breaker={"failure_threshold": 2, "open_seconds": 60},
    )
    try:
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await backend.generate(REQUEST)
        with pytest.raises(BackendUnavailable):
            await backend.generate(REQUEST)
        with pytest.raises(BackendUnavailable):
            async for _ in backend.stream(REQUEST):
                pass
    finally:
        await backend.close()
    assert len(calls) == 2
    assert backend.breaker.state is CircuitState.OPEN
