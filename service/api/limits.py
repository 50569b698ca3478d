"""Per-key limits: requests per minute, tokens per minute, requests in flight; ``x-ratelimit-*``.

Minutes are fixed windows aligned to the clock (``floor(unix time / 60)``), counted in a
``limits`` storage: ``MemoryStorage`` in process by default, or ``limits.redis_url``'s Redis
(redis-py's asyncio client), shared by every replica. A request is admitted when the key has
requests left in this minute (the admission counts one) and tokens left (tokens are counted
after the response, prompt + completion over every backend call the cascade made, so one answer
may overdraw the minute; the next request is refused). In Redis, a replica that spent tokens on
a key within the last second takes the shared total that spend returned instead of reading it
again (one round trip less per request of a busy key; other replicas' spends since then are
seen at the next read). Requests in flight are counted per
replica, in process: a concurrency bound protects this replica, and a replica that dies cannot
leak slots. The gateway-wide bound (``server.max_concurrency``) comes last.

Redis failing (refused, slower than ``limits.redis_timeout_seconds``) never fails a request:
the failure is counted (``sdm_router_rate_limit_store_errors_total``) and logged once, and for
``limits.redis_retry_seconds`` the replica counts in process, then tries Redis again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import Request
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError

from service.api.auth import Principal, authorize, principal_of
from service.api.context import AdmissionGate, context_of
from service.config import LimitsSettings
from service.core.errors import Overloaded, RateLimited
from service.core.generation import Usage
from service.observability.metrics import GatewayMetrics
from service.pipeline.serving import Served, StreamEvent, Streaming

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60
# Redis: a replica's last token spend returns the shared total; admission uses it this long
TOKENS_FRESH_SECONDS = 1.0


def _window(now: float) -> tuple[int, float]:
    """This minute's number and the seconds left in it."""
    number = int(now // WINDOW_SECONDS)
    return number, (number + 1) * WINDOW_SECONDS - now


def reset_text(seconds: float) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*``: ``250ms``, ``17s``, ``1m5s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class LimitStore:
    """Counters of the current minute: in process, or in Redis with an in-process fallback."""

    def __init__(self, settings: LimitsSettings, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._memory = MemoryStorage()
        self._shared: Storage | None = None
        self._pool: ConnectionPool | None = None
        self._timeout = settings.redis_timeout_seconds
        self._retry = settings.redis_retry_seconds
        self._skip_until = 0.0
        self._degraded = False
        self._seen: dict[str, tuple[int, float]] = {}  # tokens key -> (shared total, when)
        if settings.redis_url is not None:
            from redis.asyncio import ConnectionPool

            url = settings.redis_url.get_secret_value().removeprefix("async+")
            self._pool = ConnectionPool.from_url(
                url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
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

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key`` (created to expire in ``expiry`` s); the new count."""
        return await self._call(lambda storage: storage.incr(key, expiry, amount))

    async def get(self, key: str) -> int:
        """The count of ``key`` (0 if absent or expired)."""
        return await self._call(lambda storage: storage.get(key))

    async def spend(self, key: str, expiry: int, amount: int) -> None:
        """Add ``amount`` tokens to ``key``; in Redis, remember the shared total it returns."""
        total = await self.incr(key, expiry, amount)
        if self._shared is not None:
            now = time.monotonic()
            if key not in self._seen:  # a new key (a new minute): forget the stale ones
                stale = now - 2 * TOKENS_FRESH_SECONDS
                for old in [name for name, (_, when) in self._seen.items() if when < stale]:
                    del self._seen[old]
            self._seen[key] = (total, now)

    def recent_tokens(self, key: str) -> int | None:
        """In Redis: the shared total this replica's last spend on ``key`` returned, if that
        was under ``TOKENS_FRESH_SECONDS`` ago (a busy key skips one round trip per request);
        None otherwise (and always in process, where reading the count is free)."""
        seen = self._seen.get(key)
        if seen is None or time.monotonic() - seen[1] >= TOKENS_FRESH_SECONDS:
            return None
        return seen[0]

    async def _call(self, operation: Callable[[Storage], Awaitable[int]]) -> int:
        shared = self._shared
        if shared is not None and time.monotonic() >= self._skip_until:
            try:
                async with asyncio.timeout(self._timeout):
                    value = await operation(shared)
            except (StorageError, TimeoutError, OSError) as error:
                self._failed(error)
            else:
                if self._degraded:
                    self._degraded = False
                    logger.warning("limit store (Redis) answers again: limits are shared")
                return value
        return await operation(self._memory)

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

    async def close(self) -> None:
        """Close the Redis connections."""
        if self._pool is not None:
            await self._pool.aclose()


class Admission:
    """One admitted request: its slots (given back once by ``release``), its key's token
    counter (``spend``) and the ``x-ratelimit-*`` headers of its response."""

    __slots__ = ("_gate", "_key_slots", "_name", "_released", "_store", "_tokens_key", "headers")

    def __init__(
        self,
        gate: AdmissionGate,
        key_slots: dict[str, int] | None,
        principal: Principal | None,
        store: LimitStore,
        tokens_key: str | None,
        headers: dict[str, str],
    ) -> None:
        self._gate = gate
        self._key_slots = key_slots if principal is not None and principal.in_flight else None
        self._released = False
        self._store = store
        self._tokens_key = tokens_key
        self.headers = headers
        self._name = principal.name if principal is not None else ""

    def release(self) -> None:
        """Give the slots back (idempotent)."""
        if self._released:
            return
        self._released = True
        self._gate.release()
        if self._key_slots is not None:
            _leave(self._key_slots, self._name)

    @property
    def counts_tokens(self) -> bool:
        """Whether the key has a tokens-per-minute limit."""
        return self._tokens_key is not None

    async def spend(self, usage: Usage) -> None:
        """Count a finished request's tokens against its key's minute."""
        if self._tokens_key is not None and usage.total_tokens > 0:
            _, left = _window(time.time())
            await self._store.spend(self._tokens_key, math.ceil(left) + 1, usage.total_tokens)

    async def metered(self, pending: Awaitable[Streaming]) -> Streaming:
        """The ``Streaming`` of ``pending``, its tokens counted: at once when the answer is
        decided before the first byte, else when its last event (the ``Served``) goes by."""
        streaming = await pending
        if self._tokens_key is None:
            return streaming
        if streaming.decided is not None:
            await self.spend(streaming.decided.result.usage)
            return streaming
        return dataclasses.replace(streaming, events=_Metered(streaming.events, self))


class _Metered:
    """Stream events passed through unchanged; the closing ``Served`` spends its tokens.
    ``aclose`` always closes the wrapped events (started or not)."""

    def __init__(self, events: AsyncIterator[StreamEvent], admission: Admission) -> None:
        self._events = events
        self._admission = admission

    def __aiter__(self) -> _Metered:
        return self

    async def __anext__(self) -> StreamEvent:
        event = await anext(self._events)
        if isinstance(event, Served):
            await self._admission.spend(event.result.usage)
        return event

    async def aclose(self) -> None:
        """Close the wrapped events."""
        await self._events.aclose()  # type: ignore[attr-defined]


def _leave(slots: dict[str, int], name: str) -> None:
    left = slots.get(name, 0) - 1
    if left > 0:
        slots[name] = left
    else:
        slots.pop(name, None)


class KeyLimiter:
    """Admits requests under their key's limits, then the gateway-wide gate."""

    def __init__(self, store: LimitStore, gate: AdmissionGate, metrics: GatewayMetrics) -> None:
        self.store = store
        self.gate = gate
        self._metrics = metrics
        self._in_flight: dict[str, int] = {}

    def in_flight(self, name: str) -> int:
        """Requests of key ``name`` in flight on this replica."""
        return self._in_flight.get(name, 0)

    async def admit(self, principal: Principal | None) -> Admission:
        """Take the request's slots or refuse it (``RateLimited`` / ``Overloaded``, 429)."""
        headers: dict[str, str] = {}
        tokens_key = None
        if principal is not None and principal.limited:
            tokens_key = await self._check_budgets(principal, headers)
            if principal.in_flight is not None:
                taken = self._in_flight.get(principal.name, 0)
                if taken >= principal.in_flight:
                    self._metrics.rate_limited("in_flight_key")
                    raise RateLimited(
                        f"This key has {principal.in_flight} requests in flight, its limit "
                        "(auth.keys[].limits.in_flight); retry when one finishes.",
                        retry_after=1,
                        headers=headers,
                        code="too_many_requests_in_flight",
                    )
                self._in_flight[principal.name] = taken + 1
        try:
            self.gate.acquire()
        except Overloaded:
            self._metrics.rate_limited("in_flight_global")
            if principal is not None and principal.in_flight is not None:
                _leave(self._in_flight, principal.name)
            raise
        return Admission(self.gate, self._in_flight, principal, self.store, tokens_key, headers)

    async def _check_budgets(self, principal: Principal, headers: dict[str, str]) -> str | None:
        """Count the request, check the minute's tokens, fill ``headers``; the tokens key."""
        if principal.rpm is None and principal.tpm is None:
            return None
        number, left = _window(time.time())
        expiry = math.ceil(left) + 1
        requests_key = f"rpm/{principal.name}/{number}"
        tokens_key = f"tpm/{principal.name}/{number}" if principal.tpm is not None else None
        requests = used = 0
        recent = self.store.recent_tokens(tokens_key) if tokens_key is not None else None
        if self.store.shared and principal.rpm is not None and tokens_key and recent is None:
            requests, used = await asyncio.gather(
                self.store.incr(requests_key, expiry), self.store.get(tokens_key)
            )
        else:
            if principal.rpm is not None:
                requests = await self.store.incr(requests_key, expiry)
            if tokens_key is not None:
                used = recent if recent is not None else await self.store.get(tokens_key)
        reset = reset_text(left)
        if principal.rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(principal.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, principal.rpm - requests))
            headers["x-ratelimit-reset-requests"] = reset
        if principal.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(principal.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, principal.tpm - used))
            headers["x-ratelimit-reset-tokens"] = reset
        if principal.rpm is not None and requests > principal.rpm:
            self._metrics.rate_limited("rpm")
            raise RateLimited(
                f"Rate limit reached for requests per minute (RPM): limit {principal.rpm}. "
                f"Please try again in {reset}.",
                retry_after=left,
                headers=headers,
                error_type="requests",
            )
        if principal.tpm is not None and used >= principal.tpm:
            self._metrics.rate_limited("tpm")
            raise RateLimited(
                f"Rate limit reached for tokens per minute (TPM): limit {principal.tpm}, used "
                f"{used}. Please try again in {reset}.",
                retry_after=left,
                headers=headers,
                error_type="tokens",
            )
        return tokens_key


async def admit(request: Request, model: str | None) -> Admission:
    """Authorize the route or model ``model`` names for the caller's key (403), then admit the
    request under its limits (429)."""
    context = context_of(request)
    principal = principal_of(request)
    if principal is not None:
        authorize(principal, context.gateway.plan_for(model))
    return await context.limiter.admit(principal)
