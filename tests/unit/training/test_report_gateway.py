"""The report's gateway view: the per-family logprob baseline, precision-recall curves, the
per-family gateway table and the issue's goals, on small hand-made arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from sdm_router.training.report.curves import SWEEP_ALPHAS, precision_recall_curves, score_sweep
from sdm_router.training.report.estimators import (
    BASELINES,
    ESTIMATORS,
    FAMILY_MIN_ROWS,
    ScoredSplit,
    build_selections,
    family_threshold_rows,
    fit_family_thresholds,
)
from sdm_router.training.report.goals import Goal, best_baseline, evaluate_goals
from sdm_router.training.report.markdown import TEST_READ_ONCE, goals_section, render_report
from sdm_router.training.report.metrics import AdmissionStats, admission_stats
from sdm_router.training.report.results import (
    EstimatorCurve,
    FamilySummary,
    SplitReport,
    check_acceptance,
    evaluate_split,
)

L19 = math.log(19.0)  # softmax of (0, ln 19) is (0.05, 0.95)


def _split(
    name: str,
    labels: Sequence[int],
    families: Sequence[str],
    mean_logprob: Sequence[float],
    logits: Sequence[Sequence[float]] | None = None,
    lower: Sequence[float] | None = None,
) -> ScoredSplit:
    n = len(labels)
    z = np.asarray(logits if logits is not None else [[L19, 0.0]] * n, np.float64)
    alpha = np.asarray(lower if lower is not None else [0.0] * n, np.float64)
    return ScoredSplit(
        name=name,
        labels=np.asarray(labels, np.int64),
        families=np.asarray(families, np.str_),
        mean_logprob=np.asarray(mean_logprob, np.float64),
        prediction=np.argmax(z, axis=1).astype(np.int64),
        z_prime=z,
        centroid_alpha=alpha,
        lower_alpha=alpha,
        q=np.zeros(n),
        d=np.zeros(n),
        is_ood=np.zeros(n, bool),
    )


# --- the per-family mean-logprob baseline -------------------------------------------------------


def test_family_thresholds_by_hand_with_fallback() -> None:
    scores = np.array([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.05])
    correct = np.array([True, True, False, True, True, True, True, False])
    families = np.array(["a", "a", "a", "a", "b", "b", "b", "c"])
    # all rows, descending: -0.05 F, -0.1 T, -0.2 T, -0.3 F, -0.4 T, -0.5 T, -0.6 T, -0.7 T:
    # precision 0, 1/2, 2/3, 2/4, 3/5, 4/6, 5/7, 6/8 -> t(0.7) = -0.7, nothing reaches 0.8
    # a: 1, 1, 2/3, 3/4 -> t(0.7) = -0.4, t(0.8) = -0.2; b: all right -> -0.7; c: 1 row < 3
    overall, own = fit_family_thresholds(scores, correct, families, 0.7, min_rows=3)
    assert overall == -0.7 and own == {"a": -0.4, "b": -0.7}
    overall, own = fit_family_thresholds(scores, correct, families, 0.8, min_rows=3)
    assert overall == math.inf and own == {"a": -0.2, "b": -0.7}
    # rows with no logprobs do not count towards a family's own threshold
    nan_b = np.where(families == "b", np.nan, scores)
    assert "b" not in fit_family_thresholds(nan_b, correct, families, 0.7, min_rows=3)[1]
    rows = family_threshold_rows(np.array(["a", "b", "c", "unseen"]), -0.9, {"a": -0.4, "b": 1.0})
    assert rows.tolist() == [-0.4, 1.0, -0.9, -0.9]


def test_the_family_baseline_accepts_what_the_global_one_cannot() -> None:
    n = FAMILY_MIN_ROWS
    scores = -np.arange(n) / 100  # 0, -0.01, ..., -(n-1)/100 in each large family
    calibration = _split(
        "calibration",
        labels=[1] * n + [1 if i < 10 else 0 for i in range(n)] + [0] * 5,
        families=["easy"] * n + ["hard"] * n + ["tiny"] * 5,
        mean_logprob=[*scores, *scores, *[0.5] * 5],
    )
    # Globally the five wrong "tiny" answers sit on top and precision never reaches 0.95, so
    # the global threshold accepts nothing; "easy" is all right (its lowest score is its
    # threshold), "hard" is right in its top ten only; "tiny" is too small: global (nothing).
    split = _split(
        "test",
        labels=[1, 1, 1, 0, 1],
        families=["easy", "hard", "hard", "tiny", "unseen"],
        mean_logprob=[-0.3, -0.3, -0.05, 0.9, 0.9],
    )
    selections = {s.name: s for s in build_selections(split, calibration, (0.95,))}
    family = selections["mean-logprob-family"]
    assert family.thresholds == (None,)  # the global fallback: nothing reaches 0.95
    assert family.family_thresholds is not None
    assert family.family_thresholds[0] == {
        "easy": pytest.approx(-(n - 1) / 100),
        "hard": pytest.approx(-0.09),
    }
    assert family.admitted.tolist() == [[True, False, True, False, False]]
    assert family.predictions.tolist() == [1] * 5
    assert selections["mean-logprob"].admitted.tolist() == [[False] * 5]
    assert tuple(selections) == ESTIMATORS
    assert "mean-logprob-family" in BASELINES and "sdm-lower" not in BASELINES


# --- precision-recall curves --------------------------------------------------------------------


def test_score_sweep_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.1, np.nan])
    correct = np.array([True, False, True, True, True])
    recall, precision = score_sweep(scores, correct)
    # 0.9: 1/1; the 0.8 tie enters together: 2/3; 0.1: 3/4; the NaN row is never accepted
    assert recall.tolist() == [0.25, 0.5, 0.75]
    assert precision.tolist() == [1.0, pytest.approx(2 / 3), 0.75]
    empty = score_sweep(np.array([np.nan]), np.array([True]))
    assert empty[0].size == 0 and empty[1].size == 0


def test_precision_recall_curves_sweep_alpha_and_thresholds() -> None:
    calibration = _split("calibration", [1, 0], ["a", "a"], [-0.1, -0.9])
    split = _split(
        "test",
        labels=[1, 0, 0, 1, 1, 0],
        families=["a"] * 6,
        mean_logprob=[-0.1, -0.2, -0.3, -0.4, -0.5, np.nan],
        logits=[[0, L19], [0, L19], [L19, 0], [L19, 0], [0, L19], [0, 0]],
        lower=[0.95, 0.95, 0.95, 0.0, 0.99, 0.0],
    )
    curves = {c.name: c for c in precision_recall_curves(split, calibration)}
    assert tuple(curves) == ESTIMATORS
    lower = curves["sdm-lower"]
    assert lower.sweep == "alpha"
    # α ≤ 0.95: accepted rows 0, 1, 4 (ŷ = 1): 2 of 3 right, 2 of the 3 correct answers;
    # 0.96 … 0.99: row 4 only; 0.995: nothing (left out)
    low = sum(1 for a in SWEEP_ALPHAS if a <= 0.95)
    high = sum(1 for a in SWEEP_ALPHAS if 0.95 < a <= 0.99)
    assert lower.recall == pytest.approx((2 / 3,) * low + (1 / 3,) * high)
    assert lower.precision == pytest.approx((2 / 3,) * low + (1.0,) * high)
    assert low + high == len(SWEEP_ALPHAS) - 1
    # softmax sweeps p(correct) of rows predicted correct: rows 0, 1, 4 tie at 0.95
    softmax = curves["softmax"]
    assert softmax.sweep == "threshold"
    assert softmax.recall == pytest.approx((2 / 3,))
    assert softmax.precision == pytest.approx((2 / 3,))
    # mean logprob: -0.1 R, -0.2 W, -0.3 W, -0.4 R, -0.5 R (every row "predicted correct")
    logprob = curves["mean-logprob"]
    assert logprob.recall == pytest.approx((1 / 3, 1 / 3, 1 / 3, 2 / 3, 1.0))
    assert logprob.precision == pytest.approx((1.0, 0.5, 1 / 3, 0.5, 0.6))


# --- per-family gateway table ------------------------------------------------------------------


def test_families_carry_the_gateway_view_at_every_table_alpha() -> None:
    calibration = _split("calibration", [1, 0], ["a", "b"], [-0.1, -0.9])
    split = _split(
        "test",
        labels=[1, 0, 1, 1],
        families=["a", "a", "b", "b"],
        mean_logprob=[-0.1, -0.1, -0.1, -0.1],
        logits=[[0, L19]] * 4,
        lower=[0.99, 0.95, 0.9, 0.0],
    )
    report = evaluate_split(split, calibration)
    index = ESTIMATORS.index("sdm-lower")
    a, b = report.families
    assert a.alphas == (0.90, 0.95, 0.99)
    # family a: rows 0 (right, 0.99) and 1 (wrong, 0.95)
    assert [(s.accepted, s.precision, s.recall) for s in (a.at(x)[index] for x in a.alphas)] == [
        (2, 0.5, 1.0),
        (2, 0.5, 1.0),
        (1, 1.0, 1.0),
    ]
    # family b: rows 2 (right, 0.9) and 3 (right, never admitted)
    assert [(s.accepted, s.recall) for s in (b.at(x)[index] for x in b.alphas)] == [
        (1, 0.5),
        (0, 0.0),
        (0, 0.0),
    ]
    assert a.estimators == a.at(0.95)
    text = render_report([report], [check_acceptance(report)], {}, {})
    assert "| a | 2 | 0.90 | 100.0% · 0.500 · 1.000 | 100.0% · 0.500 · 1.000 |" in text
    assert "| b | 2 | 0.99 | 0.0% · — · 0.000 | 0.0% · — · 0.000 |" in text
    gateway = text.index("### Accepted answers (gateway view")
    assert gateway < text.index("### Admitted set (papers' metric")
    assert TEST_READ_ONCE in text
    with pytest.raises(KeyError):
        a.at(0.5)


# --- goals -------------------------------------------------------------------------------------

ALPHA = 0.95


def _report(
    name: str,
    labels: Sequence[int],
    accepted: dict[str, Sequence[int]],
    families: Sequence[str] | None = None,
) -> SplitReport:
    """A report at α = 0.95 only: each named estimator accepts the given rows (ŷ = 1 there,
    ŷ = 0 and not admitted elsewhere); the others admit nothing."""
    y = np.asarray(labels, np.int64)
    fam = np.asarray(families or ["f"] * len(y), np.str_)
    masks = {}
    for estimator in ESTIMATORS:
        mask = np.zeros(len(y), bool)
        mask[list(accepted.get(estimator, ()))] = True
        masks[estimator] = mask

    def stats(estimator: str, rows: npt.NDArray[np.bool_]) -> AdmissionStats:
        mask = masks[estimator]
        return admission_stats(mask[rows], mask[rows].astype(np.int64), y[rows], ALPHA)

    everything = np.ones(len(y), bool)
    curves = tuple(EstimatorCurve(e, (None,), (stats(e, everything),)) for e in ESTIMATORS)
    summaries = []
    for family in sorted(set(fam.tolist())):
        rows = fam == family
        per = tuple(stats(e, rows) for e in ESTIMATORS)
        summaries.append(
            FamilySummary(family, int(rows.sum()), float(y[rows].mean()), per, (ALPHA,), (per,))
        )
    return SplitReport(
        name, len(y), (int((y == 0).sum()), int(y.sum())), None, None, None, None, None,
        curves, tuple(summaries),
    )  # fmt: skip


LABELS = [1] * 10 + [0] * 10  # rows 0-9 right, 10-19 wrong


def _test(sdm: Sequence[int]) -> SplitReport:
    return _report(
        "test",
        LABELS,
        {
            "sdm-lower": sdm,
            "softmax": range(4),  # precision 1, recall 0.4: holds
            "mean-logprob": [*range(10), 10, 11],  # recall 1 but precision 10/12: ignored
        },
    )


def _goals(*reports: SplitReport) -> dict[str, Goal]:
    return {g.key: g for g in evaluate_goals(reports, "sdm-lower", ALPHA)}


def test_precision_and_recall_goals() -> None:
    test = _test(range(6))  # precision 1, recall 0.6 = 1.5 × 0.4 exactly
    best = best_baseline(test, ALPHA)
    assert best is not None
    name, stats = best
    assert (name, stats.recall) == ("softmax", 0.4)
    goals = _goals(test)
    assert goals["precision"].met is True
    assert goals["recall"].met is True
    assert "1.50×" in goals["recall"].figure
    goals = _goals(_test(range(5)))  # recall 0.5 < 0.6
    assert goals["precision"].met is True and goals["recall"].met is False
    goals = _goals(_test([*range(9), 10]))  # 9/10 right: precision fails, so recall fails too
    assert goals["precision"].met is False and goals["recall"].met is False
    goals = _goals(_test([]))
    assert goals["precision"].met is False
    assert goals["precision"].figure == "accepts nothing"
    assert goals["papers"].met is True
    # the split a goal needs is missing: not evaluated
    assert {k: g.met for k, g in _goals(test).items()}["shift"] is None
    assert _goals(test)["phrasing"].met is None


def test_shift_goal_per_family() -> None:
    labels = [1] * 19 + [0] * 1 + [0] * 5
    families = ["countries"] * 20 + ["weekdays"] * 5
    holds = _report("shift", labels, {"sdm-lower": range(20)}, families)  # 19/20 = 0.95
    goal = _goals(holds)["shift"]
    assert goal.met is True
    assert goal.figure == "countries 0.950 (20 accepted); weekdays accepts nothing"
    fails = _report("shift", labels, {"sdm-lower": [*range(18), 19, 20]}, families)
    assert _goals(fails)["shift"].met is False


def test_phrasing_goal_needs_a_third_of_the_right_answers() -> None:
    labels = [1] * 9 + [0] * 9
    met = _report("phrasing", labels, {"sdm-lower": range(3)})  # recall 3/9, precision 1
    assert _goals(met)["phrasing"].met is True
    short = _report("phrasing", labels, {"sdm-lower": range(2)})
    assert _goals(short)["phrasing"].met is False
    wrong = _report("phrasing", labels, {"sdm-lower": [*range(9), 9]})  # 9/10 right
    assert _goals(wrong)["phrasing"].met is False


def test_goals_render_in_the_report() -> None:
    test = _test(range(6))
    goals = evaluate_goals([test], "sdm-lower", ALPHA)
    text = "\n".join(goals_section(goals))
    assert "## Goals" in text
    assert (
        "| precision ≥ 0.95 on test | **met**: precision 1.000, recall 0.600 (6 accepted) |" in text
    )
    assert (
        "| every shift family: accepted ≥ 0.95 correct | not evaluated: shift not evaluated |"
        in text
    )
    full = render_report([], [], {}, {"data": "d"}, goals)
    assert full.index(TEST_READ_ONCE) < full.index("## Goals") < full.index("## Acceptance")
