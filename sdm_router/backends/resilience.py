"""Outbound resilience of a remote backend: the retry policy and the circuit breaker.

* :class:`RetryPolicy` retries one upstream call after a connect error, a 429 or a 5xx that came
  *before the first byte* of a successful response (the caller raises :class:`RetryableError`
  only there), with exponential backoff and jitter (tenacity), honouring the upstream's
  ``retry-after``. It never sleeps past the call's budget: the request deadline
  (``GenerationRequest.deadline``, from ``server.request_timeout_seconds``) or the backend's own
  total timeout, whichever comes first; a wait that would end past it (or a ``retry-after``
  above ``retry_after_max``) gives up at once with the upstream's error, so the cascade can try
  the next tier while time is left. The first attempt runs outside tenacity (it costs about
  50 µs of CPU per call), so a call that succeeds pays nothing for the policy.
* :class:`CircuitBreaker` opens after ``failure_threshold`` consecutive failed calls (a call is
  all its attempts), refuses calls fast with :class:`BackendUnavailable` (a ``NoHealthyBackend``,
  so the cascade moves on to the next tier with reason ``backend_error``) for ``open_seconds``,
  then lets one probe through (half-open): its success closes the circuit, its failure opens it
  again. A call the client cancelled counts neither way.

Both report to a :class:`ResilienceObserver` (``GatewayMetrics``: retries by reason, circuit
state by backend). Everything runs on the event loop: no locks.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity import wait_exponential_jitter as _wait_exponential_jitter

from sdm_router.config import CircuitBreakerSettings, RetrySettings
from sdm_router.core.errors import GatewayError, InvalidRequest, NoHealthyBackend
from sdm_router.observability.metrics import CircuitStateName, RetryReason

T = TypeVar("T")

# ------------------------------------------------------------------ observer


class ResilienceObserver(Protocol):
    """Receives retries and circuit state changes; ``GatewayMetrics`` implements it."""

    def backend_retry(self, backend: str, reason: str) -> None:
        """``backend``'s call is retried after a failure of ``reason`` (a ``RetryReason``)."""

    def backend_circuit_state(self, backend: str, state: str) -> None:
        """``backend``'s circuit is now ``state`` (a ``CircuitStateName``)."""


class NullResilienceObserver:
    """Observes nothing (tools and tests that do not look at metrics)."""

    def backend_retry(self, backend: str, reason: str) -> None:
        """Ignore a retry."""

    def backend_circuit_state(self, backend: str, state: str) -> None:
        """Ignore a state change."""


# ------------------------------------------------------------------ retries


