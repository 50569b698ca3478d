"""Every Prometheus metric of the gateway, defined once.

Label values come from closed sets. ``action``, ``outcome``, ``reason``, ``stage``,
``token_type`` and ``error_type`` are validated here (an unknown value is a programming
error and raises ``ValueError``); ``route``, ``model`` and ``backend`` come from config and
are closed by construction.

Multiprocess: when ``PROMETHEUS_MULTIPROC_DIR`` is set *before* ``prometheus_client`` is
first imported (i.e. in the environment of the server process), every worker writes its
values to memory-mapped files in that directory and :meth:`GatewayMetrics.render`
aggregates them with ``MultiProcessCollector``. See ``docs/observability.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final, Literal, get_args

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from sdm_router.core.routing import RoutingAction
from sdm_router.core.states import FEATURE_REASONS
from sdm_router.core.verdict import ERROR_OUTCOME, FINAL_ACTIONS, Action, Reason
from sdm_router.observability.closed_labels import check, check_name
from sdm_router.observability.label_metrics import LabelMetrics
from sdm_router.observability.logging import count_in_request

__all__ = [
    "ACTIONS",
    "ALPHA_BUCKETS",
    "BATCH_SIZE_BUCKETS",
    "CIRCUIT_STATES",
    "CONNECTION_CLOSE_REASONS",
    "ERROR_TYPES",
    "OUTCOMES",
    "RATE_LIMIT_REASONS",
    "REASONS",
    "REQUEST_SECONDS_BUCKETS",
    "RETRY_REASONS",
    "STAGES",
    "STAGE_SECONDS_BUCKETS",
    "TOKEN_BUCKETS",
    "TOKEN_TYPES",
    "CircuitStateName",
    "ConnectionCloseReason",
    "ErrorType",
    "GatewayMetrics",
    "RateLimitReason",
    "RetryReason",
    "Stage",
    "TokenType",
    "clear_multiprocess_dir",
    "mark_process_dead",
    "multiprocess_dir",
]

Stage = Literal["route", "generate", "encode", "score", "verify", "retrieve"]
TokenType = Literal["input", "output"]
ErrorType = Literal[
    "timeout",  # connect/read timeout talking to the backend
    "connection",  # refused, reset, DNS: no HTTP response at all
    "rate_limited",  # backend answered 429
    "server_error",  # backend answered 5xx
    "client_error",  # backend answered 4xx other than 429 (our request was wrong)
    "invalid_response",  # 2xx but the body/stream could not be parsed
    "cancelled",  # the client went away and we cancelled the upstream call
    "other",
]

StoreEvent = Literal[
    "written",  # records written to the decision store
    "dropped_full",  # the store's queue was full (database slow or down): the record is lost
    "dropped_shutdown",  # still queued when the gateway stopped
    "write_error",  # a batch write failed (it is retried)
    "expired",  # removed by storage.retention_days
    "label_orphaned",  # a judge's label whose decision is not in the store (it was dropped)
]

RateLimitReason = Literal[
    "rpm",  # the key's requests per minute are used up
    "tpm",  # the key's tokens per minute are used up
    "in_flight_key",  # the key has its limit of requests in flight
    "in_flight_global",  # the gateway is at server.max_concurrency
]

RetryReason = Literal[
    "connection",  # refused, reset or timed out before any response
    "rate_limited",  # the upstream answered 429
    "server_error",  # the upstream answered 5xx
]
CircuitStateName = Literal["closed", "half_open", "open"]
ConnectionCloseReason = Literal[
    "idle",  # nothing arrived within server.header_timeout_seconds of connecting
    "header_timeout",  # a head began and was not whole within server.header_timeout_seconds
    "body_timeout",  # a body was not whole within server.body_timeout_seconds
    "headers_too_large",  # past server.max_header_bytes (431)
    "too_many_headers",  # past server.max_header_count (431)
    "connection_cap",  # past server.max_connections, closed as it was accepted
]

RATE_LIMIT_REASONS: Final[frozenset[str]] = frozenset(get_args(RateLimitReason))
CONNECTION_CLOSE_REASONS: Final[frozenset[str]] = frozenset(get_args(ConnectionCloseReason))
RETRY_REASONS: Final[frozenset[str]] = frozenset(get_args(RetryReason))
# the sdm_router_backend_circuit_state gauge's value per state
CIRCUIT_STATES: Final[dict[str, int]] = {"closed": 0, "half_open": 1, "open": 2}
STORE_EVENTS: Final[frozenset[str]] = frozenset(get_args(StoreEvent))
# the decision labels are the domain's enums: one source
ACTIONS: Final[frozenset[str]] = frozenset(action.value for action in Action)
REASONS: Final[frozenset[str]] = frozenset(reason.value for reason in Reason)
ROUTING_ACTIONS: Final[frozenset[str]] = frozenset(action.value for action in RoutingAction)
OUTCOMES: Final[frozenset[str]] = frozenset(
    {action.value for action in FINAL_ACTIONS} | {ERROR_OUTCOME}
)
STAGES: Final[frozenset[str]] = frozenset(get_args(Stage))
FEATURE_SOURCES: Final[frozenset[str]] = frozenset({"recorded", "encoded"})
TOKEN_TYPES: Final[frozenset[str]] = frozenset(get_args(TokenType))
ERROR_TYPES: Final[frozenset[str]] = frozenset(get_args(ErrorType))

# End-to-end request latency: the OpenTelemetry GenAI operation-duration family.
REQUEST_SECONDS_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
# Stages range from sub-millisecond (verify a cached batch) to a full generation.
STAGE_SECONDS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
# One bucket edge per calibrated rung: alpha 0 means "no region"; the default ladder is
# 0.55..0.95 in steps of 0.05, finer ladders reach towards 1.
ALPHA_BUCKETS: Final = (
    0.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995,
    0.999, 1.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
# gen_ai.client.token.usage buckets from the OpenTelemetry GenAI semantic conventions.
TOKEN_BUCKETS: Final = (
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
    4194304.0, 16777216.0, 67108864.0,
)  # fmt: skip


def multiprocess_dir() -> str | None:
    """The multiprocess directory in use, or None in single-process mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class GatewayMetrics(LabelMetrics):
    """Every Prometheus metric of the gateway, defined once (those of labelling and the live
    guarantee in ``label_metrics.py``).

    Construct one per process (or one per test, each with its own registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            if multiprocess_dir() is None:
                # Process metrics are meaningless when aggregated over workers.
                for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                    registry.register(collector)
        self.registry = registry
        self._verifier_labels: tuple[str, str] | None = None
        # The label children of the per-request series, resolved (and their labels checked)
        # once per label set: ``labels()`` costs a lock and a tuple build on every call.
        self._children: dict[tuple[object, ...], Any] = {}

        self._requests = Counter(
            "sdm_router_requests",
            "Requests finished, by route and final outcome "
            "(accept|abstain|unverified|observed|error).",
            ["route", "outcome"],
            registry=registry,
        )
        self._routing = Counter(
            "sdm_router_routing",
            "Routing steps before generating (prompt router), by route and action "
            "(proceed|skip|abstain).",
            ["route", "action"],
            registry=registry,
        )
        self._decisions = Counter(
            "sdm_router_decisions",
            "Policy decisions, one per attempt: action "
            "(accept|escalate|retrieve|abstain|unverified|observed) and reason.",
            ["route", "tier", "model", "action", "reason"],
            registry=registry,
        )
        self._request_seconds = Histogram(
            "sdm_router_request_duration_seconds",
            "End-to-end request latency inside the gateway, all attempts included.",
            ["route"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=registry,
        )
        self._stage_seconds = Histogram(
            "sdm_router_stage_duration_seconds",
            "Latency of one pipeline stage (generate|encode|score|verify|retrieve; encode "
            "and score per verifier batch, verify per request including the batch wait).",
            ["stage"],
            buckets=STAGE_SECONDS_BUCKETS,
            registry=registry,
        )
        self._region_alpha = Histogram(
            "sdm_router_region_alpha",
            "Calibrated region alpha assigned by the verifier to each verified attempt "
            "(0 = no region).",
            ["route", "tier"],
            buckets=ALPHA_BUCKETS,
            registry=registry,
        )
        self._backend_errors = Counter(
            "sdm_router_backend_errors",
            "Errors talking to a generation backend, by backend and error type.",
            ["backend", "error_type"],
            registry=registry,
        )
        self._batch_size = Histogram(
            "sdm_router_verifier_batch_size",
            "Number of items scored in one verifier device call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self._features = Counter(
            "sdm_router_verifier_features",
            "Verified answers by where their hidden-state features came from (recorded: the "
            "generator's own pass; encoded: a second forward) and why.",
            ["source", "reason"],
            registry=registry,
        )
        self._inflight = Gauge(
            "sdm_router_inflight_requests",
            "Requests currently being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._verifier_info = Gauge(
            "sdm_router_verifier_info",
            "Loaded verifier artifact and the device it runs on (value 1).",
            ["artifact_id", "device"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._store_events = Counter(
            "sdm_router_decision_store_records",
            "What happened to decision records (and queued labels): written, dropped_full, "
            "dropped_shutdown, write_error (a failed batch write, retried), expired, "
            "label_orphaned.",
            ["event"],
            registry=registry,
        )
        self._http_responses = Counter(
            "sdm_router_http_responses",
            "HTTP responses of every endpoint, by route (the matched path template, 'other' for "
            "an unknown path) and status code (499: the client went away first).",
            ["route", "status"],
            registry=registry,
        )
        self._http_seconds = Histogram(
            "sdm_router_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (streams included), by "
            "route and status class (2xx|4xx|5xx...).",
            ["route", "status_class"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=registry,
        )
        self._rate_limited = Counter(
            "sdm_router_rate_limited",
            "Requests refused with 429, by reason (rpm|tpm|in_flight_key|in_flight_global).",
            ["reason"],
            registry=registry,
        )
        for limit_reason in sorted(RATE_LIMIT_REASONS):
            self._rate_limited.labels(reason=limit_reason)
        self._connections_closed = Counter(
            "sdm_router_http_connections_closed",
            "Client connections the gateway closed at its edge limits, by reason (idle|"
            "header_timeout|body_timeout|headers_too_large|too_many_headers|connection_cap).",
            ["reason"],
            registry=registry,
        )
        for close_reason in sorted(CONNECTION_CLOSE_REASONS):
            self._connections_closed.labels(reason=close_reason)
        self._limit_store_errors = Counter(
            "sdm_router_rate_limit_store_errors",
            "Failed calls to the shared limit store (limits.redis_url); while it fails, limits "
            "are counted in process.",
            registry=registry,
        )
        self._token_usage = Histogram(
            "sdm_router_token_usage",
            "Tokens per backend call, by route, model and token type (input|output); "
            "mirrors OpenTelemetry gen_ai.client.token.usage.",
            ["route", "model", "token_type"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self._backend_retries = Counter(
            "sdm_router_backend_retries",
            "Upstream calls retried, by backend and reason (connection|rate_limited|"
            "server_error): one per retry, before its pause.",
            ["backend", "reason"],
            registry=registry,
        )
        self._define_label_metrics(registry)
        self._circuit_state = Gauge(
            "sdm_router_backend_circuit_state",
            "Circuit breaker state per backend: 0 closed, 1 half-open (a probe decides), 2 open "
            "(calls refused, the cascade skips the tier); the worst worker's, multiprocess.",
            ["backend"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    def declare_route(self, route: str) -> None:
        """Create the zero-valued request series of a configured route.

        Optional; call once per route at start-up so outcome ratios read 0 rather than
        "no data" before the first abstention or error.
        """
        check_name(route, "route")
        for outcome in sorted(OUTCOMES):
            self._requests.labels(route=route, outcome=outcome)
        self._request_seconds.labels(route=route)

    def request_finished(self, route: str, outcome: str, seconds: float) -> None:
        """Count one finished request and observe its end-to-end latency."""
        children = self._children.get(("request", route, outcome))
        if children is None:
            check_name(route, "route")
            check(outcome, OUTCOMES, "outcome")
            children = self._children[("request", route, outcome)] = (
                self._requests.labels(route=route, outcome=outcome),
                self._request_seconds.labels(route=route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def http_response(self, route: str, status: int, seconds: float) -> None:
        """Count one HTTP response and observe its duration under its status class."""
        children = self._children.get(("http", route, status))
        if children is None:
            check_name(route, "route")
            if not 100 <= status <= 599:
                raise ValueError(f"status must be an HTTP status code, got {status}")
            children = self._children[("http", route, status)] = (
                self._http_responses.labels(route=route, status=str(status)),
                self._http_seconds.labels(route=route, status_class=f"{status // 100}xx"),
            )
        children[0].inc()
        children[1].observe(seconds)

    def routing(self, route: str, action: str) -> None:
        """Count one routing step before generating."""
        key = ("routing", route, action)
        child = self._children.get(key)
        if child is None:
            check_name(route, "route")
            check(action, ROUTING_ACTIONS, "action")
            child = self._children[key] = self._routing.labels(route=route, action=action)
        child.inc()

    def attempt(
        self,
        route: str,
        tier: int,
        model: str,
        action: str,
        reason: str,
        region_alpha: float | None,
    ) -> None:
        """Count one attempt's decision; observe its region alpha when it was verified."""
        key = ("attempt", route, tier, model, action, reason)
        decision = self._children.get(key)
        if decision is None:
            check_name(route, "route")
            check_name(model, "model")
            check(action, ACTIONS, "action")
            check(reason, REASONS, "reason")
            if tier < 0:
                raise ValueError(f"tier must be >= 0, got {tier}")
            decision = self._children[key] = self._decisions.labels(
                route=route, tier=str(tier), model=model, action=action, reason=reason
            )
        if region_alpha is not None and not 0.0 <= region_alpha <= 1.0:
            raise ValueError(f"region_alpha must be in [0, 1], got {region_alpha}")
        decision.inc()
        if region_alpha is not None:
            alpha = self._children.get(("alpha", route, tier))
            if alpha is None:
                alpha = self._region_alpha.labels(route=route, tier=str(tier))
                self._children[("alpha", route, tier)] = alpha
            alpha.observe(region_alpha)

    def stage(self, stage: str, seconds: float) -> None:
        """Observe the latency of one pipeline stage."""
        child = self._children.get(("stage", stage))
        if child is None:
            check(stage, STAGES, "stage")
            child = self._children[("stage", stage)] = self._stage_seconds.labels(stage=stage)
        child.observe(seconds)

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        """Time the enclosed block as ``stage`` (observed even when it raises)."""
        check(stage, STAGES, "stage")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage(stage, time.perf_counter() - start)

    def backend_error(self, backend: str, error_type: str) -> None:
        """Count one backend error."""
        check_name(backend, "backend")
        check(error_type, ERROR_TYPES, "error_type")
        self._backend_errors.labels(backend=backend, error_type=error_type).inc()

    def verifier_batch(self, size: int) -> None:
        """Observe the size of one verifier device call."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self._batch_size.observe(size)

    def verifier_features(self, source: str, reason: str) -> None:
        """Count one answer's features by ``source`` (recorded | encoded) and ``reason``."""
        check(source, FEATURE_SOURCES, "source")
        check(reason, FEATURE_REASONS, "reason")
        self._features.labels(source=source, reason=reason).inc()

    def store_event(self, event: str, count: int = 1) -> None:
        """Count ``count`` decision records that met ``event``."""
        check(event, STORE_EVENTS, "event")
        self._store_events.labels(event=event).inc(count)

    def rate_limited(self, reason: str) -> None:
        """Count one request refused with 429 for ``reason``."""
        check(reason, RATE_LIMIT_REASONS, "reason")
        self._rate_limited.labels(reason=reason).inc()

    def connection_closed(self, reason: str) -> None:
        """Count one client connection closed at an edge limit for ``reason``."""
        check(reason, CONNECTION_CLOSE_REASONS, "reason")
        self._connections_closed.labels(reason=reason).inc()

    def rate_limit_store_error(self) -> None:
        """Count one failed call to the shared limit store."""
        self._limit_store_errors.inc()

    def track_inflight(self) -> AbstractContextManager[None]:
        """Context manager that counts the enclosed block as one in-flight request."""
        return self._inflight.track_inprogress()

    def set_verifier_info(self, artifact_id: str, device: str) -> None:
        """Publish the loaded verifier artifact and device; replaces a previous one."""
        labels = (check_name(artifact_id, "artifact_id"), check_name(device, "device"))
        previous = self._verifier_labels
        if previous is not None and previous != labels:
            # In multiprocess mode the old value lives on in the mmap file: zero it first.
            self._verifier_info.labels(*previous).set(0)
            self._verifier_info.remove(*previous)
        self._verifier_info.labels(*labels).set(1)
        self._verifier_labels = labels

    def tokens(self, route: str, model: str, token_type: str, count: int) -> None:
        """Observe the token usage of one backend call (token_type input|output)."""
        child = self._children.get(("tokens", route, model, token_type))
        if child is None:
            check_name(route, "route")
            check_name(model, "model")
            check(token_type, TOKEN_TYPES, "token_type")
            child = self._token_usage.labels(route=route, model=model, token_type=token_type)
            self._children[("tokens", route, model, token_type)] = child
        if count < 0:
            raise ValueError(f"token count must be >= 0, got {count}")
        child.observe(count)

    def backend_retry(self, backend: str, reason: str) -> None:
        """Count one retry of an upstream call (reason connection|rate_limited|server_error)."""
        check_name(backend, "backend")
        check(reason, RETRY_REASONS, "reason")
        self._backend_retries.labels(backend=backend, reason=reason).inc()
        count_in_request("retries")  # the request's log line says how often it was retried

    def backend_circuit_state(self, backend: str, state: str) -> None:
        """Publish a backend's circuit state (closed|half_open|open); declares its retry series
        the first time, so rates read 0 before the first retry."""
        check_name(backend, "backend")
        value = CIRCUIT_STATES.get(state)
        if value is None:
            raise ValueError(f"state={state!r} is not one of {sorted(CIRCUIT_STATES)}")
        self._circuit_state.labels(backend=backend).set(value)
        for reason in sorted(RETRY_REASONS):
            self._backend_retries.labels(backend=backend, reason=reason)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, aggregated over workers if multiprocess."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
        aggregate = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregate, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(aggregate), CONTENT_TYPE_PLAIN_0_0_4

    def shutdown(self) -> None:
        """Drop this worker's live gauges (in-flight, verifier info) in multiprocess mode.

        Call from the worker's lifespan shutdown; a no-op in single-process mode.
        """
        directory = multiprocess_dir()
        if directory is not None:
            multiprocess.mark_process_dead(os.getpid(), path=directory)  # type: ignore[no-untyped-call]


def mark_process_dead(pid: int) -> None:
    """Drop a worker's live gauge files (``livesum``/``livemax``) after it exited; the
    supervisor calls it for each worker it reaps (a crashed one never ran ``shutdown``).
    A no-op in single-process mode."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, path=directory)  # type: ignore[no-untyped-call]


def clear_multiprocess_dir(directory: str | os.PathLike[str]) -> int:
    """Delete stale ``*.db`` files left by a previous run; returns how many were removed.

    Call once in the parent before workers start (never while workers are running).
    """
    removed = 0
    for entry in os.scandir(directory):
        if entry.is_file() and entry.name.endswith(".db"):
            os.remove(entry.path)
            removed += 1
    return removed
