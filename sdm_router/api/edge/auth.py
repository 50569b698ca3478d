"""API keys: a pure-ASGI middleware that denies by default, and what a key may use.

With keys configured (``auth.keys`` / ``auth.admin_keys``) every path needs a key except the
exact ``auth.public_paths`` (``/healthz`` and ``/readyz`` by default): unknown paths too, so no
spelling of a path (trailing slash, ``//``, percent-encoding, case) can reach a route without
one. ``/admin/*``, ``/metrics`` and the API docs need an admin key (unless listed public).
``/console`` and below pass without one: the console signs people in with a key and a session
cookie of its own (``sdm_router/api/console/session.py``) and refuses every page without it.
With no key configured at all (the embedded default on loopback) everything stays open.

A presented key is hashed with SHA-256 and the digest compared with ``hmac.compare_digest``
against every configured digest, so neither the keys nor which one matched leak through
timing. The key's *name* goes on the scope state (``api_key_name``, for the request log line
and the decision record); the key itself is never stored, logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from sdm_router.api.errors import error_response
from sdm_router.config import ApiKeySettings, AuthSettings
from sdm_router.core.errors import GatewayError, PermissionDenied, Unauthorized
from sdm_router.pipeline.plan import RoutePlan

PathKind = Literal["public", "user", "admin", "console"]
CONSOLE_PREFIX = "/console"  # the console signs its users in itself (api/console/session.py)
STATE_KEY = "api_key"
STATE_KEY_NAME = "api_key_name"
STATE_OPERATOR = "operator"  # the caller may read operator details: auth is off, or an admin key
# operator surfaces: need an admin key unless listed in auth.public_paths
OPERATOR_PATHS = frozenset(
    {"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller identified by its key: the key's name, scope and limits (never the key)."""

    name: str
    admin: bool
    routes: frozenset[str] | None
    models: frozenset[str] | None
    rpm: int | None = None
    tpm: int | None = None
    in_flight: int | None = None

    @classmethod
    def of(cls, settings: ApiKeySettings, admin: bool) -> Principal:
        """The principal of one configured key."""
        return cls(
            name=settings.name,
            admin=admin,
            routes=None if settings.routes is None else frozenset(settings.routes),
            models=None if settings.models is None else frozenset(settings.models),
            rpm=settings.limits.rpm,
            tpm=settings.limits.tpm,
            in_flight=settings.limits.in_flight,
        )

    @property
    def limited(self) -> bool:
        """Whether any per-key limit applies."""
        return self.rpm is not None or self.tpm is not None or self.in_flight is not None

    def may_use(self, plan: RoutePlan) -> bool:
        """Whether this key may request ``plan`` (a route, or a direct model)."""
        return self.allows(plan.name, model=plan.direct)

    def allows(self, name: str, *, model: bool) -> bool:
        """Whether this key may use the model (``model``) or else the route ``name``."""
        allowed = self.models if model else self.routes
        return allowed is None or name in allowed


class KeyRing:
    """The configured keys by SHA-256 digest."""

    def __init__(self, settings: AuthSettings) -> None:
        entries = [(key.digest, Principal.of(key, admin=False)) for key in settings.keys]
        entries += [(key.digest, Principal.of(key, admin=True)) for key in settings.admin_keys]
        self._entries = tuple(entries)
        self.enabled = settings.enabled
        self.user_keys = bool(settings.keys)
        self.admin_keys = bool(settings.admin_keys)

    def named(self, name: str, admin: bool) -> Principal | None:
        """The configured principal called ``name`` with that scope (a console session's)."""
        for _, principal in self._entries:
            if principal.name == name and principal.admin == admin:
                return principal
        return None

    def signing_key(self) -> bytes:
        """A secret derived from every configured key's digest (never sent anywhere): it signs
        console sessions, so changing the keys signs everyone out."""
        digests = sorted(digest for digest, _ in self._entries)
        return hashlib.sha256(b"sdm-router console session\x00" + b"".join(digests)).digest()

    def find(self, presented: bytes) -> Principal | None:
        """The principal whose key is ``presented``; every digest is compared, in constant
        time, whichever matches."""
        digest = hashlib.sha256(presented).digest()
        found = None
        for candidate, principal in self._entries:
            if hmac.compare_digest(digest, candidate):
                found = principal
        return found


