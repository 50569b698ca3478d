"""``verifier update``: the part rule, recalibration against a grown support, the held-out
comparison and its refusal rule, lineage; on synthetic clusters with a toy encoder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from sdm_router.core.verdict import VerificationInput
from sdm_router.training.featurize import encode_records
from sdm_router.training.records import AnswerRecord
from sdm_router.training.report.metrics import admission_stats
from sdm_router.training.verifier_build import CLASS_NAMES
from sdm_router.training.verifier_update import (
    HeldOutComparison,
    UpdateOptions,
    UpdateRefused,
    UpdateRule,
    assign_parts,
    refusal_bar,
    update_verifier,
)
from sdm_router.verifier.sdm import SDMModel, TrainingConfig, train_model
from sdm_router.verifier.sdm.update import LabelledRows, attach_calibration_vectors, extend

DIMENSION = 6


class ClusterEncoder:
    """Reads the vector out of the answer text ("v:x0,x1,..."): the test decides the geometry."""

    fingerprint = "cluster-encoder-v1"
    identity: ClassVar[dict[str, str]] = {"model": "cluster"}
    representation: ClassVar[dict[str, str]] = {"provider": "test", "fingerprint": fingerprint}

    def encode(self, items: Sequence[VerificationInput]) -> np.ndarray[Any, Any]:
        return np.asarray(
            [[float(x) for x in item.response.split(":", 1)[1].split(",")] for item in items],
            dtype=np.float32,
        )


def _record(name: str, vector: np.ndarray[Any, Any], label: int) -> AnswerRecord:
    return AnswerRecord.from_json(
        {
            "id": name,
            "item_id": name,
            "group_id": name,
            "family": "synthetic",
            "variant": "imported",
            "question": name,
            "messages": [{"role": "user", "content": name}],
            "response": "v:" + ",".join(f"{x:.5f}" for x in vector),
            "token_logprobs": None,
            "label": label,
        }
    )


def _cluster(prefix: str, centre: float, label: int, count: int, seed: int) -> list[AnswerRecord]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        vector = rng.normal(0.0, 1.0, DIMENSION)
        vector[0] += centre
        rows.append(_record(f"{prefix}-{i}", vector, label))
    return rows


def _far_region(prefix: str, label: int, count: int, seed: int) -> list[AnswerRecord]:
    """Rows far out along the 'correct' direction: the adaptor predicts correct there, but the
    parent has no support nearby."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        vector = rng.normal(0.0, 0.3, DIMENSION)
        vector[0] += 9.0
        rows.append(_record(f"{prefix}-{i}", vector, label))
    return rows


def _mixed(prefix: str, count: int, seed: int) -> list[AnswerRecord]:
    # overlapping clusters, so calibration has errors to bound
    half = count // 2
    return _cluster(f"{prefix}-c", 1.5, 1, half, seed) + _cluster(
        f"{prefix}-w", -1.5, 0, half, seed + 1
    )


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> tuple[SDMModel, Path]:
    encoder = ClusterEncoder()
    train, calibration = _mixed("train", 400, 1), _mixed("cal", 400, 3)
    cache = tmp_path_factory.mktemp("cache")
    x_train = encode_records(train, encoder, cache, show_progress=False)  # type: ignore[arg-type]
    x_cal = encode_records(calibration, encoder, cache, show_progress=False)  # type: ignore[arg-type]
    config = TrainingConfig(
        exemplar_dimension=4, epochs=4, learning_rate=1e-2, max_neighbors=64, shuffle=False,
        class_names=CLASS_NAMES, device="cpu",
    )  # fmt: skip
    model = train_model(
        x_train,
        np.asarray([r.label for r in train]),
        x_cal,
        np.asarray([r.label for r in calibration]),
        config,
        ids_train=[r.id for r in train],
        ids_cal=[r.id for r in calibration],
    )
    path = model.save(tmp_path_factory.mktemp("parent") / "parent.sdmkitmodel")
    return SDMModel.load(path, device="cpu"), path


def _rows(records: list[AnswerRecord]) -> LabelledRows:
    vectors = encode_records(records, ClusterEncoder(), None, show_progress=False)  # type: ignore[arg-type]
    if not records:
        vectors = np.zeros((0, DIMENSION + 5), np.float32)
    return LabelledRows(
        vectors, np.asarray([r.label for r in records], np.int64), tuple(r.id for r in records)
    )


