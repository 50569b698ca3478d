"""The promotion gate: a candidate verifier against the held-out labelled rows it never saw.

Promote only when, on those rows:

- its accepted precision is at least ``accept_alpha``;
- the one-sided Clopper–Pearson lower bound on that precision at ``confidence`` (0.90) is at
  least ``min_lower_bound`` (default ``accept_alpha - 0.10``);
- it accepts at least ``min_accepted`` of them (20);
- it accepts more of them than the live artifact does, or nothing is live (observe mode).

Accepted: in distribution, predicted correct, and the estimator's region alpha at least
``accept_alpha`` (the cascade's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sdm_router.core.guarantee import lower_bound
from sdm_router.core.verdict import Estimator
from sdm_router.verifier.sdm import SDMModel

ALPHA_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one artifact accepts of the held-out rows."""

    rows: int
    accepted: int
    correct: int

    @property
    def precision(self) -> float | None:
        """Correct among accepted (None when it accepts nothing)."""
        return self.correct / self.accepted if self.accepted else None


def accepted_on(
    model: SDMModel,
    vectors: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    accept_alpha: float,
    estimator: Estimator = Estimator.LOWER,
) -> Accepted:
    """Which held-out rows ``model`` accepts at ``accept_alpha``, and how many are correct."""
    if labels.size == 0:
        return Accepted(0, 0, 0)
    scores = model.score(vectors)
    alphas = (
        scores.lower_region_alpha if estimator is Estimator.LOWER else scores.centroid_region_alpha
    )
    accepted = np.asarray(alphas, dtype=np.float64) >= accept_alpha - ALPHA_TOLERANCE
    accepted &= ~np.asarray(scores.is_ood, dtype=bool)
    accepted &= np.asarray(scores.prediction) == 1
    correct = accepted & (labels == 1)
    return Accepted(int(labels.size), int(accepted.sum()), int(correct.sum()))


@dataclass(frozen=True, slots=True)
class GateRule:
    """The gate's settings (``autopilot`` config)."""

    accept_alpha: float
    min_accepted: int = 20
    min_lower_bound: float | None = None
    confidence: float = 0.90

    @property
    def bound(self) -> float:
        """The lower bound the candidate needs."""
        if self.min_lower_bound is not None:
            return self.min_lower_bound
        return round(self.accept_alpha - 0.10, 6)


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's decision and the figures it decided on."""

    passed: bool
    reasons: tuple[str, ...]  # why it failed (empty when it passed)
    figures: dict[str, Any]


def judge(candidate: Accepted, live: Accepted | None, rule: GateRule) -> GateResult:
    """Apply the gate (see the module); ``live`` None: nothing is live (observe mode)."""
    lower = lower_bound(candidate.correct, candidate.accepted, rule.confidence)
    precision = candidate.precision
    reasons = []
    if precision is None or precision < rule.accept_alpha - ALPHA_TOLERANCE:
        reasons.append(f"accepted precision {precision} < accept_alpha {rule.accept_alpha}")
    if lower < rule.bound - ALPHA_TOLERANCE:
        reasons.append(f"lower bound {lower:.4f} < {rule.bound}")
    if candidate.accepted < rule.min_accepted:
        reasons.append(f"accepted {candidate.accepted} < min_accepted {rule.min_accepted}")
    if live is not None and candidate.accepted <= live.accepted:
        reasons.append(f"accepts {candidate.accepted}, the live artifact {live.accepted}")
    figures = {
        "held_out_rows": candidate.rows,
        "accepted": candidate.accepted,
        "correct": candidate.correct,
        "precision": None if precision is None else round(precision, 6),
        "lower_bound": round(lower, 6),
        "confidence": rule.confidence,
        "accept_alpha": rule.accept_alpha,
        "min_lower_bound": rule.bound,
        "min_accepted": rule.min_accepted,
        "live_accepted": None if live is None else live.accepted,
        "live_correct": None if live is None else live.correct,
    }
    return GateResult(not reasons, tuple(reasons), figures)
