"""The console's pages: overview, decisions, a decision (with its exemplars and label buttons),
the review queue and the artifacts; sign-in and sign-out. Server-rendered (Jinja2, autoescaped),
plain forms, one small script (keyboard shortcuts) that the pages do without."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from sdm_router.api.console.chart import spark
from sdm_router.api.console.session import (
    Viewer,
    check_csrf,
    csrf_token,
    end_session,
    keep_csrf,
    set_session,
    signing_in,
    viewer_of,
)
from sdm_router.api.context import context_of
from sdm_router.core.decisions import FeedbackLabel, LabelKind
from sdm_router.core.errors import InvalidRequest, NotFound, PermissionDenied
from sdm_router.core.generation import Message
from sdm_router.core.guarantee import lower_bound
from sdm_router.core.verdict import VerificationInput
from sdm_router.pipeline.feedback import give_feedback, owned_decision
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.registry_follow import RegistryFollower
from sdm_router.storage.console import RouteCounts
from sdm_router.storage.query_params import decode_cursor, encode_cursor, instant
from sdm_router.storage.store import DecisionStore

router = APIRouter(prefix="/console", include_in_schema=False)
HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
TEMPLATES.filters["utc"] = lambda seconds: datetime.fromtimestamp(float(seconds), UTC).strftime(
    "%Y-%m-%d %H:%M:%S"
)
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes a form's Origin "null"
    "Cache-Control": "no-store",
}
BUCKETS = 24
PAGE = 50
EXEMPLARS = 8


def _secured(response: Response, request: Request) -> Response:
    response.headers.update(SECURITY_HEADERS)
    keep_csrf(response, request)
    return response


def _render(request: Request, name: str, viewer: Viewer | None, status: int = 200,
            **values: Any) -> Response:  # fmt: skip
    html = TEMPLATES.get_template(name).render(
        viewer=viewer, csrf=csrf_token(request), signing_in=signing_in(request), **values
    )
    return _secured(HTMLResponse(html, status_code=status), request)


def _sign_in_redirect() -> Response:
    return RedirectResponse("/console/sign-in", status_code=303)


def _store(request: Request) -> DecisionStore:
    store = context_of(request).store
    if store is None:
        raise NotFound("The decision store is off (storage.enabled: false).", code="store_off")
    return store


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, the first value of each field."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _choice(value: str | None, allowed: tuple[str, ...], param: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidRequest(
            f"Invalid value for '{param}': one of {', '.join(allowed)}.", param=param
        )
    return value


# ---- sign-in ---------------------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    """The sign-in form (straight to the overview when no key is configured)."""
    if not signing_in(request):
        return RedirectResponse("/console", status_code=303)
    return _render(request, "sign_in.html", None, error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the posted key; on success set the session cookie and go to the overview."""
    form = await _form(request)
    check_csrf(request, form.get("csrf"))
    ring = context_of(request).keys
    key = form.get("key", "").strip()
    principal = ring.find(key.encode()) if ring is not None and key else None
    if principal is None:
        return _render(request, "sign_in.html", None, status=401,
                       error="That key is not accepted.")  # fmt: skip
    response = RedirectResponse("/console", status_code=303)
    set_session(response, request, principal)
    return _secured(response, request)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session."""
    check_csrf(request, (await _form(request)).get("csrf"))
    response = RedirectResponse("/console/sign-in" if signing_in(request) else "/console", 303)
    end_session(response)
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The console's stylesheet and script (served by the gateway: no CDN)."""
    if name not in STATIC:
        raise NotFound(f"No console file {name!r}.", param="name")
    content = (HERE / "static" / name).read_bytes()
    response = Response(content, media_type=STATIC[name])
    response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"})
    return response


# ---- overview --------------------------------------------------------------------------