def test_the_rule_keeps_groups_whole_and_is_stable() -> None:
    rule = UpdateRule(held_out=0.2, support=0.4)
    parts = [rule.part(f"group-{i}") for i in range(4000)]
    shares = {
        name: parts.count(name) / len(parts) for name in ("held_out", "support", "calibration")
    }
    assert shares["held_out"] == pytest.approx(0.2, abs=0.03)
    assert shares["support"] == pytest.approx(0.4, abs=0.03)
    assert [rule.part(f"group-{i}") for i in range(4000)] == parts  # the same group, the same part
    records = [_record(f"r{i}", np.zeros(DIMENSION), 1) for i in range(6)]
    same_group = [
        AnswerRecord.from_json({**r.to_json(), "group_id": "one conversation"}) for r in records
    ]
    assigned, skipped = assign_parts(same_group, rule, known_ids={"r0"})
    assert skipped == 1
    assert sum(1 for rows in assigned.values() if rows) == 1  # never straddles parts
    with pytest.raises(ValueError, match="leaving room for calibration"):
        UpdateRule(held_out=0.5, support=0.5)


def test_calibration_exemplars_round_trip_and_extend_with_nothing_reproduces_the_parent(
    parent: tuple[SDMModel, Path],
) -> None:
    model, _ = parent
    assert model.contents.calibration_vectors is not None
    assert model.contents.calibration_vectors.shape == (400, 4)
    same = extend(model, _rows([]), _rows([]))
    assert same.artifact_id != model.artifact_id
    for ours, theirs in zip(same.contents.distance_cdfs, model.contents.distance_cdfs, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert same.contents.regions == model.contents.regions
    assert same.contents.calibration_rows == model.contents.calibration_rows


def test_attach_recovers_the_exemplars_and_refuses_other_data(
    parent: tuple[SDMModel, Path],
) -> None:
    model, _ = parent
    stripped = SDMModel(
        __import__("dataclasses").replace(model.contents, calibration_vectors=None), device="cpu"
    )
    calibration = _mixed("cal", 400, 3)
    attached = attach_calibration_vectors(stripped, _rows(calibration[::-1]))  # any order
    assert attached.contents.calibration_vectors is not None
    assert model.contents.calibration_vectors is not None
    np.testing.assert_allclose(
        attached.contents.calibration_vectors, model.contents.calibration_vectors, atol=1e-5
    )
    assert attached.artifact_id == model.artifact_id  # the same model: scoring is unchanged
    with pytest.raises(Exception, match="not the artifact's calibration rows"):
        attach_calibration_vectors(stripped, _rows(calibration[:-1]))
    moved = [_record(r.id, np.full(DIMENSION, 3.0), r.label) for r in calibration]
    with pytest.raises(Exception, match="recomputed logits differ"):
        attach_calibration_vectors(stripped, _rows(moved))
    with pytest.raises(Exception, match="no calibration exemplars"):
        extend(stripped, _rows([]), _rows([]))


def _options(tmp_path: Path, **overrides: Any) -> UpdateOptions:
    return UpdateOptions(
        out=tmp_path / "updated.sdmkitmodel", data=tmp_path, alpha=0.9, show_progress=False,
        **overrides,
    )  # fmt: skip


def test_rows_in_a_new_region_raise_admission_there(
    parent: tuple[SDMModel, Path], tmp_path: Path
) -> None:
    model, _ = parent
    new = [replace(row, model="cluster-model") for row in _far_region("new", 1, 400, 11)]
    outcome = update_verifier(model, new, ClusterEncoder(), _options(tmp_path))  # type: ignore[arg-type]
    comparison = outcome.comparison
    assert comparison.rows == outcome.counts["held_out"] > 40
    # the parent has no support near the new region: it accepts none of it ...
    assert comparison.parent.accepted == 0
    # ... the updated artifact, grown there, accepts most of it, all correctly
    assert comparison.updated.acceptance_rate > 0.5
    assert comparison.updated.precision == 1.0
    assert outcome.written
    written = SDMModel.load(tmp_path / "updated.sdmkitmodel", device="cpu")
    assert written.support_size == model.support_size + outcome.counts["support"]
    assert len(written.contents.calibration_rows or []) == 400 + outcome.counts["calibration"]
    lineage = (written.contents.metadata or {})["sdmRouter"]["lineage"]
    # the rows' model joins what the artifact records it was calibrated on
    added = outcome.counts["support"] + outcome.counts["calibration"]
    assert (written.contents.metadata or {})["sdmRouter"]["calibratedOn"] == [
        {"model": "cluster-model", "rows": added}
    ]
    assert lineage["parentArtifactId"] == model.artifact_id
    assert lineage["mode"] == "recalibrate"
    assert lineage["rule"]["heldOut"] == 0.2
    assert sorted(lineage["added"]["held_out"]) == sorted(
        r.id for r in new if UpdateRule().part(r.group_id) == "held_out"
    )
    assert lineage["heldOutComparison"]["updated"]["acceptedPrecision"] == 1.0
    # the held-out rows never reached support or calibration
    held = set(lineage["added"]["held_out"])
    calibration_ids = {row["id"] for row in written.contents.calibration_rows or []}
    assert held.isdisjoint(written.contents.support.ids)
    assert held.isdisjoint(calibration_ids)


def test_labels_that_the_held_out_rows_contradict_are_refused(
    parent: tuple[SDMModel, Path], tmp_path: Path
) -> None:
    model, _ = parent
    rule = UpdateRule()
    # Support and calibration say the new region's answers are right; the held-out rows (the
    # truth) say they are wrong: the update would accept wrong answers, so it is refused.
    rows = _far_region("poison", 1, 400, 12)
    rows = [
        AnswerRecord.from_json({**r.to_json(), "label": 0})
        if rule.part(r.group_id) == "held_out" else r
        for r in rows
    ]  # fmt: skip
    outcome = update_verifier(model, rows, ClusterEncoder(), _options(tmp_path))  # type: ignore[arg-type]
    assert outcome.comparison.parent.accepted == 0
    assert outcome.comparison.bar == 0.9
    assert outcome.comparison.updated.precision == 0.0
    assert not outcome.written
    assert not (tmp_path / "updated.sdmkitmodel").exists()
    forced = update_verifier(model, rows, ClusterEncoder(), _options(tmp_path, force=True))  # type: ignore[arg-type]
    assert forced.written and (tmp_path / "updated.sdmkitmodel").exists()


def test_rows_the_parent_already_holds_are_skipped_and_nothing_new_is_refused(
    parent: tuple[SDMModel, Path], tmp_path: Path
) -> None:
    model, _ = parent
    with pytest.raises(UpdateRefused, match="no new rows"):
        update_verifier(model, _mixed("train", 400, 1), ClusterEncoder(), _options(tmp_path))  # type: ignore[arg-type]


def test_the_bar_is_alpha_when_the_parent_met_it_else_the_parents_precision() -> None:
    labels = np.asarray([1, 1, 1, 1, 0])
    met = admission_stats(np.asarray([1, 1, 1, 1, 0], bool), np.ones(5, np.int64), labels, 0.9)
    missed = admission_stats(np.ones(5, bool), np.ones(5, np.int64), labels, 0.9)
    none = admission_stats(np.zeros(5, bool), np.ones(5, np.int64), labels, 0.9)
    assert refusal_bar(met, 0.9) == 0.9
    assert refusal_bar(missed, 0.9) == pytest.approx(0.8)
    assert refusal_bar(none, 0.9) == 0.9
    assert HeldOutComparison(5, missed, missed, 0.8).passes
    assert not HeldOutComparison(5, met, missed, 0.9).passes
    assert HeldOutComparison(5, met, none, 0.9).passes  # accepting nothing breaks no promise
    assert json.dumps(HeldOutComparison(5, met, none, 0.9).to_json())


def test_an_update_keeps_the_parents_data_mix_but_holds_out_every_family() -> None:
    from types import SimpleNamespace

    from sdm_router.training.records import AnswerRecord
    from sdm_router.training.verifier_update import apply_data_mix

    def row(family: str) -> AnswerRecord:
        return AnswerRecord.from_json({
            "id": f"{family}/1#greedy", "item_id": f"{family}/1", "family": family,
            "variant": "greedy", "question": "q", "label": 1, "token_logprobs": None,
            "messages": [{"role": "user", "content": "q"}], "response": "r",
        })  # fmt: skip

    parts = {
        name: [row("capitals"), row("dates")] for name in ("support", "calibration", "held_out")
    }

    def parent(metadata: dict[str, object]) -> Any:
        return SimpleNamespace(contents=SimpleNamespace(metadata={"sdmRouter": metadata}))

    mixed = apply_data_mix(
        parent({"minFamilyAccuracy": 0.15, "verifierFamilies": ["capitals"]}), parts
    )
    assert (
        [r.family for r in mixed["support"]]
        == [r.family for r in mixed["calibration"]]
        == ["capitals"]
    )
    assert [r.family for r in mixed["held_out"]] == ["capitals", "dates"]
    assert apply_data_mix(parent({}), parts) == parts  # built without a mix: every family
