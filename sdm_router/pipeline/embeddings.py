"""``EmbeddingsServing``: ``/v1/embeddings`` proxied to the backend the ``embeddings`` config
maps the client's ``model`` to. Nothing is verified: an embedding is not an answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

    def check(self, model: str, offered: Callable[[str], bool] | None = None) -> None:
        """Refuse (404 ``model_not_found``) a model no embedding backend serves, listing the
        embedding models ``offered`` accepts (all by default: the caller's key may use them)."""
        if model in self._targets:
            return
        names = [name for name in self.models if offered is None or offered(name)]
        if names:
            hint = f" Embedding models: {', '.join(names)}."
        elif not self._targets:
            hint = " No embedding model is configured (the `embeddings` section)."
        else:
            hint = ""
        raise ModelNotFound(f"The model {model!r} does not serve embeddings.{hint}", param="model")

    async def embed(self, scope: RequestScope, request: EmbeddingRequest) -> Embeddings:
        """Embed with the backend ``request.model`` names (404 ``model_not_found`` otherwise),
        by the scope's deadline; the usage goes to the scope's sink."""
        self.check(request.model)
        target = self._targets[request.model]
        upstream = replace(request, model=target.upstream_model, deadline=scope.deadline)
        result = await target.backend.embed(upstream)
        scope.report_usage(Usage(prompt_tokens=result.prompt_tokens))
        return result
