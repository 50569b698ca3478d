"""Bearer API keys for the ``/v1`` endpoints (off when no keys are configured)."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.api.context import context_of
from service.core.errors import Unauthorized


async def require_api_key(request: Request) -> None:
    """Refuse the request unless it carries one of the configured keys."""
    keys = context_of(request).server.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    presented = token.strip().encode()
    if not any(hmac.compare_digest(presented, key.get_secret_value().encode()) for key in keys):
        raise Unauthorized("Incorrect API key provided.")
