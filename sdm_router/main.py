"""Composition root: Settings -> components -> ``create_app``. The only module that imports all."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from fastapi import FastAPI

from sdm_router.api.app import create_app
from sdm_router.backends.base import Backend, Embedder
from sdm_router.backends.factory import make_backend
from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.config import (
    OpenAIBackendSettings,
    Settings,
    VerifierSettings,
)
from sdm_router.core.errors import ConfigurationError
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.pipeline.cascade import Cascade
from sdm_router.pipeline.embeddings import EmbeddingsServing, EmbeddingTarget
from sdm_router.pipeline.gateway import Companion, Gateway
from sdm_router.pipeline.guarantee import GuaranteeMonitor
from sdm_router.pipeline.labeling import Labeler
from sdm_router.pipeline.plan import build_plans
from sdm_router.pipeline.registry_follow import RegistryFollower, RegistryRollback
from sdm_router.pipeline.routes import RouteTable
from sdm_router.retrieval.base import Retriever
from sdm_router.retrieval.corpus import make_retriever
from sdm_router.storage.database import make_engine
from sdm_router.storage.registry import ArtifactRegistry
from sdm_router.storage.store import DecisionStore
from sdm_router.verifier.prompt_router import PromptRouter
from sdm_router.verifier.protocol import Verifier


def make_verifier(
    settings: VerifierSettings, backends: Mapping[str, Backend], metrics: GatewayMetrics
) -> Verifier:
    """The SDM verifier; its encoder shares the weights (and the model thread) of the local
    backend ``verifier.encoder_backend`` names, when it names one."""
    from sdm_router.verifier.sdm_verifier import SDMVerifier

    shared = None
    if settings.encoder_backend is not None:
        backend = backends.get(settings.encoder_backend)
        if not isinstance(backend, LocalTransformersBackend):
            raise ConfigurationError(
                f"verifier.encoder_backend {settings.encoder_backend!r} is not a local backend"
            )
        shared = backend
    return SDMVerifier(settings, shared, metrics)


def make_prompt_router(
    settings: VerifierSettings, backends: Mapping[str, Backend]
) -> PromptRouter | None:
    """The prompt router ``verifier.prompt_router`` names (None without one); its encoder shares
    the verifier's model like the verifier's own encoder does."""
    if settings.prompt_router is None:
        return None
    shared = None
    if settings.encoder_backend is not None:
        backend = backends.get(settings.encoder_backend)
        if isinstance(backend, LocalTransformersBackend):
            shared = backend
    return PromptRouter(settings.prompt_router, shared, settings.encoder_model, settings.device)


def build_embeddings(settings: Settings, backends: Mapping[str, Backend]) -> EmbeddingsServing:
    """The ``embeddings`` models, each on the (openai) backend it names."""
    targets: dict[str, EmbeddingTarget] = {}
    for name, embedding in settings.embeddings.items():
        backend, configured = backends[embedding.backend], settings.backends[embedding.backend]
        if not isinstance(backend, Embedder) or not isinstance(configured, OpenAIBackendSettings):
            raise ConfigurationError(
                f"embeddings.{name}.backend: {embedding.backend!r} does not serve embeddings"
            )
        targets[name] = EmbeddingTarget(backend, embedding.model or configured.model)
    return EmbeddingsServing(targets)


def follow_registry(
    settings: Settings, gateway: Gateway, guarantee: GuaranteeMonitor, metrics: GatewayMetrics
) -> None:
    """This replica follows the artifact registry, and the guarantee's rollback goes back to
    the registry's previous artifact (``pipeline/registry_follow.py``)."""
    registry = ArtifactRegistry(make_engine(settings.storage.sqlalchemy_url()))
    follower = RegistryFollower(registry, gateway, metrics, settings.autopilot.poll_seconds)
    rollback = RegistryRollback(registry, follower, metrics)
    rollback.fallback(gateway.routes)
    guarantee.rollback = rollback
    gateway.registry = registry
    gateway.companions.append(follower)


def build_app(
    settings: Settings,
    *,
    backends: Mapping[str, Backend] | None = None,
    verifier: Verifier | None = None,
    retriever: Retriever | None = None,
    metrics: GatewayMetrics | None = None,
    companions: Sequence[Callable[[Gateway, GatewayMetrics], Companion]] = (),
) -> FastAPI:
    """Wire every component from ``settings``; tests may pass ready-made components.
    ``companions``: factories of background components the gateway starts after the rest (the
    CLI passes the autopilot loop, which sits above this module)."""
    metrics = metrics or GatewayMetrics()
    if backends is None:
        backends = {
            name: make_backend(name, cfg, metrics) for name, cfg in settings.backends.items()
        }
    if verifier is None:
        verifier = make_verifier(settings.verifier, backends, metrics)
    uses_retrieval = any(route.retrieval for route in settings.routes.values())
    if retriever is None and settings.retrieval is not None and uses_retrieval:
        retriever = make_retriever(settings.retrieval)
    prompt_router = make_prompt_router(settings.verifier, backends)
    cascade = Cascade(verifier, retriever, metrics, prompt_router)
    store = DecisionStore(settings.storage, metrics) if settings.storage.enabled else None
    routes = RouteTable(build_plans(settings, backends))
    labeler = guarantee = None
    if store is not None:
        guarantee = GuaranteeMonitor(settings.guarantee, routes, store, metrics)
        if settings.labeling is not None:
            judge = backends[settings.labeling.judge]
            labeler = Labeler(settings.labeling, judge, store, metrics)
    gateway = Gateway(
        routes,
        settings.default_route,
        cascade,
        backends,
        verifier,
        retriever,
        decision_log=store,
        labeler=labeler,
        guarantee=guarantee,
        prompt_router=prompt_router,
    )
    if store is not None and guarantee is not None and settings.autopilot.enabled:
        follow_registry(settings, gateway, guarantee, metrics)
    gateway.companions.extend(make(gateway, metrics) for make in companions)
    return create_app(
        gateway,
        metrics,
        settings.server,
        settings.observability,
        max_nearest_exemplars=settings.verifier.max_nearest_exemplars,
        store=store,
        auth=settings.auth,
        limits=settings.limits,
        embedding_models=build_embeddings(settings, backends),
        artifact_roots=settings.verifier.reload_roots(),
    )
