"""One admitted request's slots and token accounting (``Admission``), and the gateway-wide
bound on requests in flight (``AdmissionGate``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable

from sdm_router.api.edge.auth import Principal
from sdm_router.api.edge.limit_store import LimitStore, window
from sdm_router.core.errors import Overloaded
from sdm_router.core.generation import StreamDelta, Usage
from sdm_router.pipeline.serving import Served, StreamEvent, Streaming


class AdmissionGate:
    """Bounds requests in flight; a full gate refuses at once (429), it never queues."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def acquire(self) -> None:
        """Take a slot or refuse with ``Overloaded``."""
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"The gateway is at its limit of {self.limit} concurrent requests; retry shortly."
            )
        self.in_flight += 1

    def release(self) -> None:
        """Give a slot back (exactly once per ``acquire``)."""
        self.in_flight -= 1


class Admission:
    """One admitted request: its slots (given back once by ``release``), its key's token
    counter (``settle``) and the ``x-ratelimit-*`` headers of its response.

    Tokens: what the backend calls report (``count_backend_usage``, from the cascade), what a
    live stream passed on (``_Metered``) and the final usage are all totals of the same
    request; ``settle`` spends the largest less what it spent before, so nothing is counted
    twice however often it runs."""

    __slots__ = (
        "_gate",
        "_key_slots",
        "_name",
        "_released",
        "_reported",
        "_spent",
        "_store",
        "_streamed",
        "_tokens_key",
        "_tpm",
        "headers",
    )

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
        self._tpm = principal.tpm if principal is not None and principal.tpm else 0
        self._reported = self._streamed = self._spent = 0
        self.headers = headers
        self._name = principal.name if principal is not None else ""

    def release(self) -> None:
        """Give the slots back (idempotent). Tokens not settled yet (a stream the client
        left, a request that failed after backend calls) are counted in the background."""
        if self._released:
            return
        self._released = True
        self._gate.release()
        if self._key_slots is not None:
            leave(self._key_slots, self._name)
        if self._tokens_key is not None and self._unsettled() > 0:
            self._store.in_background(self.settle())

    @property
    def counts_tokens(self) -> bool:
        """Whether the key has a tokens-per-minute limit."""
        return self._tokens_key is not None

    def count_backend_usage(self, usage: Usage) -> None:
        """One backend call's usage, as it returned (the request scope's usage sink)."""
        self._reported += usage.total_tokens

    def count_streamed(self, delta: StreamDelta) -> None:
        """A live stream's piece went out: its tokens (one if it has no logprobs), or the
        usage it carries, stand for the stream's tokens until the backend reports them."""
        if delta.usage is not None:
            self._streamed = max(self._streamed, delta.usage.total_tokens)
        elif delta.token_logprobs:
            self._streamed += len(delta.token_logprobs)
        elif delta.text or delta.tool_calls:
            self._streamed += 1

    async def spend(self, usage: Usage) -> None:
        """Count ``usage`` (tokens not reported by a backend call, e.g. embeddings) now."""
        self._reported += usage.total_tokens
        await self.settle()

    async def settle(self, final: Usage | None = None) -> None:
        """Count the request's tokens not counted yet against its key's minute."""
        amount = self._unsettled(final)
        if amount <= 0 or self._tokens_key is None:
            return
        self._spent += amount
        _, left = window(self._store.now())
        await self._store.spend(self._tokens_key, math.ceil(left) + 1, amount, self._tpm)

    def _unsettled(self, final: Usage | None = None) -> int:
        total = max(self._reported, self._streamed, final.total_tokens if final else 0)
        return total - self._spent

    async def metered(self, pending: Awaitable[Streaming]) -> Streaming:
        """The ``Streaming`` of ``pending``, its tokens counted: at once when the answer is
        decided before the first byte, else when its last event (the ``Served``) goes by,
        or (by ``release``) when the stream closes before it."""
        streaming = await pending
        if self._tokens_key is None:
            return streaming
        if streaming.decided is not None:
            await self.settle(streaming.decided.result.usage)
            return streaming
        return dataclasses.replace(streaming, events=_Metered(streaming.events, self))


class _Metered:
    """Stream events passed through unchanged; the pieces count as streamed tokens, the
    closing ``Served`` settles. ``aclose`` always closes the wrapped events (started or not)."""

    def __init__(self, events: AsyncIterator[StreamEvent], admission: Admission) -> None:
        self._events = events
        self._admission = admission

    def __aiter__(self) -> _Metered:
        return self

    async def __anext__(self) -> StreamEvent:
        event = await anext(self._events)
        if isinstance(event, Served):
            await self._admission.settle(event.result.usage)
        else:
            self._admission.count_streamed(event)
        return event

    async def aclose(self) -> None:
        """Close the wrapped events."""
        await self._events.aclose()  # type: ignore[attr-defined]


def leave(slots: dict[str, int], name: str) -> None:
    left = slots.get(name, 0) - 1
    if left > 0:
        slots[name] = left
    else:
        slots.pop(name, None)
