"""A fake OpenAI upstream whose latency is chosen per request, for the replica and drain runs.

The model name picks the delay: ``delay-250`` answers after 250 ms (``good`` or any other name:
at once). The answer is the lean upstream's (``loadtests.fast_upstream``: "The answer is 42."
with logprobs, SSE when ``"stream": true``). A client that hangs up during the delay is counted
as a disconnect. ``GET /stats`` returns ``{"requests", "completed", "disconnects",
"in_flight"}``. Serve it with ``uvicorn --factory loadtests.replicas_upstream:create_app``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from loadtests.fast_upstream import FastUpstream

_DELAY = re.compile(rb'"model"\s*:\s*"delay-(\d+)"')
_STREAM = re.compile(rb'"stream"\s*:\s*true')


def _start(content_type: bytes, length: int | None = None) -> dict[str, Any]:
    headers = [(b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": 200, "headers": headers}


class DelayedUpstream:
    """The ASGI app; ``stats`` counts what it saw."""

    def __init__(self) -> None:
        self.fast = FastUpstream()
        self.stats: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fast(scope, receive, send)
            return
        if scope["path"].endswith("/stats"):
            body = json.dumps(
                {name: self.stats[name] for name in ("requests", "completed", "disconnects")}
                | {
                    "in_flight": self.stats["requests"]
                    - self.stats["completed"]
                    - self.stats["disconnects"]
                }
            ).encode()
            await send(_start(b"application/json", len(body)))
            await send({"type": "http.response.body", "body": body})
            return
        payload = b""
        more = True
        while more:
            message = await receive()
            payload += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            await send(_start(b"application/json", len(self.fast.models)))
            await send({"type": "http.response.body", "body": self.fast.models})
            return
        self.stats["requests"] += 1
        delay = _DELAY.search(payload)
        if delay is not None and not await self._wait(int(delay.group(1)) / 1000, receive):
            self.stats["disconnects"] += 1
            return
        if _STREAM.search(payload):
            await send(_start(b"text/event-stream"))
            for event in self.fast.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send(_start(b"application/json", len(self.fast.completion)))
            await send({"type": "http.response.body", "body": self.fast.completion})
        self.stats["completed"] += 1

    @staticmethod
    async def _wait(seconds: float, receive: Receive) -> bool:
        """Sleep ``seconds``; False when the client hung up first."""

        async def hung_up() -> None:
            message: Message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()

        watcher = asyncio.ensure_future(hung_up())
        try:
            done, _ = await asyncio.wait({watcher}, timeout=seconds)
        finally:
            watcher.cancel()
        return watcher not in done


def create_app() -> DelayedUpstream:
    """Factory for ``uvicorn --factory``."""
    return DelayedUpstream()
