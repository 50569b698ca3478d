"""Settings and app builders for gateways in front of the fake upstream."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from sdm_router.config import Settings
from sdm_router.main import build_app
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.retrieval.base import Retriever
from tests.fakes import FakeVerifier


def fake_settings(
    upstream_url: str, *, extra_backends: dict[str, Any] | None = None, **changes: Any
) -> Settings:
    """A config whose backends are behaviours of the fake upstream at ``upstream_url`` (plus
    ``extra_backends``, e.g. a judge)."""
    timeouts = {"connect": 2, "read": 2, "total": 3}

    def backend(model: str) -> dict[str, Any]:
        return {
            "type": "openai",
            "base_url": f"{upstream_url}/v1",
            "model": model,
            "timeouts": timeouts,
        }

    data: dict[str, Any] = {
        "backends": {
            name: backend(name)
            for name in (
                "good",
                "unsure",
                "fail-500",
                "fail-400",
                "hang",
                "slow",
                "broken-json",
                "broken-stream",
                "stream-error",
            )
        },
        "verifier": {
            "artifact": "/nonexistent/fake.sdmkitmodel",
            "encoder_model": "/nonexistent",
            "artifact_roots": ["/models"],  # where admin reloads may name an artifact
        },
        "retrieval": {"corpus": "embedded-facts"},
        "routes": {
            "auto": {
                "tiers": [{"backend": "unsure"}, {"backend": "good"}],
                "description": "unsure then good",
            },
            "retrieving": {"tiers": [{"backend": "good", "temperature": 0}], "retrieval": True},
            "always-unsure": {"tiers": [{"backend": "unsure"}]},
            "unsure-best-effort": {"tiers": [{"backend": "unsure"}], "on_abstain": "best_effort"},
            "unsure-error": {"tiers": [{"backend": "unsure"}], "on_abstain": "error"},
            "failover": {"tiers": [{"backend": "fail-500"}, {"backend": "good"}]},
            "hang-then-good": {"tiers": [{"backend": "hang"}, {"backend": "good"}]},
            "only-failing": {"tiers": [{"backend": "fail-500"}]},
            "only-hanging": {"tiers": [{"backend": "hang"}]},
            "best-of-3": {"tiers": [{"backend": "good", "n": 3, "temperature": 0.7}]},
            "passthrough": {"tiers": [{"backend": "good"}], "stream_mode": "passthrough"},
            "passthrough-unsure": {"tiers": [{"backend": "unsure"}], "stream_mode": "passthrough"},
            "budget-1": {
                "tiers": [{"backend": "unsure"}, {"backend": "good"}],
                "max_backend_calls": 1,
            },
        },
    }
    data["backends"].update(extra_backends or {})
    data.update(changes)
    return Settings(**data)


def fake_app(
    upstream_url: str,
    *,
    verifier: FakeVerifier | None = None,
    retriever: Retriever | None = None,
    metrics: GatewayMetrics | None = None,
    extra_backends: dict[str, Any] | None = None,
    **changes: Any,
) -> FastAPI:
    """The real gateway app over the fake upstream, with a fake verifier and retriever."""
    from tests.fakes import FakeRetriever

    settings = fake_settings(upstream_url, extra_backends=extra_backends, **changes)
    return build_app(
        settings,
        verifier=verifier or FakeVerifier(),
        retriever=retriever or FakeRetriever(),
        metrics=metrics or GatewayMetrics(),
    )
