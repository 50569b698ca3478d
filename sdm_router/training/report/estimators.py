"""The verifier's two estimators and the three baselines, as admitted sets along the alpha ladder.

Baselines (thresholds fitted on the calibration split, applied to the evaluated one):

* ``softmax``: the adaptor's plain softmax p = softmax(z′); admit rows with max p ≥ α (no fit);
* ``mean-logprob``: accept answers whose mean token logprob ≥ t, t the smallest threshold whose
  accepted calibration answers are ≥ α correct; a one-sided estimator (ŷ = 1 for every row);
* ``mean-logprob-family``: the same threshold fitted per task family on that family's
  calibration rows; a family with fewer than ``FAMILY_MIN_ROWS`` calibration rows with logprobs
  (and any family absent from calibration, such as the shift families) uses the global
  ``mean-logprob`` threshold;
* ``conformal``: split conformal (LAC) over the same softmax, ε = 1 − α; admit singleton sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .metrics import (
    POSITIVE,
    admitted_at,
    conformal_quantile,
    conformal_singletons,
    fit_logprob_threshold,
    softmax,
    true_class_nonconformity,
)

if TYPE_CHECKING:  # keeps this module free of the torch import behind the SDM package
    from sdm_router.verifier.sdm import SDMScores

F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

ESTIMATORS = (
    "sdm-centroid",
    "sdm-lower",
    "softmax",
    "mean-logprob",
    "mean-logprob-family",
    "conformal",
)
SDM_ESTIMATORS = ("sdm-centroid", "sdm-lower")
BASELINES = tuple(name for name in ESTIMATORS if name not in SDM_ESTIMATORS)
# A family needs this many calibration rows with logprobs for a threshold of its own; below it
# the family's precision estimate is too coarse (one wrong answer in 20 is 0.95 already).
FAMILY_MIN_ROWS = 50


@dataclass(frozen=True, slots=True)
class ScoredSplit:
    """What the report needs of one labelled, scored split (one entry per row)."""

    name: str
    labels: IntArray
    families: StrArray
    mean_logprob: F64Array  # NaN where the generator reported no logprobs
    prediction: IntArray
    z_prime: F64Array
    centroid_alpha: F64Array
    lower_alpha: F64Array
    q: F64Array
    d: F64Array
    is_ood: BoolArray

    @classmethod
    def from_scores(
        cls,
        name: str,
        scores: SDMScores,
        labels: Sequence[int],
        families: Sequence[str],
        mean_logprob: npt.ArrayLike,
    ) -> ScoredSplit:
        """Pick the report's columns out of :class:`SDMScores`."""
        return cls(
            name=name,
            labels=np.asarray(labels, dtype=np.int64),
            families=np.asarray(families, dtype=np.str_),
            mean_logprob=np.asarray(mean_logprob, dtype=np.float64),
            prediction=np.asarray(scores.prediction, dtype=np.int64),
            z_prime=np.asarray(scores.z_prime, dtype=np.float64),
            centroid_alpha=np.asarray(scores.centroid_region_alpha, dtype=np.float64),
            lower_alpha=np.asarray(scores.lower_region_alpha, dtype=np.float64),
            q=np.asarray(scores.q, dtype=np.float64),
            d=np.asarray(scores.d, dtype=np.float64),
            is_ood=np.asarray(scores.is_ood, dtype=bool),
        )

    def __len__(self) -> int:
        return int(self.labels.size)


@dataclass(frozen=True, slots=True)
class Selection:
    """One estimator: its predictions and, per alpha, the admitted rows and its threshold."""

    name: str
    predictions: IntArray
    admitted: BoolArray  # [len(alphas), n]
    thresholds: tuple[float | None, ...]  # None: nothing can be admitted at that alpha
    # per alpha, family -> its own threshold (mean-logprob-family only; others use thresholds)
    family_thresholds: tuple[dict[str, float | None], ...] | None = None


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _sdm(name: str, assigned: F64Array, split: ScoredSplit, alphas: Sequence[float]) -> Selection:
    admitted = np.stack([admitted_at(assigned, a) for a in alphas])
    return Selection(name, split.prediction, admitted, tuple(alphas))


