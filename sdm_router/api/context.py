"""What route handlers need, stored on ``app.state`` by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from sdm_router.api.edge.admission import AdmissionGate
from sdm_router.api.edge.auth import KeyRing
from sdm_router.api.edge.key_limits import KeyLimiter
from sdm_router.api.edge.scope import RequestEdge
from sdm_router.config import ObservabilitySettings, ServerSettings
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.pipeline.embeddings import EmbeddingsServing
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.serving import GenerationServing, VerificationServing
from sdm_router.storage.store import DecisionStore


@dataclass(slots=True)
class ApiContext:
    """Shared state of the HTTP layer."""

    gateway: Gateway
    generation: GenerationServing
    verification: VerificationServing
    metrics: GatewayMetrics
    server: ServerSettings
    observability: ObservabilitySettings
    gate: AdmissionGate
    limiter: KeyLimiter
    edge: RequestEdge
    max_nearest_exemplars: int
    store: DecisionStore | None = None
    embeddings: EmbeddingsServing = field(default_factory=EmbeddingsServing)
    artifact_roots: tuple[Path, ...] = ()  # where an admin reload may name an artifact
    keys: KeyRing | None = None  # the configured keys (the console signs people in with them)
    console_session_s: float = 8 * 3600.0  # how long a console sign-in lasts


def context_of(request: Request) -> ApiContext:
    """The ``ApiContext`` of the app serving ``request``."""
    context: ApiContext = request.app.state.context
    return context
