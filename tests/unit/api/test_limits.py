"""``KeyLimiter`` in process: budgets per clock minute, in-flight slots, the global gate, the
Redis fallback, and the 429 metric."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client import CollectorRegistry

from service.api.auth import Principal
from service.api.context import AdmissionGate
from service.api.limits import KeyLimiter, LimitStore
from service.config import LimitsSettings
from service.core.errors import Overloaded, RateLimited
from service.core.generation import Usage
from service.observability.metrics import GatewayMetrics


def principal(name: str = "k", **limits: int) -> Principal:
    return Principal(name=name, admin=False, routes=None, models=None, **limits)


def limiter(
    max_concurrency: int = 100, settings: LimitsSettings | None = None
) -> tuple[KeyLimiter, GatewayMetrics]:
    metrics = GatewayMetrics(CollectorRegistry())
    store = LimitStore(settings or LimitsSettings(), metrics)
    return KeyLimiter(store, AdmissionGate(max_concurrency), metrics), metrics


def refused(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("sdm_router_rate_limited_total", {"reason": reason})
    return value or 0.0


@pytest.fixture(autouse=True)
def fresh_minute() -> None:
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.05)


async def test_requests_per_minute_and_their_headers() -> None:
    keys, metrics = limiter()
    key = principal(rpm=2)
    first = await keys.admit(key)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    first.release()
    (await keys.admit(key)).release()
    with pytest.raises(RateLimited) as caught:
        await keys.admit(key)
    assert caught.value.error_type == "requests"
    assert 0 < caught.value.retry_after <= 60
    assert caught.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused(metrics, "rpm") == 1
    assert keys.gate.in_flight == 0
    (await keys.admit(principal("other", rpm=2))).release()  # per key


async def test_tokens_are_spent_after_the_answer() -> None:
    keys, metrics = limiter()
    key = principal(tpm=10)
    admission = await keys.admit(key)
    assert admission.headers["x-ratelimit-remaining-tokens"] == "10"
    await admission.spend(Usage(prompt_tokens=7, completion_tokens=2))
    admission.release()
    second = await keys.admit(key)
    assert second.headers["x-ratelimit-remaining-tokens"] == "1"
    await second.spend(Usage(prompt_tokens=7, completion_tokens=30))  # overdraws the minute
    second.release()
    with pytest.raises(RateLimited) as caught:
        await keys.admit(key)
    assert caught.value.error_type == "tokens" and "used 46" in caught.value.message
    assert refused(metrics, "tpm") == 1


async def test_in_flight_per_key_then_the_global_gate() -> None:
    keys, metrics = limiter(max_concurrency=2)
    key = principal(in_flight=1)
    held = await keys.admit(key)
    with pytest.raises(RateLimited) as caught:
        await keys.admit(key)
    assert caught.value.code == "too_many_requests_in_flight"
    assert refused(metrics, "in_flight_key") == 1
    other = await keys.admit(None)  # no key: only the gate
    with pytest.raises(Overloaded):
        await keys.admit(principal("second", in_flight=5))
    assert refused(metrics, "in_flight_global") == 1
    assert keys.in_flight("second") == 0  # its key slot was given back
    held.release()
    held.release()  # idempotent
    assert keys.in_flight("k") == 0 and keys.gate.in_flight == 1
    other.release()
    assert keys.gate.in_flight == 0


async def test_an_unreachable_redis_fails_open_to_counting_in_process() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = LimitsSettings(
        redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_seconds=0.2, redis_retry_seconds=60
    )
    keys, metrics = limiter(settings=settings)
    assert keys.store.shared
    key = principal(rpm=1)
    (await keys.admit(key)).release()
    with pytest.raises(RateLimited):
        await keys.admit(key)  # still limited: counted in process
    errors = metrics.registry.get_sample_value("sdm_router_rate_limit_store_errors_total")
    assert errors is not None and errors >= 1
    await keys.store.close()


def test_every_reason_is_exported_and_only_those() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    for reason in ("rpm", "tpm", "in_flight_key", "in_flight_global"):
        assert refused(metrics, reason) == 0.0
        metrics.rate_limited(reason)
        assert refused(metrics, reason) == 1.0
    with pytest.raises(ValueError, match="reason"):
        metrics.rate_limited("because")


@pytest.mark.parametrize("url", ["http://redis:6379", "memcached://x", "redis:6379"])
def test_redis_url_needs_a_redis_scheme(url: str) -> None:
    with pytest.raises(ValueError, match="redis://"):
        LimitsSettings(redis_url=url)
    for good in ("redis://r:6379/0", "rediss://r", "async+redis://r", "unix:///tmp/r.sock"):
        assert LimitsSettings(redis_url=good).redis_url is not None


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")
async def test_in_redis_a_fresh_spend_saves_the_token_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from service.api import limits as limits_module

    settings = LimitsSettings(
        redis_url="redis://127.0.0.1:6379/0", key_prefix=f"unit-{uuid.uuid4().hex[:8]}"
    )
    store = LimitStore(settings, GatewayMetrics(CollectorRegistry()))
    try:
        assert store.recent_tokens("tpm/k/1") is None
        await store.spend("tpm/k/1", 60, 5)
        await store.spend("tpm/k/1", 60, 7)
        assert store.recent_tokens("tpm/k/1") == 12  # the shared total the last spend returned
        assert await store.get("tpm/k/1") == 12
        monkeypatch.setattr(limits_module, "TOKENS_FRESH_SECONDS", 0.0)
        assert store.recent_tokens("tpm/k/1") is None  # stale: admission reads Redis again
    finally:
        await store.close()
