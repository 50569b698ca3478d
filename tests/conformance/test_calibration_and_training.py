"""Regions from cached calibration rows, artifacts both ways, and the training replay."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdm_router.verifier.sdm import SDMModel
from sdm_router.verifier.sdm.calibration import fit_nested_regions
from sdm_router.verifier.sdm.training import TrainingConfig, train_model

from .conftest import K, M, columns, reference

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("resolution", [0.05, 0.01])
def test_regions_from_cached_calibration_rows_are_bit_exact(
    reference_model_path: Path, resolution: float
) -> None:
    from reexpress_sdm.calibration import NestedCalibrator

    rows = reference.load_artifact(reference_model_path).calibration_rows
    sdm = np.asarray([r["sdm"] for r in rows], np.float32)
    q_prime = np.asarray([r["qPrime"] for r in rows], np.float32)
    labels = np.asarray([r["label"] for r in rows], np.int64)
    predictions = np.asarray([r["prediction"] for r in rows], np.int64)
    theirs = NestedCalibrator(2, resolution).fit(sdm, q_prime, labels, predictions)
    ours = fit_nested_regions(sdm, q_prime, labels, predictions, resolution)
    assert len(ours) == len(theirs) >= 1
    for a, b in zip(ours, theirs, strict=True):
        assert (a.alpha, a.minimum_rescaled_similarity) == (b.alpha, b.minimum_rescaled_similarity)
        assert a.output_thresholds == b.output_thresholds


def test_training_replay_and_reference_reads_our_artifact(
    data: dict[str, Any], tmp_path: Path
) -> None:
    from reexpress_sdm.iterative_training import train_iterations
    from reexpress_sdm.training import TrainingConfig as ReferenceConfig

    # Without exact duplicates: for duplicates we compute d₀ = 0 exactly while the reference's
    # norm expansion may give a tiny positive value, shifting self-ranked d by 1/n (docs/sdm.md).
    (xt, yt), (xc, yc) = data["train_unique"], data["calibration"]
    theirs = train_iterations(
        ReferenceConfig(number_of_classes=2, exemplar_dimension=M, epochs=3, max_neighbors=K,
                        seed=3, learning_rate=1e-3),
        xt, yt, xc, yc, number_of_random_shuffles=2, backend_options={"device": "cpu"},
    )  # fmt: skip
    config = TrainingConfig(
        exemplar_dimension=M, epochs=3, max_neighbors=K, seed=3, learning_rate=1e-3,
        shuffles=2, device="cpu",
    )  # fmt: skip
    ours = train_model(xt, yt, xc, yc, config)
    run = ours.contents.metadata["trainingRun"] if ours.contents.metadata else {}
    assert (run["bestIteration"], run["bestEpoch"]) == (theirs.best_iteration, theirs.best_epoch)
    for a, b in zip(theirs.history, run["history"], strict=True):
        for key in ("balancedCalibrationSDMLoss", "balancedTrainingSDMLoss"):
            assert abs(a[key] - b[key]) <= 1e-4
        assert a["balancedMeanCalibrationQ"] == b["balancedMeanCalibrationQ"]
    np.testing.assert_allclose(
        ours.contents.weights.flatten(), _flat(theirs.artifact.weights), atol=1e-5
    )
    path = ours.save(tmp_path / "ours.sdmkitmodel")
    loaded = reference.load_artifact(path)  # accepted by the reference's strict validator
    assert loaded.model_id == ours.artifact_id
    rows = data["eval"][0]
    theirs_scores = reference.SDMModel(loaded, device="cpu").score(rows, nearest_exemplars=0)
    ours_scores = SDMModel.load(path, device="cpu").score(rows)
    np.testing.assert_array_equal(ours_scores.q, columns(theirs_scores, "q"))
    np.testing.assert_array_equal(
        ours_scores.centroid_region_alpha, columns(theirs_scores, "centroid_region_alpha")
    )


def _flat(weights: Any) -> np.ndarray:
    parts = (weights.projection_weight, weights.projection_bias, weights.classifier_weight,
             weights.classifier_bias)  # fmt: skip
    return np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in parts])
