"""Gateway overhead: latency through a gateway minus latency straight to its upstream.

``python -m loadtests.overhead`` starts, each in its own process, the lean fake upstream
(``loadtests.fast_upstream``) and the real gateway (one-tier route ``auto``, ``NoopVerifier``) in
front of it, then runs a closed-loop load generator at fixed concurrency levels. Batches go
alternately (ABBA order) to the upstream directly and through the gateway, so machine noise hits
both alike. Pass ``--gateway-url``/``--upstream-url`` to measure any running proxy instead,
``--upstream-url`` alone to put the harness's gateway in front of an upstream you started, and
``--other-url`` (with ``--other-label``) to measure a second proxy in the same interleaved run
(ABCCBA order) against the same upstream. ``--gateway-cpus``/``--upstream-cpus``/``--client-cpus``
pin the harness's own processes to CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_ENV = "LOADTEST_UPSTREAM_URL"
PROMPT = "What is six times seven? Answer in one short sentence."


# ---------------------------------------------------------------- statistics (pure)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Samples:
    """Latencies (seconds) of one target at one level, kept per batch for pairing."""

    batches: list[list[float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def latencies(self) -> list[float]:
        """All latencies of all batches."""
        return [value for batch in self.batches for value in batch]

    def quantile(self, q: float) -> float:
        """Percentile ``q`` of all latencies, in seconds."""
        return percentile(self.latencies, q)

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time spent on this target."""
        return len(self.latencies) / self.wall_seconds if self.wall_seconds else math.nan


def overhead(direct: Samples, gateway: Samples, q: float) -> float:
    """Gateway percentile minus direct percentile, in seconds."""
    return gateway.quantile(q) - direct.quantile(q)


def paired_overhead(direct: Samples, gateway: Samples, q: float) -> float:
    """Median over adjacent batch pairs of (gateway percentile - direct percentile)."""
    diffs = [
        percentile(g, q) - percentile(d, q)
        for d, g in zip(direct.batches, gateway.batches, strict=False)
        if d and g
    ]
    return percentile(diffs, 50.0)


# ---------------------------------------------------------------- clients


def chat_url(base_url: str) -> str:
    """The chat completions URL of an OpenAI base URL given with or without ``/v1``."""
    base = base_url.rstrip("/")
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def request_body(model: str, stream: bool) -> bytes:
    """The identical chat request every worker sends (only ``model`` differs per target)."""
    stream_part = ',"stream":true,"stream_options":{"include_usage":true}' if stream else ""
    return (
        f'{{"model":"{model}","messages":[{{"role":"user","content":"{PROMPT}"}}],'
        f'"max_tokens":16,"temperature":0{stream_part}}}'
    ).encode()


class ResponseFailed(Exception):
    """A response was not a complete 200 answer."""


