"""``/healthz`` (alive), ``/readyz`` (loaded and not draining) and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sdm_router.api.context import context_of
from sdm_router.api.edge.auth import is_operator

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    """200 once backends, verifier and retriever are loaded, else 503; the state only
    (``ready``, ``loading``, ``draining``), and for an admin key (or with no key configured)
    the components: which device each uses, the verifier artifact, the store's status."""
    readiness = context_of(request).gateway.readiness()
    body: dict[str, Any] = {
        "status": "ready" if readiness.ready else ("draining" if readiness.draining else "loading"),
    }
    if is_operator(request):
        body["components"] = readiness.components
        body["routes"] = readiness.routes
    return JSONResponse(body, status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_model=None)
async def metrics(request: Request) -> Response:
    """Prometheus exposition of every gateway metric."""
    body, content_type = context_of(request).metrics.render()
    return Response(body, media_type=content_type)
