"""What the pipeline reports as it works; ``observability.GatewayMetrics`` implements it."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class PipelineObserver(Protocol):
    """Receives one call per attempt, stage timing and backend failure."""

    def attempt(
        self,
        route: str,
        tier: int,
        model: str,
        action: str,
        reason: str,
        region_alpha: float | None,
    ) -> None:
        """One attempt of the cascade finished with ``action`` for ``reason``."""

    def stage(self, stage: str, seconds: float) -> None:
        """A stage (route, generate, encode, verify, retrieve) took ``seconds``."""

    def routing(self, route: str, action: str) -> None:
        """The routing step before generating ended in ``action`` (proceed | skip | abstain)."""

    def backend_error(self, backend: str, error_type: str) -> None:
        """A backend call failed with ``error_type``."""

    def tokens(self, route: str, model: str, token_type: str, count: int) -> None:
        """Tokens used by a backend call; ``token_type`` is input or output."""

    def request_finished(self, route: str, outcome: str, seconds: float) -> None:
        """A request ended with ``outcome`` (a decision, or ``error``)."""

    def track_inflight(self) -> AbstractContextManager[None]:
        """Count a request in flight for the duration of the block."""


class NullObserver:
    """Observes nothing (tools and tests that do not look at metrics)."""

    def attempt(
        self,
        route: str,
        tier: int,
        model: str,
        action: str,
        reason: str,
        region_alpha: float | None,
    ) -> None:
        """Ignore an attempt."""

    def stage(self, stage: str, seconds: float) -> None:
        """Ignore a stage timing."""

    def routing(self, route: str, action: str) -> None:
        """Ignore a routing step."""

    def backend_error(self, backend: str, error_type: str) -> None:
        """Ignore a backend failure."""

    def tokens(self, route: str, model: str, token_type: str, count: int) -> None:
        """Ignore token usage."""

    def request_finished(self, route: str, outcome: str, seconds: float) -> None:
        """Ignore a finished request."""

    def track_inflight(self) -> AbstractContextManager[None]:
        """Count nothing."""
        return nullcontext()
