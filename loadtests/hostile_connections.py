"""Raw-socket clients that misbehave: the connection-level half of ``loadtests.hostile_probes``
(and of ``tests/integration/test_hostile_input.py``).

Each function opens real TCP connections to a gateway and reports what the server did with
them: how long it kept a connection that never finishes a request, how much of an endless
header it read before refusing it, and what it answered. Nothing here knows the gateway's
limits; callers compare the outcomes with them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Held:
    """What the server did with one connection: closed it after ``seconds`` (None: still open
    when the watch ended), and the first bytes it answered."""

    seconds: float | None
    answer: bytes

    @property
    def status(self) -> int | None:
        """The status code of the answer, if it has one."""
        parts = self.answer.split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None


def connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """A TCP connection to ``address``."""
    return socket.create_connection(address, timeout=timeout)


def closed_after(sock: socket.socket, started: float, watch: float) -> Held:
    """Read ``sock`` until the server closes it or ``watch`` seconds from ``started`` pass."""
    answer = b""
    deadline = started + watch
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return Held(None, answer)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return Held(None, answer)
        except OSError:  # reset: closed as well
            return Held(time.monotonic() - started, answer)
        if not data:
            return Held(time.monotonic() - started, answer)
        answer += data


def hold(
    address: tuple[str, int],
    opening: bytes,
    watch: float,
    trickle: bytes = b"",
    every: float = 1.0,
) -> Held:
    """Send ``opening``, then ``trickle`` one byte every ``every`` seconds, until the server
    closes the connection or ``watch`` seconds pass."""
    started = time.monotonic()
    with contextlib.closing(connect(address)) as sock:
        if opening:
            sock.sendall(opening)
        if not trickle:
            return closed_after(sock, started, watch)
        for index in range(10**9):
            held = closed_after(sock, started, min(watch, time.monotonic() - started + every))
            if held.seconds is not None or time.monotonic() - started >= watch:
                return held
            try:
                sock.sendall(trickle[index % len(trickle) : index % len(trickle) + 1])
            except OSError:
                return Held(time.monotonic() - started, held.answer)
        raise AssertionError("unreachable")


def at_once(calls: Sequence[Callable[[], Held]]) -> list[Held]:
    """Every call run at the same time (a thread each), their results in order."""
    results: list[Held | None] = [None] * len(calls)

    def run(index: int) -> None:
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [result for result in results if result is not None]


def endless_header(address: tuple[str, int], most: int, piece: int = 65536) -> tuple[int, Held]:
    """Send a request whose one header line never ends, up to ``most`` bytes: how many bytes
    the server took before it refused or closed, and what it answered."""
    started = time.monotonic()
    sent = 0
    with contextlib.closing(connect(address, timeout=10)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nX-Endless: ")
        filler = b"a" * piece
        try:
            while sent < most:
                sock.sendall(filler)
                sent += piece
        except OSError:
            pass
        return sent, closed_after(sock, started, 5.0)


@contextlib.contextmanager
def open_connections(
    address: tuple[str, int], count: int, opening: bytes = b"", most: int = 0
) -> Iterator[list[socket.socket]]:
    """``count`` connections held open for the block, each sent ``opening`` and then up to
    ``most`` bytes of a header that never ends (non-blocking: what the server refuses to read
    stays unsent)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = connect(address)
            sockets.append(sock)
            try:
                sock.sendall(opening)
                sock.setblocking(False)
                sent = 0
                while sent < most:
                    sent += sock.send(b"a" * min(65536, most - sent))
            except OSError:  # full buffers or refused: hold what was sent
                pass
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def still_open(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server has not closed (nothing to read, or only answer
    bytes without the end of the connection)."""
    count = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def raw_exchange(address: tuple[str, int], request: bytes, watch: float = 30.0) -> bytes:
    """Send ``request`` (it should say ``Connection: close`` or be HTTP/1.0) and read the whole
    answer."""
    with contextlib.closing(connect(address, timeout=watch)) as sock:
        sock.sendall(request)
        return closed_after(sock, time.monotonic(), watch).answer
