"""The outbound HTTP client, side by side: httpx (what served until this change) vs aiohttp (what
``OpenAIHTTPBackend`` uses now), against a real, fast local upstream.

The upstream is ``loadtests.fast_upstream`` (pre-rendered chat completions with logprobs, SSE
when the body asks for ``stream: true``) served by uvicorn in a child process, so the client
process measured here runs nothing but the client. Each client does what the backend does per
call: POST the same JSON bytes to ``/v1/chat/completions`` over a pooled keep-alive connection,
read the whole body (or every SSE line until ``data: [DONE]``) and parse it with orjson. The
``backend`` row is the real ``OpenAIHTTPBackend.generate`` / ``.stream`` (aiohttp, tenacity's
retry policy armed, the circuit breaker, the typed wire parsing): the cost of the kept path.

Per mode (json, sse) and concurrency level (``--concurrency``, default 1 and 16), batches of
``--requests`` requests run in ABBA order (A B B A, ``--rounds`` times) so that machine noise
falls on both clients alike. Printed per client: requests/s (batch wall time), p50/p99 latency,
and CPU milliseconds per request (``time.process_time`` of this process over the batch: the
client's own cost, which is what a CPU-bound gateway pays per upstream call); then the ratios
httpx / aiohttp.

Run: ``python -m benchmarks.outbound_client`` (``--uvloop`` runs the client on uvloop, as the
gateway does under ``uvicorn[standard]``). Figures depend on the machine and on what else runs
on it; the header says what was used. Compare rows within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from sdm_router.backends.openai_http import OpenAIHTTPBackend
from sdm_router.config import OpenAIBackendSettings
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams

ROOT = Path(__file__).resolve().parents[1]
MAX_CONNECTIONS = 256
PAYLOAD: dict[str, Any] = {
    "model": "good",
    "messages": [{"role": "user", "content": "What is six times seven? Answer in one sentence."}],
    "max_tokens": 16,
    "temperature": 0.0,
    "logprobs": True,
}
REQUEST = GenerationRequest(
    messages=(Message(role="user", content="What is six times seven? Answer in one sentence."),),
    prompt=None,
    params=SamplingParams(max_tokens=16, temperature=0.0),
)
JSON_HEADERS = {"content-type": "application/json"}

Send = Callable[[], Awaitable[None]]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between order statistics."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _check_done(lines: list[bytes]) -> None:
    if not lines or lines[-1].strip() != b"data: [DONE]":
        raise RuntimeError("the stream did not end with [DONE]")


# ------------------------------------------------------------------------- the clients


class HttpxClient:
    """httpx.AsyncClient as the backend configured it (same limits, keep-alive expiry)."""

    name = "httpx"

    def __init__(self, base_url: str) -> None:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=4.0,
        )
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(60.0, connect=5.0), limits=limits
        )

    async def json(self, body: bytes) -> None:
        """One non-streamed call, body parsed."""
        response = await self._client.post("/chat/completions", content=body, headers=JSON_HEADERS)
        response.raise_for_status()
        orjson.loads(response.content)

    async def sse(self, body: bytes) -> None:
        """One streamed call, every event parsed."""
        lines: list[bytes] = []
        async with self._client.stream(
            "POST", "/chat/completions", content=body, headers=JSON_HEADERS
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    orjson.loads(line[6:])
                if line:
                    lines.append(line.encode())
        _check_done(lines)

    async def close(self) -> None:
        """Close the pool."""
        await self._client.aclose()


class AiohttpClient:
    """aiohttp.ClientSession as the backend configures it."""

    name = "aiohttp"

    def __init__(self, base_url: str) -> None:
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS, limit_per_host=0, keepalive_timeout=4.0
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=60.0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._url = f"{base_url}/chat/completions"

    async def json(self, body: bytes) -> None:
        """One non-streamed call, body parsed."""
        async with self._session.post(self._url, data=body, headers=JSON_HEADERS) as response:
            response.raise_for_status()
            orjson.loads(await response.read())

    async def sse(self, body: bytes) -> None:
        """One streamed call, every event parsed (split on newlines, as the backend does)."""
        lines: list[bytes] = []
        async with self._session.post(self._url, data=body, headers=JSON_HEADERS) as response:
            response.raise_for_status()
            tail = b""
            async for chunk in response.content.iter_any():
                *complete, tail = (tail + chunk).split(b"\n")
                for line in complete:
                    if line.startswith(b"data: {"):
                        orjson.loads(line[6:])
                    if line:
                        lines.append(line)
        _check_done(lines)

    async def close(self) -> None:
        """Close the pool."""
        await self._session.close()


class BackendClient:
    """The real ``OpenAIHTTPBackend`` (aiohttp, retries armed, breaker, typed parsing)."""

    name = "backend"

    def __init__(self, base_url: str) -> None:
        settings = OpenAIBackendSettings(type="openai", base_url=base_url, model="good")
        self._backend = OpenAIHTTPBackend("good", settings)
        self._started = False

    async def json(self, body: bytes) -> None:
        """One ``generate``."""
        if not self._started:
            await self._backend.start()
            self._started = True
        await self._backend.generate(REQUEST)

    async def sse(self, body: bytes) -> None:
        """One ``stream``, to the end."""
        if not self._started:
            await self._backend.start()
            self._started = True
        async for _ in self._backend.stream(REQUEST):
            pass

    async def close(self) -> None:
        """Close the pool."""
        await self._backend.close()


Client = HttpxClient | AiohttpClient | BackendClient


# ------------------------------------------------------------------------- measuring


@dataclass
class Figures:
    """What one client did at one (mode, concurrency): summed over its batches."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    requests: int = 0

    @property
    def rps(self) -> float:
        """Requests per second of batch wall time."""
        return self.requests / self.wall

    @property
    def cpu_ms(self) -> float:
        """Client-process CPU milliseconds per request."""
        return self.cpu / self.requests * 1000

    def ms(self, q: float) -> float:
        """A latency percentile in milliseconds."""
        return percentile(self.latencies, q) * 1000


