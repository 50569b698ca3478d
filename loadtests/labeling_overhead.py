"""What labelling costs a request: the overhead harness run with the gateway *without* a judge as
its "direct" side and the same gateway *with* one labelling every answer as its "gateway" side.

``python -m loadtests.labeling_overhead`` starts, each in its own process, the fast upstream,
a fast judge (the same responder, answering "correct. The answer is 42."), and the benchmark
gateway (one-tier route ``auto``, ``NoopVerifier``, the decision store on SQLite) twice: with no
``labeling`` section, and with ``labeling.judge`` naming the judge at ``--sample-rate`` (1.0:
every answer is sent to the judge and its label written to the store). Batches alternate ABBA
between the two, so "overhead" is what judging off the request path costs a request, and the
last lines say how many answers the judge labelled meanwhile (a judge that labels nothing would
cost nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import urllib.request

from fastapi import FastAPI

from loadtests.overhead import (
    UPSTREAM_ENV,
    Plan,
    _describe,
    format_table,
    parse_args,
    run_level,
    serve,
)

JUDGE_ENV = "LOADTEST_JUDGE_URL"
SAMPLE_ENV = "LOADTEST_SAMPLE_RATE"
GATEWAY = "loadtests.labeling_overhead:gateway_app"


def gateway_app() -> FastAPI:
    """``uvicorn --factory`` target: ``loadtests.overhead``'s gateway, labelling every answer
    with the judge at ``LOADTEST_JUDGE_URL`` when it is set."""
    from loadtests.noop_verifier import NoopVerifier
    from sdm_router.config import Settings
    from sdm_router.main import build_app
    from sdm_router.observability.metrics import GatewayMetrics

    backends = {
        "fast": {"type": "openai", "base_url": f"{os.environ[UPSTREAM_ENV]}/v1", "model": "good"}
    }
    labeling = None
    if os.environ.get(JUDGE_ENV):
        backends["judge"] = {
            "type": "openai", "base_url": f"{os.environ[JUDGE_ENV]}/v1", "model": "judge",
        }  # fmt: skip
        labeling = {
            "judge": "judge", "sample_rate": float(os.environ.get(SAMPLE_ENV, "1.0")),
            "calls_per_minute": 1_000_000, "queue_size": 10_000,
        }  # fmt: skip
    settings = Settings(
        backends=backends,
        verifier={"artifact": "/nonexistent/noop", "encoder_model": "/nonexistent"},
        routes={"auto": {"tiers": [{"backend": "fast"}]}},
        server={"max_concurrency": 4096},
        labeling=labeling,
    )
    return build_app(settings, verifier=NoopVerifier(), metrics=GatewayMetrics())


def labelling_counts(url: str) -> dict[str, float]:
    """The judged gateway's labelling events so far."""
    prefix = "sdm_router_labeling_events_total{event="
    counts = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(prefix):
                name = line[len(prefix) + 1 : line.index('"}')]
                counts[name] = float(line.rsplit(" ", 1)[1])
    return {name: count for name, count in counts.items() if count}


async def compare(harness: argparse.Namespace, plan: Plan, pid: int) -> None:
    """Run every level, print the table and the p50 ratio (labelling on / off) per level."""
    results = []
    for level in (int(value) for value in harness.concurrency.split(",")):
        results.append(await run_level(plan, level, pid, ()))
        print(f"  done: concurrency {level}", file=sys.stderr, flush=True)
    print(format_table(results))
    for result in results:
        off, on = result.direct.quantile(50), result.gateway.quantile(50)
        print(
            f"c={result.concurrency}: p50 labelling off {off * 1000:.2f} ms, on "
            f"{on * 1000:.2f} ms, ratio on/off {on / off:.3f}"
        )
    print("\n".join(_describe(harness, results)))


def main() -> int:
    """Start the servers and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sample-rate", type=float, default=1.0)
    args = parser.parse_args()
    harness = parse_args(["--concurrency", args.concurrency, "--requests", str(args.requests)])
    print(f"$ python -m loadtests.labeling_overhead {' '.join(sys.argv[1:])}")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs")
    with (
        serve("loadtests.fast_upstream:create_app", "", {}) as (upstream, _),
        serve("loadtests.fast_upstream:create_judge", "", {}) as (judge, _),
    ):
        base = {UPSTREAM_ENV: upstream}
        off = {**base, "SDM_ROUTER_STATE_DIR": tempfile.mkdtemp(prefix="labeling-off-")}
        on = {
            **base, JUDGE_ENV: judge, SAMPLE_ENV: str(args.sample_rate),
            "SDM_ROUTER_STATE_DIR": tempfile.mkdtemp(prefix="labeling-on-"),
        }  # fmt: skip
        with serve(GATEWAY, "", off) as (without, _), serve(GATEWAY, "", on) as (judged, pid):
            print(
                f"'direct' = gateway without labelling {without}, 'gateway' = gateway whose "
                f"judge labels {args.sample_rate:.0%} of answers {judged} (both store on SQLite)"
            )
            plan = Plan(
                without, judged, "auto", "auto", False, "raw", {}, args.requests,
                harness.warmup, harness.batch,
            )  # fmt: skip
            asyncio.run(compare(harness, plan, pid))
            time.sleep(2.0)  # the judge's queue drains
            print(f"labelling on the judged gateway: {labelling_counts(judged)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