class RawConnection:
    """One HTTP/1.1 keep-alive connection sending one fixed request; no client library cost."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str], stream: bool) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise SystemExit(f"the raw client speaks plain http only; use --client httpx: {url}")
        self._host, self._port = parts.hostname, parts.port or 80
        lines = [
            f"POST {parts.path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self._stream = stream
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def prepare(self) -> None:
        """Outside the timed part: reconnect if the server closed the idle connection."""
        if self._reader is not None and self._reader.at_eof():
            self.close()
        if self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def send(self) -> None:
        """Send the request and read the whole response; raises ``ResponseFailed``."""
        try:
            if self._reader is None or self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
            self._writer.write(self._request)
            body, keep_alive, status = await self._read(self._reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            self.close()
            raise ResponseFailed(type(error).__name__) from error
        if not keep_alive:
            self.close()
        if status != 200:
            raise ResponseFailed(f"status {status}")
        if self._stream and not body.rstrip().endswith(b"data: [DONE]"):
            raise ResponseFailed("stream ended without [DONE]")

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[bytes, bool, int]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head[9:12])
        headers = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
        keep_alive = headers.get("connection", "").strip() != "close"
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"])), keep_alive, status
        if headers.get("transfer-encoding", "").strip() == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append((await reader.readexactly(size + 2))[:-2])
            await reader.readuntil(b"\r\n")
            return b"".join(chunks), keep_alive, status
        return await reader.read(), False, status

    def close(self) -> None:
        """Drop the connection; the next ``send`` reconnects."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class HttpxSender:
    """The same request through a shared ``httpx.AsyncClient`` (any URL, https included)."""

    def __init__(self, client: httpx.AsyncClient, url: str, body: bytes, stream: bool) -> None:
        self._client, self._url, self._body, self._stream = client, url, body, stream

    async def send(self) -> None:
        """Send the request and read the whole response; raises ``ResponseFailed``."""
        try:
            request = self._client.build_request("POST", self._url, content=self._body)
            response = await self._client.send(request, stream=True)
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
        except httpx.HTTPError as error:
            raise ResponseFailed(type(error).__name__) from error
        if response.status_code != 200:
            raise ResponseFailed(f"status {response.status_code}")
        if self._stream and not body.rstrip().endswith(b"data: [DONE]"):
            raise ResponseFailed("stream ended without [DONE]")

    async def prepare(self) -> None:
        """httpx drops connections the server closed by itself."""

    def close(self) -> None:
        """The shared client is closed by its owner."""


Sender = RawConnection | HttpxSender


@dataclass
class Target:
    """One side of the comparison: its workers' senders and what they measured."""

    name: str
    senders: list[Sender]
    samples: Samples = field(default_factory=Samples)


async def run_batch(target: Target, count: int, record: bool) -> None:
    """Closed loop: each sender issues requests back to back until ``count`` were started."""
    latencies: list[float] = []
    left = count
    errors: Counter[str] = Counter()

    async def worker(sender: Sender) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await sender.prepare()
            started = time.perf_counter()
            try:
                await sender.send()
            except ResponseFailed as error:
                errors[f"{target.name}: {error}"] += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(sender) for sender in target.senders))
    if record:
        target.samples.batches.append(latencies)
        target.samples.wall_seconds += time.perf_counter() - started
        target.samples.errors.update(errors)


# ---------------------------------------------------------------- servers


def gateway_app() -> FastAPI:
    """``uvicorn --factory`` target: the gateway, one-tier ``auto`` route, ``NoopVerifier``.

    The upstream base URL comes from ``LOADTEST_UPSTREAM_URL``. ``auto-passthrough`` is the
    same route streaming tier 0 live (``stream_mode: passthrough``).
    """
    from loadtests.noop_verifier import NoopVerifier
    from sdm_router.config import Settings
    from sdm_router.main import build_app
    from sdm_router.observability.metrics import GatewayMetrics

    backend = {"type": "openai", "base_url": f"{os.environ[UPSTREAM_ENV]}/v1", "model": "good"}
    settings = Settings(
        backends={"fast": backend},
        verifier={"artifact": "/nonexistent/noop", "encoder_model": "/nonexistent"},
        routes={
            "auto": {"tiers": [{"backend": "fast"}]},
            "auto-passthrough": {"tiers": [{"backend": "fast"}], "stream_mode": "passthrough"},
        },
        server={"max_concurrency": 4096},
    )
    return build_app(settings, verifier=NoopVerifier(), metrics=GatewayMetrics())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code == 401:  # a gateway with keys configured: it is up
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server for {url} not ready after {timeout:.0f} s")


