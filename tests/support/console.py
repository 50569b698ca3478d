"""A keyed gateway for the console tests: its SQLite store seeded with decisions of two user
keys (one whose text holds HTML and script), over the fake upstream and fake verifier (whose
nearest exemplars are ``support-0``, ``support-1``, ...: ``support-0`` is a seeded decision, so
the console links that exemplar back to it)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from sdm_router.config import StorageSettings
from sdm_router.core.decisions import AttemptRecord, DecisionRecord
from sdm_router.core.generation import Message
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.storage.store import DecisionStore
from tests.support.databases import sqlite_url
from tests.support.gateway import fake_app
from tests.support.keys import key_entry
from tests.support.servers import serve_in_thread

ALICE, BOB, OPS = "sk-console-alice", "sk-console-bob", "sk-console-ops"
SCRIPT = "<script>document.title='pwned'</script>"
KEYS = {"keys": [key_entry("alice", ALICE), key_entry("bob", BOB)],
        "admin_keys": [key_entry("ops", OPS)]}  # fmt: skip


def seeded(request_id: str, key_name: str, question: str, answer: str, age_s: float,
           decision: str = "accept") -> DecisionRecord:  # fmt: skip
    """A decision with its text kept, made ``age_s`` seconds ago."""
    attempt = AttemptRecord(
        tier=0, model="good", action=decision, reason="verified", prediction=1, q=42, d=0.8,
        region_alpha=0.97, region_alpha_lower=0.96, latency_ms=12.5, retrieved_context=False,
    )  # fmt: skip
    return DecisionRecord(
        request_id=request_id, response_id=f"chatcmpl-{request_id}",
        created=time.time() - age_s, route="auto", requested_model="auto", decision=decision,
        reason="verified", artifact_id="fake-artifact-1", prompt_tokens=7,
        completion_tokens=5, key_name=key_name, attempts=(attempt,),
        conversation=(Message(role="user", content=question),), answer=answer,
        answer_model="good", keep_text=True,
    )  # fmt: skip


SEEDS = (
    seeded("support-0", "alice", f"Is this safe? {SCRIPT}", f"{SCRIPT} <b>forty-two</b>", 600),
    seeded("alice-1", "alice", "What is six times seven?", "The answer is 42.", 300),
    seeded("bob-1", "bob", "Bob's private question", "Bob's private answer", 200, "abstain"),
)


def seed(url: str) -> None:
    """Write ``SEEDS`` into the store at ``url`` (creating its tables)."""

    async def write() -> None:
        store = DecisionStore(StorageSettings(url=url, flush_interval_ms=10), GatewayMetrics())
        await store.start()
        for record in SEEDS:
            store.submit(record)
        await store.close()

    # on a thread of its own: the caller's may run an event loop (Playwright's sync API does)
    writer = threading.Thread(target=lambda: asyncio.run(write()))
    writer.start()
    writer.join()


@contextmanager
def console_gateway(
    upstream_url: str, folder: Path, *, keyed: bool = True, autopilot: bool = False
) -> Iterator[str]:
    """The gateway (keys unless ``keyed`` is false; following the artifact registry with
    ``autopilot``) over a seeded SQLite store; its URL."""
    url = sqlite_url(folder)
    seed(url)
    app = fake_app(
        upstream_url, auth=KEYS if keyed else {}, guarantee={"refresh_seconds": 0.1},
        storage={"url": url, "flush_interval_ms": 10, "keep_text": True},
        autopilot={"enabled": autopilot, "run_in": "separate"},
    )  # fmt: skip
    with serve_in_thread(app) as base:
        yield base


def csrf_of(page: str) -> str:
    """The CSRF token a rendered form carries."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def signed_in(base: str, key: str) -> httpx.Client:
    """A client holding a console session for ``key``."""
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/console/sign-in")
    reply = client.post("/console/sign-in", data={"key": key, "csrf": csrf_of(form.text)})
    assert reply.status_code == 303, reply.text
    return client
