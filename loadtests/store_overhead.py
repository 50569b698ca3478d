"""What the decision store costs a request: the overhead harness run with the gateway *without*
the store as its "direct" side and the same gateway *with* it as its "gateway" side.

``python -m loadtests.store_overhead`` starts the fast upstream and, each in its own process,
the benchmark gateway (``loadtests.overhead:gateway_app``, ``NoopVerifier``) twice: with
``storage.enabled: false`` and with the store on SQLite (then, with ``--postgres URL``, on
PostgreSQL). Batches alternate ABBA between the two, so "overhead" is the store's cost and
"rps" compares requests per second with the store off and on, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

from loadtests.overhead import UPSTREAM_ENV, Plan, _benchmark, parse_args, serve

GATEWAY = "loadtests.overhead:gateway_app"


def main() -> int:
    """Run the comparison for each store and print one table per store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--postgres", default=None, help="also measure this PostgreSQL URL")
    args = parser.parse_args()
    harness = parse_args(["--concurrency", args.concurrency, "--requests", str(args.requests)])
    stores = {"sqlite": None}
    if args.postgres:
        stores["postgresql"] = args.postgres
    print(f"$ python -m loadtests.store_overhead {' '.join(sys.argv[1:])}")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs")
    with serve("loadtests.fast_upstream:create_app", "", {}) as (upstream, _):
        base = {UPSTREAM_ENV: upstream}
        off = {**base, "SDM_ROUTER_STORAGE__ENABLED": "false"}
        with serve(GATEWAY, "", off) as (without, _):
            for name, url in stores.items():
                state = tempfile.mkdtemp(prefix="store-overhead-")
                on = {**base, "SDM_ROUTER_STATE_DIR": state}
                if url is not None:
                    on["SDM_ROUTER_STORAGE__URL"] = url
                with serve(GATEWAY, "", on) as (with_store, pid):
                    print(f"\nstore {name}: 'direct' = gateway without the store {without}, "
                          f"'gateway' = gateway with it {with_store}")  # fmt: skip
                    plan = Plan(
                        without, with_store, "auto", "auto", False, "raw", {},
                        args.requests, harness.warmup, harness.batch,
                    )  # fmt: skip
                    asyncio.run(_benchmark(harness, pid, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
