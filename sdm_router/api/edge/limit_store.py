"""The counters behind per-key limits (``LimitStore``): in process, or in a Redis shared by
replicas. The policy that reads them is ``key_limits.KeyLimiter``.

Minutes are fixed windows aligned to the store's clock (``floor(unix time / 60)``; a test
passes its own clock), counted in a ``limits`` storage: ``MemoryStorage`` in process by
default, or ``limits.redis_url``'s Redis (redis-py's asyncio client), shared by every replica.

In Redis, far from a key's limits a replica does not pay a round trip per request
(``limits.redis_batch``, the accuracy choice docs/security.md describes):

* requests: a replica takes up to ``redis_batch`` of a key's requests from Redis in one
  increment (a lease, at most 1/``LEASE_SHARE`` of what the minute has left) and admits them
  locally; with fewer than ``2 * LEASE_SHARE`` left, each request is one increment. Leased
  requests are counted before they are used, so replicas together never admit more than the
  rpm; a lease unused for ``LEASE_IDLE_SECONDS`` goes back to Redis, and until then another
  replica may refuse up to that many requests early.
* tokens: spends wait on the replica and are added every ``limits.redis_flush_seconds``.
  Each addition answers the shared total, and the flusher reads it for the other keys
  admitted meanwhile, so admissions use a view at most ``TOKENS_FRESH_FLUSHES`` intervals
  old. Once a key's tokens as the replica sees them reach ``NEAR_LIMIT`` of its tpm, every
  spend is added at once and every admission reads the shared total: near the limit,
  enforcement is as exact as with ``redis_batch: 1``. Far from it, a replica may not see the
  last interval or two of the other replicas' spends.

``close`` (at shutdown) gives leases back and adds the waiting spends.

Redis failing (refused, slower than ``limits.redis_timeout_seconds``) never fails a request:
the failure is counted (``sdm_router_rate_limit_store_errors_total``) and logged once, and for
``limits.redis_retry_seconds`` the replica counts in process, then tries Redis again. Each
count goes to Redis once: a call that failed is never retried there, but counted in process
instead. If Redis had applied it (a reply slower than the timeout), both stores hold it once;
no decision adds the two (a replica reads one store at a time, and its views of the shared
totals take only Redis's answers), so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from limits.aio.storage import MemoryStorage, RedisStorage
from limits.errors import StorageError

from sdm_router.config import LimitsSettings
from sdm_router.observability.metrics import GatewayMetrics

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

Clock = Callable[[], float]
logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60
# Redis, far from a tpm: a replica's view of a key's shared tokens serves admissions for this
# many flush intervals (the flusher renews the views of the keys admitted each interval)
TOKENS_FRESH_FLUSHES = 2
# Redis: from this share of a key's tpm (as the replica sees it), spends and reads are exact
NEAR_LIMIT = 0.9
# Redis: a lease takes at most this part of what is left of a key's minute (1/20)
LEASE_SHARE = 20
# Redis: leased requests unused this long go back to Redis
LEASE_IDLE_SECONDS = 1.0
_FAILURES = (StorageError, TimeoutError, OSError)


def window(now: float) -> tuple[int, float]:
    """This minute's number and the seconds left in it."""
    number = int(now // WINDOW_SECONDS)
    return number, (number + 1) * WINDOW_SECONDS - now


@dataclasses.dataclass(slots=True)
class _Requests:
    """A replica's share of one key's minute of requests in Redis."""

    ends: float  # the store clock's time after which the Redis key is gone
    total: int = 0  # the shared count after this replica's last increment
    granted: int = 0  # leased requests not used yet
    used_at: float = 0.0  # time.monotonic() of the last lease or use
    leasing: asyncio.Future[None] | None = None


@dataclasses.dataclass(slots=True)
class _Tokens:
    """A replica's view of one key's minute of tokens in Redis, and its spends not sent yet."""

    ends: float
    seen: int = 0  # the shared total in Redis's last answer
    seen_at: float = -math.inf  # time.monotonic() of that answer
    read_at: float = -math.inf  # time.monotonic() of the last admission that read the view
    pending: int = 0  # spent here, not added in Redis yet


class LimitStore:
    """Counters of the current minute: in process, or in Redis with an in-process fallback."""

    def __init__(
        self, settings: LimitsSettings, metrics: GatewayMetrics, clock: Clock = time.time
    ) -> None:
        self.now = clock  # wall-clock seconds: which minute a count belongs to
        self._metrics = metrics
        self._memory = MemoryStorage()
        self._shared: RedisStorage | None = None
        self._pool: ConnectionPool | None = None
        self._timeout = settings.redis_timeout_seconds
        self._retry = settings.redis_retry_seconds
        self._batch = settings.redis_batch
        self._flush_seconds = settings.redis_flush_seconds
        self._skip_until = 0.0
        self._degraded = False
        self._requests: dict[str, _Requests] = {}
        self._tokens: dict[str, _Tokens] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        if settings.redis_url is not None:
            from redis.asyncio import ConnectionPool

            url = settings.redis_url.get_secret_value().removeprefix("async+")
            # Every call runs under asyncio.timeout (_timed): redis-py's socket_timeout would add
            # an asyncio.wait_for (a Task on Python 3.11) to each command, about 12 us of CPU.
            self._pool = ConnectionPool.from_url(url, socket_connect_timeout=self._timeout)
            scheme = "async+redis+" if url.startswith("unix://") else "async+"
            options: dict[str, object] = {"connection_pool": self._pool}
            self._shared = RedisStorage(
                scheme + url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=settings.key_prefix,
                **options,  # type: ignore[arg-type]  # limits documents connection_pool
            )

    @property
    def shared(self) -> bool:
        """Whether counts go to Redis (while it answers)."""
        return self._shared is not None

    @property
    def batched(self) -> bool:
        """Whether, in Redis, counts far from a limit are batched (``redis_batch`` > 1)."""
        return self._shared is not None and self._batch > 1

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key`` (created to expire in ``expiry`` s); the new count."""
        value = await self._redis_incr(key, expiry, amount)
        if value is None:
            return await self._memory.incr(key, expiry, amount)
        return value

    async def get(self, key: str) -> int:
        """The count of ``key`` (0 if absent or expired)."""
        value = await self._redis_get(key)
        if value is None:
            return await self._memory.get(key)
        return value

    # ------------------------------------------------------------------ requests per minute

    async def take(self, key: str, limit: int, expiry: int) -> tuple[bool, int]:
        """Count one request on ``key`` (at most ``limit`` a minute): whether it is admitted,
        and the minute's count as this replica knows it (the request included)."""
        if not self.batched:
            count = await self.incr(key, expiry)
            return count <= limit, count
        state = self._requests.get(key)
        if state is None:
            state = self._requests[key] = _Requests(ends=self.now() + expiry)
        while self._redis_up():
            if state.granted > 0:
                state.granted -= 1
                state.used_at = time.monotonic()
                return True, state.total - state.granted
            size = max(1, min(self._batch, (limit - state.total) // LEASE_SHARE))
            if size == 1:  # near the limit: one request, one increment
                value = await self._redis_incr(key, expiry, 1)
                if value is None:
                    break
                state.total = max(state.total, value)
                return value <= limit, value
            if state.leasing is None:  # one lease in flight per key: the others wait for it
                state.leasing = asyncio.ensure_future(self._lease(state, key, limit, size))
            await asyncio.shield(state.leasing)
        count = await self._memory.incr(key, expiry)  # Redis failed or is skipped
        return count <= limit, count

    async def _lease(self, state: _Requests, key: str, limit: int, size: int) -> None:
        try:
            value = await self._redis_incr(key, self._expiry(state.ends), size)
            if value is not None:
                # of the ``size`` counted, those under the limit are this replica's to admit;
                # the rest only push the count past it, where every replica refuses anyway
                state.granted += max(0, min(size, limit - (value - size)))
                state.total = max(state.total, value)
                state.used_at = time.monotonic()
                self._start_flusher()
        finally:
            state.leasing = None

    # ------------------------------------------------------------------ tokens per minute

    async def tokens_used(self, key: str, limit: int, expiry: int) -> int:
        """The minute's tokens on ``key`` (limit ``limit``) for an admission."""
        if not self.batched:
            return await self.get(key)
        if not self._redis_up():
            return await self._memory.get(key)
        state = self._tokens_state(key, expiry)
        estimate = state.seen + state.pending
        if estimate >= limit:  # a minute's tokens only grow: refused until it ends
            return estimate
        now = state.read_at = time.monotonic()
        fresh = now - state.seen_at < TOKENS_FRESH_FLUSHES * self._flush_seconds
        if fresh and estimate < limit * NEAR_LIMIT:
            self._start_flusher()  # it renews the view
            return estimate
        if not await self._read_tokens(key, state):
            return await self._memory.get(key)
        return state.seen + state.pending

    async def spend(self, key: str, expiry: int, amount: int, limit: int) -> None:
        """Add ``amount`` tokens to ``key`` (limit ``limit``): at once, or batched in Redis
        while the key is far from its limit."""
        if not self.batched:
            await self.incr(key, expiry, amount)
            return
        if not self._redis_up():
            await self._memory.incr(key, expiry, amount)
            return
        state = self._tokens_state(key, expiry)
        state.pending += amount
        if state.seen + state.pending >= limit * NEAR_LIMIT:
            await self._add_tokens(key, state)
        else:
            self._start_flusher()

    def _tokens_state(self, key: str, expiry: int) -> _Tokens:
        state = self._tokens.get(key)
        if state is None:
            state = self._tokens[key] = _Tokens(ends=self.now() + expiry)
        return state

    async def _read_tokens(self, key: str, state: _Tokens) -> bool:
        """Renew ``state``'s view of the shared total; False if Redis failed."""
        value = await self._redis_get(key)
        if value is None:
            return False
        state.seen, state.seen_at = max(state.seen, value), time.monotonic()
        return True

    async def _add_tokens(self, key: str, state: _Tokens) -> None:
        """Send ``state``'s waiting spends to Redis (in process if it fails: never twice)."""
        amount, state.pending = state.pending, 0
        if amount <= 0:
            return
        expiry = self._expiry(state.ends)
        value = await self._redis_incr(key, expiry, amount)
        if value is None:
            await self._memory.incr(key, expiry, amount)
        else:
            state.seen, state.seen_at = max(state.seen, value), time.monotonic()

    # ------------------------------------------------------------------ the batches' flusher

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._requests or self._tokens:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except Exception:  # never expected: keep the flusher alive, log it
                logger.exception("limit store: flushing the batched counts failed")

    async def flush(self, *, everything: bool = False) -> None:
        """Add the waiting token spends in Redis (which answers the new totals), renew the
        other views admissions read since the last flush, give back idle leases (all with
        ``everything``) and forget the minutes that ended."""
        now, wall = time.monotonic(), self.now()
        for key, tokens in list(self._tokens.items()):
            if tokens.ends <= wall:
                del self._tokens[key]  # a minute that ended: its spends no longer matter
            elif tokens.pending:
                await self._add_tokens(key, tokens)
            elif not everything and now - tokens.read_at < self._flush_seconds:
                await self._read_tokens(key, tokens)
        for key, requests in list(self._requests.items()):
            if requests.ends <= wall:
                del self._requests[key]
            elif requests.granted and (everything or now - requests.used_at >= LEASE_IDLE_SECONDS):
                unused, requests.granted = requests.granted, 0
                # never in process: the memory store did not count them (a failure keeps them
                # counted in Redis, which can only refuse early)
                if await self._redis_incr(key, self._expiry(requests.ends), -unused) is not None:
                    requests.total -= unused

    # ------------------------------------------------------------------ Redis calls

    def _redis_up(self) -> bool:
        return self._shared is not None and time.monotonic() >= self._skip_until

    async def _redis_incr(self, key: str, expiry: int, amount: int) -> int | None:
        """Redis's new count, or None when Redis is skipped or this call failed."""
        shared = self._shared
        if shared is None or time.monotonic() < self._skip_until:
            return None
        return await self._timed(shared.incr(key, expiry, amount))

    async def _redis_get(self, key: str) -> int | None:
        shared = self._shared
        if shared is None or time.monotonic() < self._skip_until:
            return None
        return await self._timed(shared.get(key))

    async def _timed(self, call: Coroutine[Any, Any, int]) -> int | None:
        try:
            async with asyncio.timeout(self._timeout):
                value = await call
        except _FAILURES as error:
            self._failed(error)
            return None
        if self._degraded:
            self._degraded = False
            logger.warning("limit store (Redis) answers again: limits are shared")
        return value

    def _failed(self, error: Exception) -> None:
        self._metrics.rate_limit_store_error()
        self._skip_until = time.monotonic() + self._retry
        if not self._degraded:
            self._degraded = True
            cause = error.storage_error if isinstance(error, StorageError) else error
            logger.warning(
                "limit store (Redis) failed (%s: %s): counting limits in process for %g s",
                type(cause).__name__,
                cause,
                self._retry,
            )

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on its own (a count nobody waits for); without a loop it is dropped."""
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("limit store: a background count failed", exc_info=task.exception())

    def _expiry(self, ends: float) -> int:
        return max(1, math.ceil(ends - self.now()))

    async def close(self) -> None:
        """Give leases back, add the waiting spends, close the Redis connections."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.batched:
            await self.flush(everything=True)
        if self._pool is not None:
            await self._pool.aclose()