def overview_rows(
    counts: list[RouteCounts],
    series: dict[str, list[dict[str, int]]],
    guarantee: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """What the overview template shows per route: counts, the labelled accepted answers'
    precision lower bound, the live guarantee and the chart."""
    return [
        {
            "counts": entry,
            "lower": lower_bound(entry.accepted_correct, entry.accepted_labelled)
            if entry.accepted_labelled
            else None,
            "guarantee": guarantee.get(entry.route),
            "chart": spark(series.get(entry.route, [])),
        }
        for entry in counts
    ]


@router.get("")
async def overview(request: Request, window: str = "24h") -> Response:
    """Per route over the window: requests, decision shares, accepted precision from labels
    with its lower bound, the live guarantee, and a chart over time."""
    viewer = viewer_of(request)
    if viewer is None:
        return _sign_in_redirect()
    span = WINDOWS.get(window)
    if span is None:
        raise InvalidRequest(
            f"Invalid value for 'window': one of {', '.join(WINDOWS)}.", param="window"
        )
    until = time.time()
    counts, series = await _store(request).overview(until - span, until, viewer.owner, BUCKETS)
    guarantee: dict[str, dict[str, Any]] = {}
    monitor = context_of(request).gateway.guarantee
    if monitor is not None and viewer.admin:
        guarantee = {report.route: report.as_dict() for report in await monitor.read()}
    routes = overview_rows(counts, series, guarantee)
    return _render(request, "overview.html", viewer, routes=routes, window=window,
                   windows=list(WINDOWS))  # fmt: skip


# ---- decisions -------------------------------------------------------------------------

FILTERS = ("route", "decision", "reason", "label", "source", "since", "until", "q")


@router.get("/decisions")
async def decisions_page(request: Request) -> Response:
    """Recorded decisions, newest first, filtered, in cursor pages."""
    viewer = viewer_of(request)
    if viewer is None:
        return _sign_in_redirect()
    query = request.query_params
    filters = {name: query.get(name, "").strip() for name in FILTERS}
    source = _choice(filters["source"], tuple(kind.value for kind in LabelKind), "source")
    page, following = await _store(request).decisions(
        route=filters["route"] or None,
        since=instant(filters["since"] or None, "since"),
        until=instant(filters["until"] or None, "until"),
        decision=_choice(filters["decision"], ("accept", "abstain", "unverified", "observed"),
                         "decision"),
        label=_choice(filters["label"], ("correct", "incorrect", "unlabeled"), "label"),
        reason=filters["reason"] or None,
        source=LabelKind(source) if source else None,
        text=filters["q"] or None,
        key_name=viewer.owner,
        limit=PAGE,
        cursor=decode_cursor(query.get("cursor") or None),
    )  # fmt: skip
    following_url = None
    if following is not None:
        kept = {name: value for name, value in filters.items() if value}
        following_url = "/console/decisions?" + urlencode(
            {**kept, "cursor": encode_cursor(following)}
        )
    return _render(request, "decisions.html", viewer, rows=page, filters=filters,
                   following=following_url, routes=sorted(context_of(request).gateway.plans),
                   keep_text=context_of(request).store is not None)  # fmt: skip


async def _exemplars(request: Request, record: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """The live artifact's nearest support exemplars of the recorded answer (re-scored: the
    store keeps no verdict vectors), each linked to its decision when it came from traffic."""
    conversation, answer = record.get("conversation"), record.get("answer")
    if conversation is None or answer is None:
        return {"why": "This decision's text was not kept (storage.keep_text), so its "
                       "neighbours cannot be found.", "rows": []}  # fmt: skip
    context = context_of(request)
    if not context.gateway.verifier_info.loaded:
        return {"why": "No verifier artifact is loaded (the routes observe).", "rows": []}
    messages = tuple(Message(role=m["role"], content=m["content"]) for m in conversation)
    (verdict,) = await context.gateway.cascade.verify(
        [VerificationInput(messages, answer)], EXEMPLARS
    )
    store = _store(request)
    rows = []
    for exemplar in verdict.nearest_exemplars:
        linked = await store.decision(exemplar.id)
        visible = linked is not None and (
            viewer.owner is None or linked.get("key_name") == viewer.owner
        )
        rows.append({
            "id": exemplar.id, "label": "correct" if exemplar.label == 1 else "incorrect",
            "distance": exemplar.distance,
            "decision": linked if visible else None,
            # the artifact's own text is training data: an operator's to read
            "text": exemplar.text if viewer.admin else None,
        })  # fmt: skip
    return {"why": None, "rows": rows, "artifact_id": context.gateway.artifact_id}


@router.get("/decisions/{identifier}")
async def decision_page(request: Request, identifier: str) -> Response:
    """One decision: conversation, answer, attempts, exemplars, labels and the label form."""
    viewer = viewer_of(request)
    if viewer is None:
        return _sign_in_redirect()
    record = await owned_decision(_store(request), identifier, viewer.owner)
    exemplars = await _exemplars(request, record, viewer)
    return _render(request, "decision.html", viewer, record=record, exemplars=exemplars,
                   saved=request.query_params.get("saved"))  # fmt: skip


@router.post("/decisions/{identifier}/label")
async def label_decision(request: Request, identifier: str) -> Response:
    """A person's label, through the same path as ``POST /v1/feedback``."""
    viewer = viewer_of(request)
    if viewer is None:
        raise PermissionDenied("Sign in to the console first.", code="session_required")
    form = await _form(request)
    check_csrf(request, form.get("csrf"))
    label = _choice(form.get("label"), ("correct", "incorrect"), "label")
    if label is None:
        raise InvalidRequest("Missing 'label': correct or incorrect.", param="label")
    note = form.get("note", "").strip() or None
    if note is not None and len(note) > 4000:
        raise InvalidRequest("'note' is longer than 4000 characters.", param="note")
    chosen: FeedbackLabel = "correct" if label == "correct" else "incorrect"
    request_id, _ = await give_feedback(
        _store(request), context_of(request).metrics, owner=viewer.owner,
        request_id=identifier, label=chosen, choice=0, note=note,
    )  # fmt: skip
    # back to the review queue when labelled there; never to a page the form names otherwise
    target = "/console/review" if form.get("next") == "/console/review" else (
        f"/console/decisions/{quote(request_id, safe='')}?saved=1"
    )  # fmt: skip
    return _secured(RedirectResponse(target, status_code=303), request)


# ---- review queue and artifacts ------------------------------------------------------------


@router.get("/review")
async def review_page(request: Request) -> Response:
    """Unlabelled decisions and those whose judge disagrees, oldest first."""
    viewer = viewer_of(request)
    if viewer is None:
        return _sign_in_redirect()
    rows = await _store(request).review_queue(viewer.owner, PAGE)
    return _render(request, "review.html", viewer, rows=rows)


@router.get("/artifacts")
async def artifacts_page(request: Request) -> Response:
    """The live artifact, what it was calibrated on, the routes' live state and its changes,
    and the autopilot's steps (none until the autopilot exists)."""
    viewer = viewer_of(request)
    if viewer is None:
        return _sign_in_redirect()
    if not viewer.admin:
        raise PermissionDenied("The artifacts page needs an admin key.", code="admin_key_required")
    gateway = context_of(request).gateway
    info = gateway.verifier_info
    routes = {name: gateway.routes.state(name) for name in gateway.routes}
    readiness = gateway.readiness().components.get("verifier", {})
    return _render(request, "artifacts.html", viewer, info=info, routes=routes,
                   shadow=readiness.get("shadow_artifact_id"),
                   events=[event.as_dict() for event in gateway.routes.events],
                   autopilot=await _autopilot(gateway))  # fmt: skip


async def _autopilot(gateway: Gateway) -> dict[str, Any] | None:
    """The registry's artifacts (newest first) and the autopilot's steps (newest first), when
    this gateway follows a registry (``autopilot.enabled``); else None."""
    follower = next((c for c in gateway.companions if isinstance(c, RegistryFollower)), None)
    if follower is None:
        return None
    registry = follower.registry
    artifacts = await asyncio.to_thread(registry.artifacts, 50)
    steps = await asyncio.to_thread(registry.steps, 100)
    return {"artifacts": artifacts, "steps": list(reversed(steps))}
