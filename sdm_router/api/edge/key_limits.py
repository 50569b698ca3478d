"""Per-key limits: requests per minute, tokens per minute, requests in flight; ``x-ratelimit-*``.

Minutes are fixed windows aligned to the store's clock (``floor(unix time / 60)``). A request is
admitted when the key has requests left in this minute (the admission counts one) and tokens
left. Tokens are counted when the request ends, prompt + completion over every backend call the
cascade made, as each call reported them (``Admission``): also when the request then fails,
times out or its client leaves. One answer may overdraw the minute; the next request is
refused. Requests in flight are counted per replica, in process: a concurrency bound protects
this replica, and a replica that dies cannot leak slots. The gateway-wide bound
(``server.max_concurrency``, ``AdmissionGate``) comes last. Where the counts live, and how
Redis is batched: ``limit_store``.
"""

from __future__ import annotations

import math

from sdm_router.api.edge.admission import Admission, AdmissionGate, leave
from sdm_router.api.edge.auth import Principal
from sdm_router.api.edge.limit_store import LimitStore, window
from sdm_router.core.errors import Overloaded, RateLimited
from sdm_router.observability.metrics import GatewayMetrics


def reset_text(seconds: float) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*``: ``250ms``, ``17s``, ``1m5s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


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
                leave(self._in_flight, principal.name)
            raise
        return Admission(self.gate, self._in_flight, principal, self.store, tokens_key, headers)

    async def _check_budgets(self, principal: Principal, headers: dict[str, str]) -> str | None:
        """Count the request, check the minute's tokens, fill ``headers``; the tokens key."""
        if principal.rpm is None and principal.tpm is None:
            return None
        number, left = window(self.store.now())
        expiry = math.ceil(left) + 1
        tokens_key = f"tpm/{principal.name}/{number}" if principal.tpm is not None else None
        admitted, requests, used = True, 0, 0
        if principal.rpm is not None:
            requests_key = f"rpm/{principal.name}/{number}"
            admitted, requests = await self.store.take(requests_key, principal.rpm, expiry)
        if tokens_key is not None and principal.tpm is not None:
            used = await self.store.tokens_used(tokens_key, principal.tpm, expiry)
        reset = reset_text(left)
        if principal.rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(principal.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, principal.rpm - requests))
            headers["x-ratelimit-reset-requests"] = reset
        if principal.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(principal.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, principal.tpm - used))
            headers["x-ratelimit-reset-tokens"] = reset
        if not admitted:
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
