"""`TrainingConfig` and `train_model`: J pooled shuffles, iteration selection, finalization."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .calibration import ladder_alphas
from .dataset import validate_split
from .epochs import (
    Hyperparameters,
    IterationOutcome,
    IterationTrainer,
    Progress,
    Split,
    project,
)
from .errors import DatasetError, SDMConfigurationError
from .index import resolve_sdm_device
from .manifest import ModelConfiguration, ModelContents, Support, default_representation
from .model import SDMModel
from .normalization import Normalization
from .recalibration import ProjectedRows, calibrate
from .run_metadata import training_run

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TrainingConfig:
    """Training options; defaults are the reference's `sdm train` defaults."""

    number_of_classes: int = 2
    exemplar_dimension: int = 1000
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-5
    seed: int = 0
    max_neighbors: int = 2048
    q_offset: float = 2.0
    ood_limit: int = 0
    alpha_resolution: float = 0.05
    shuffles: int = 1
    shuffle: bool = True
    device: str = "auto"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        positive = ("exemplar_dimension", "epochs", "batch_size", "shuffles")
        for name in positive:
            if getattr(self, name) < 1:
                raise SDMConfigurationError(f"{name} must be a positive integer")
        if self.number_of_classes < 2:
            raise SDMConfigurationError("number_of_classes must be at least 2")
        if self.max_neighbors < 2:
            raise SDMConfigurationError("max_neighbors must be at least 2 (identity exclusion)")
        if not 0 <= self.seed < 2**64:
            raise SDMConfigurationError("seed must be a non-negative 64-bit integer")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise SDMConfigurationError("learning_rate must be finite and positive")
        if not 1.0 < self.q_offset <= math.e:
            raise SDMConfigurationError("q_offset must be in (1, e] for the CE-equivalent epoch")
        if self.ood_limit < 0:
            raise SDMConfigurationError("ood_limit must be non-negative")
        if self.class_names is not None and (
            len(self.class_names) != self.number_of_classes
            or len(set(self.class_names)) != self.number_of_classes
        ):
            raise SDMConfigurationError("class_names must hold one unique name per class")
        ladder_alphas(self.alpha_resolution)

    def hyperparameters(self) -> Hyperparameters:
        """The per-iteration subset."""
        return Hyperparameters(
            self.number_of_classes, self.exemplar_dimension, self.epochs, self.batch_size,
            self.learning_rate, self.max_neighbors, self.q_offset, self.ood_limit,
        )  # fmt: skip


@dataclass(frozen=True)
class _Pool:
    vectors: F32Array
    labels: IntArray
    ids: tuple[str, ...]
    train_count: int


def _split(
    pool: _Pool, config: TrainingConfig, seed: int, iteration: int
) -> tuple[IntArray, IntArray]:
    total = pool.labels.size
    if not config.shuffle:
        return np.arange(pool.train_count), np.arange(pool.train_count, total)
    order = np.random.default_rng(seed).permutation(total)
    train, calibration = order[: total // 2], order[total // 2 :]
    for part in (train, calibration):
        if np.unique(pool.labels[part]).size != config.number_of_classes:
            raise DatasetError(
                "shuffle", None, f"iteration {iteration} left a class out of a split; "
                "add rows per class, change the seed, or use --no-shuffle",
            )  # fmt: skip
    return train.astype(np.int64), calibration.astype(np.int64)


def _default_ids(prefix: str, count: int, ids: list[str] | None) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)] if ids is None else [str(i) for i in ids]


