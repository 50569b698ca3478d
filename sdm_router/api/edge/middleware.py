"""Pure ASGI middleware (``BaseHTTPMiddleware`` would hide ``http.disconnect``)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdm_router.api.edge.body import replaying
from sdm_router.api.errors import envelope, internal_error_body
from sdm_router.observability.logging import request_fields_var, request_id_var
from sdm_router.observability.metrics import GatewayMetrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
OTHER_ROUTE = "other"  # the route label of a path no route matches
CLIENT_CLOSED = 499  # nginx's code: the client went away before the response started
logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Assigns every request its own ``x-request-id`` (generated here, as OpenAI's API does: the
    decision store keys records by it, so a client's id must never collide with another's) and
    echoes a sane incoming ``x-client-request-id`` (or ``x-request-id``) back as
    ``x-client-request-id``; the request log line carries both."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id = ""
        for name, value in scope.get("headers", ()):
            if name in (b"x-client-request-id", b"x-request-id") and not client_id:
                candidate = value.decode("latin-1")
                client_id = candidate if _REQUEST_ID.match(candidate) else ""
        request_id = f"req-{os.urandom(16).hex()}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        headers = [(b"x-request-id", request_id.encode())]
        if client_id:
            state["client_request_id"] = client_id
            headers.append((b"x-client-request-id", client_id.encode()))
        request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_id)


class CloseWhenDrainingMiddleware:
    """While the gateway drains, every response says ``connection: close``: a load balancer
    stops reusing its keep-alive connections before the listening socket closes, instead of
    finding one closed under a request it has just sent."""

    def __init__(self, app: ASGIApp, draining: Callable[[], bool]) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining():
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, send_closing)


def declared_length(value: bytes) -> int | None:
    """A ``Content-Length`` value as HTTP reads it (RFC 9110 8.6: digits, the optional
    whitespace around a field value stripped); None when it is not one."""
    digits = value.strip(b" \t")
    return int(digits) if digits.isdigit() else None  # bytes: ASCII digits only


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413.

    A declared Content-Length is checked up front; a chunked body is buffered up to the limit
    and then replayed to the app, so the app never sees a partial body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value
                break
        if length is not None:
            declared = declared_length(length)
            if declared is None:  # httptools refuses these before; another server may not
                await self._refuse(send, 400, "The Content-Length header is not a number.")
                return
            if declared > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_capped(receive)
        except ClientDisconnect:
            return  # the client went away before sending its body
        if body is None:
            await self._refuse(send)
            return
        await self.app(scope, replaying(body, receive), send)

    async def _read_capped(self, receive: Receive) -> bytes | None:
        """The whole body; None once it passes the limit; ``ClientDisconnect`` if the client
        leaves first."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send, status: int = 413, message: str = "") -> None:
        code = "request_too_large" if status == 413 else "invalid_content_length"
        message = message or f"Request body exceeds the limit of {self.max_bytes} bytes."
        body = orjson.dumps(envelope(message, "invalid_request_error", None, code))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def route_template(scope: Scope, patterns: Sequence[tuple[re.Pattern[str], str]] = ()) -> str:
    """The path template of the route that served ``scope`` (``/v1/decisions/{identifier}``),
    else the first of ``patterns`` its path matches (a request refused before routing, e.g. a
    413), else ``other``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    requested = scope.get("path", "")
    for pattern, template in patterns:
        if pattern.match(requested):
            return template
    return OTHER_ROUTE


def documented_routes(app: object) -> list[tuple[re.Pattern[str], str]]:
    """The path templates of ``app``'s OpenAPI document, compiled (empty when it has none)."""
    openapi = getattr(app, "openapi", None)
    if openapi is None:
        return []
    try:
        paths = openapi().get("paths", {})
    except Exception:  # a schema that cannot be built must not fail a request
        logger.exception("cannot list the routes from the OpenAPI document")
        return []
    return [(compile_path(template)[0], template) for template in paths]


class _Exchange:
    """What one request's response did, seen through its ``receive`` and ``send``."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.started = time.perf_counter()
        self.status: int | None = None
        self.first_byte: float | None = None
        self.complete = False
        self.disconnected = False
        self.cancelled = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.first_byte = int(message["status"]), time.perf_counter()
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)


class RequestLogMiddleware:
    """Every HTTP request's one log line and its response metrics, written when the response
    has ended (a stream at its last byte), whatever path it took.

    The line holds method, route template, status, timings (``duration_ms`` to the last byte,
    ``first_byte_ms``), the key name when the auth layer put ``api_key_name`` in the scope
    state, and whatever the code serving the request added to its scope's ``log_fields``
    (route plan, decision, attempts) or counted through
    :func:`sdm_router.observability.logging.count_in_request` (retries). A request that raises
    before responding is answered here: a 500 in the OpenAI envelope with its request id, its
    traceback logged once (never raised on into Starlette's or the server's log); one whose
    client left first is logged as 499; a response cut short carries ``aborted``, a request
    cancelled by the server (the end of a graceful shutdown) ``cancelled``.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(receive, send)
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})["log_fields"] = fields  # the request scope's log_fields
        token = request_fields_var.set(fields)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            exchange.cancelled = True  # e.g. still running when the graceful shutdown ended
            raise
        except Exception:
            if exchange.status is not None:
                raise  # mid-response: the server closes the connection and logs it, once
            await self._internal_error(scope, exchange)
        finally:
            request_fields_var.reset(token)
            self._finish(scope, exchange, fields)

    @staticmethod
    async def _internal_error(scope: Scope, exchange: _Exchange) -> None:
        """The 500 of an exception no handler took: logged here, once, with its traceback and
        request id, and not raised further (Starlette and the server would log it again)."""
        request_id = scope.get("state", {}).get("request_id", "unknown")
        logger.exception("unhandled error", extra={"request_id": request_id})
        body = orjson.dumps(internal_error_body(request_id))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await exchange.send({"type": "http.response.start", "status": 500, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, exchange: _Exchange, fields: dict[str, Any]) -> None:
        status = exchange.status
        if status is None:
            status = CLIENT_CLOSED if exchange.disconnected else 500
        seconds = time.perf_counter() - exchange.started
        if scope.get("route") is None and self._patterns is None:
            self._patterns = documented_routes(scope.get("app"))
        route = route_template(scope, self._patterns or ())
        self.metrics.http_response(route, status, seconds)
        state = scope.get("state", {})
        line: dict[str, Any] = {
            "request_id": state.get("request_id"),
            "method": scope.get("method"),
            "http_route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        if state.get("client_request_id"):
            line["client_request_id"] = state["client_request_id"]
        if exchange.first_byte is not None:
            line["first_byte_ms"] = round((exchange.first_byte - exchange.started) * 1000, 2)
            if not exchange.complete:
                line["aborted"] = True
        if exchange.disconnected:
            line["client_disconnected"] = True
        if exchange.cancelled:
            line["cancelled"] = True
        if state.get("api_key_name") is not None:
            line["key_name"] = state["api_key_name"]
        if "decision" in fields:
            line["retries"] = 0
        line.update(fields)
        level = logging.WARNING if status >= 500 else logging.INFO
        logger.log(level, "request finished", extra=line)
