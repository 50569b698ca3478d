"""Replicas follow the artifact registry: two real gateway servers sharing one PostgreSQL store
pick up a promoted artifact without a restart and without a failed request; a refused artifact
leaves the old one serving; a rollback takes both back to the previous artifact, then to
observe mode; and the guarantee's rollback under an adversarial judge goes through the
registry. The upstream is the fake one, the judge the oracle (real HTTP servers); the verifier
is the fake one (it takes any artifact but one named "corrupt")."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from sdm_router.storage.registry import ArtifactRegistry, ArtifactStatus
from tests.fakes import FakeVerifier
from tests.support.databases import postgres_schema_url, sqlite_url
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.oracle_judge import OracleJudge
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration
RIGHT = "What is six times seven?"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


@contextmanager
def replica(
    upstream_url: str, store_url: str, extra_backends: dict[str, Any] | None = None, **changes: Any
) -> Iterator[str]:
    app = fake_app(
        upstream_url,
        verifier=FakeVerifier(),
        extra_backends=extra_backends,
        storage={"url": store_url, "flush_interval_ms": 20, "keep_text": True},
        autopilot={"enabled": True, "poll_seconds": 0.2},
        **changes,
    )
    with serve_in_thread(app) as url:
        yield url


def serving(url: str) -> str:
    components = httpx.get(f"{url}/readyz", timeout=10).json()["components"]
    return str(components["verifier"]["artifact_id"])


def route_mode(url: str, route: str = "auto") -> str:
    return str(httpx.get(f"{url}/readyz", timeout=10).json()["routes"][route]["mode"])


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


class Load:
    """Clients asking every replica in turn until stopped; counts replies that are not 200."""

    def __init__(self, urls: list[str], clients: int = 4) -> None:
        self.urls, self.sent = urls, 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(i,)) for i in range(clients)]

    def _ask(self, index: int) -> None:
        body = {"model": "auto", "messages": [{"role": "user", "content": RIGHT}]}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                url = self.urls[(index + self.sent) % len(self.urls)]
                try:
                    reply = client.post(f"{url}/v1/chat/completions", json=body)
                    if reply.status_code != 200:
                        self.failed.append(f"{reply.status_code} {reply.text[:200]}")
                except httpx.HTTPError as error:
                    self.failed.append(repr(error))
                self.sent += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def register(registry: ArtifactRegistry, name: str, parent: str | None = None) -> None:
    registry.register(
        name, f"/models/{name}.sdmkitmodel", parent_id=parent, routes=("auto",), figures={}
    )


def test_two_replicas_on_postgresql_follow_promotions_and_rollbacks_without_a_failed_request(
    upstream: tuple[str, FakeUpstream], postgres_url: str
) -> None:
    registry = ArtifactRegistry.connect(postgres_url)
    try:
        with ExitStack() as stack:
            urls = [stack.enter_context(replica(upstream[0], postgres_url)) for _ in range(2)]
            assert {serving(url) for url in urls} == {"fake-artifact"}  # nothing promoted yet
            with Load(urls) as load:
                register(registry, "first")
                registry.promote("first")
                pickup = wait_for(lambda: all(serving(url) == "first" for url in urls))
                register(registry, "second", parent="first")
                registry.promote("second")
                wait_for(lambda: all(serving(url) == "second" for url in urls))
                register(registry, "corrupt-third", parent="second")
                registry.promote("corrupt-third")  # refused: "second" keeps serving
                time.sleep(1.0)
                assert {serving(url) for url in urls} == {"second"}
                registry.roll_back("corrupt-third")
                registry.roll_back("second")
                wait_for(lambda: all(serving(url) == "first" for url in urls))
                registry.roll_back("first")  # nothing earlier: observe mode
                wait_for(lambda: all(route_mode(url) == "observe" for url in urls))
                time.sleep(0.5)
            assert load.failed == [] and load.sent > 20, (load.sent, load.failed[:3])
            assert pickup < 30
            metrics = httpx.get(f"{urls[0]}/metrics", timeout=10).text
            assert 'sdm_router_autopilot_events_total{event="follow_refused"} 1.0' in metrics
    finally:
        registry.close()


def test_a_breached_guarantee_rolls_the_registry_back_to_the_previous_artifact(
    upstream: tuple[str, FakeUpstream], tmp_path: Any
) -> None:
    oracle = OracleJudge(answers={RIGHT: "42"})
    oracle.mode = "adversarial"  # every accepted answer labelled incorrect
    store_url = sqlite_url(tmp_path)
    registry = ArtifactRegistry.connect(store_url)
    register(registry, "previous")
    registry.promote("previous")
    register(registry, "breaking", parent="previous")
    registry.promote("breaking")
    try:
        with serve_in_thread(oracle) as judge_url:
            judge = {
                "type": "openai", "base_url": f"{judge_url}/v1", "model": "oracle",
                "timeouts": {"connect": 2, "read": 5, "total": 5},
                "retries": {"max_attempts": 1}, "circuit_breaker": {"enabled": False},
            }  # fmt: skip
            with replica(
                upstream[0], store_url, extra_backends={"judge": judge},
                routes={"auto": {"tiers": [{"backend": "good"}], "on_breach": "rollback"}},
                labeling={"judge": "judge", "sample_rate": 1.0, "calls_per_minute": 100_000},
                guarantee={"refresh_seconds": 0.1},
            ) as url:  # fmt: skip
                wait_for(lambda: serving(url) == "breaking")
                body = {"model": "auto", "messages": [{"role": "user", "content": RIGHT}]}
                answers = 0
                while serving(url) == "breaking" and answers < 100:
                    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
                    assert reply.status_code == 200, reply.text
                    answers += 1
                    time.sleep(0.05)
                assert serving(url) == "previous", f"no rollback after {answers} answers"
        statuses = {record.id: record.status for record in registry.artifacts()}
        assert statuses == {"previous": ArtifactStatus.LIVE, "breaking": ArtifactStatus.ROLLED_BACK}
        (step,) = [step for step in registry.steps() if step.step == "rollback"]
        assert step.artifact_id == "breaking" and step.figures["status"] == "breached"
        assert "back to artifact previous" in step.detail
    finally:
        registry.close()
