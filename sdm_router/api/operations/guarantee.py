"""``GET /admin/guarantee`` (each route's live guarantee) and ``GET /admin/labels/agreement``
(how machine labels agree with people's): the promise, checked on labelled live traffic."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sdm_router.api.context import context_of
from sdm_router.api.operations.decisions import store_of
from sdm_router.core.errors import NotFound
from sdm_router.pipeline.guarantee import GuaranteeMonitor
from sdm_router.storage.query_params import instant

router = APIRouter()


def _monitor(request: Request) -> GuaranteeMonitor:
    monitor = context_of(request).gateway.guarantee
    if monitor is None:
        raise NotFound("The decision store is off (storage.enabled: false).", code="store_off")
    return monitor


@router.get("/admin/guarantee")
async def get_guarantee(request: Request) -> dict[str, Any]:
    """Per route, against the live artifact: labelled accepted answers, how many correct,
    precision, its bounds, accept_alpha and the status (holding | provisional | unknown |
    breached), read from the store now; and the recorded changes of the routes' live state
    (observe mode, rollbacks, tightenings)."""
    monitor = _monitor(request)
    reports = await monitor.read()  # StoreUnavailable: a 503
    gateway = context_of(request).gateway
    return {
        "object": "guarantee",
        "artifact_id": gateway.routes.artifact_id,
        **monitor.settings_json(),
        "routes": [report.as_dict() for report in reports],
        "events": [event.as_dict() for event in gateway.routes.events],
    }


@router.get("/admin/labels/agreement")
async def get_agreement(request: Request, since: str | None = None) -> dict[str, Any]:
    """Per machine label source (``judge:<backend>``, ``reference:<backend>``): on the
    answers a person labelled too, how often they agree, Cohen's kappa and the confusion
    counts; ``since`` (epoch seconds or ISO 8601) counts machine labels from then on."""
    agreements = await store_of(request).agreement(instant(since, "since"))
    return {"object": "list", "data": [agreement.as_dict() for agreement in agreements]}
