"""Concurrent mixed traffic against the embedded default: chat, streamed chat and /v1/verify.

``--concurrency`` clients (16 by default) send requests back to back for ``--seconds`` (bounded
further by ``--max-requests``), cycling through the three kinds. Prints the counts by kind and
HTTP status, p50/p99 latency per kind, and completion tokens/s; exits 1 on any 5xx, which is
what the one-owner-per-model rule must keep at zero.

Without ``--url`` it starts ``sdm-router serve`` (the embedded default) on a free loopback port
and stops it afterwards; with ``--url`` it drives a gateway that is already running
(``make run``). Traffic only goes to that address.

Run: ``python -m loadtests.embedded_concurrency --seconds 120``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.replicas import free_port

QUESTIONS = [
    "What is the capital of France?",
    "Which city is the capital of Oman?",
    "What is 3 plus 4?",
    "What is 487 times 356?",
    "What is the chemical symbol for gold?",
    "What is the capital of Japan?",
    "How many letters are in the word 'planet'?",
    "Reverse the word 'stone'.",
]
VERIFIES = [
    ("What is the capital of Canada?", "Toronto"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is 2 plus 2?", "2 plus 2 is 4."),
    ("What is 487 times 356?", "487 times 356 is 12."),
]
KINDS = ("chat", "stream", "verify")


@dataclass(frozen=True)
class Outcome:
    """One request's result."""

    kind: str
    status: int
    seconds: float
    completion_tokens: int


async def chat(client: httpx.AsyncClient, number: int) -> tuple[int, int]:
    """A non-streamed chat: (status, completion tokens)."""
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": QUESTIONS[number % len(QUESTIONS)]}],
    }
    reply = await client.post("/v1/chat/completions", json=body)
    tokens = reply.json().get("usage", {}).get("completion_tokens", 0) if reply.is_success else 0
    return reply.status_code, int(tokens)


async def stream(client: httpx.AsyncClient, number: int) -> tuple[int, int]:
    """A streamed chat with usage; a mid-stream error frame counts as a 500."""
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": QUESTIONS[number % len(QUESTIONS)]}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        if not reply.is_success:
            await reply.aread()
            return reply.status_code, 0
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                return 500, tokens
            usage = event.get("usage")
            if usage:
                tokens = int(usage.get("completion_tokens", 0))
    return reply.status_code, tokens


async def verify(client: httpx.AsyncClient, number: int) -> tuple[int, int]:
    """A /v1/verify call."""
    prompt, response = VERIFIES[number % len(VERIFIES)]
    reply = await client.post("/v1/verify", json={"prompt": prompt, "response": response})
    return reply.status_code, 0


SENDERS = {"chat": chat, "stream": stream, "verify": verify}


async def drive(url: str, concurrency: int, seconds: float, max_requests: int) -> list[Outcome]:
    """Run the clients until the time or the request budget is spent."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + seconds
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def client_loop(worker: int) -> None:
            nonlocal issued
            while time.monotonic() < deadline and issued < max_requests:
                number = issued
                issued += 1
                kind = KINDS[(worker + number) % len(KINDS)]
                started = time.perf_counter()
                try:
                    status, tokens = await SENDERS[kind](client, number)
                except httpx.HTTPError:
                    status, tokens = 599, 0  # the connection failed: as bad as a 5xx
                outcomes.append(Outcome(kind, status, time.perf_counter() - started, tokens))

        started = time.monotonic()
        await asyncio.gather(*(client_loop(worker) for worker in range(concurrency)))
        elapsed = time.monotonic() - started
    report(outcomes, elapsed, concurrency)
    return outcomes


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(outcomes: list[Outcome], elapsed: float, concurrency: int) -> None:
    """Print counts by kind and status, latency percentiles and tokens/s."""
    print(f"{len(outcomes)} requests from {concurrency} clients in {elapsed:.1f} s")
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    for kind in KINDS:
        rows = by_kind.get(kind, [])
        if not rows:
            continue
        statuses = Counter(row.status for row in rows)
        latencies = [row.seconds for row in rows]
        print(
            f"  {kind:6s} n={len(rows):4d} statuses={dict(sorted(statuses.items()))} "
            f"p50={statistics.median(latencies):6.2f} s p99={percentile(latencies, 0.99):6.2f} s"
        )
    tokens = sum(outcome.completion_tokens for outcome in outcomes)
    errors = sum(outcome.status >= 500 for outcome in outcomes)
    print(f"  completion tokens {tokens} ({tokens / elapsed:.1f} tokens/s); 5xx: {errors}")


def start_gateway(log: Path, config: Path | None) -> tuple[str, subprocess.Popen[bytes]]:
    """``sdm-router serve`` (the embedded default, or ``config``), once it is ready."""
    port = free_port()
    script = Path(sys.executable).parent / "sdm-router"
    command = [str(script), "serve", "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the gateway did not become ready within 600 s; see {log}")


def main() -> int:
    """Parse arguments, run the load, return 1 on any 5xx."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running gateway (default: start one)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--config", type=Path, default=None, help="config to serve (no --url)")
    parser.add_argument("--log", type=Path, default=Path("embedded-concurrency-gateway.log"))
    args = parser.parse_args()
    process: subprocess.Popen[bytes] | None = None
    url = args.url
    if url is None:
        url, process = start_gateway(args.log, args.config)
    try:
        outcomes = asyncio.run(drive(url, args.concurrency, args.seconds, args.max_requests))
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    return 1 if any(outcome.status >= 500 for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
