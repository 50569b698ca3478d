"""``EmbeddingsServing``: ``/v1/embeddings`` proxied to the backend the ``embeddings`` config
maps the client's ``model`` to. Nothing is verified: an embedding is not an answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sdm_router.backends.base import Embedder
from sdm_router.core.embeddings import EmbeddingRequest, Embeddings
from sdm_router.core.errors import ModelNotFound
from sdm_router.core.generation import Usage
from sdm_router.pipeline.scope import RequestScope


@dataclass(frozen=True, slots=True)
class EmbeddingTarget:
    """Where one embedding model is served: a backend and the model name it expects."""

    backend: Embedder
    upstream_model: str


class EmbeddingsServing:
    """Resolves an embedding model and calls its backend (started with the other backends)."""

    def __init__(self, targets: Mapping[str, EmbeddingTarget] | None = None) -> None:
        self._targets = dict(targets or {})

    @property
    def models(self) -> list[str]:
        """The model names clients may embed with."""
        return sorted(self._targets)

    def check(self, model: str) -> None:
        """Refuse (404 ``model_not_found``) a model no embedding backend serves."""
        if model not in self._targets:
            offered = (
                f"Embedding models: {', '.join(self.models)}."
                if self._targets
                else "No embedding model is configured (the `embeddings` section)."
            )
            raise ModelNotFound(
                f"The model {model!r} does not serve embeddings. {offered}", param="model"
            )

    async def embed(self, scope: RequestScope, request: EmbeddingRequest) -> Embeddings:
        """Embed with the backend ``request.model`` names (404 ``model_not_found`` otherwise),
        by the scope's deadline; the usage goes to the scope's sink."""
        self.check(request.model)
        target = self._targets[request.model]
        upstream = replace(request, model=target.upstream_model, deadline=scope.deadline)
        result = await target.backend.embed(upstream)
        scope.report_usage(Usage(prompt_tokens=result.prompt_tokens))
        return result
