"""``GET /admin/autopilot``: the artifact registry (lineage, status, the gate's figures) and the
autopilot's recorded steps (when, what, figures, decision), read from the store's database."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.exc import SQLAlchemyError

from sdm_router.api.context import context_of
from sdm_router.core.errors import NotFound, StoreUnavailable

router = APIRouter()


@router.get("/admin/autopilot")
async def get_autopilot(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0),
) -> dict[str, Any]:
    """The live artifact, the newest ``limit`` artifacts and steps (``after``: only steps
    recorded after that step id), and who holds the autopilot's lease."""
    gateway = context_of(request).gateway
    registry = gateway.registry
    if registry is None:
        raise NotFound("The autopilot is off (autopilot.enabled: false).", code="autopilot_off")

    def read() -> dict[str, Any]:
        live = registry.live()
        holder = registry.holder("autopilot")
        return {
            "object": "autopilot",
            "serving": gateway.artifact_id,
            "live": None if live is None else live.as_dict(),
            "lease": None if holder is None else {"holder": holder[0], "expires": holder[1]},
            "artifacts": [record.as_dict() for record in registry.artifacts(limit)],
            "steps": [step.as_dict() for step in registry.steps(limit, after)],
        }

    try:
        return await asyncio.to_thread(read)
    except SQLAlchemyError as error:  # the database is away: a 503, as the store's reads give
        raise StoreUnavailable(
            f"the artifact registry cannot be read ({type(error).__name__})"
        ) from error
