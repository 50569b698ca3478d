"""The hot routes without FastAPI's per-request machinery.

``/v1/chat/completions`` and ``/v1/completions`` are declared as FastAPI routes (they document
``/openapi.json``, and they serve every request the fast path does not take), but a
:class:`JSONBodyRoute` ahead of them in the router takes the common case itself: a ``POST`` with
a JSON content type whose body parses (orjson) and validates (pydantic, in the same Python mode
and strictness FastAPI uses) is handed to the handler directly: no dependency solving, no exit
stacks, no second JSON decoder, no content-type parsing through ``email.message``.

A body orjson refuses that holds invalid text (a lone surrogate) is refused here, with the 400
every route gives it (``sdm_router.api.edge.text``). Anything else (another content type, an
empty or invalid body, a body that fails validation) is routed again, with the body replayed,
through the declared FastAPI route, so every error keeps exactly the response FastAPI and
``sdm_router.api.errors`` give it (the OpenAI envelope naming the field). Exceptions the handler
raises reach the app's exception handlers as before.

:class:`JSONBytesResponse` is the hot routes' answer: JSON bytes already serialized, its raw
header list built in one pass (Starlette's ``Response`` re-derives and re-encodes them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from functools import partial
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send

from sdm_router.api.edge.body import read_body, replaying
from sdm_router.api.edge.text import invalid_text, invalid_text_in_body
from sdm_router.api.errors import error_response

Handler = Callable[[Request, Any], Awaitable[Response]]
FALLBACK = "sdm.fast_route.fallback"  # scope key: this request goes the declared route's way
_JSON = (b"content-type", b"application/json")


class JSONBytesResponse(Response):
    """A 200 (or ``status_code``) with a serialized JSON ``body`` and ``headers``."""

    media_type = "application/json"

    def __init__(
        self, body: bytes, headers: Mapping[str, str] | None = None, status_code: int = 200
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON]
        if headers:
            self.raw_headers += [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]


def json_content_type(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the first ``content-type`` is JSON (``application/json`` or ``+json``, any
    parameters), as FastAPI decides that it parses a body as JSON."""
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return False


def takes(scope: Scope, paths: Container[str]) -> bool:
    """Whether the fast path takes a request: ``POST`` to one of ``paths`` over HTTP, not on
    the fallback's second pass."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] in paths
        and not scope.get("root_path")
        and FALLBACK not in scope
    )


def taken_by(routes: Iterable[JSONBodyRoute]) -> Callable[[Scope], bool]:
    """Whether one of ``routes`` takes a request (one set lookup, whatever their number)."""
    return partial(takes, paths=frozenset(route.path for route in routes))


class JSONBodyRoute(BaseRoute):
    """``POST path`` with a valid JSON body of ``model``: ``handler(request, body)``; every
    other request to ``path`` falls through to the routes after it (see the module doc)."""

    def __init__(
        self, path: str, model: type[BaseModel], handler: Handler, router: ASGIApp
    ) -> None:
        self.path = self.path_format = path  # the route label of the log line and metrics
        self.paths = frozenset({path})
        self.methods = frozenset({"POST"})
        self.model = model
        self.handler = handler
        self.router = router

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A full match for ``POST path`` over HTTP (not on the fallback's second pass)."""
        if takes(scope, self.paths):
            return Match.FULL, {"route": self, "endpoint": self.handler, "path_params": {}}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        """Never named: URLs are built from the declared FastAPI routes."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Parse, validate and serve; or route the request again (body replayed)."""
        if json_content_type(scope["headers"]):
            try:
                body = await read_body(receive)
            except ClientDisconnect:
                receive = replaying(None, receive)  # the declared route sees the same
            else:
                parsed = self._parse(body)
                if parsed is not None:
                    response = await self.handler(Request(scope, receive), parsed)
                    await response(scope, receive, send)
                    return
                field = invalid_text_in_body(body)  # what orjson refused, the text rule checks
                if field is not None:
                    await error_response(invalid_text(field))(scope, receive, send)
                    return
                receive = replaying(body, receive)
        scope[FALLBACK] = True
        await self.router(scope, receive, send)

    def _parse(self, body: bytes) -> BaseModel | None:
        if not body:
            return None
        try:
            return self.model.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None
