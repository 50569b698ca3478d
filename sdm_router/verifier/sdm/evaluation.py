"""Accuracy and admission per alpha for the centroid and DKW-lower estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .scores import SDMScores

IntArray = npt.NDArray[np.int64]


def _cell(correct: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
    count = int(mask.sum())
    right = int(correct[mask].sum())
    return {"count": count, "correct": right, "accuracy": right / count if count else None}


def _summary(
    predictions: IntArray, labels: IntArray, selected: npt.NDArray[np.bool_], classes: int
) -> dict[str, Any]:
    correct = predictions == labels
    by_true = [{"class": c, **_cell(correct, selected & (labels == c))} for c in range(classes)]
    by_prediction = [
        {"class": c, **_cell(correct, selected & (predictions == c))} for c in range(classes)
    ]
    defined = [cell["accuracy"] for cell in by_true + by_prediction if cell["count"]]
    return {
        "marginal": _cell(correct, selected),
        "byTrueClass": by_true,
        "byPrediction": by_prediction,
        "minimumConditionalAccuracy": min(defined) if defined else None,
    }


def _estimator(
    assigned: npt.NDArray[np.float64],
    predictions: IntArray,
    labels: IntArray,
    alphas: list[float],
    classes: int,
) -> dict[str, Any]:
    per_alpha = []
    for alpha in alphas:
        selected = assigned >= alpha
        per_alpha.append(
            {
                "alpha": alpha,
                "admissionCount": int(selected.sum()),
                "admission": float(selected.mean()) if selected.size else None,
                **_summary(predictions, labels, selected, classes),
            }
        )
    rejected = assigned == 0.0
    return {
        "perAlphaCumulative": per_alpha,
        "rejected": {"count": int(rejected.sum()), "proportion": float(rejected.mean())},
    }


def evaluate(
    scores: SDMScores, labels: IntArray, classes: int, alphas: list[float]
) -> dict[str, Any]:
    """The reference's evaluate report shape: overall, centroid and lower per-alpha tables."""
    labels = np.asarray(labels, dtype=np.int64)
    known = (labels >= 0) & (labels < classes)
    predictions, truth = scores.prediction[known], labels[known]
    everything = np.ones(truth.size, dtype=bool)
    return {
        "totalRows": len(scores),
        "evaluatedRows": int(known.sum()),
        "unlabeledRows": int((labels == -1).sum()),
        "explicitOODRows": int((labels == -99).sum()),
        "overall": _summary(predictions, truth, everything, classes),
        "centroid": _estimator(
            scores.centroid_region_alpha[known], predictions, truth, alphas, classes
        ),
        "lower": _estimator(scores.lower_region_alpha[known], predictions, truth, alphas, classes),
        "distribution": {
            "q": _quantiles(scores.q[known]),
            "qPrime": _quantiles(scores.q_prime[known]),
            "d": _quantiles(scores.d[known]),
            "oodProportion": float(scores.is_ood[known].mean()) if known.any() else None,
        },
    }


def _quantiles(values: npt.NDArray[Any]) -> dict[str, float] | None:
    if values.size == 0:
        return None
    points = np.percentile(values.astype(np.float64), [0, 50, 90, 100])
    return dict(zip(("min", "median", "p90", "max"), (float(p) for p in points), strict=True))
