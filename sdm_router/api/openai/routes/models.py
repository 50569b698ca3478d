"""``GET /v1/models`` and ``GET /v1/models/{id}``: routes, direct models and embedding models,
those the caller's key may use (one visibility rule for both)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sdm_router.api.context import context_of
from sdm_router.api.edge.auth import may_use, principal_of
from sdm_router.core.errors import ModelNotFound

router = APIRouter()


def visible_models(request: Request) -> list[dict[str, Any]]:
    """Every name a client may pass as ``model`` (those its key may use), as model objects."""
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
    return data


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every name a client may pass as ``model`` (those its key may use)."""
    return {"object": "list", "data": visible_models(request)}


@router.get("/v1/models/{model_id}")
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    """One model object; 404 ``model_not_found`` for a name unknown or hidden from the key."""
    for model in visible_models(request):
        if model["id"] == model_id:
            return model
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
