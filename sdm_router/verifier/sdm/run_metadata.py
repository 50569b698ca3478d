"""Portable training history (``metadata.trainingRun``) and cached calibration rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .epochs import IterationOutcome
    from .training import TrainingConfig

_METRICS = (
    "balancedTrainingSDMLoss", "balancedCalibrationSDMLoss", "balancedTrainingCELoss",
    "balancedCalibrationCELoss", "balancedTrainingAccuracy", "balancedCalibrationAccuracy",
    "balancedMeanTrainingQ", "balancedMeanCalibrationQ",
)  # fmt: skip


def _history_row(row: dict[str, Any]) -> dict[str, Any]:
    values = {key: None if row.get(key) is None else float(row[key]) for key in _METRICS}
    return {
        "iteration": int(row["iteration"]),
        "epoch": int(row["epoch"]),
        "marginalTrainingLoss": float(row["marginalTrainingLoss"]),
        **values,
        "isBest": bool(row["isBest"]),
        "durationSeconds": float(row["durationSeconds"]),
    }


def training_run(
    config: TrainingConfig,
    history: list[dict[str, Any]],
    selected: IterationOutcome,
    iteration: int,
    duration: float,
) -> dict[str, Any]:
    """The reference's ``trainingRun`` schema v1, so its tools can read our history."""
    return {
        "schemaVersion": 1,
        "configuration": {
            "epochs": config.epochs,
            "batchSize": config.batch_size,
            "learningRate": float(config.learning_rate),
            "exemplarDimension": config.exemplar_dimension,
            "maximumNeighbors": config.max_neighbors,
            "alphaResolution": float(config.alpha_resolution),
            "seed": str(config.seed),
            "crossEntropyEpochs": 1,
            "iterations": config.shuffles,
            "shuffleTrainingAndCalibration": config.shuffle,
            "initialization": "fresh",
        },
        "backend": "sdm-router:torch+faiss",
        "history": [_history_row(row) for row in history],
        "bestIteration": iteration,
        "iterationCount": config.shuffles,
        "bestEpoch": selected.best_epoch,
        "bestBalancedCalibrationLoss": float(selected.best_loss),
        "sourceModelID": None,
        "stoppedEarly": False,
        "durationSeconds": float(duration),
    }


def calibration_rows(
    ids: list[str],
    labels: npt.NDArray[np.int64],
    predictions: npt.NDArray[np.int64],
    sdm: npt.NDArray[np.float32],
    q_prime: npt.NDArray[np.float32],
    q: npt.NDArray[np.int64],
    d0: npt.NDArray[np.float32],
    d: npt.NDArray[np.float32],
    logits: npt.NDArray[np.float32],
) -> list[dict[str, Any]]:
    """``calibration.jsonl`` rows: {id, label, prediction, sdm, qPrime, q, d0, d, zPrime}."""
    columns = zip(
        ids, labels.tolist(), predictions.tolist(), sdm.tolist(), q_prime.tolist(), q.tolist(),
        d0.tolist(), d.tolist(), logits.tolist(), strict=True,
    )  # fmt: skip
    keys = ("id", "label", "prediction", "sdm", "qPrime", "q", "d0", "d", "zPrime")
    return [dict(zip(keys, values, strict=True)) for values in columns]