async def batch(send: Send, requests: int, concurrency: int, figures: Figures) -> None:
    """``requests`` calls by ``concurrency`` closed-loop workers."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await send()
            figures.latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    figures.wall += time.perf_counter() - wall
    figures.cpu += time.process_time() - cpu
    figures.requests += requests


def sender(client: Client, mode: str, body: bytes) -> Send:
    """The call ``client`` makes in ``mode``."""
    if mode == "json":
        return lambda: client.json(body)
    return lambda: client.sse(body)


async def measure(
    clients: list[Client], mode: str, concurrency: int, requests: int, rounds: int, warmup: int
) -> dict[str, Figures]:
    """ABBA (and for three clients A B C C B A) rounds of batches; warm-up batches first."""
    body = orjson.dumps({**PAYLOAD, "stream": mode == "sse"})
    for client in clients:
        await batch(sender(client, mode, body), warmup, concurrency, Figures())
    figures = {client.name: Figures() for client in clients}
    order = clients + clients[::-1]
    for _ in range(rounds):
        for client in order:
            await batch(sender(client, mode, body), requests, concurrency, figures[client.name])
    return figures


# ------------------------------------------------------------------------- the upstream


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def fast_upstream(server_args: list[str]) -> Iterator[str]:
    """``loadtests.fast_upstream`` under uvicorn in a child process; yields its ``/v1`` URL."""
    port = _free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "loadtests.fast_upstream:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
        "--timeout-keep-alive", "30", *server_args,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fast upstream did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


# ------------------------------------------------------------------------- the report


def _row(mode: str, level: int, name: str, figures: Figures) -> str:
    return (
        f"{mode:<4} c={level:<3} {name:<8} {figures.rps:8.0f} req/s   p50 {figures.ms(50):7.2f} ms"
        f"   p99 {figures.ms(99):7.2f} ms   cpu {figures.cpu_ms:6.3f} ms/req"
        f"   ({figures.requests} requests)"
    )


def _ratios(mode: str, level: int, slow: Figures, fast: Figures) -> str:
    return (
        f"{mode:<4} c={level:<3} httpx/aiohttp: cpu per request x{slow.cpu_ms / fast.cpu_ms:.2f}, "
        f"p50 x{slow.ms(50) / fast.ms(50):.2f}, p99 x{slow.ms(99) / fast.ms(99):.2f}, "
        f"req/s x{slow.rps / fast.rps:.2f}"
    )


async def run(args: argparse.Namespace, base_url: str) -> list[str]:
    """Every (mode, level); the printed lines."""
    lines: list[str] = []
    ratios: list[str] = []
    for mode in args.modes.split(","):
        for level in (int(value) for value in args.concurrency.split(",")):
            clients: list[Client] = [HttpxClient(base_url), AiohttpClient(base_url)]
            if not args.no_backend:
                clients.append(BackendClient(base_url))
            try:
                figures = await measure(
                    clients, mode, level, args.requests, args.rounds, args.warmup
                )
            finally:
                for client in clients:
                    await client.close()
            for name, result in figures.items():
                lines.append(_row(mode, level, name, result))
                print(lines[-1], flush=True)
            ratios.append(_ratios(mode, level, figures["httpx"], figures["aiohttp"]))
    return [*lines, "", *ratios]


def main() -> None:
    """Parse flags, start the upstream, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--modes", default="json,sse")
    parser.add_argument("--requests", type=int, default=400, help="requests per batch")
    parser.add_argument("--rounds", type=int, default=3, help="ABBA rounds per level")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument("--no-backend", action="store_true", help="skip the backend row")
    parser.add_argument(
        "--server-args",
        default="--loop uvloop --http httptools",
        help="extra uvicorn flags for the upstream",
    )
    args = parser.parse_args()
    header = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "httpx": httpx.__version__,
        "aiohttp": aiohttp.__version__,
        "client_loop": "uvloop" if args.uvloop else "asyncio",
        "requests_per_batch": args.requests,
        "abba_rounds": args.rounds,
    }
    print("# " + json.dumps(header), flush=True)
    with fast_upstream(args.server_args.split()) as base_url:
        if args.uvloop:
            import uvloop

            lines = uvloop.run(run(args, base_url))
        else:
            lines = asyncio.run(run(args, base_url))
    for line in lines[lines.index("") :]:
        print(line)


if __name__ == "__main__":
    main()