def train_model(
    X_train: Any,
    y_train: Any,
    X_cal: Any,
    y_cal: Any,
    config: TrainingConfig,
    ids_train: list[str] | None = None,
    ids_cal: list[str] | None = None,
    representation: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> SDMModel:
    """Train J iterations, keep the lowest best balanced calibration SDM loss (last tie)."""
    started = time.perf_counter()
    classes = config.number_of_classes
    xt, yt = validate_split(X_train, y_train, classes, "training")
    xc, yc = validate_split(X_cal, y_cal, classes, "calibration", dimension=xt.shape[1])
    ids = _default_ids("train", yt.size, ids_train) + _default_ids("calibration", yc.size, ids_cal)
    if len(ids) != yt.size + yc.size or len(set(ids)) != len(ids):
        raise DatasetError("ids", None, "ids must align with rows and be unique across splits")
    pool = _Pool(np.concatenate([xt, xc]), np.concatenate([yt, yc]), tuple(ids), yt.size)
    device = resolve_sdm_device(config.device)
    history: list[dict[str, Any]] = []
    best: tuple[IterationOutcome, IntArray, IntArray, int] | None = None
    for i in range(config.shuffles):
        seed = (config.seed + i) % 2**64
        train_rows, cal_rows = _split(pool, config, seed, i + 1)
        outcome = _iteration(pool, train_rows, cal_rows, config, seed, device, i, progress)
        history.extend({**row, "iteration": i + 1} for row in outcome.history)
        if best is None or outcome.best_loss <= best[0].best_loss:
            best = (outcome, train_rows, cal_rows, i + 1)
    assert best is not None
    outcome, train_rows, cal_rows, iteration = best
    contents = _finalize(pool, train_rows, cal_rows, outcome.weights, config, device)
    run = training_run(config, history, outcome, iteration, time.perf_counter() - started)
    splits = {
        "indexConvention": "zero-based in original training followed by original calibration",
        "originalTrainingCount": pool.train_count,
        "originalCalibrationCount": yc.size,
        "trainingPoolIndices": train_rows.tolist(),
        "calibrationPoolIndices": cal_rows.tolist(),
        "trainingIDs": [pool.ids[j] for j in train_rows],
        "calibrationIDs": [pool.ids[j] for j in cal_rows],
    }
    info = {**(metadata or {}), "trainingRun": run, "bestIterationSplits": splits}
    info["trainingDevice"] = device
    return SDMModel(
        ModelContents(
            **{**contents, "representation": default_representation(representation)},
            metadata=info,
        ),
        device=device,
    )


def _iteration(
    pool: _Pool,
    train_rows: IntArray,
    cal_rows: IntArray,
    config: TrainingConfig,
    seed: int,
    device: str,
    iteration: int,
    progress: Progress | None,
) -> IterationOutcome:
    normalization = Normalization.fit(pool.vectors[train_rows])
    train = Split(normalization.apply(pool.vectors[train_rows]), pool.labels[train_rows])
    calibration = Split(normalization.apply(pool.vectors[cal_rows]), pool.labels[cal_rows])

    def report(row: dict[str, Any]) -> None:
        if progress is not None:
            progress({**row, "iteration": iteration + 1, "iterations": config.shuffles})

    trainer = IterationTrainer(config.hyperparameters(), seed, device, device)
    return trainer.run(train, calibration, report)


def _finalize(
    pool: _Pool,
    train_rows: IntArray,
    cal_rows: IntArray,
    weights: Any,
    config: TrainingConfig,
    device: str,
) -> dict[str, Any]:
    """Recompute support, calibration q/d₀/d, CDFs, SDM, q′ and the nested regions."""
    normalization = Normalization.fit(pool.vectors[train_rows])
    # The same torch forward as the epochs, so the support equals what selection measured.
    parameters = weights.tensors(device)
    train_logits, support = project(
        parameters, normalization.apply(pool.vectors[train_rows]), device
    )
    cal_logits, cal_exemplars = project(
        parameters, normalization.apply(pool.vectors[cal_rows]), device
    )
    train_labels = pool.labels[train_rows]
    names = config.class_names or tuple(f"Class{c}" for c in range(config.number_of_classes))
    configuration = ModelConfiguration(
        config.number_of_classes,
        tuple(names),
        pool.vectors.shape[1],
        config.exemplar_dimension,
        config.max_neighbors,
        config.q_offset,
        config.ood_limit,
        config.alpha_resolution,
    )
    calibration = ProjectedRows(
        cal_logits, cal_exemplars, pool.labels[cal_rows], tuple(pool.ids[j] for j in cal_rows)
    )
    train_predictions = np.argmax(train_logits, axis=1).astype(np.int64)
    fitted = calibrate(
        configuration,
        weights,
        Support(support, tuple(pool.ids[j] for j in train_rows), train_labels, train_predictions),
        calibration,
        device,
    )
    return {
        "configuration": configuration,
        "normalization": normalization,
        "weights": weights,
        **fitted,
    }
