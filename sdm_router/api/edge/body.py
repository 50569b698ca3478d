"""Reading a request body once in an ASGI layer and handing it on unchanged."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive


async def read_body(receive: Receive) -> bytes:
    """The whole request body; ``ClientDisconnect`` if the client leaves first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes | None, receive: Receive) -> Receive:
    """``receive`` that first hands out ``body`` again (already read; None: the client's
    disconnect), then the real one."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            if body is None:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
