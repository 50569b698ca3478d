"""The issue's goals (test split, alpha = 0.95, gateway view), met or not, from the figures.

1. ``precision``: the route's SDM estimator accepts answers with precision ≥ α on test.
2. ``recall``: its recall of correct answers is ≥ ``RECALL_FACTOR`` × that of the best baseline
   whose accepted precision also reaches α on test (and goal 1 holds).
3. ``shift``: on every family of the shift split, whatever it accepts is ≥ α correct
   (accepting nothing holds).
4. ``phrasing``: on the held-out phrasings, precision ≥ α and at least ``PHRASING_RECALL`` of the
   answerable questions (those the generator answered correctly) accepted.
5. ``papers``: the papers' admitted-set metric (every class- and prediction-conditional accuracy
   ≥ α, or nothing admitted; under shift also "almost nothing") holds on every evaluated split.

A goal whose split was not evaluated is ``met = None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .estimators import BASELINES
from .metrics import MEETS, AdmissionStats
from .results import ACCEPTANCE_ALPHA, DEFAULT_ESTIMATOR, SplitReport, check_acceptance

RECALL_FACTOR = 1.5
PHRASING_RECALL = 1 / 3
TEST, SHIFT, PHRASING = "test", "shift", "phrasing"


@dataclass(frozen=True, slots=True)
class Goal:
    """One goal for one estimator: what it asks, the figure measured, and whether it is met."""

    key: str
    target: str
    estimator: str
    figure: str
    met: bool | None  # None: the split it needs was not evaluated


def _find(reports: Sequence[SplitReport], name: str) -> SplitReport | None:
    return next((r for r in reports if r.name == name), None)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _precision_holds(stats: AdmissionStats) -> bool:
    return stats.gateway_verdict == MEETS


def _describe(stats: AdmissionStats) -> str:
    if stats.accepted == 0:
        return "accepts nothing"
    return (
        f"precision {_num(stats.precision)}, recall {_num(stats.recall)} "
        f"({stats.accepted} accepted)"
    )


def precision_goal(test: SplitReport | None, estimator: str, alpha: float) -> Goal:
    """Goal 1 on the test split."""
    target = f"precision ≥ {alpha:.2f} on test"
    if test is None:
        return Goal("precision", target, estimator, "test not evaluated", None)
    stats = test.curve(estimator).at(alpha)
    return Goal("precision", target, estimator, _describe(stats), _precision_holds(stats))


def best_baseline(test: SplitReport, alpha: float) -> tuple[str, AdmissionStats] | None:
    """The baseline with the highest recall among those whose precision reaches ``alpha``."""
    holding = [
        (c.name, c.at(alpha))
        for c in test.curves
        if c.name in BASELINES and _precision_holds(c.at(alpha))
    ]
    return max(holding, key=lambda item: item[1].recall or 0.0, default=None)


def recall_goal(test: SplitReport | None, estimator: str, alpha: float) -> Goal:
    """Goal 2 on the test split."""
    target = f"recall ≥ {RECALL_FACTOR:g}× the best baseline holding {alpha:.2f}"
    if test is None:
        return Goal("recall", target, estimator, "test not evaluated", None)
    ours = test.curve(estimator).at(alpha)
    recall = ours.recall or 0.0
    best = best_baseline(test, alpha)
    if best is None:
        figure = f"recall {_num(ours.recall)}; no baseline holds {alpha:.2f}"
        return Goal("recall", target, estimator, figure, _precision_holds(ours) and recall > 0)
    name, stats = best
    theirs = stats.recall or 0.0
    ratio = recall / theirs if theirs else float("inf")
    figure = (
        f"recall {_num(ours.recall)} vs {_num(stats.recall)} ({name}): {ratio:.2f}×"
        f"{'' if ratio >= 1 else '; below the baseline'}"
    )
    met = _precision_holds(ours) and recall >= RECALL_FACTOR * theirs - 1e-12
    return Goal("recall", target, estimator, figure, met)


def shift_goal(shift: SplitReport | None, estimator: str, alpha: float) -> Goal:
    """Goal 3 on every family of the shift split (FAMILY_ALPHA is alpha)."""
    target = f"every shift family: accepted ≥ {alpha:.2f} correct"
    if shift is None:
        return Goal("shift", target, estimator, "shift not evaluated", None)
    index = [c.name for c in shift.curves].index(estimator)
    parts, met = [], True
    for family in shift.families:
        stats = family.at(alpha)[index]
        holds = stats.accepted == 0 or _precision_holds(stats)
        met = met and holds
        figure = (
            "accepts nothing"
            if stats.accepted == 0
            else f"{_num(stats.precision)} ({stats.accepted} accepted)"
        )
        parts.append(f"{family.family} {figure}")
    return Goal("shift", target, estimator, "; ".join(parts) or "no rows", met)


def phrasing_goal(phrasing: SplitReport | None, estimator: str, alpha: float) -> Goal:
    """Goal 4 on the phrasing split."""
    target = f"held-out phrasings: precision ≥ {alpha:.2f}, recall ≥ 1/3"
    if phrasing is None:
        return Goal("phrasing", target, estimator, "phrasing not evaluated", None)
    stats = phrasing.curve(estimator).at(alpha)
    met = _precision_holds(stats) and (stats.recall or 0.0) >= PHRASING_RECALL - 1e-12
    return Goal("phrasing", target, estimator, _describe(stats), met)


def papers_goal(reports: Sequence[SplitReport], estimator: str, alpha: float) -> Goal:
    """Goal 5: ``check_acceptance`` on every evaluated split."""
    target = "papers' metric holds on every split"
    checks = [check_acceptance(r, estimator, alpha) for r in reports]
    figure = "; ".join(
        f"{c.split} {c.verdict}"
        + (f" ({100 * c.admission_rate:.1f}% admitted)" if c.shifted else "")
        for c in checks
    )
    met = all(c.holds for c in checks) if checks else None
    return Goal("papers", target, estimator, figure or "no split evaluated", met)


def evaluate_goals(
    reports: Sequence[SplitReport],
    estimator: str = DEFAULT_ESTIMATOR,
    alpha: float = ACCEPTANCE_ALPHA,
) -> list[Goal]:
    """The five goals for ``estimator``, reading the splits named test, shift and phrasing."""
    test, shift = _find(reports, TEST), _find(reports, SHIFT)
    return [
        precision_goal(test, estimator, alpha),
        recall_goal(test, estimator, alpha),
        shift_goal(shift, estimator, alpha),
        phrasing_goal(_find(reports, PHRASING), estimator, alpha),
        papers_goal(reports, estimator, alpha),
    ]
