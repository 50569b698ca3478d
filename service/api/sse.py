"""Server-sent event framing."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

DONE = b"data: [DONE]\n\n"
# An SSE comment line: clients ignore it, proxies see bytes (their idle timers restart).
PING = b": ping\n\n"


def sse(event: BaseModel | dict[str, Any]) -> bytes:
    """One SSE event: a chunk model (fields it never set left out) or an error body."""
    if isinstance(event, BaseModel):
        data = event.model_dump_json(exclude_unset=True).encode()
    else:
        data = json.dumps(event, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"
