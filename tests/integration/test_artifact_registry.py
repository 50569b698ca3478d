"""The artifact registry on SQLite and PostgreSQL: lineage, promotion, rollback to the previous
artifact (or to none), the step record, and the lease only one holder gets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sdm_router.storage.registry import ArtifactRegistry, ArtifactStatus
from tests.support.databases import database_url

__all__ = ["database_url"]  # the fixture, parametrized over both databases


@pytest.fixture
def registry(database_url: str) -> Iterator[ArtifactRegistry]:
    registry = ArtifactRegistry.connect(database_url)
    yield registry
    registry.close()


def _register(registry: ArtifactRegistry, name: str, parent: str | None = None) -> None:
    registry.register(
        name, f"/artifacts/{name}.sdmkitmodel", parent_id=parent, routes=("auto",),
        figures={"accepted": 20},
    )  # fmt: skip


def test_promotion_retires_the_live_artifact_and_keeps_lineage(
    registry: ArtifactRegistry,
) -> None:
    _register(registry, "a1")
    assert registry.live() is None
    assert registry.promote("a1") is None
    _register(registry, "a2", parent="a1")
    assert registry.promote("a2") == "a1"
    live = registry.live()
    assert live is not None and live.id == "a2" and live.parent_id == "a1"
    assert live.routes == ("auto",) and live.figures == {"accepted": 20}
    statuses = {record.id: record.status for record in registry.artifacts()}
    assert statuses == {"a1": ArtifactStatus.RETIRED, "a2": ArtifactStatus.LIVE}
    with pytest.raises(KeyError, match="nope"):
        registry.promote("nope")


def test_rollback_returns_to_the_previous_artifact_once_then_to_none(
    registry: ArtifactRegistry,
) -> None:
    _register(registry, "a1")
    registry.promote("a1")
    _register(registry, "a2", parent="a1")
    registry.promote("a2")
    done, live = registry.roll_back("a2")
    assert done and live is not None and live.id == "a1"
    again, live_again = registry.roll_back("a2")  # a second replica: nothing changes
    assert not again and live_again is not None and live_again.id == "a1"
    done, live = registry.roll_back("a1")  # nothing retired left: observe mode
    assert done and live is None
    statuses = {record.id: record.status for record in registry.artifacts()}
    assert statuses == {"a1": ArtifactStatus.ROLLED_BACK, "a2": ArtifactStatus.ROLLED_BACK}


def test_steps_read_back_oldest_first(registry: ArtifactRegistry) -> None:
    first = registry.record_step("gate", "refused", "too few accepted", figures={"accepted": 3})
    registry.record_step("promote", "promoted", "a1 live", route="auto", artifact_id="a1")
    steps = registry.steps()
    assert [(s.step, s.decision) for s in steps] == [("gate", "refused"), ("promote", "promoted")]
    assert steps[0].figures == {"accepted": 3} and steps[1].artifact_id == "a1"
    assert [s.step for s in registry.steps(after=first.id)] == ["promote"]
    assert [s.step for s in registry.steps(limit=1)] == ["promote"]


def test_only_one_holder_gets_the_lease_until_it_expires(registry: ArtifactRegistry) -> None:
    assert registry.acquire("autopilot", "replica-1", ttl=30)
    assert not registry.acquire("autopilot", "replica-2", ttl=30)
    assert registry.acquire("autopilot", "replica-1", ttl=30)  # renewal
    registry.release("autopilot", "replica-1")
    assert registry.acquire("autopilot", "replica-2", ttl=0.2)
    assert not registry.acquire("autopilot", "replica-1", ttl=30)
    time.sleep(0.3)  # expired: the next one takes it
    assert registry.acquire("autopilot", "replica-1", ttl=30)
    held = registry.holder("autopilot")
    assert held is not None and held[0] == "replica-1"
