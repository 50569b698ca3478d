"""A programmable OpenAI-compatible upstream on a raw asyncio HTTP/1.1 server, for fault tests.

Every request answers the fake upstream's confident answer ("The answer is 42.", with
logprobs; SSE chunks ending in ``data: [DONE]`` when the body asks for ``stream: true``) unless
a fault was scripted for its ``model``: ``script("flaky", Fault.status(503), Fault.ok())`` makes
the next two requests for ``flaky`` a 503 and then a normal answer; once the script is used up
requests are answered normally again. Written on raw sockets (not an ASGI server) so that a
fault can be exactly what a broken upstream does on the wire: stall before the headers, cut the
connection mid-body, reset it (RST), send a chunk that is not JSON.

It counts what a leak check needs: connections open now (and ever accepted, and the most at
once: keep-alive reuse and pool limits), requests in progress now (a hanging request stays in
progress until the client hangs up), and the client disconnects it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.fake_upstream import _logprobs, _tokens, completion_body

FaultKind = str  # one of Fault's constructors' names


@dataclass(frozen=True, slots=True)
class Fault:
    """What one request gets. Build with the class methods."""

    kind: FaultKind
    seconds: float = 0.0
    status: int = 200
    retry_after: str | None = None

    @classmethod
    def ok(cls) -> Fault:
        """A normal answer."""
        return cls("ok")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """A normal answer after ``seconds`` (before the headers)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def error(cls, status: int, retry_after: str | None = None) -> Fault:
        """An OpenAI error body with ``status`` (and a ``retry-after`` header when given)."""
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def hang_before_headers(cls) -> Fault:
        """Read the request, answer nothing until the client hangs up."""
        return cls("hang_before_headers")

    @classmethod
    def hang_mid_stream(cls) -> Fault:
        """Stream the first token, then nothing until the client hangs up."""
        return cls("hang_mid_stream")

    @classmethod
    def truncated(cls) -> Fault:
        """Stream two tokens, then close the connection mid-body (no last chunk, no [DONE])."""
        return cls("truncated")

    @classmethod
    def no_done(cls) -> Fault:
        """Stream two tokens and end the body cleanly, without ``data: [DONE]``."""
        return cls("no_done")

    @classmethod
    def malformed_chunk(cls) -> Fault:
        """Stream one token, then an event whose data is not JSON, then the rest."""
        return cls("malformed_chunk")

    @classmethod
    def reset(cls) -> Fault:
        """Reset the connection (RST) right after reading the request: no response at all."""
        return cls("reset")

    @classmethod
    def reset_mid_stream(cls) -> Fault:
        """Stream the first token, then reset the connection."""
        return cls("reset_mid_stream")


class _Hangup(Exception):
    """The client closed the connection."""


class FaultUpstream:
    """The server; ``start()`` runs it on its own event loop thread, ``stop()`` ends it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._scripts: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0
        self.calls: Counter[str] = Counter()  # requests received, by model
        self.disconnects: Counter[str] = Counter()  # hang-ups seen while a request was open
        self.open_connections = 0
        self.accepted = 0  # connections ever accepted
        self.peak_connections = 0  # most connections open at once
        self.in_progress = 0

    @property
    def url(self) -> str:
        """The base URL (add ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen on a free loopback port."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)

    def stop(self) -> None:
        """Close the listener and every connection, stop the thread."""
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def script(self, model: str, *faults: Fault) -> None:
        """Queue what the next requests for ``model`` get, in order."""
        with self._lock:
            self._scripts[model].extend(faults)

    def clear(self) -> None:
        """Forget every script."""
        with self._lock:
            self._scripts.clear()

    def _next_fault(self, model: str) -> Fault:
        with self._lock:
            queue = self._scripts.get(model)
            return queue.popleft() if queue else Fault.ok()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # ------------------------------------------------------------------ one connection

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.open_connections += 1
        self.accepted += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        try:
            while await self._request(reader, writer):
                pass
        except (_Hangup, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            self._handlers.discard(task)
            writer.transport.abort()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        payload: dict[str, Any] = json.loads(await reader.readexactly(length) or b"{}")
        model = str(payload.get("model"))
        self.calls[model] += 1
        self.in_progress += 1
        try:
            return await self._answer(model, payload, self._next_fault(model), reader, writer)
        except _Hangup:
            self.disconnects[model] += 1
            raise
        finally:
            self.in_progress -= 1

    async def _answer(
        self,
        model: str,
        payload: dict[str, Any],
        fault: Fault,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        kind = fault.kind
        if kind == "delay":
            await self._sleep_or_hangup(reader, fault.seconds)
        if kind == "hang_before_headers":
            await self._until_hangup(reader)
        if kind == "reset":
            _reset(writer)
            return False
        if kind == "status":
            error = {"error": {"message": f"scripted {fault.status}", "type": "server_error"}}
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            await _send(writer, fault.status, json.dumps(error).encode(), extra)
            return True
        if not payload.get("stream"):
            await _send(writer, 200, json.dumps(completion_body(model, payload)).encode())
            return True
        return await self._stream(model, fault, reader, writer)

    async def _stream(
        self, model: str, fault: Fault, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        tokens = _tokens("The answer is 42.")
        for number, token in enumerate(tokens):
            if number == 1 and fault.kind == "hang_mid_stream":
                await writer.drain()
                await self._until_hangup(reader)
            if number == 1 and fault.kind == "reset_mid_stream":
                await writer.drain()
                _reset(writer)
                return False
            if number == 1 and fault.kind == "malformed_chunk":
                _chunk(writer, b"data: {not json\n\n")
            if number == 2 and fault.kind == "truncated":
                await writer.drain()
                writer.close()
                return False
            if number == 2 and fault.kind == "no_done":
                _chunk(writer, b"")
                await writer.drain()
                return True
            _chunk(writer, _event(model, {"content": token}, _logprobs([token]), None))
            await writer.drain()
            await asyncio.sleep(0.002)
        _chunk(writer, _event(model, {}, None, "stop"))
        _chunk(writer, b"data: [DONE]\n\n")
        _chunk(writer, b"")
        await writer.drain()
        return True

    async def _until_hangup(self, reader: asyncio.StreamReader) -> None:
        """Wait for the client to close the connection."""
        while await reader.read(65536):
            pass
        raise _Hangup

    async def _sleep_or_hangup(self, reader: asyncio.StreamReader, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._until_hangup(reader)


def _event(model: str, delta: dict[str, Any], logprobs: Any, finish: str | None) -> bytes:
    chunk = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _send(
    writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    lines = [
        f"HTTP/1.1 {status} X",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def fault_upstream() -> Iterator[FaultUpstream]:
    """A started fault upstream, stopped when the block ends."""
    upstream = FaultUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()
