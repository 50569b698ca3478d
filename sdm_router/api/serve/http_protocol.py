"""The HTTP/1.1 connection the gateway serves: uvicorn's httptools protocol, plus the limits
uvicorn does not have, so that a client that never finishes holds neither memory nor a
connection for long.

uvicorn bounds the idle time between two requests of a keep-alive connection
(``server.keep_alive_seconds``) and nothing else: a connection that sends nothing, half a
head, or one byte every few seconds stays open, a head may be any size (httptools keeps an
unfinished header line in memory) and hold any number of headers, and connections are not
counted. :class:`LimitedHttpProtocol` adds, per connection (docs/security.md lists them):

* ``max_header_bytes`` / ``max_header_count``: the request line and headers of one request;
  a head past either is answered 431 and the connection closed. A whole head is measured when
  it is complete (only if it could be past the limit: it came in several reads, or in one
  larger than the limit); an unfinished one by the bytes received while it is being read, so a
  client can hold at most the limit plus one read (256 KiB) before it is refused.
* ``header_timeout_seconds``: a head must be whole this long after the connection opened, or
  after its first byte on a kept-alive connection; else 408 (a connection that sent nothing
  is closed without a word).
* ``body_timeout_seconds``: the body must be whole this long after the head; else 408 (or the
  connection closed, once a response has started).
* ``max_connections``: open connections per worker; one more is closed as it is accepted.

Every such close is counted in ``sdm_router_http_connections_closed_total{reason}``. Timers are
armed only when a head or body spans reads, so a request that arrives in one read (nearly
all) costs no timer. It also frames HTTP/1.0 responses as HTTP/1.0 does
(:class:`CloseDelimitedCycle`).
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from sdm_router.api.errors import envelope
from sdm_router.config import ServerSettings
from sdm_router.observability.metrics import ConnectionCloseReason

Reading = Literal["head", "body", "idle"]


class _Refused(Exception):
    """Raised in a parser callback to stop the parser after a refusal was sent."""


class CloseDelimitedCycle(RequestResponseCycle):
    """One HTTP/1.0 request: a response without ``Content-Length`` (a stream) is sent as
    HTTP/1.0 frames it, its body as it comes and its end the end of the connection, instead
    of the chunked framing uvicorn writes for every version, which HTTP/1.0 clients cannot
    read."""

    close_delimited = False

    async def send(self, message: Any) -> None:
        """uvicorn's ``send``, but unframed for a body of unknown length."""
        if message["type"] == "http.response.start" and not self.response_started:
            names = {name.lower() for name, _ in message.get("headers", ())}
            if b"content-length" not in names and b"transfer-encoding" not in names:
                self.close_delimited = True
                self.chunked_encoding = False  # uvicorn then writes no framing header
        elif (
            self.close_delimited
            and message["type"] == "http.response.body"
            and not self.response_complete
        ):
            await self._send_unframed(message)
            return
        await super().send(message)

    async def _send_unframed(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        body = message.get("body", b"")
        if body and self.scope["method"] != "HEAD":
            self.transport.write(body)
        if not message.get("more_body", False):
            self.response_complete = True
            self.message_event.set()
            self.transport.close()  # the end of the body
            self.on_response()


def _uncounted(reason: ConnectionCloseReason) -> None:
    pass


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The limits (``server.*``) and where each close is counted."""

    settings: ServerSettings
    on_close: Callable[[ConnectionCloseReason], None] = _uncounted


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``edge`` (see the module doc)."""

    edge: ClassVar[EdgeLimits] = EdgeLimits(ServerSettings())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = self.edge.settings
        self.on_close = self.edge.on_close
        self._reading: Reading = "head"
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # received in earlier reads while the current head is unfinished
        self._read_size = 0  # of the read being parsed
        self._completed_in_read = False
        self._refused = False

    # connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection in (or close it: over ``max_connections``); its first head
        is due within ``header_timeout_seconds``."""
        if len(self.connections) >= self.settings.max_connections:
            self.transport = transport  # type: ignore[assignment]
            self._refused = True
            self.on_close("connection_cap")
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(self.settings.header_timeout_seconds, self._head_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, with the deadline cancelled."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head measured and the deadlines armed for what spans reads."""
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._reading == "idle":
            self._reading = "head"  # bytes before a message begins count as its head
        self._completed_in_read = False
        self._read_size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:  # else our callback stopped the parser, after its answer
                self._refused = True
                self._disarm()
                message = "Invalid HTTP request received."  # uvicorn's words, in the envelope
                self.transport.write(self._response(400, "invalid_http", message))
                self.transport.close()
            return
        self._after_read(len(data))

    def _after_read(self, size: int) -> None:
        if self._reading == "head":
            # A head that began inside this read (after another message ended in it) is not
            # counted for this read: its share is unknown, and the next read counts whole.
            if not self._completed_in_read:
                self._head_bytes += size
            if self._head_bytes > self.settings.max_header_bytes:
                self._refuse_head("headers_too_large")
            elif self._deadline is None:
                self._arm(self.settings.header_timeout_seconds, self._head_overdue)
        elif self._reading == "body" and self._deadline is None:
            self._arm(self.settings.body_timeout_seconds, self._body_overdue)

    # parser callbacks

    def on_message_begin(self) -> None:
        """A new head."""
        self._reading = "head"
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The head is whole: measured (431 past a limit), its deadline ends, the body's starts
        when it spans reads."""
        self._disarm()
        self._check_head()
        self._reading = "body"
        self._head_bytes = 0
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and self.scope["http_version"] == "1.0":
            cycle.__class__ = CloseDelimitedCycle  # its task has not run yet

    def on_message_complete(self) -> None:
        """The body is whole: no deadline until the next head begins."""
        self._disarm()
        self._reading = "idle"
        self._completed_in_read = True
        super().on_message_complete()

    # limits

    def _check_head(self) -> None:
        """Refuse a whole head past a limit (and stop the parser). A head that came in one read
        no larger than the limit is within it: only the others are measured."""
        if len(self.headers) > self.settings.max_header_count:
            self._refuse_head("too_many_headers")
            raise _Refused
        limit = self.settings.max_header_bytes
        if self._read_size + self._head_bytes > limit:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limit:
                self._refuse_head("headers_too_large")
                raise _Refused

    def _refuse_head(self, reason: ConnectionCloseReason) -> None:
        limit = (
            f"{self.settings.max_header_count} headers"
            if reason == "too_many_headers"
            else f"{self.settings.max_header_bytes} bytes of request line and headers"
        )
        self._refuse(reason, 431, f"The request head exceeds the limit of {limit}.")

    def _head_overdue(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined head behind a response still being written: its turn has not come
            self._arm(self.settings.header_timeout_seconds, self._head_overdue)
        elif self._head_bytes == 0:
            self._refuse("idle", None, "")  # nothing was asked: nothing to answer
        else:
            seconds = self.settings.header_timeout_seconds
            self._refuse(
                "header_timeout", 408, f"The request head did not arrive within {seconds:g} s."
            )

    def _body_overdue(self) -> None:
        self._deadline = None
        seconds = self.settings.body_timeout_seconds
        self._refuse("body_timeout", 408, f"The request body did not arrive within {seconds:g} s.")

    def _refuse(self, reason: ConnectionCloseReason, status: int | None, message: str) -> None:
        """Count ``reason``, answer ``status`` unless a response has started on the
        connection, and close it."""
        self._refused = True
        self._disarm()
        self.on_close(reason)
        cycle = self.cycle  # this request's (a body), else the one before it (a head)
        if reason == "body_timeout":
            answer = cycle is None or not cycle.response_started
        else:  # a head: answered unless an earlier response is still owed (pipelining)
            answer = cycle is None or cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            cycle.disconnected = True  # the app's receive() ends, its send() writes nothing
            cycle.message_event.set()
        if status is not None and answer and not self.transport.is_closing():
            self.transport.write(self._response(status, reason, message))
        self.transport.close()

    def _response(self, status: int, code: str, message: str) -> bytes:
        body = orjson.dumps(envelope(message, "invalid_request_error", None, code))
        lines = [b"HTTP/1.1 %d %s" % (status, http.HTTPStatus(status).phrase.encode())]
        lines += [name + b": " + value for name, value in self.server_state.default_headers]
        lines += [
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close",
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def limited_protocol(
    settings: ServerSettings, on_close: Callable[[ConnectionCloseReason], None]
) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn builds every connection with (``Config(http=...)``): the
    limits of ``settings``, each close counted through ``on_close``."""

    class Configured(LimitedHttpProtocol):
        edge = EdgeLimits(settings, on_close)

    return Configured
