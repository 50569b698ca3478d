"""Bodies of the JSON API read as JSON whatever their ``content-type`` says.

``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``, and some clients send no
content type: every ``/v1`` endpoint takes only JSON, so such a ``POST`` is marked
``application/json`` (a body that is not JSON is then the clear 400 ``invalid_json``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_JSON = (b"content-type", b"application/json")
_REPLACED = (b"", b"application/x-www-form-urlencoded", b"text/plain")


class JSONBodyMiddleware:
    """Marks a ``POST /v1/...`` without a JSON content type as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the content type where needed, then pass the request on."""
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith("/v1/")
        ):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            media = next(
                (
                    v.split(b";", 1)[0].strip().lower()
                    for k, v in scope["headers"]
                    if k == b"content-type"
                ),
                b"",
            )
            if media in _REPLACED:
                scope = {**scope, "headers": [*headers, _JSON]}
        await self.app(scope, receive, send)
