"""Routing before generating, on and off, side by side in one run through the default route.

A mixed workload (multi-digit multiplication, string reversal, letter counting, capitals,
elements), each question in a framing of this benchmark's own ("Quick question: ...", "...
Thanks in advance."), so no prompt here is in any split the router or the verifier was built or
calibrated on. The embedded gateway serves it twice in this process, ``prompt_routing`` on, then
off (``SDM_ROUTER_ROUTES__AUTO__PROMPT_ROUTING=off`` does the same from the environment), each
time to ``--clients`` concurrent clients over HTTP. Printed per mode:

- median latency of requests that end in abstention, and of all requests;
- backend generations per request (attempts other than ``skip``);
- accepted answers, accepted-and-correct (the suites' exact checkers), precision;
- accepted-and-correct answers lost to skipping: questions accepted and correct with routing
  off but not with it on, as a share of those accepted and correct with routing off.

Run: ``python -m benchmarks.prompt_routing [--per-family 6] [--clients 4]``. Figures depend on
the machine and what else runs on it; compare the two modes of one run only.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from sdm_router.config import ServerSettings, Settings, load_settings
from sdm_router.main import build_app
from sdm_router.training.suites.base import TaskItem
from sdm_router.training.suites.registry import get_family

FAMILIES = ("arithmetic", "reversal", "letter_count", "capitals", "elements")
FRAMES = ("Quick question: {q}", "{q} Thanks in advance.", "I was wondering. {q}")


def _multi_digit(item_id: str) -> bool:
    """Whether both operands of ``arithmetic/mul/<a>/<b>/p<k>`` have two digits or more."""
    a, b = item_id.split("/")[2:4]
    return len(a) >= 2 and len(b) >= 2


def workload(per_family: int, seed: int) -> list[TaskItem]:
    """``per_family`` items of each family (multiplication only with two- and three-digit
    operands), in this benchmark's framings."""
    items: list[TaskItem] = []
    for family in FAMILIES:
        drawn = get_family(family).generate(seed)
        if family == "arithmetic":
            drawn = [i for i in drawn if i.kind == "mul" and _multi_digit(i.id)]
        for number, item in enumerate(drawn[:per_family]):
            frame = FRAMES[number % len(FRAMES)]
            items.append(
                TaskItem(
                    id=item.id, family=item.family, question=frame.format(q=item.question),
                    answer=item.answer, aliases=item.aliases, checker=item.checker,
                    kind=item.kind,
                )
            )  # fmt: skip
    return items


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's result."""

    item: TaskItem
    decision: str
    reason: str
    seconds: float
    generations: int
    correct: bool


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The gateway for ``settings`` on a local port until the block ends."""
    config = uvicorn.Config(
        build_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on",
        access_log=False, timeout_keep_alive=math.ceil(ServerSettings().keep_alive_seconds),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def ask(client: httpx.Client, item: TaskItem) -> Outcome:
    """One chat completion on the default route, checked."""
    started = time.perf_counter()
    response = client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": item.question}]},
    )
    seconds = time.perf_counter() - started
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    verification = body["verification"]
    text = body["choices"][0]["message"]["content"] or ""
    generations = sum(1 for a in verification["attempts"] if a["action"] != "skip")
    accepted = verification["decision"] == "accept"
    return Outcome(
        item, verification["decision"], verification["reason"], seconds, generations,
        accepted and item.checker.check(text).correct,
    )  # fmt: skip


def run_mode(settings: Settings, items: list[TaskItem], clients: int) -> list[Outcome]:
    """The workload through one gateway, ``clients`` at once."""
    with (
        serving(settings) as url,
        httpx.Client(base_url=url, timeout=600) as client,
        ThreadPoolExecutor(clients) as pool,
    ):
        ask(client, items[0])  # warm up (first forward, caches)
        return list(pool.map(lambda item: ask(client, item), items))


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    """The figures of one mode."""
    abstained = [o.seconds for o in outcomes if o.decision == "abstain"]
    accepted = [o for o in outcomes if o.decision == "accept"]
    correct = sum(o.correct for o in accepted)
    return {
        "requests": len(outcomes),
        "abstained": len(abstained),
        "median_abstain_ms": statistics.median(abstained) * 1000 if abstained else math.nan,
        "median_ms": statistics.median(o.seconds for o in outcomes) * 1000,
        "generations_per_request": sum(o.generations for o in outcomes) / len(outcomes),
        "accepted": len(accepted),
        "accepted_correct": correct,
        "precision": correct / len(accepted) if accepted else math.nan,
    }


def with_routing(settings: Settings, on: bool) -> Settings:
    """``settings`` with ``prompt_routing`` set on every route."""
    routes = {
        name: route.model_copy(update={"prompt_routing": on})
        for name, route in settings.routes.items()
    }
    storage = settings.storage.model_copy(update={"enabled": False})
    return settings.model_copy(update={"routes": routes, "storage": storage})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=6)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = load_settings()
    items = workload(args.per_family, args.seed)
    print(f"# prompt routing on/off: {len(items)} requests, {args.clients} clients, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")  # fmt: skip
    results = {
        mode: run_mode(with_routing(settings, mode == "on"), items, args.clients)
        for mode in ("on", "off")
    }
    figures = {mode: summary(outcomes) for mode, outcomes in results.items()}
    print("| figure | routing on | routing off |\n|---|---|---|")
    for key in figures["on"]:
        on, off = figures["on"][key], figures["off"][key]
        print(f"| {key} | {on:.4g} | {off:.4g} |")
    right_off = {o.item.id for o in results["off"] if o.correct}
    right_on = {o.item.id for o in results["on"] if o.correct}
    lost = right_off - right_on
    share = len(lost) / len(right_off) if right_off else math.nan
    print(f"\naccepted-and-correct lost to skipping: {len(lost)} of {len(right_off)} ({share:.1%})")
    saved = 1 - figures["on"]["generations_per_request"] / figures["off"]["generations_per_request"]
    print(f"backend generations per request: {saved:.1%} fewer with routing on")
    print("\nper family (on / off): decisions, generations")
    for family in FAMILIES:
        cells = []
        for mode in ("on", "off"):
            rows = [o for o in results[mode] if o.item.family == family]
            decisions = "".join(o.decision[:2] for o in rows)
            cells.append(f"{decisions} gens={sum(o.generations for o in rows)}")
        print(f"  {family}: {cells[0]}  |  {cells[1]}")


if __name__ == "__main__":
    main()
