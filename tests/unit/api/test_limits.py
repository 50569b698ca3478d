"""``KeyLimiter`` in process: budgets per clock minute, in-flight slots, the global gate, the
Redis fallback, and the 429 metric."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sdm_router.api.edge import limit_store as limit_store_module
from sdm_router.api.edge.admission import AdmissionGate
from sdm_router.api.edge.auth import Principal
from sdm_router.api.edge.key_limits import KeyLimiter
from sdm_router.api.edge.limit_store import LimitStore
from sdm_router.config import LimitsSettings
from sdm_router.core.errors import Overloaded, RateLimited
from sdm_router.core.generation import Usage
from sdm_router.observability.metrics import GatewayMetrics

# Every store reads one pinned clock, a second into a minute: no test straddles a minute
NOW = time.time() // 60 * 60 + 1.0


def clock() -> float:
    return NOW


def principal(name: str = "k", **limits: int) -> Principal:
    return Principal(name=name, admin=False, routes=None, models=None, **limits)


def limiter(
    max_concurrency: int = 100, settings: LimitsSettings | None = None
) -> tuple[KeyLimiter, GatewayMetrics]:
    metrics = GatewayMetrics(CollectorRegistry())
    store = LimitStore(settings or LimitsSettings(), metrics, clock)
    return KeyLimiter(store, AdmissionGate(max_concurrency), metrics), metrics


def refused(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("sdm_router_rate_limited_total", {"reason": reason})
    return value or 0.0


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


async def test_a_requests_tokens_are_counted_once_whoever_reports_them() -> None:
    keys, _ = limiter()
    key = principal(tpm=100)
    admission = await keys.admit(key)
    admission.count_backend_usage(Usage(prompt_tokens=10, completion_tokens=5))  # the cascade
    await admission.settle(Usage(prompt_tokens=10, completion_tokens=5))  # the final usage
    await admission.settle()
    admission.release()  # nothing left to count in the background
    second = await keys.admit(key)
    assert second.headers["x-ratelimit-remaining-tokens"] == "85"
    second.count_backend_usage(Usage(prompt_tokens=20))  # then the request failed
    second.release()  # counted in the background
    await asyncio.sleep(0)
    third = await keys.admit(key)
    assert third.headers["x-ratelimit-remaining-tokens"] == "65"
    third.release()


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


needs_redis = pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")


def shared_limiters(count: int, **changes: Any) -> tuple[list[KeyLimiter], LimitStore, list[int]]:
    """``count`` limiters (replicas) sharing one Redis prefix, an exact store on the same keys
    to read them, and the number of Redis calls the limiters made (one list item each)."""
    settings = LimitsSettings(
        redis_url="redis://127.0.0.1:6379/0", key_prefix=f"unit-{uuid.uuid4().hex[:8]}"
    )
    made, calls = [], []
    for index in range(count):
        keys, _ = limiter(settings=settings.model_copy(update=changes))
        storage = keys.store._shared
        assert storage is not None
        calls.append(0)
        for name in ("incr", "get"):
            original = getattr(storage, name)

            async def counted(*args: Any, _call: Any = original, _index: int = index) -> Any:
                calls[_index] += 1
                return await _call(*args)

            setattr(storage, name, counted)
        made.append(keys)
    reader = LimitStore(
        settings.model_copy(update={"redis_batch": 1}), GatewayMetrics(CollectorRegistry()), clock
    )
    return made, reader, calls


async def close_all(limiters: list[KeyLimiter], reader: LimitStore) -> None:
    for keys in limiters:
        await keys.store.close()
    await reader.close()


def minute() -> int:
    return int(NOW // 60)


async def request(keys: KeyLimiter, key: Principal, tokens: int = 0) -> bool:
    """One request of ``key``: admitted (its ``tokens`` spent) or refused."""
    try:
        admission = await keys.admit(key)
    except RateLimited:
        return False
    await admission.settle(Usage(prompt_tokens=tokens))
    admission.release()
    return True


@needs_redis
async def test_in_redis_far_from_the_limits_requests_are_leased_and_tokens_batched() -> None:
    (keys,), reader, calls = shared_limiters(1)
    key = principal("far", rpm=1_000_000, tpm=1_000_000_000)
    try:
        assert keys.store.batched
        for _ in range(64):
            assert await request(keys, key, tokens=30)
        # two leases of 32 requests, one read of the tokens (the flusher may add one or two)
        assert calls[0] <= 6, calls
        assert await reader.get(f"rpm/far/{minute()}") == 64  # leased before they were used
        assert await reader.get(f"tpm/far/{minute()}") < 64 * 30  # spends wait on the replica
        await keys.store.flush()
        assert await reader.get(f"tpm/far/{minute()}") == 64 * 30
    finally:
        await close_all([keys], reader)


@needs_redis
async def test_two_stores_sharing_redis_admit_exactly_the_rpm_in_turn() -> None:
    (a, b), reader, _ = shared_limiters(2)
    key = principal("turns", rpm=200)  # leases of 10, then fewer, then one request at a time
    try:
        admitted = [await request(a if turn % 3 else b, key) for turn in range(300)]
        assert sum(admitted) == 200
        assert not any(admitted[-60:])  # once the minute's requests are gone, both refuse
    finally:
        await close_all([a, b], reader)


@needs_redis
async def test_two_stores_sharing_redis_never_admit_more_than_the_rpm_at_once() -> None:
    (a, b), reader, _ = shared_limiters(2, redis_timeout_seconds=5.0)  # 400 connections
    key = principal("burst", rpm=200)
    try:
        first = await asyncio.gather(*(request(a if n % 2 else b, key) for n in range(400)))
        assert 180 <= sum(first) <= 200  # a lease may be left unused by the end of the burst...
        for keys in (a, b):
            await keys.store.flush(everything=True)  # ...until it goes back to Redis
        second = [await request(a if turn % 2 else b, key) for turn in range(100)]
        assert sum(first) + sum(second) == 200
    finally:
        await close_all([a, b], reader)


@needs_redis
async def test_an_idle_lease_goes_back_to_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    (a, b), reader, _ = shared_limiters(2)
    key = principal("idle", rpm=100)  # a lease of 100 // 20 = 5
    try:
        assert await request(a, key)
        assert await reader.get(f"rpm/idle/{minute()}") == 5  # 4 of them unused on a
        monkeypatch.setattr(limit_store_module, "LEASE_IDLE_SECONDS", 0.0)
        await a.store.flush()
        assert await reader.get(f"rpm/idle/{minute()}") == 1
        admitted = [await request(b, key) for _ in range(120)]
        assert sum(admitted) == 99  # b gets everything a did not use
    finally:
        await close_all([a, b], reader)


@needs_redis
async def test_near_its_tpm_two_stores_see_each_others_tokens_at_once() -> None:
    (a, b), reader, _ = shared_limiters(2)
    far, near = principal("far-tpm", tpm=1000), principal("near-tpm", tpm=1000)
    try:
        # far from the limit (under 90 %), a spend waits on its replica for the flusher
        assert await request(a, far, tokens=100)
        assert await reader.get(f"tpm/far-tpm/{minute()}") == 0
        await a.store.flush()
        assert await reader.get(f"tpm/far-tpm/{minute()}") == 100
        # near it, every spend is added at once and every admission reads the shared total
        assert await request(a, near, tokens=950)
        admission = await b.admit(near)
        assert admission.headers["x-ratelimit-remaining-tokens"] == "50"  # a's 950, at once
        await admission.settle(Usage(prompt_tokens=100))
        admission.release()
        assert await reader.get(f"tpm/near-tpm/{minute()}") == 1050
        for keys in (a, b):
            with pytest.raises(RateLimited) as caught:
                await keys.admit(near)
            assert caught.value.error_type == "tokens" and "used 1050" in caught.value.message
    finally:
        await close_all([a, b], reader)


@needs_redis
async def test_closing_a_store_gives_its_leases_back_and_adds_its_spends() -> None:
    (a,), reader, _ = shared_limiters(1)
    key = principal("closing", rpm=100, tpm=1_000_000)
    try:
        assert await request(a, key, tokens=40)
        assert await reader.get(f"rpm/closing/{minute()}") == 5
        await a.store.close()
        assert await reader.get(f"rpm/closing/{minute()}") == 1
        assert await reader.get(f"tpm/closing/{minute()}") == 40
    finally:
        await reader.close()


@needs_redis
async def test_a_redis_reply_slower_than_the_timeout_is_counted_once() -> None:
    """Redis applies the spend, its reply comes after ``redis_timeout_seconds``: the replica
    counts it in process too, but no decision adds the two stores (nor retries Redis)."""
    settings = LimitsSettings(
        redis_url="redis://127.0.0.1:6379/0",
        key_prefix=f"unit-{uuid.uuid4().hex[:8]}",
        redis_timeout_seconds=0.05,
        redis_retry_seconds=0.2,
    )
    other, _ = limiter(settings=settings.model_copy(update={"redis_timeout_seconds": 1.0}))
    slow, metrics = limiter(settings=settings)
    key = principal("late", tpm=1000)
    storage = slow.store._shared
    assert storage is not None
    try:
        await (await other.admit(key)).spend(Usage(prompt_tokens=950))
        admission = await slow.admit(key)
        assert admission.headers["x-ratelimit-remaining-tokens"] == "50"
        original = storage.incr

        async def applied_then_late(key: str, expiry: int, amount: int = 1) -> int:
            value = await original(key, expiry, amount)
            await asyncio.sleep(0.2)
            return value

        storage.incr = applied_then_late  # type: ignore[method-assign]
        await admission.spend(Usage(prompt_tokens=30))
        admission.release()
        del storage.incr  # Redis is quick again
        assert refused(metrics, "tpm") == 0
        errors = metrics.registry.get_sample_value("sdm_router_rate_limit_store_errors_total")
        assert errors == 1
        assert await other.store.get(f"tpm/late/{minute()}") == 980  # applied once, no retry
        while_failing = await slow.admit(key)  # counted in process meanwhile: this replica's 30
        assert while_failing.headers["x-ratelimit-remaining-tokens"] == "970"
        while_failing.release()
        await asyncio.sleep(0.25)  # redis_retry_seconds later: Redis again
        again = await slow.admit(key)
        # the shared 980: neither the in-process 30 taken for Redis's total nor 980 + 30
        assert again.headers["x-ratelimit-remaining-tokens"] == "20"
        again.release()
    finally:
        await slow.store.close()
        await other.store.close()


async def test_the_store_clock_decides_the_minute() -> None:
    now = [NOW]
    metrics = GatewayMetrics(CollectorRegistry())
    store = LimitStore(LimitsSettings(), metrics, lambda: now[0])
    keys = KeyLimiter(store, AdmissionGate(100), metrics)
    key = principal("clocked", rpm=1)
    (await keys.admit(key)).release()
    with pytest.raises(RateLimited) as caught:
        await keys.admit(key)
    assert caught.value.retry_after == pytest.approx(59.0)  # a second into the minute
    now[0] = NOW + 58.5  # the same minute, half a second left
    with pytest.raises(RateLimited) as caught:
        await keys.admit(key)
    assert caught.value.headers["x-ratelimit-reset-requests"] == "500ms"
    now[0] = NOW + 59.0  # the next minute: a fresh budget
    (await keys.admit(key)).release()
