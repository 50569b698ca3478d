"""The autopilot's loop on a real store (SQLite) with the real embedded encoder: labelled
decisions in, a candidate built by the data rule, gated on held-out rows with figures, promoted
to the registry, every step recorded; too few new labels do nothing; a refused candidate stays a
candidate; a second replica does not run while the first holds the lease.

The labelled answers are written straight into the store as the judge would leave them: a
right capital, or a hedge (easy to tell apart, so the gate's figures are about the loop, not
about how hard the facts are)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from sdm_router.config import Settings
from sdm_router.facts.tables import load_capitals
from sdm_router.observability.metrics import GatewayMetrics
from sdm_router.storage.database import make_engine, migrate
from sdm_router.storage.registry import ArtifactRegistry, ArtifactStatus
from sdm_router.storage.tables import decisions, feedback
from sdm_router.training.autopilot.loop import Autopilot
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.sdm import SDMModel, TrainingConfig
from tests.support.databases import sqlite_url

pytest_plugins = ["tests.integration.embedded_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
QUICK = TrainingConfig(exemplar_dimension=32, epochs=8, learning_rate=1e-3, max_neighbors=256)
MODEL = "openai:user-model"


def seed(url: str, first: int, count: int) -> None:
    """Two labelled answers for each of ``count`` countries from ``first`` on: the right
    capital (correct) and a hedge (incorrect)."""
    engine = make_engine(url)
    migrate(engine)
    countries = load_capitals()[first : first + count]
    now = time.time()
    with engine.begin() as connection:
        for country in countries:
            question = f"What is the capital of {country.country}?"
            for answer, label in (
                (f"The capital of {country.country} is {country.capital}.", "correct"),
                (f"I am not sure, perhaps it is somewhere near {country.country}.", "incorrect"),
            ):
                request_id = uuid.uuid4().hex
                connection.execute(
                    insert(decisions).values(
                        request_id=request_id, created=now, route="auto", decision="observed",
                        artifact_id="none", prompt_tokens=10, completion_tokens=10,
                        conversation=json.dumps([{"role": "user", "content": question}]),
                        answer=answer, answer_model=MODEL,
                    )
                )  # fmt: skip
                connection.execute(
                    insert(feedback).values(
                        request_id=request_id, choice=0, label=label, created=now,
                        current=True, source="judge:oracle",
                    )
                )  # fmt: skip
    engine.dispose()


def settings(url: str, folder: Path, **autopilot: Any) -> Settings:
    return Settings(
        backends={"user": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
        verifier={"encoder_model": "/nonexistent"},
        routes={"auto": {"tiers": [{"backend": "user"}], "accept_alpha": 0.9}},
        storage={"url": url, "keep_text": True},
        autopilot={"enabled": True, "folder": str(folder), "min_labels": 100, **autopilot},
    )


def test_labels_become_a_gated_candidate_and_every_step_is_recorded(
    tmp_path: Path, embedded_encoder: HiddenStateEncoder
) -> None:
    """The gate refuses what accepts too few held-out rows: here the quick training's regions
    do not reach accept_alpha 0.9 on 240 rows (the promotion path is not yet shown by a test)."""
    url = sqlite_url(tmp_path)
    seed(url, 0, 45)  # 90 labelled decisions: fewer than min_labels
    registry = ArtifactRegistry.connect(url)
    metrics = GatewayMetrics()
    config = settings(url, tmp_path / "artifacts", min_accepted=10_000)
    pilot = Autopilot(config, registry, metrics, training=QUICK, encoder=embedded_encoder)
    try:
        assert pilot.run_once() is None and registry.steps() == []
        seed(url, 45, 75)  # 240 in all
        last = pilot.run_once()
        steps = registry.steps()
        assert [(s.step, s.decision) for s in steps] == [("build", "built"), ("gate", "refused")]
        assert last is not None and last == steps[-1]
        build, gate = steps
        assert build.figures["labels"] == 240
        parts = (build.figures["support"], build.figures["calibration"], build.figures["held_out"])
        assert sum(parts) == 240 and all(part > 0 for part in parts)
        assert gate.figures["held_out_rows"] == build.figures["held_out"]
        assert "min_accepted" in gate.detail and gate.figures["live_accepted"] is None
        assert registry.live() is None
        candidate = registry.get(str(gate.artifact_id))
        assert candidate is not None and candidate.status is ArtifactStatus.CANDIDATE
        model = SDMModel.load(candidate.path, device="cpu")  # a real artifact, with lineage
        recorded = (model.contents.metadata or {})["sdmRouter"]
        assert [entry["model"] for entry in recorded["calibratedOn"]] == [MODEL]
        assert pilot.run_once() is None  # no new labels since the build
        other = Autopilot(config, registry, metrics, training=QUICK, encoder=embedded_encoder)
        assert other.run_once() is None  # the first holds the lease
        exported = metrics.registry.get_sample_value(
            "sdm_router_autopilot_events_total", {"event": "refused"}
        )
        assert exported == 1.0
    finally:
        registry.close()
