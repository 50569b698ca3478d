"""The console's overview and decisions pages with 100,000 decisions in the store.

Seeds a fresh store (SQLite in a temporary folder; PostgreSQL too when one answers at
``$SDM_ROUTER_TEST_POSTGRES_URL`` or 127.0.0.1:5432 db ``test``) with ``--decisions`` decisions over
the last 30 days on 4 routes, 2 user keys, a second attempt on a fifth of them and a label on a
tenth, then times what each page does on a request: the store's reads and the template's
rendering (the HTTP layer around them adds about a millisecond). Figures: median and p95 over
``--repeats`` renders, for the admin (every key) and for a user key (its own decisions), the
overview over 24 h and over 30 days, the decisions page unfiltered, filtered by route and
label, and its tenth page (by cursor).

Run: ``python -m benchmarks.console_pages`` (``--decisions``, ``--repeats``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from sdm_router.api.console.pages import BUCKETS, PAGE, TEMPLATES, overview_rows
from sdm_router.api.console.session import Viewer
from sdm_router.config import StorageSettings
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.storage.database import make_engine, migrate
from sdm_router.storage.store import DecisionStore
from sdm_router.storage.tables import attempts, decisions, feedback

ROUTES = ("auto", "code", "facts", "math")
DAY = 86400.0


def seed(url: str, count: int) -> None:
    """``count`` decisions with attempts and some labels, in batches."""
    engine = make_engine(url)
    migrate(engine)
    rng = random.Random(7)
    now = time.time()
    with engine.begin() as connection:
        for start in range(0, count, 5000):
            rows, tries, labels = [], [], []
            for n in range(start, min(start + 5000, count)):
                request_id = f"req-{n:07d}"
                decision = rng.choices(("accept", "abstain", "observed"), (80, 15, 5))[0]
                rows.append({
                    "request_id": request_id, "response_id": f"chatcmpl-{n}",
                    "created": now - rng.random() * 30 * DAY, "route": rng.choice(ROUTES),
                    "requested_model": "auto", "decision": decision, "reason": "verified",
                    "artifact_id": "bench", "prompt_tokens": 20, "completion_tokens": 8,
                    "key_name": rng.choice(("alice", "bob")), "conversation": None,
                    "answer": None, "answer_logprobs": None, "answer_model": "small",
                    "attempt_count": 2 if n % 5 == 0 else 1, "retrieved": n % 7 == 0,
                })  # fmt: skip
                for position in range(2 if n % 5 == 0 else 1):
                    tries.append({
                        "request_id": request_id, "position": position, "tier": position,
                        "model": "small", "action": decision, "reason": "verified",
                        "prediction": 1, "q": 30, "d": 0.5, "region_alpha": 0.97,
                        "region_alpha_lower": 0.96, "latency_ms": 20.0,
                        "retrieved_context": n % 7 == 0,
                    })  # fmt: skip
                if n % 10 == 0:
                    labels.append({
                        "request_id": request_id, "choice": 0, "created": now,
                        "label": "correct" if rng.random() < 0.9 else "incorrect", "note": None,
                        "current": True, "source": "human" if n % 20 == 0 else "judge:big",
                        "logprob": None,
                    })  # fmt: skip
            connection.execute(decisions.insert(), rows)
            connection.execute(attempts.insert(), tries)
            connection.execute(feedback.insert(), labels)
    engine.dispose()


async def timed(work: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, float]:
    """Median and p95 milliseconds of ``work`` (after one warm-up)."""
    await work()
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        await work()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    return statistics.median(spent), spent[min(len(spent) - 1, int(0.95 * len(spent)))]


async def measure(name: str, url: str, repeats: int) -> None:
    store = DecisionStore(StorageSettings(url=url), GatewayMetrics())
    await store.start()
    values: dict[str, Any] = {"csrf": "x", "signing_in": True}

    async def overview(owner: str | None, span: float) -> None:
        until = time.time()
        counts, series = await store.overview(until - span, until, owner, BUCKETS)
        routes = overview_rows(counts, series, {})
        TEMPLATES.get_template("overview.html").render(
            viewer=Viewer(None), routes=routes, window="24h", windows=["24h"], **values
        )

    async def listing(owner: str | None, pages: int = 1, **filters: Any) -> None:
        cursor = None
        for _ in range(pages):
            rows, cursor = await store.decisions(
                key_name=owner, limit=PAGE, cursor=cursor, **filters
            )
        TEMPLATES.get_template("decisions.html").render(
            viewer=Viewer(None), rows=rows, filters={}, following=None, routes=ROUTES,
            keep_text=True, **values,
        )  # fmt: skip

    cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("overview 24h, admin", lambda: overview(None, DAY)),
        ("overview 24h, user key", lambda: overview("alice", DAY)),
        ("overview 30d, admin", lambda: overview(None, 30 * DAY)),
        ("overview 30d, user key", lambda: overview("alice", 30 * DAY)),
        ("decisions, admin", lambda: listing(None)),
        ("decisions, user key", lambda: listing("alice")),
        ("decisions route+label, admin", lambda: listing(None, route="math", label="correct")),
        ("decisions unlabeled, user", lambda: listing("alice", label="unlabeled")),
        ("decisions 10th page (10 reads)", lambda: listing(None, pages=10)),
    ]
    for label, work in cases:
        median, p95 = await timed(work, repeats)
        print(f"{name:<10} {label:<34} median {median:8.1f} ms   p95 {p95:8.1f} ms")
    await store.close()


def postgres_url() -> str | None:
    url = os.environ.get(
        "SDM_ROUTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS console_bench CASCADE"))
            connection.execute(text("CREATE SCHEMA console_bench"))
        engine.dispose()
    except Exception as error:
        print(f"PostgreSQL skipped: {type(error).__name__}: {str(error).splitlines()[0]}")
        return None
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3Dconsole_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        targets = [("sqlite", f"sqlite:///{Path(folder) / 'bench.sqlite3'}")]
        pg = postgres_url()
        if pg is not None:
            targets.append(("postgresql", pg))
        for name, url in targets:
            started = time.perf_counter()
            seed(url, args.decisions)
            spent = time.perf_counter() - started
            print(f"{name}: seeded {args.decisions} decisions in {spent:.1f} s")
            asyncio.run(measure(name, url, args.repeats))


if __name__ == "__main__":
    main()
