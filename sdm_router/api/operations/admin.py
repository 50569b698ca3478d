"""``POST /admin/verifier/reload``: swap in another verifier artifact without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictStr

from sdm_router.api.context import context_of
from sdm_router.core.errors import InvalidRequest
from sdm_router.verifier.protocol import ReloadRefused

router = APIRouter()


class ReloadRequest(BaseModel):
    """An artifact path; without one the configured ``verifier.artifact`` is loaded again."""

    model_config = ConfigDict(extra="forbid", strict=True)
    artifact: StrictStr | None = None


async def reload_verifier(request: Request, artifact: Path | None) -> dict[str, Any]:
    """Reload, publish the new artifact id, and say what is serving now."""
    context = context_of(request)
    try:
        info = await context.gateway.reload_verifier(artifact)
    except ReloadRefused as error:
        raise InvalidRequest(
            f"The verifier artifact was refused, the old one keeps serving: {error}",
            param="artifact",
            code="artifact_refused",
        ) from error
    context.metrics.set_verifier_info(info.artifact_id, info.device)
    return {"object": "verifier", "artifact_id": info.artifact_id, "device": info.device}


@router.post("/admin/verifier/reload")
async def reload(request: Request, body: ReloadRequest | None = None) -> dict[str, Any]:
    """Load and check the artifact off the event loop, then swap it in atomically; requests in
    flight finish on the artifact they started with."""
    return await reload_verifier(request, Path(body.artifact) if body and body.artifact else None)
