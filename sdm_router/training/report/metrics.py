"""Admission metrics and baseline thresholds for the ``verifier evaluate`` report (pure numpy).

Two views of one admitted set (both tabled in docs/verifier-report/report.md):

* the SDM papers' metric: rows of either predicted class whose estimate reaches α; accuracy of ŷ
  against y overall, per true class and per predicted class, and the admission rate;
* the gateway view: an answer is *accepted* when it is admitted and ŷ = 1 ("correct"); precision
  is the fraction of accepted answers that are truly correct, recall the fraction of all correct
  answers that were accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ALPHA_LADDER: tuple[float, ...] = (*(round(0.55 + 0.05 * k, 2) for k in range(9)), 0.99)
TABLE_ALPHAS: tuple[float, ...] = (0.90, 0.95, 0.99)
POSITIVE = 1  # label 1: the answer is correct
MEETS, REJECTS_ALL, FAILS = "meets α", "rejects all", "fails"
_TOLERANCE = 1e-9  # 19/20 must meet 0.95 despite binary floating point


@dataclass(frozen=True, slots=True)
class AdmissionStats:
    """Both views of one admitted set at one alpha; accuracies are None for empty cells."""

    alpha: float
    rows: int
    admitted: int
    admission_rate: float
    marginal_accuracy: float | None
    class_counts: tuple[int, ...]
    class_accuracy: tuple[float | None, ...]
    prediction_counts: tuple[int, ...]
    prediction_accuracy: tuple[float | None, ...]
    accepted: int
    acceptance_rate: float
    precision: float | None
    recall: float | None

    @property
    def min_class_accuracy(self) -> float | None:
        """Lowest accuracy over the true classes that have admitted rows."""
        return _minimum(self.class_accuracy)

    @property
    def min_prediction_accuracy(self) -> float | None:
        """Lowest accuracy over the predicted classes that have admitted rows."""
        return _minimum(self.prediction_accuracy)

    @property
    def verdict(self) -> str:
        """``meets α`` when every conditional accuracy reaches α, ``rejects all``, or ``fails``."""
        if self.admitted == 0:
            return REJECTS_ALL
        cells = [a for a in (*self.class_accuracy, *self.prediction_accuracy) if a is not None]
        return MEETS if min(cells) >= self.alpha - _TOLERANCE else FAILS

    @property
    def gateway_verdict(self) -> str:
        """The same judgement for accepted answers: precision ≥ α, ``rejects all``, or ``fails``."""
        if self.accepted == 0 or self.precision is None:
            return REJECTS_ALL
        return MEETS if self.precision >= self.alpha - _TOLERANCE else FAILS


def _minimum(values: tuple[float | None, ...]) -> float | None:
    defined = [v for v in values if v is not None]
    return min(defined) if defined else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _cells(
    correct: BoolArray, groups: IntArray, admitted: BoolArray, classes: int
) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    """(count, accuracy) of the admitted rows in each group 0..classes-1."""
    counts = np.bincount(groups[admitted], minlength=classes)[:classes]
    right = np.bincount(groups[admitted & correct], minlength=classes)[:classes]
    return (
        tuple(int(n) for n in counts),
        tuple(_ratio(int(r), int(n)) for r, n in zip(right, counts, strict=True)),
    )


def admission_stats(
    admitted: BoolArray, predictions: IntArray, labels: IntArray, alpha: float, classes: int = 2
) -> AdmissionStats:
    """Both views of the rows flagged in ``admitted``."""
    admitted = np.asarray(admitted, dtype=bool)
    predictions = np.asarray(predictions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = int(labels.size)
    correct = predictions == labels
    class_counts, class_accuracy = _cells(correct, labels, admitted, classes)
    prediction_counts, prediction_accuracy = _cells(correct, predictions, admitted, classes)
    accepted = admitted & (predictions == POSITIVE)
    truly = labels == POSITIVE
    n_admitted, n_accepted = int(admitted.sum()), int(accepted.sum())
    return AdmissionStats(
        alpha=alpha,
        rows=rows,
        admitted=n_admitted,
        admission_rate=n_admitted / rows if rows else 0.0,
        marginal_accuracy=_ratio(int((admitted & correct).sum()), n_admitted),
        class_counts=class_counts,
        class_accuracy=class_accuracy,
        prediction_counts=prediction_counts,
        prediction_accuracy=prediction_accuracy,
        accepted=n_accepted,
        acceptance_rate=n_accepted / rows if rows else 0.0,
        precision=_ratio(int((accepted & truly).sum()), n_accepted),
        recall=_ratio(int((accepted & truly).sum()), int(truly.sum())),
    )


def admitted_at(assigned_alpha: F64Array, alpha: float) -> BoolArray:
    """Rows whose assigned (region) alpha is at least ``alpha``: the cumulative admitted set."""
    return np.asarray(assigned_alpha, dtype=np.float64) >= alpha - _TOLERANCE


def softmax(logits: npt.ArrayLike) -> F64Array:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    result: F64Array = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def fit_logprob_threshold(scores: F64Array, correct: BoolArray, alpha: float) -> float:
    """Smallest t such that the rows with score ≥ t are at least ``alpha`` correct.

    Rows whose score is NaN (no logprobs) are never accepted. Returns +inf when no threshold
    reaches ``alpha`` (the baseline then accepts nothing).
    """
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.isfinite(scores)
    order = np.argsort(-scores[valid], kind="stable")
    values = scores[valid][order]
    hits = np.asarray(correct, dtype=bool)[valid][order]
    if values.size == 0:
        return math.inf
    group_end = np.append(values[1:] != values[:-1], True)  # last row of each tie group
    precision = np.cumsum(hits)[group_end] / (np.flatnonzero(group_end) + 1)
    reaching = values[group_end][precision >= alpha - _TOLERANCE]
    return float(reaching.min()) if reaching.size else math.inf


def conformal_quantile(nonconformity: F64Array, epsilon: float) -> float:
    """Split-conformal q̂: the ⌈(n+1)(1−ε)⌉-th smallest score, +inf when that exceeds n."""
    scores = np.sort(np.asarray(nonconformity, dtype=np.float64))
    rank = max(1, math.ceil(round((scores.size + 1) * (1.0 - epsilon), 10)))
    return float(scores[rank - 1]) if rank <= scores.size else math.inf


def conformal_singletons(probabilities: F64Array, quantile: float) -> BoolArray:
    """Rows whose LAC prediction set {c : 1 − p_c ≤ q̂} is exactly {argmax p}."""
    p = np.asarray(probabilities, dtype=np.float64)
    members = (1.0 - p) <= quantile
    top = members[np.arange(p.shape[0]), np.argmax(p, axis=1)]
    result: BoolArray = (members.sum(axis=1) == 1) & top
    return result


def true_class_nonconformity(probabilities: F64Array, labels: IntArray) -> F64Array:
    """LAC nonconformity 1 − p_y of each calibration row."""
    p = np.asarray(probabilities, dtype=np.float64)
    result: F64Array = 1.0 - p[np.arange(p.shape[0]), np.asarray(labels, dtype=np.int64)]
    return result


def quantile_summary(values: npt.ArrayLike) -> dict[str, float] | None:
    """min / median / p90 / max of ``values`` (None when empty)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return None
    points = np.percentile(array, [0, 50, 90, 100])
    return dict(zip(("min", "median", "p90", "max"), (float(p) for p in points), strict=True))
