"""Per-split results: each estimator along the alpha ladder, family slices, acceptance check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .curves import PrecisionRecallCurve, precision_recall_curves
from .estimators import ScoredSplit, Selection, build_selections
from .metrics import (
    ALPHA_LADDER,
    MEETS,
    REJECTS_ALL,
    TABLE_ALPHAS,
    AdmissionStats,
    admission_stats,
)
from .metrics import quantile_summary as _quantiles

FAMILY_ALPHA = 0.95
ACCEPTANCE_ALPHA = 0.95
DEFAULT_ESTIMATOR = "sdm-lower"  # the gateway's default (RouteSettings.estimator)
ALMOST_NOTHING = 0.02  # under shift, admitting at most this fraction counts as "almost nothing"


@dataclass(frozen=True, slots=True)
class EstimatorCurve:
    """One estimator's admitted set at each alpha of the ladder."""

    name: str
    thresholds: tuple[float | None, ...]
    stats: tuple[AdmissionStats, ...]
    family_thresholds: tuple[dict[str, float | None], ...] | None = None

    def at(self, alpha: float) -> AdmissionStats:
        """The stats at ``alpha`` (which must be on the ladder)."""
        for stats in self.stats:
            if abs(stats.alpha - alpha) < 1e-9:
                return stats
        raise KeyError(f"alpha {alpha} is not on the ladder")


@dataclass(frozen=True, slots=True)
class FamilySummary:
    """One task family of a split: generator accuracy and each estimator at FAMILY_ALPHA
    (``estimators``) and at each of ``alphas`` (``per_alpha``, for the gateway-view table)."""

    family: str
    rows: int
    generator_accuracy: float
    estimators: tuple[AdmissionStats, ...]  # in the order of SplitReport.curves
    alphas: tuple[float, ...] = ()
    per_alpha: tuple[tuple[AdmissionStats, ...], ...] = ()  # [alpha][estimator]

    def at(self, alpha: float) -> tuple[AdmissionStats, ...]:
        """Every estimator's stats on this family at ``alpha`` (one of ``alphas``)."""
        for value, stats in zip(self.alphas, self.per_alpha, strict=True):
            if abs(value - alpha) < 1e-9:
                return stats
        raise KeyError(f"alpha {alpha} is not tabled per family")


@dataclass(frozen=True, slots=True)
class SplitReport:
    """Everything the report shows for one evaluated split."""

    name: str
    rows: int
    class_counts: tuple[int, ...]
    generator_accuracy: float | None
    verifier_accuracy: float | None
    ood_rate: float | None
    q: dict[str, float] | None
    d: dict[str, float] | None
    curves: tuple[EstimatorCurve, ...]
    families: tuple[FamilySummary, ...]
    precision_recall: tuple[PrecisionRecallCurve, ...] = ()

    def curve(self, name: str) -> EstimatorCurve:
        """The curve of the estimator called ``name``."""
        return next(c for c in self.curves if c.name == name)


@dataclass(frozen=True, slots=True)
class AcceptanceCheck:
    """The issue's criterion for one split: meets α, or (under shift) admits almost nothing."""

    split: str
    estimator: str
    alpha: float
    shifted: bool
    verdict: str
    admission_rate: float
    holds: bool


def _curve(selection: Selection, split: ScoredSplit, alphas: Sequence[float]) -> EstimatorCurve:
    stats = tuple(
        admission_stats(selection.admitted[i], selection.predictions, split.labels, alpha)
        for i, alpha in enumerate(alphas)
    )
    return EstimatorCurve(selection.name, selection.thresholds, stats, selection.family_thresholds)


def _family_stats(
    selections: Sequence[Selection],
    mask: np.ndarray[Any, np.dtype[np.bool_]],
    labels: np.ndarray[Any, np.dtype[np.int64]],
    column: int,
    alpha: float,
) -> tuple[AdmissionStats, ...]:
    return tuple(
        admission_stats(s.admitted[column][mask], s.predictions[mask], labels, alpha)
        for s in selections
    )


def _families(
    split: ScoredSplit, selections: Sequence[Selection], alphas: Sequence[float]
) -> tuple[FamilySummary, ...]:
    ladder = list(alphas)
    tabled = tuple(a for a in TABLE_ALPHAS if a in ladder)
    summaries = []
    for family in sorted(set(split.families.tolist())):
        mask = split.families == family
        labels = split.labels[mask]
        summaries.append(
            FamilySummary(
                family,
                int(mask.sum()),
                float(labels.mean()),
                _family_stats(selections, mask, labels, ladder.index(FAMILY_ALPHA), FAMILY_ALPHA),
                tabled,
                tuple(_family_stats(selections, mask, labels, ladder.index(a), a) for a in tabled),
            )
        )
    return tuple(summaries)


