"""Verification's share of a verified answer, read from the gateway's own stage metrics.

Two ``sdm-router serve`` processes on the embedded default (``configs/embedded.yaml``, real
SmolLM2-135M, the shipped artifact), identical but for ``verifier.recorded_states``:

- *before*: ``false`` (the verifier encodes every answer again: a second forward pass, as on
  main);
- *after*: ``true`` (the default: it reads the states the decoder recorded).

The same capital question goes to each in turn (``--requests`` per side, alternating which
goes first), one at a time, to route ``auto`` (greedy tier 0, ``max_tokens`` as given). Per
side: the share sum(verify) / sum(generate) from ``sdm_router_stage_duration_seconds``, the p50
end to end of the answers accepted at tier 0 (with or without its retrieval attempt), and how
many were accepted there.

Run: ``python -m benchmarks.gateway_verify_share`` (``--requests``, ``--max-tokens``).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

CAPITALS = ["France", "Japan", "Italy", "Germany", "Spain", "Canada", "Egypt", "Peru", "Norway"]
STAGE = re.compile(r'^sdm_router_stage_duration_seconds_sum\{stage="(\w+)"\} (\S+)$', re.M)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(recorded: bool, state: Path) -> tuple[subprocess.Popen[bytes], str]:
    """One gateway process; returns it and its base URL once ready."""
    port = free_port()
    env = {
        **os.environ,
        "SDM_ROUTER_VERIFIER__RECORDED_STATES": "true" if recorded else "false",
        "SDM_ROUTER_STATE_DIR": str(state),
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "sdm_router.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("gateway did not become ready")


def stages(client: httpx.Client, url: str) -> dict[str, float]:
    """The stage duration sums from /metrics."""
    text = client.get(f"{url}/metrics").text
    return {name: float(value) for name, value in STAGE.findall(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with ExitStack() as stack, httpx.Client(timeout=600) as client:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls = {}
        for side, recorded in (("before", False), ("after", True)):
            process, urls[side] = start(recorded, folder / side)
            stack.callback(process.wait, 30)
            stack.callback(process.terminate)
        start_stages = {side: stages(client, url) for side, url in urls.items()}
        latencies: dict[str, list[float]] = {side: [] for side in urls}
        accepted = dict.fromkeys(urls, 0)
        for round_ in range(args.requests):
            question = f"What is the capital of {CAPITALS[round_ % len(CAPITALS)]}?"
            order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
            for side in order:
                body = {
                    "model": "auto", "max_tokens": args.max_tokens,
                    "messages": [{"role": "user", "content": question}],
                }  # fmt: skip
                started = time.perf_counter()
                reply = client.post(f"{urls[side]}/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - started
                verification = reply.json().get("verification", {})
                if verification.get("decision") == "accept" and verification.get("tier") == 0:
                    accepted[side] += 1
                    latencies[side].append(elapsed)
        print(
            f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, load {os.getloadavg()[0]:.1f}; "
            f"{args.requests} capital questions a side, route auto, max_tokens {args.max_tokens}"
        )
        print("side    verify/generate (stage sums)  accepted at tier 0  p50 end to end ms")
        p50 = {}
        for side, url in urls.items():
            end = stages(client, url)
            delta = {k: end.get(k, 0.0) - start_stages[side].get(k, 0.0) for k in end}
            share = delta.get("verify", 0.0) / max(delta.get("generate", 0.0), 1e-9)
            p50[side] = statistics.median(latencies[side]) if latencies[side] else float("nan")
            print(
                f"{side:7} {share:28.1%} {accepted[side]:11d}/{args.requests:<7d} "
                f"{p50[side] * 1e3:17.0f}"
            )
        print(f"p50 after/before: x{p50['after'] / p50['before']:.2f}")


if __name__ == "__main__":
    main()
