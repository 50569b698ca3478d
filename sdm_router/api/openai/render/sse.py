"""Server-sent event framing."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

DONE = b"data: [DONE]\n\n"
# An SSE comment line: clients ignore it, proxies see bytes (their idle timers restart).
PING = b": ping\n\n"


def sse(event: BaseModel | dict[str, Any]) -> bytes:
    """One SSE event: a rendered chunk or an error body (orjson), or a model (fields it never
    set left out)."""
    if isinstance(event, BaseModel):
        data = event.__pydantic_serializer__.to_json(event, exclude_unset=True)
    else:
        data = orjson.dumps(event)
    return b"data: " + data + b"\n\n"