def _mean(values: np.ndarray[Any, Any]) -> float | None:
    return float(values.mean()) if values.size else None


def evaluate_split(
    split: ScoredSplit,
    calibration: ScoredSplit,
    alphas: Sequence[float] = ALPHA_LADDER,
    classes: int = 2,
) -> SplitReport:
    """Every estimator of ``split`` along ``alphas`` (which must include FAMILY_ALPHA)."""
    selections = build_selections(split, calibration, alphas)
    return SplitReport(
        name=split.name,
        rows=len(split),
        class_counts=tuple(int(n) for n in np.bincount(split.labels, minlength=classes)),
        generator_accuracy=_mean(split.labels == 1),
        verifier_accuracy=_mean(split.prediction == split.labels),
        ood_rate=_mean(split.is_ood),
        q=_quantiles(split.q),
        d=_quantiles(split.d),
        curves=tuple(_curve(s, split, alphas) for s in selections),
        families=_families(split, selections, alphas),
        precision_recall=precision_recall_curves(split, calibration),
    )


def check_acceptance(
    report: SplitReport,
    estimator: str = DEFAULT_ESTIMATOR,
    alpha: float = ACCEPTANCE_ALPHA,
    shifted: bool | None = None,
) -> AcceptanceCheck:
    """In distribution: meets α (or rejects all). Under shift, also holds if almost nothing is
    admitted. ``shifted`` defaults to "the split is called shift"."""
    shifted = report.name.startswith("shift") if shifted is None else shifted
    stats = report.curve(estimator).at(alpha)
    holds = stats.verdict in (MEETS, REJECTS_ALL) or (
        shifted and stats.admission_rate <= ALMOST_NOTHING
    )
    return AcceptanceCheck(
        report.name, estimator, alpha, shifted, stats.verdict, stats.admission_rate, holds
    )


def stats_json(stats: AdmissionStats) -> dict[str, Any]:
    """A JSON-ready dict of both views, with the derived minima and verdicts."""
    return {
        "alpha": stats.alpha,
        "rows": stats.rows,
        "admitted": stats.admitted,
        "admissionRate": stats.admission_rate,
        "marginalAccuracy": stats.marginal_accuracy,
        "byTrueClass": {"count": stats.class_counts, "accuracy": stats.class_accuracy},
        "byPrediction": {"count": stats.prediction_counts, "accuracy": stats.prediction_accuracy},
        "minClassConditionalAccuracy": stats.min_class_accuracy,
        "minPredictionConditionalAccuracy": stats.min_prediction_accuracy,
        "verdict": stats.verdict,
        "gateway": _gateway_json(stats),
    }


def split_json(report: SplitReport) -> dict[str, Any]:
    """A JSON-ready dict of one split's report."""
    return {
        "rows": report.rows,
        "classCounts": report.class_counts,
        "generatorAccuracy": report.generator_accuracy,
        "verifierAccuracy": report.verifier_accuracy,
        "oodRate": report.ood_rate,
        "q": report.q,
        "d": report.d,
        "estimators": {c.name: _curve_json(c) for c in report.curves},
        "families": {
            f.family: {
                "rows": f.rows,
                "generatorAccuracy": f.generator_accuracy,
                "alpha": FAMILY_ALPHA,
                "estimators": {
                    c.name: stats_json(s) for c, s in zip(report.curves, f.estimators, strict=True)
                },
                "gateway": {
                    f"{alpha:.2f}": {
                        c.name: _gateway_json(s)
                        for c, s in zip(report.curves, f.at(alpha), strict=True)
                    }
                    for alpha in f.alphas
                },
            }
            for f in report.families
        },
        "precisionRecall": {
            c.name: {"sweep": c.sweep, "recall": c.recall, "precision": c.precision}
            for c in report.precision_recall
        },
    }


def _curve_json(curve: EstimatorCurve) -> dict[str, Any]:
    document: dict[str, Any] = {
        "thresholds": curve.thresholds,
        "perAlpha": [stats_json(s) for s in curve.stats],
    }
    if curve.family_thresholds is not None:
        document["familyThresholds"] = curve.family_thresholds
    return document


def _gateway_json(stats: AdmissionStats) -> dict[str, Any]:
    return {
        "accepted": stats.accepted,
        "acceptanceRate": stats.acceptance_rate,
        "precision": stats.precision,
        "recall": stats.recall,
        "verdict": stats.gateway_verdict,
    }
