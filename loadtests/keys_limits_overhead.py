"""What API keys and per-key limits cost a request: the overhead harness run with the gateway
*without* keys as its "direct" side and the same gateway *with* a key and limits as its
"gateway" side.

``python -m loadtests.keys_limits_overhead`` starts the fast upstream and, each in its own
process, the benchmark gateway (``loadtests.overhead:gateway_app``, ``NoopVerifier``, decision
store off on both) twice: without ``auth`` and with one key among ``--keys`` configured keys
(hashed lookup over all of them) that has rpm, tpm and in-flight limits high enough never to
refuse, counted in process; then, with ``--redis URL``, counted in that Redis. Every request
sends ``Authorization: Bearer <key>`` (the keyless gateway ignores it). Batches alternate ABBA
between the two, so "overhead" is what keys + limits add and "rps" compares requests per second
off and on, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import uuid

from loadtests.overhead import (
    UPSTREAM_ENV,
    LevelResult,
    Plan,
    _describe,
    cpu_seconds,
    format_table,
    parse_args,
    run_level,
    serve,
)

GATEWAY = "loadtests.overhead:gateway_app"
KEY = "sk-bench-0123456789abcdef"
HIGH = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000, "in_flight": 100_000}


def auth_env(keys: int) -> str:
    """``SDM_ROUTER_AUTH``: ``keys`` keys, the last one the benchmark's, all with limits."""
    entries: list[dict[str, object]] = [
        {"name": f"k{index}", "sha256": hashlib.sha256(f"other-{index}".encode()).hexdigest()}
        for index in range(keys - 1)
    ]
    entries.append(
        {"name": "bench", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "limits": HIGH}
    )
    return json.dumps({"keys": entries})


async def compare(
    harness: argparse.Namespace, plan: Plan, off_pid: int, on_pid: int, levels: list[int]
) -> None:
    """The harness table, then each gateway's CPU per request and the throughput ratio."""
    results: list[LevelResult] = []
    lines = []
    for level in levels:
        off_before, on_before = cpu_seconds(off_pid), cpu_seconds(on_pid)
        result = await run_level(plan, level, on_pid)
        off_cpu, on_cpu = cpu_seconds(off_pid) - off_before, cpu_seconds(on_pid) - on_before
        results.append(result)
        # both sides got the same warm-up and batches; the CPU covers all of them
        count = max(harness.warmup, level) + len(result.direct.latencies)
        count += result.direct.errors.total()
        off_ms, on_ms = off_cpu * 1000 / count, on_cpu * 1000 / count
        ratio = result.gateway.throughput / result.direct.throughput - 1
        lines.append(
            f"c={level}: throughput on vs off {ratio:+.1%}; gateway CPU per request "
            f"off {off_ms:.2f} ms, on {on_ms:.2f} ms ({on_ms / off_ms - 1:+.1%})"
        )
        print(f"  done: concurrency {level}", file=sys.stderr, flush=True)
    print(format_table(results))
    print("\n".join(_describe(harness, results)))
    print("keys + limits on vs off ('direct' = off, 'gateway' = on):")
    print("\n".join(f"  {line}" for line in lines))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> int:
    """Run the comparison for each limit store and print one table per store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=10, help="configured keys (>= 1)")
    parser.add_argument("--redis", default=None, help="also measure limits counted in this Redis")
    args = parser.parse_args()
    harness = parse_args(["--concurrency", args.concurrency, "--requests", str(args.requests)])
    stores: dict[str, str | None] = {"memory": None}
    if args.redis:
        stores["redis"] = args.redis
    print(f"$ python -m loadtests.keys_limits_overhead {' '.join(sys.argv[1:])}")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs")
    headers = {"Authorization": f"Bearer {KEY}"}
    with serve("loadtests.fast_upstream:create_app", "", {}) as (upstream, _):
        base = {UPSTREAM_ENV: upstream, "SDM_ROUTER_STORAGE__ENABLED": "false"}
        with serve(GATEWAY, "", base) as (without, off_pid):
            for name, url in stores.items():
                on = {**base, "SDM_ROUTER_AUTH": auth_env(args.keys)}
                if url is not None:
                    on["SDM_ROUTER_LIMITS__REDIS_URL"] = url
                    on["SDM_ROUTER_LIMITS__KEY_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
                with serve(GATEWAY, "", on) as (keyed, pid):
                    print(f"\nlimits in {name}: 'direct' = gateway without keys {without}, "
                          f"'gateway' = gateway with {args.keys} keys, rpm+tpm+in_flight on "
                          f"the one used {keyed}")  # fmt: skip
                    plan = Plan(
                        without, keyed, "auto", "auto", False, "raw", headers,
                        args.requests, harness.warmup, harness.batch,
                    )  # fmt: skip
                    levels = [int(value) for value in args.concurrency.split(",")]
                    asyncio.run(compare(harness, plan, off_pid, pid, levels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