@contextmanager
def serve(
    factory: str,
    server_args: str,
    env: dict[str, str],
    cpus: frozenset[int] = frozenset(),
    port: int = 0,
) -> Iterator[tuple[str, int]]:
    """Run ``uvicorn --factory FACTORY`` in a child process (on ``cpus`` and ``port`` when
    given); yields its URL and pid."""
    port = port or _free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    command += shlex.split(server_args)
    with serve_command(command, port, env, cpus) as served:
        yield served


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as ``taskset -c`` takes it (``0``, ``0,1``, ``0-3``); empty: no pinning."""
    cpus: set[int] = set()
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


@contextmanager
def serve_command(
    command: Sequence[str], port: int, env: dict[str, str], cpus: frozenset[int] = frozenset()
) -> Iterator[tuple[str, int]]:
    """Run ``command`` (a server on ``port``) in a child process, pinned to ``cpus`` when
    given; yields its URL and pid."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    process = subprocess.Popen(
        list(command), cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": path}
    )
    if cpus:  # before the server starts any thread or worker: they inherit the mask
        os.sched_setaffinity(process.pid, cpus)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def worker_pids(supervisor: int, count: int, timeout: float = 120.0) -> list[int]:
    """The ``count`` worker processes (spawned children) of a ``--workers`` supervisor."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            spawned = b"spawn_main" in cmdline and b"resource_tracker" not in cmdline
            if int(stat[1]) == supervisor and spawned:
                found.append(int(entry.name))
        if len(found) == count or time.monotonic() > deadline:
            return sorted(found)
        time.sleep(0.2)


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a local process (NaN when unknown)."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- benchmark


@dataclass
class LevelResult:
    """Both targets' samples at one concurrency, plus the gateway's CPU time when known; the
    other proxy's samples and CPU time when the run measured one (``--other-url``)."""

    concurrency: int
    direct: Samples
    gateway: Samples
    gateway_cpu_seconds: float
    client_cpu_seconds: float
    process_cpu_seconds: dict[int, float] = field(default_factory=dict)
    other: Samples | None = None
    other_cpu_seconds: float = math.nan

    def per_request(self, seconds: float) -> float:
        """``seconds`` spread over the gateway's measured requests."""
        count = len(self.gateway.latencies) + self.gateway.errors.total()
        return seconds / count if count else math.nan

    def other_side(self) -> LevelResult:
        """The same level with the other proxy in the gateway's place (for ``format_table``)."""
        assert self.other is not None
        return LevelResult(
            self.concurrency, self.direct, self.other, self.other_cpu_seconds,
            self.client_cpu_seconds,
        )  # fmt: skip


@dataclass(frozen=True)
class OtherProxy:
    """A second proxy measured in the same run: base URL, label, model alias, pid if known."""

    url: str
    label: str = "other"
    model: str = "good"
    pid: int | None = None


@dataclass(frozen=True)
class Plan:
    """What to send where; built from the command line."""

    upstream_url: str
    gateway_url: str
    upstream_model: str
    model: str
    stream: bool
    client: str
    headers: dict[str, str]
    requests: int
    warmup: int
    batch: int
    other: OtherProxy | None = None


async def _targets(plan: Plan, concurrency: int, clients: list[httpx.AsyncClient]) -> list[Target]:
    targets = []
    sides = [
        ("direct", plan.upstream_url, plan.upstream_model),
        ("gateway", plan.gateway_url, plan.model),
    ]
    if plan.other is not None:
        sides.append((plan.other.label, plan.other.url, plan.other.model))
    for name, base, model in sides:
        url, body = chat_url(base), request_body(model, plan.stream)
        senders: list[Sender]
        if plan.client == "raw":
            senders = [
                RawConnection(url, body, plan.headers, plan.stream) for _ in range(concurrency)
            ]
        else:
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            headers = {"content-type": "application/json", **plan.headers}
            client = httpx.AsyncClient(limits=limits, headers=headers, timeout=60)
            clients.append(client)
            senders = [HttpxSender(client, url, body, plan.stream) for _ in range(concurrency)]
        targets.append(Target(name, senders))
    return targets


