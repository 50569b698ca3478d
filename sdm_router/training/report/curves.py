"""Precision against recall of correct answers (gateway view) for every method on one split.

SDM estimators, ``mean-logprob-family`` and ``conformal`` are swept along a fine alpha grid
(their thresholds are fitted per alpha: SDM regions, per-family calibration thresholds, the
conformal quantile); ``softmax`` and ``mean-logprob`` are swept along every threshold of their
score on the split itself (p(correct) of rows predicted correct; the mean token logprob), which
traces the best any threshold of theirs could do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .estimators import ScoredSplit, build_selections
from .metrics import POSITIVE, softmax

F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SWEEP_ALPHAS: tuple[float, ...] = (*(round(0.5 + 0.01 * k, 2) for k in range(50)), 0.995)
SCORE_SWEPT = ("softmax", "mean-logprob")
MAX_POINTS = 400  # a score sweep is thinned to about this many points (plot and JSON)


@dataclass(frozen=True, slots=True)
class PrecisionRecallCurve:
    """One method's (recall, precision) points, by increasing recall where swept by score."""

    name: str
    sweep: str  # "alpha" or "threshold"
    recall: tuple[float, ...]
    precision: tuple[float, ...]


def score_sweep(scores: F64Array, correct: BoolArray) -> tuple[F64Array, F64Array]:
    """(recall, precision) of accepting rows with score ≥ t for every distinct finite t, from
    the highest t down; ties are accepted together; rows with a non-finite score never are."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    total = int(correct.sum())
    valid = np.isfinite(scores)
    order = np.argsort(-scores[valid], kind="stable")
    values, hits = scores[valid][order], correct[valid][order]
    if values.size == 0 or total == 0:
        return np.zeros(0), np.zeros(0)
    ends = np.flatnonzero(np.append(values[1:] != values[:-1], True))
    cumulative = np.cumsum(hits)[ends]
    return cumulative / total, cumulative / (ends + 1)


def _thin(recall: F64Array, precision: F64Array) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if recall.size > MAX_POINTS:
        keep = np.unique(np.linspace(0, recall.size - 1, MAX_POINTS).round().astype(int))
        recall, precision = recall[keep], precision[keep]
    return tuple(float(r) for r in recall), tuple(float(p) for p in precision)


def precision_recall_curves(
    split: ScoredSplit, calibration: ScoredSplit, alphas: Sequence[float] = SWEEP_ALPHAS
) -> tuple[PrecisionRecallCurve, ...]:
    """Every method of ``ESTIMATORS`` (in that order) as a precision-recall curve on ``split``;
    alpha-swept points where nothing is accepted are left out."""
    truly = split.labels == POSITIVE
    total = int(truly.sum())
    scores = {
        "softmax": np.where(split.prediction == POSITIVE, softmax(split.z_prime)[:, 1], np.nan),
        "mean-logprob": split.mean_logprob,
    }
    curves = []
    for selection in build_selections(split, calibration, alphas):
        if selection.name in SCORE_SWEPT:
            recall, precision = score_sweep(scores[selection.name], truly)
            curves.append(
                PrecisionRecallCurve(selection.name, "threshold", *_thin(recall, precision))
            )
            continue
        accepted = selection.admitted & (selection.predictions == POSITIVE)
        counts = accepted.sum(axis=1)
        right = (accepted & truly).sum(axis=1)
        points = [
            (int(r) / total if total else 0.0, int(r) / int(n))
            for n, r in zip(counts, right, strict=True)
            if n
        ]
        curves.append(
            PrecisionRecallCurve(
                selection.name,
                "alpha",
                tuple(r for r, _ in points),
                tuple(p for _, p in points),
            )
        )
    return tuple(curves)
