"""Bearer API keys for the ``/v1`` endpoints (off when no keys are configured)."""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from service.api.context import context_of
from service.core.errors import Unauthorized


async def require_api_key(request: Request) -> None:
    """Refuse the request unless it carries one of the configured keys."""
    _require(request, context_of(request).server.api_keys)


async def require_admin_key(request: Request) -> None:
    """``/admin``: open while no key at all is configured (the local default); otherwise only
    an admin key opens it."""
    server = context_of(request).server
    if not server.api_keys and not server.admin_api_keys:
        return
    if not server.admin_api_keys:
        raise Unauthorized("The admin endpoints need an admin key (server.admin_api_keys).")
    _require(request, server.admin_api_keys)


def _require(request: Request, keys: list[SecretStr]) -> None:
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    presented = token.strip().encode()
    if not any(hmac.compare_digest(presented, key.get_secret_value().encode()) for key in keys):
        raise Unauthorized("Incorrect API key provided.")
