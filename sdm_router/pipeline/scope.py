"""``RequestScope``: the per-request facts the edge (api/) hands to serving, built once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sdm_router.core.generation import Usage
from sdm_router.pipeline.plan import RoutePlan

UsageSink = Callable[[Usage], None]


@dataclass(frozen=True, slots=True)
class RequestScope:
    """One request as serving sees it, built once at the edge after authorization and
    admission, and passed down explicitly (no ambient context variables).

    ``plan`` is the route or direct model the request named, resolved once (``None`` for an
    endpoint that runs no plan: embeddings). ``deadline`` (``time.monotonic()``) bounds every
    backend call. ``usage_sink`` receives each backend call's usage as it returns (the key's
    tokens per minute), also when the request fails afterwards. ``log_fields`` is the request's
    one log line, written by the HTTP layer when the response has ended.
    """

    request_id: str
    plan: RoutePlan | None
    deadline: float
    requested_model: str | None = None
    key_name: str | None = None
    client_request_id: str | None = None
    response_id: str | None = None
    usage_sink: UsageSink | None = None
    log_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> RoutePlan:
        """The resolved plan; only endpoints that run a plan ask for it."""
        if self.plan is None:
            raise RuntimeError(f"request {self.request_id} names no route")
        return self.plan

    def annotate(self, fields: dict[str, Any]) -> None:
        """Add ``fields`` to the request's log line."""
        self.log_fields.update(fields)

    def report_usage(self, usage: Usage) -> None:
        """One backend call's usage, as it returned."""
        if self.usage_sink is not None:
            self.usage_sink(usage)