def route_path(scope: Scope) -> str:
    """The path routes are matched on: ``path`` less ``root_path`` (as Starlette does)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def bearer_token(scope: Scope) -> bytes | None:
    """The key of the first ``Authorization: Bearer <key>`` header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            key: bytes = token.strip()
            return key if scheme.lower() == b"bearer" and key else None
    return None


class AuthMiddleware:
    """Identifies the caller's key (deny by default); see the module docstring."""

    def __init__(self, app: ASGIApp, ring: KeyRing, public_paths: frozenset[str]) -> None:
        self.app = app
        self.ring = ring
        public = set(public_paths)
        if "/docs" in public:
            public.add("/docs/oauth2-redirect")
        self.public = frozenset(public)

    def kind(self, path: str) -> PathKind:
        """Public only on an exact match; admin on any spelling that folds to an admin path."""
        if path in self.public:
            return "public"
        if (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")) and "/." not in path:
            return "console"
        folded = "/" + "/".join(part for part in path.lower().split("/") if part)
        if folded == "/admin" or folded.startswith("/admin/") or folded in OPERATOR_PATHS:
            return "admin"
        return "user"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.ring.enabled:
            scope.setdefault("state", {})[STATE_OPERATOR] = True
            await self.app(scope, receive, send)
            return
        kind = self.kind(route_path(scope))
        token = bearer_token(scope)
        principal = self.ring.find(token) if token is not None else None
        if kind == "console":  # its session cookie, not a bearer key, says who calls
            await self.app(scope, receive, send)
            return
        if kind == "public":  # open to all; an admin key presented here sees details
            if principal is not None and principal.admin:
                scope.setdefault("state", {})[STATE_OPERATOR] = True
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(kind, token, principal)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await error_response(refusal)(scope, receive, send)
            return
        if principal is not None:
            state = scope.setdefault("state", {})
            state[STATE_KEY] = principal
            state[STATE_KEY_NAME] = principal.name
            state[STATE_OPERATOR] = principal.admin
        await self.app(scope, receive, send)

    def _refusal(
        self, kind: PathKind, token: bytes | None, principal: Principal | None
    ) -> GatewayError | None:
        if kind == "user" and not self.ring.user_keys:
            return None  # only admin keys are configured: /v1 stays open (a key still counts)
        if token is None:
            return Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        if principal is None:
            return Unauthorized("Incorrect API key provided.")
        if kind == "admin" and not principal.admin:
            where = "auth.admin_keys" if self.ring.admin_keys else "auth.admin_keys; none is set"
            return PermissionDenied(
                f"This endpoint needs an admin key ({where}).", code="admin_key_required"
            )
        return None


def principal_of(request: Request) -> Principal | None:
    """The caller's key, or None when the request came without one (auth off or open path)."""
    principal: Principal | None = request.scope.get("state", {}).get(STATE_KEY)
    return principal


def is_operator(request: Request) -> bool:
    """Whether the caller may read operator details (``/readyz`` components): no key is
    configured at all, or it presented an admin key (on a public path too)."""
    return bool(request.scope.get("state", {}).get(STATE_OPERATOR, False))


def authorize(principal: Principal | None, plan: RoutePlan) -> None:
    """Refuse (403) a route or direct model the key may not use."""
    authorize_name(principal, plan.name, model=plan.direct)


def authorize_name(principal: Principal | None, name: str, *, model: bool) -> None:
    """Refuse (403) the model (``model``) or else the route ``name`` if the key may not use it."""
    if principal is not None and not principal.allows(name, model=model):
        kind = "model" if model else "route"
        raise PermissionDenied(
            f"This key may not use the {kind} {name!r}.",
            param="model",
            code="model_not_allowed",
        )


def may_use(request: Request, plan: RoutePlan) -> bool:
    """Whether the caller may request ``plan`` (``/v1/models`` lists only those)."""
    principal = principal_of(request)
    return principal is None or principal.may_use(plan)