async def run_level(
    plan: Plan, concurrency: int, gateway_pid: int | None, workers: Sequence[int] = ()
) -> LevelResult:
    """Warm both targets, then alternate measured batches in ABBA order. ``workers``: the
    gateway's worker pids (``--workers``), whose CPU counts as the gateway's, one by one."""
    pids = list(workers) or ([gateway_pid] if gateway_pid is not None else [])
    other_pid = plan.other.pid if plan.other is not None else None
    clients: list[httpx.AsyncClient] = []
    targets = await _targets(plan, concurrency, clients)
    direct, gateway = targets[0], targets[1]
    other = targets[2] if len(targets) > 2 else None
    try:
        for target in targets:
            await run_batch(target, max(plan.warmup, concurrency), record=False)
        batch = plan.batch or max(200, 10 * concurrency)
        gateway_cpu = other_cpu = 0.0
        per_process = dict.fromkeys(pids, 0.0)
        client_started = time.process_time()
        for number in range(max(1, math.ceil(plan.requests / batch))):
            for target in targets if number % 2 == 0 else targets[::-1]:
                before = {pid: cpu_seconds(pid) for pid in pids}
                other_before = cpu_seconds(other_pid)
                await run_batch(target, batch, record=True)
                if target is gateway:
                    for pid in pids:
                        per_process[pid] += cpu_seconds(pid) - before[pid]
                    gateway_cpu += sum(cpu_seconds(pid) - before[pid] for pid in pids)
                elif target is other:
                    other_cpu += cpu_seconds(other_pid) - other_before
        client_cpu = time.process_time() - client_started
        if not pids:
            gateway_cpu = math.nan
    finally:
        for target in targets:
            for sender in target.senders:
                sender.close()
        for client in clients:
            await client.aclose()
    return LevelResult(
        concurrency, direct.samples, gateway.samples, gateway_cpu, client_cpu, per_process,
        other.samples if other is not None else None, other_cpu,
    )  # fmt: skip


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def format_table(results: Sequence[LevelResult]) -> str:
    """One row per concurrency; latencies in milliseconds."""
    header = (
        f"{'conc':>4} {'n/side':>6} | {'direct p50':>10} {'p99':>6} | {'gateway p50':>11} "
        f"{'p99':>6} | {'overhead p50':>12} {'p99':>6} {'paired p50':>10} | "
        f"{'direct rps':>10} {'gw rps':>7} | {'gw cpu/req':>10} {'errors':>6}"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        d, g = r.direct, r.gateway
        rows.append(
            f"{r.concurrency:>4} {len(g.latencies):>6} | {_ms(d.quantile(50)):>10} "
            f"{_ms(d.quantile(99)):>6} | {_ms(g.quantile(50)):>11} {_ms(g.quantile(99)):>6} | "
            f"{_ms(overhead(d, g, 50)):>12} {_ms(overhead(d, g, 99)):>6} "
            f"{_ms(paired_overhead(d, g, 50)):>10} | {d.throughput:>10.0f} {g.throughput:>7.0f} | "
            f"{_ms(r.per_request(r.gateway_cpu_seconds)):>10} {(d.errors + g.errors).total():>6}"
        )
    return "\n".join(rows)


def _count(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def format_comparison(results: Sequence[LevelResult], label: str) -> str:
    """Our gateway against the other proxy, level by level: each figure for both and the ratio
    ours / theirs (below 1 is better for latency and CPU, above 1 for req/s)."""
    name = label[:10]
    columns = ("p50 ovh", "paired p50", "p99 ovh", "req/s", "cpu/req")
    header = f"{'conc':>4} | " + " | ".join(
        f"{column + ' gw':>13} {name:>10} {'ratio':>5}" for column in columns
    )
    rows = [header, "-" * len(header)]
    for r in results:
        if r.other is None:
            continue
        d, g, o = r.direct, r.gateway, r.other
        mine, theirs = (
            r.per_request(r.gateway_cpu_seconds),
            r.other_side().per_request(r.other_cpu_seconds),
        )
        figures = [
            (overhead(d, g, 50), overhead(d, o, 50), _ms),
            (paired_overhead(d, g, 50), paired_overhead(d, o, 50), _ms),
            (overhead(d, g, 99), overhead(d, o, 99), _ms),
            (g.throughput, o.throughput, _count),
            (mine, theirs, _ms),
        ]
        cells = [
            f"{show(ours):>13} {show(other):>10} {_ratio(ours, other):>5}"
            for ours, other, show in figures
        ]
        rows.append(f"{r.concurrency:>4} | " + " | ".join(cells))
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.overhead", description=__doc__)
    parser.add_argument("--gateway-url", help="a running gateway or proxy (base URL)")
    parser.add_argument("--upstream-url", help="the upstream that proxy forwards to")
    parser.add_argument("--model", default="auto", help="model sent to the gateway")
    parser.add_argument("--upstream-model", default="good", help="model sent directly")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=2000, help="measured per side per level")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured per side per level")
    parser.add_argument("--batch", type=int, default=0, help="per batch (0: max(200, 10*conc))")
    parser.add_argument("--stream", action="store_true", help="streamed requests (SSE)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--server-args", default="", help="extra uvicorn flags for both servers")
    parser.add_argument("--gateway-pid", type=int, help="pid of a running gateway, for CPU/req")
    parser.add_argument("--other-url", help="a second proxy (base URL) in the same ABBA run")
    parser.add_argument("--other-label", default="other", help="its name in the tables")
    parser.add_argument("--other-model", default="good", help="model sent to the other proxy")
    parser.add_argument("--other-pid", type=int, help="pid of the other proxy, for CPU/req")
    parser.add_argument("--gateway-cpus", default="", help="pin our gateway child, e.g. '0'")
    parser.add_argument("--upstream-cpus", default="", help="pin the upstream child, e.g. '1'")
    parser.add_argument(
        "--upstream-port", type=int, default=0, help="port of the upstream child (0: any free)"
    )
    parser.add_argument("--client-cpus", default="", help="pin the load generator, e.g. '1'")
    parser.add_argument(
        "--workers",
        default="",
        help="comma-separated worker counts: serve the gateway as `sdm-router serve --workers N`"
        " does (loadtests.workers_gateway), one table per count",
    )
    args = parser.parse_args(argv)
    if args.gateway_url is not None and args.upstream_url is None:
        parser.error("--gateway-url needs --upstream-url (the upstream that proxy forwards to)")
    if args.other_url is not None and args.upstream_url is None and not args.upstream_port:
        parser.error(
            "--other-url needs the upstream both proxies forward to: --upstream-url, or"
            " --upstream-port for the harness's own"
        )
    return args


def _other_errors(result: LevelResult) -> Counter[str]:
    return result.other.errors if result.other is not None else Counter()


def _describe(args: argparse.Namespace, results: Sequence[LevelResult]) -> list[str]:
    def client_us(r: LevelResult) -> float:
        count = len(r.direct.latencies) + len(r.gateway.latencies)
        return r.client_cpu_seconds * 1e6 / max(1, count)

    cpu = ", ".join(f"c={r.concurrency}: {client_us(r):.0f} us" for r in results)
    return [
        "",
        "latencies in ms; overhead = gateway percentile - direct percentile; paired p50 = median",
        "over ABBA batch pairs of (gateway p50 - direct p50); rps = successful requests per second",
        "of wall time on that side; gw cpu/req = gateway process CPU ms per request (own servers).",
        f"client CPU per request ({args.client} client): {cpu}",
        *(
            f"gateway CPU split over workers at c={r.concurrency}: "
            + ", ".join(
                f"pid {pid} {100 * seconds / total:.0f}% ({seconds:.2f} s)"
                for pid, seconds in r.process_cpu_seconds.items()
            )
            for r in results
            if len(r.process_cpu_seconds) > 1 and (total := sum(r.process_cpu_seconds.values())) > 0
        ),
        *(
            f"errors at c={r.concurrency}: {dict(r.direct.errors + r.gateway.errors + other)}"
            for r in results
            if r.direct.errors or r.gateway.errors or (other := _other_errors(r))
        ),
    ]


async def _benchmark(
    args: argparse.Namespace, gateway_pid: int | None, plan: Plan, workers: Sequence[int] = ()
) -> None:
    results = []
    for level in (int(value) for value in args.concurrency.split(",")):
        results.append(await run_level(plan, level, gateway_pid, workers))
        print(f"  done: concurrency {level}", file=sys.stderr, flush=True)
    print(format_table(results))
    if plan.other is not None:
        label = plan.other.label
        print(f"\n{label} (same run, same upstream, ABCCBA order):")
        print(format_table([result.other_side() for result in results]))
        print(f"\nsdm-router ('gw') against {label}, ratio = ours / theirs:")
        print(format_comparison(results, label))
    print("\n".join(_describe(args, results)))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    headers = dict(
        (name.strip(), value.strip()) for name, value in (h.split(":", 1) for h in args.header)
    )
    print("$ python -m loadtests.overhead " + shlex.join(sys.argv[1:] if argv is None else argv))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {stamp}, load avg {load:.1f}")

    other = None
    if args.other_url is not None:
        other = OtherProxy(args.other_url, args.other_label, args.other_model, args.other_pid)
        upstream = args.upstream_url or f"http://127.0.0.1:{args.upstream_port}"
        print(f"{other.label} {other.url} (model {other.model}) -> upstream {upstream}")
    gateway_cpus, client_cpus = parse_cpus(args.gateway_cpus), parse_cpus(args.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    pinning = [
        f"{name} on CPUs {sorted(cpus)}"
        for name, cpus in (("gateway", gateway_cpus), ("client", client_cpus))
        if cpus
    ]
    if pinning:
        print("pinned: " + ", ".join(pinning))

    def run(
        upstream_url: str, gateway_url: str, pid: int | None, workers: Sequence[int] = ()
    ) -> None:
        plan = Plan(
            upstream_url, gateway_url, args.upstream_model, args.model, args.stream,
            args.client, headers, args.requests, args.warmup, args.batch, other,
        )  # fmt: skip
        asyncio.run(_benchmark(args, pid, plan, workers))

    if args.gateway_url is not None:
        print(f"gateway {args.gateway_url} -> upstream {args.upstream_url}")
        run(args.upstream_url, args.gateway_url, args.gateway_pid)
        return 0
    with _upstream(args) as upstream:
        env = {UPSTREAM_ENV: upstream}
        if args.workers:
            for count in (int(value) for value in args.workers.split(",")):
                port = _free_port()
                command = [sys.executable, "-m", "loadtests.workers_gateway", "--port", str(port)]
                command += ["--workers", str(count)]
                with serve_command(command, port, env, gateway_cpus) as (gateway, pid):
                    workers = worker_pids(pid, count) if count > 1 else []
                    print(
                        f"\n# ---- --workers {count}: gateway {gateway} (supervisor pid {pid}, "
                        f"workers {workers or [pid]}; route {args.model}, NoopVerifier) "
                        f"-> fast upstream {upstream}",
                        flush=True,
                    )
                    run(upstream, gateway, pid, workers)
            return 0
        factory = "loadtests.overhead:gateway_app"
        with serve(factory, args.server_args, env, gateway_cpus) as (gateway, pid):
            print(
                f"own servers (uvicorn {args.server_args or 'defaults'}): gateway {gateway} "
                f"(route {args.model}, NoopVerifier) -> fast upstream {upstream}"
            )
            run(upstream, gateway, pid)
    return 0


@contextmanager
def _upstream(args: argparse.Namespace) -> Iterator[str]:
    """The upstream URL: the one given (``--upstream-url``), else a fast upstream child."""
    if args.upstream_url is not None:
        yield args.upstream_url
        return
    cpus = parse_cpus(args.upstream_cpus)
    factory = "loadtests.fast_upstream:create_app"
    with serve(factory, args.server_args, {}, cpus, args.upstream_port) as (upstream, _):
        if cpus:
            print(f"pinned: fast upstream on CPUs {sorted(cpus)}")
        yield upstream


if __name__ == "__main__":
    raise SystemExit(main())
