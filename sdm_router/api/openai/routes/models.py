"""``GET /v1/models``: routes, direct models and embedding models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sdm_router.api.context import context_of
from sdm_router.api.edge.auth import may_use, principal_of

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every name a client may pass as ``model`` (those its key may use)."""
    gateway = context_of(request).gateway
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "sdm-router",
            "kind": "direct" if plan.direct else "route",
            "description": plan.description,
        }
        for name, plan in sorted(gateway.plans.items())
        if may_use(request, plan)
    ]
    principal = principal_of(request)
    data += [
        {"id": name, "object": "model", "created": 0, "owned_by": "sdm-router",
         "kind": "embedding", "description": "embeddings (POST /v1/embeddings)"}
        for name in context_of(request).embeddings.models
        if principal is None or principal.allows(name, model=True)
    ]  # fmt: skip
    return {"object": "list", "data": data}