def _softmax(split: ScoredSplit, alphas: Sequence[float]) -> Selection:
    top = softmax(split.z_prime).max(axis=1)
    admitted = np.stack([top >= a for a in alphas])
    return Selection("softmax", split.prediction, admitted, tuple(alphas))


def _mean_logprob(
    split: ScoredSplit, calibration: ScoredSplit, alphas: Sequence[float]
) -> Selection:
    correct = calibration.labels == POSITIVE
    fitted = [fit_logprob_threshold(calibration.mean_logprob, correct, a) for a in alphas]
    with np.errstate(invalid="ignore"):  # NaN (no logprobs) compares False: never accepted
        admitted = np.stack([split.mean_logprob >= t for t in fitted])
    predictions = np.full(len(split), POSITIVE, dtype=np.int64)
    return Selection("mean-logprob", predictions, admitted, tuple(_finite(t) for t in fitted))


def fit_family_thresholds(
    scores: F64Array,
    correct: BoolArray,
    families: StrArray,
    alpha: float,
    min_rows: int = FAMILY_MIN_ROWS,
) -> tuple[float, dict[str, float]]:
    """The global threshold (``fit_logprob_threshold`` over every row) and, for each family
    with at least ``min_rows`` rows whose score is finite, the threshold fitted on its rows
    alone (+inf where no threshold of that family reaches ``alpha``)."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    families = np.asarray(families, dtype=np.str_)
    overall = fit_logprob_threshold(scores, correct, alpha)
    own = {}
    for family in sorted(set(families.tolist())):
        mask = families == family
        if int(np.isfinite(scores[mask]).sum()) >= min_rows:
            own[family] = fit_logprob_threshold(scores[mask], correct[mask], alpha)
    return overall, own


def family_threshold_rows(families: StrArray, overall: float, own: dict[str, float]) -> F64Array:
    """Each row's threshold: its family's own, else ``overall``."""
    names = np.asarray(families, dtype=np.str_)
    result = np.full(names.shape, overall, dtype=np.float64)
    for family, threshold in own.items():
        result[names == family] = threshold
    return result


def _mean_logprob_family(
    split: ScoredSplit, calibration: ScoredSplit, alphas: Sequence[float]
) -> Selection:
    correct = calibration.labels == POSITIVE
    fitted = [
        fit_family_thresholds(calibration.mean_logprob, correct, calibration.families, a)
        for a in alphas
    ]
    with np.errstate(invalid="ignore"):  # NaN (no logprobs) compares False: never accepted
        admitted = np.stack(
            [
                split.mean_logprob >= family_threshold_rows(split.families, overall, own)
                for overall, own in fitted
            ]
        )
    predictions = np.full(len(split), POSITIVE, dtype=np.int64)
    return Selection(
        "mean-logprob-family",
        predictions,
        admitted,
        tuple(_finite(overall) for overall, _ in fitted),
        tuple({f: _finite(t) for f, t in own.items()} for _, own in fitted),
    )


def _conformal(split: ScoredSplit, calibration: ScoredSplit, alphas: Sequence[float]) -> Selection:
    scores = true_class_nonconformity(softmax(calibration.z_prime), calibration.labels)
    fitted = [conformal_quantile(scores, 1.0 - a) for a in alphas]
    probabilities = softmax(split.z_prime)
    admitted = np.stack([conformal_singletons(probabilities, q) for q in fitted])
    predictions = np.argmax(probabilities, axis=1).astype(np.int64)
    return Selection("conformal", predictions, admitted, tuple(_finite(q) for q in fitted))


def build_selections(
    split: ScoredSplit, calibration: ScoredSplit, alphas: Sequence[float]
) -> list[Selection]:
    """Every estimator of :data:`ESTIMATORS`, in that order, over ``split``."""
    return [
        _sdm("sdm-centroid", split.centroid_alpha, split, alphas),
        _sdm("sdm-lower", split.lower_alpha, split, alphas),
        _softmax(split, alphas),
        _mean_logprob(split, calibration, alphas),
        _mean_logprob_family(split, calibration, alphas),
        _conformal(split, calibration, alphas),
    ]
