"""Console sign-in: a signed session cookie, and the CSRF token every form carries.

The key is posted once, in the sign-in form's body (never a URL, never logged), and checked
against the configured keys; the session cookie then names the key (its name and scope, never
the key) with an expiry, signed with HMAC-SHA256 under a secret derived from the configured keys'
digests (``KeyRing.signing_key``), so every worker checks it alike and changing the keys ends
every session. The cookie is HttpOnly, SameSite=Strict and lives ``SESSION_S`` seconds.

CSRF: a second HttpOnly, SameSite=Strict cookie holds a random token; every form carries it in
a hidden field and a POST is refused unless the two match (constant time) and any ``Origin``
header names this host. With no keys configured (the embedded default) there is no sign-in:
the console shows everything, as the API does, and the CSRF check still applies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response

from sdm_router.api.context import context_of
from sdm_router.api.edge.auth import Principal
from sdm_router.core.errors import PermissionDenied

SESSION_COOKIE = "sdm_console_session"
CSRF_COOKIE = "sdm_console_csrf"
SESSION_S = 8 * 3600


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at the console: a signed-in key, or anyone when no key is configured."""

    principal: Principal | None

    @property
    def owner(self) -> str | None:
        """The key name whose decisions this viewer may see (None: all of them)."""
        principal = self.principal
        return None if principal is None or principal.admin else principal.name

    @property
    def admin(self) -> bool:
        """Whether this viewer sees the operator pages (artifacts, every key's decisions)."""
        return self.principal is None or self.principal.admin

    @property
    def name(self) -> str:
        """How the header names the viewer."""
        if self.principal is None:
            return "no keys configured"
        return f"{self.principal.name} ({'admin' if self.principal.admin else 'user'} key)"


def _sign(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def session_value(secret: bytes, principal: Principal, now: float | None = None) -> str:
    """The signed cookie value naming ``principal`` until ``SESSION_S`` from now."""
    expires = int((now or time.time()) + SESSION_S)
    body = json.dumps({"n": principal.name, "a": principal.admin, "e": expires}).encode()
    encoded = base64.urlsafe_b64encode(body).decode()
    return f"{encoded}.{_sign(secret, encoded.encode())}"


def session_principal(request: Request) -> Principal | None:
    """The principal of a valid, unexpired session cookie whose key is still configured."""
    ring = context_of(request).keys
    value = request.cookies.get(SESSION_COOKIE)
    if ring is None or not value or "." not in value:
        return None
    encoded, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature, _sign(ring.signing_key(), encoded.encode())):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(encoded.encode()))
        name, admin, expires = str(body["n"]), bool(body["a"]), float(body["e"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires <= time.time():
        return None
    return ring.named(name, admin)


def signing_in(request: Request) -> bool:
    """Whether the console needs a sign-in (keys are configured)."""
    ring = context_of(request).keys
    return ring is not None and ring.enabled


def viewer_of(request: Request) -> Viewer | None:
    """The viewer, or None when a sign-in is needed and no valid session is presented."""
    if not signing_in(request):
        return Viewer(None)
    principal = session_principal(request)
    return None if principal is None else Viewer(principal)


def set_session(response: Response, request: Request, principal: Principal) -> None:
    """Sign ``principal`` in: the session cookie on ``response``."""
    ring = context_of(request).keys
    assert ring is not None
    response.set_cookie(
        SESSION_COOKIE, session_value(ring.signing_key(), principal), max_age=SESSION_S,
        path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip


def end_session(response: Response) -> None:
    """Sign out: both cookies expire."""
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/console", httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The request's CSRF token (a fresh one when it has none; ``keep_csrf`` stores it)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) == 43:
        return token
    cached: str | None = getattr(request.state, "console_csrf", None)
    if cached is None:
        cached = secrets.token_urlsafe(32)
        request.state.console_csrf = cached
    return cached


def keep_csrf(response: Response, request: Request) -> None:
    """Store a freshly made CSRF token in its cookie."""
    fresh: str | None = getattr(request.state, "console_csrf", None)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE, fresh, max_age=SESSION_S, path="/console", httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse (403 ``csrf_failed``) a form whose token does not match its cookie, or that
    comes from another origin."""
    cookie = request.cookies.get(CSRF_COOKIE)
    origin = request.headers.get("origin")
    same_origin = origin is None or urlsplit(origin).netloc == request.headers.get("host")
    if not (cookie and submitted and hmac.compare_digest(cookie, submitted) and same_origin):
        raise PermissionDenied(
            "The form's CSRF token is missing or wrong: reload the page and submit it again.",
            param="csrf",
            code="csrf_failed",
        )