class RetryableError(Exception):
    """One attempt failed in a way worth another: ``error`` is what the caller sees when no
    attempt is left; ``retry_after`` is the upstream's ``retry-after`` in seconds, if any."""

    def __init__(
        self, error: GatewayError, reason: RetryReason, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.reason: RetryReason = reason
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``retry-after`` header: delta-seconds or an HTTP date; None when
    absent or unreadable, never negative."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryPolicy:
    """Retries of one backend's calls (``backends.<name>.retries``)."""

    def __init__(
        self,
        backend: str,
        settings: RetrySettings,
        observer: ResilienceObserver,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._observer = observer
        self._clock = clock
        self._sleep = sleep
        self._backoff = _wait_exponential_jitter(
            multiplier=settings.backoff_initial,
            max=settings.backoff_max,
            jitter=settings.jitter,
        )

    @property
    def settings(self) -> RetrySettings:
        """The settings this policy follows."""
        return self._settings

    def wait_seconds(self, retry_state: RetryCallState) -> float:
        """The pause before the next attempt: exponential backoff with jitter, or the upstream's
        ``retry-after`` when it asks for longer."""
        wait = self._backoff(retry_state)
        failure = _failure(retry_state)
        if failure is not None and failure.retry_after is not None:
            wait = max(wait, failure.retry_after)
        return float(wait)

    def should_stop(self, retry_state: RetryCallState, until: float | None) -> bool:
        """No attempt is left, the upstream asks for too long a pause, or the pause would end
        past ``until`` (the call's budget)."""
        if retry_state.attempt_number >= self._settings.max_attempts:
            return True
        failure = _failure(retry_state)
        if (
            failure is not None
            and failure.retry_after is not None
            and failure.retry_after > self._settings.retry_after_max
        ):
            return True
        return until is not None and self._clock() + retry_state.upcoming_sleep >= until

    async def call(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        until: float | None = None,
        may_retry: Callable[[], bool] = lambda: True,
    ) -> T:
        """Run ``attempt`` until it returns, raises something other than ``RetryableError``,
        or no retry is left (then the last ``RetryableError.error`` is raised). ``until`` is a
        ``clock()`` time no pause may reach; ``may_retry`` is asked before each retry (the
        circuit breaker says no once it has opened)."""
        try:
            return await attempt()
        except RetryableError as failure:
            first = failure
        if self._settings.max_attempts <= 1:
            raise first.error from first.__cause__
        replayed = False

        async def again() -> T:
            nonlocal replayed
            if not replayed:  # tenacity's attempt 1 is the one that already failed
                replayed = True
                raise first
            return await attempt()

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=lambda state: not may_retry() or self.should_stop(state, until),
            wait=self.wait_seconds,
            before_sleep=self._before_sleep,
            reraise=True,
            sleep=self._sleep,
        )
        try:
            return await retrying(again)
        except RetryableError as failure:
            raise failure.error from failure.__cause__

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        failure = _failure(retry_state)
        if failure is not None:
            self._observer.backend_retry(self._backend, failure.reason)


def _failure(retry_state: RetryCallState) -> RetryableError | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    error = outcome.exception()
    return error if isinstance(error, RetryableError) else None


# ------------------------------------------------------------------ the circuit breaker


class CircuitState(enum.IntEnum):
    """A circuit's state; the value is the ``sdm_router_backend_circuit_state`` gauge's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> CircuitStateName:
        """The state's name: closed, half_open or open."""
        names: dict[CircuitState, CircuitStateName] = {
            CircuitState.CLOSED: "closed",
            CircuitState.HALF_OPEN: "half_open",
            CircuitState.OPEN: "open",
        }
        return names[self]


class BackendUnavailable(NoHealthyBackend):
    """The backend's circuit is open: refused without calling it (the cascade skips the tier)."""

    default_code = "circuit_open"


def counts_as_failure(error: GatewayError) -> bool:
    """Whether a failed call says the backend is unwell: a 4xx other than 429 (our request
    was wrong; the backend answered) does not."""
    return not isinstance(error, InvalidRequest) and error.code != "upstream_client_error"


class CircuitBreaker:
    """One backend's circuit (``backends.<name>.circuit_breaker``).

    ``admit()`` before a call (raises ``BackendUnavailable`` when refused; returns whether the
    call is the half-open probe), then exactly one of ``succeeded``, ``failed`` or
    ``abandoned`` (cancelled: counts neither way) with that value.
    """

    def __init__(
        self,
        backend: str,
        settings: CircuitBreakerSettings,
        observer: ResilienceObserver,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._observer = observer
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        observer.backend_circuit_state(backend, self._state.label)

    @property
    def state(self) -> CircuitState:
        """The state now (an open circuit whose wait is over reads half-open)."""
        if self._state is CircuitState.OPEN and self._wait_left() <= 0:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether calls are refused now (a retry should not be tried either)."""
        return self._settings.enabled and self._state is CircuitState.OPEN

    def _wait_left(self) -> float:
        return self._opened_at + self._settings.open_seconds - self._clock()

    def _move(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            self._observer.backend_circuit_state(self._backend, state.label)

    def admit(self) -> bool:
        """Let a call through (True when it is the half-open probe) or refuse it."""
        if not self._settings.enabled or self._state is CircuitState.CLOSED:
            return False
        if self._state is CircuitState.OPEN:
            left = self._wait_left()
            if left > 0:
                raise BackendUnavailable(
                    f"backend {self._backend!r} is unavailable: its circuit opened after "
                    f"{self._settings.failure_threshold} consecutive failures; the next probe "
                    f"is in {left:.1f} s"
                )
            self._move(CircuitState.HALF_OPEN)
        if self._probing:
            raise BackendUnavailable(
                f"backend {self._backend!r} is unavailable: a probe call is testing it"
            )
        self._probing = True
        return True

    def succeeded(self, probe: bool) -> None:
        """The call ended well (or with the client's own mistake): the circuit closes."""
        if probe:
            self._probing = False
        self._failures = 0
        self._move(CircuitState.CLOSED)

    def failed(self, probe: bool) -> None:
        """The call failed: count it; the threshold (or a failed probe) opens the circuit."""
        if not self._settings.enabled:
            return
        if probe:
            self._probing = False
        self._failures += 1
        if (
            probe
            or self._state is CircuitState.HALF_OPEN
            or (self._failures >= self._settings.failure_threshold)
        ):
            self._opened_at = self._clock()
            self._move(CircuitState.OPEN)

    def abandoned(self, probe: bool) -> None:
        """The call was cancelled: nothing learnt; a probe's turn passes to the next call."""
        if probe:
            self._probing = False

    def record(self, probe: bool, error: GatewayError) -> None:
        """``failed`` or ``succeeded`` by what ``error`` says about the backend."""
        if counts_as_failure(error):
            self.failed(probe)
        else:
            self.succeeded(probe)
