"""One training iteration: seeded init, Adam, CE-equivalent first epoch, q/d refresh, selection.

Matches the reference's schedule (docs/sdm.md, "Matching the reference"): the same numpy
Generator draws the initial weights (W₁, b₁, W₂, b₂) and then every epoch's mini-batch
permutation; after each epoch the training rows' q and d (identity-excluded, CDFs over the
training split) drive the next epoch, and the weights with the lowest balanced calibration SDM
loss (ties: later epoch) are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from .activation import per_row_sdm_loss
from .adaptor import FORWARD_CHUNK, AdaptorWeights, forward
from .distance import distance_cdfs, distance_quantiles
from .errors import SDMConfigurationError
from .matcher import ExemplarMatcher
from .optimizer import Adam
from .similarity import SupportLabels

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Hyperparameters:
    """What one iteration needs from the training configuration."""

    classes: int
    exemplar_dimension: int
    epochs: int
    batch_size: int
    learning_rate: float
    max_neighbors: int
    q_offset: float
    ood_limit: int


@dataclass(frozen=True)
class Split:
    """Normalized vectors and labels of one split."""

    vectors: F32Array
    labels: IntArray


@dataclass
class IterationOutcome:
    """Selected weights and the per-epoch history of one iteration."""

    weights: AdaptorWeights
    best_epoch: int
    best_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)


def balanced_mean(values: npt.NDArray[Any], labels: IntArray, classes: int) -> float:
    """Mean over classes of the per-true-class mean."""
    counts = np.bincount(labels, minlength=classes)
    return float(np.mean(np.bincount(labels, weights=values, minlength=classes) / counts))


def balanced_loss(
    logits: F32Array, labels: IntArray, q: F32Array, d: F32Array, q_offset: float, classes: int
) -> float:
    """Balanced SDM loss: per-class mean of ℓ, then the unweighted mean over classes."""
    losses = per_row_sdm_loss(logits, labels, q, d, q_offset)
    value = float(np.mean([np.mean(losses[labels == c]) for c in range(classes)]))
    if not math.isfinite(value):
        raise SDMConfigurationError("balanced SDM loss is non-finite")
    return value


def project(
    parameters: tuple[torch.Tensor, ...], values: F32Array, device: str
) -> tuple[F32Array, F32Array]:
    """(logits, exemplars) for normalized rows in fixed chunks, no gradient."""
    logits, exemplars = [], []
    with torch.no_grad():
        for start in range(0, values.shape[0], FORWARD_CHUNK):
            batch = torch.as_tensor(values[start : start + FORWARD_CHUNK], device=device)
            chunk_logits, chunk_exemplars = forward(parameters, batch)
            logits.append(chunk_logits.cpu().numpy())
            exemplars.append(chunk_exemplars.cpu().numpy())
    return np.concatenate(logits), np.concatenate(exemplars)


def q_and_d(
    exemplars: F32Array,
    predictions: IntArray,
    labels: IntArray,
    matcher: ExemplarMatcher,
    hp: Hyperparameters,
    identity: bool,
    hint: IntArray | None = None,
) -> tuple[F32Array, F32Array, F32Array]:
    """(q, d₀, d) of a split against the support, with CDFs built over this split."""
    exclude = np.arange(exemplars.shape[0], dtype=np.int64) if identity else None
    matches = matcher.match(
        exemplars, predictions, hp.max_neighbors, exclude, hint=hint, locate_nearest=False
    )
    q = matches.q.astype(np.float32)
    d0 = np.maximum(matches.d0, np.float32(0.0))
    cdfs = distance_cdfs(d0, labels, q, hp.classes, hp.ood_limit)
    return q, d0, distance_quantiles(d0, cdfs)


class IterationTrainer:
    """Trains one iteration on fixed splits; see the module docstring."""

    def __init__(self, hp: Hyperparameters, seed: int, device: str, index_device: str) -> None:
        self.hp, self.device, self.index_device = hp, device, index_device
        self.rng = np.random.default_rng(seed)
        # Last epoch's q per split: only a first-k hint for the exact adaptive matching.
        self._hints: dict[str, IntArray | None] = {"train": None, "calibration": None}

    def run(self, train: Split, calibration: Split, progress: Progress | None) -> IterationOutcome:
        """All epochs; returns the selected checkpoint and the history. Matching runs as torch
        products (the dense path) or on the GPU, so faiss's OpenMP pool stays idle and the
        optimizer keeps every torch thread (faster epochs than with one)."""
        hp = self.hp
        initial = AdaptorWeights.initialize(
            self.rng, train.vectors.shape[1], hp.exemplar_dimension, hp.classes
        )
        params = [torch.nn.Parameter(t) for t in initial.tensors(self.device)]
        optimizer = Adam(params, lr=hp.learning_rate)
        count = train.labels.size
        q = np.full(count, np.float32(math.e - hp.q_offset), dtype=np.float32)
        d = np.ones(count, dtype=np.float32)
        outcome = IterationOutcome(initial, 0, math.inf)
        for epoch in range(1, hp.epochs + 1):
            started = time.perf_counter()
            marginal = self._epoch(params, optimizer, train, q, d)
            metrics, q, d = self._measure(tuple(params), train, calibration)
            loss = metrics["balancedCalibrationSDMLoss"]
            is_best = loss <= outcome.best_loss
            if is_best:
                outcome.weights = AdaptorWeights(*(p.detach().cpu().numpy().copy() for p in params))
                outcome.best_epoch, outcome.best_loss = epoch, loss
            row = {"epoch": epoch, "marginalTrainingLoss": marginal, **metrics, "isBest": is_best}
            row["durationSeconds"] = time.perf_counter() - started
            outcome.history.append(row)
            if progress is not None:
                progress(dict(row))
        return outcome

    def _epoch(
        self,
        params: list[torch.nn.Parameter],
        optimizer: Adam,
        train: Split,
        q: F32Array,
        d: F32Array,
    ) -> float:
        hp, total = self.hp, 0.0
        order = self.rng.permutation(train.labels.size)
        for start in range(0, order.size, hp.batch_size):
            rows = order[start : start + hp.batch_size]
            x = torch.as_tensor(train.vectors[rows], device=self.device)
            y = torch.as_tensor(train.labels[rows], device=self.device)
            q_rows = torch.as_tensor(q[rows], device=self.device)
            d_rows = torch.as_tensor(d[rows], device=self.device)
            optimizer.zero_grad()
            logits, _ = forward(tuple(params), x)
            log_base = torch.log(q_rows + float(hp.q_offset))
            scaled = logits * d_rows[:, None] * log_base[:, None]
            losses = torch.nn.functional.cross_entropy(scaled, y, reduction="none") / log_base
            loss = torch.mean(losses)
            value = float(loss.detach().item())
            if not math.isfinite(value):
                raise SDMConfigurationError("training loss is non-finite")
            total += value * rows.size
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        return total / train.labels.size

    def _measure(
        self, params: tuple[torch.Tensor, ...], train: Split, calibration: Split
    ) -> tuple[dict[str, float], F32Array, F32Array]:
        hp = self.hp
        train_logits, train_exemplars = project(params, train.vectors, self.device)
        train_predictions = np.argmax(train_logits, axis=1).astype(np.int64)
        weights = AdaptorWeights(*(p.detach().cpu().numpy() for p in params))
        support = SupportLabels(train.labels, train_predictions)
        # The support is the adaptor's own output, so it lies in W₁'s column space.
        matcher = ExemplarMatcher(
            train_exemplars, support, weights, self.index_device, verify_subspace=False
        )
        train_q, _, train_d = q_and_d(
            train_exemplars, train_predictions, train.labels, matcher, hp, True,
            self._hints["train"],
        )  # fmt: skip
        cal_logits, cal_exemplars = project(params, calibration.vectors, self.device)
        cal_predictions = np.argmax(cal_logits, axis=1).astype(np.int64)
        cal_q, _, cal_d = q_and_d(
            cal_exemplars, cal_predictions, calibration.labels, matcher, hp, False,
            self._hints["calibration"],
        )  # fmt: skip
        self._hints = {"train": train_q.astype(np.int64), "calibration": cal_q.astype(np.int64)}
        c = hp.classes
        metrics = {
            "balancedTrainingSDMLoss": balanced_loss(
                train_logits, train.labels, train_q, train_d, hp.q_offset, c
            ),
            "balancedCalibrationSDMLoss": balanced_loss(
                cal_logits, calibration.labels, cal_q, cal_d, hp.q_offset, c
            ),
            "balancedTrainingAccuracy": balanced_mean(
                train_predictions == train.labels, train.labels, c
            ),
            "balancedCalibrationAccuracy": balanced_mean(
                cal_predictions == calibration.labels, calibration.labels, c
            ),
            "balancedMeanTrainingQ": balanced_mean(train_q, train.labels, c),
            "balancedMeanCalibrationQ": balanced_mean(cal_q, calibration.labels, c),
        }
        return metrics, train_q, train_d
