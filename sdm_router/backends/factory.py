"""Backends from their config entries."""

from __future__ import annotations

from sdm_router.backends.base import Backend
from sdm_router.backends.resilience import ResilienceObserver
from sdm_router.config import LocalBackendSettings, OpenAIBackendSettings


def make_backend(
    name: str,
    settings: LocalBackendSettings | OpenAIBackendSettings,
    observer: ResilienceObserver | None = None,
) -> Backend:
    """A backend for one ``backends:`` entry (heavy modules are imported only when used);
    ``observer`` (``GatewayMetrics``) sees a remote backend's retries and circuit state."""
    if isinstance(settings, OpenAIBackendSettings):
        from sdm_router.backends.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(name, settings, observer=observer)
    from sdm_router.backends.local_transformers import LocalTransformersBackend

    return LocalTransformersBackend(
        name,
        source=settings.source,
        device=settings.device,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_new_tokens=settings.max_new_tokens,
        max_queued_rows=settings.max_queued_rows,
        dtype=settings.dtype,
        threads=settings.threads,
        cache_dir=settings.cache_dir,
    )
