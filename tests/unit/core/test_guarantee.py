"""The guarantee's arithmetic: exact Clopper–Pearson bounds, the status rule, label counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import beta, binom

from sdm_router.core.guarantee import (
    GuaranteeStatus,
    assess,
    labels_to_breach,
    labels_to_hold,
    lower_bound,
    upper_bound,
)


@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_bounds_are_the_beta_quantiles(counts: tuple[int, int]) -> None:
    correct, labelled = counts
    expected_lower = 0.0 if correct == 0 else beta.ppf(0.10, correct, labelled - correct + 1)
    expected_upper = 1.0 if correct == labelled else beta.ppf(0.99, correct + 1, labelled - correct)
    assert lower_bound(correct, labelled, 0.90) == pytest.approx(expected_lower, abs=1e-9)
    assert upper_bound(correct, labelled, 0.99) == pytest.approx(expected_upper, abs=1e-9)


@pytest.mark.parametrize(("correct", "labelled"), [(3, 10), (45, 50), (190, 200)])
def test_the_lower_bound_is_where_the_binomial_tail_equals_one_minus_confidence(
    correct: int, labelled: int
) -> None:
    bound = lower_bound(correct, labelled, 0.90)
    # P(X >= k | n, p) at p = the bound is exactly 0.10 (the definition of the exact bound)
    assert binom.sf(correct - 1, labelled, bound) == pytest.approx(0.10, abs=1e-9)


def test_twenty_correct_of_twenty_bound_at_0_891_as_the_issue_says() -> None:
    assert lower_bound(20, 20, 0.90) == pytest.approx(0.1 ** (1 / 20))
    assert round(lower_bound(20, 20, 0.90), 3) == 0.891


def test_status_rule() -> None:
    assert assess(0, 0, 0.95).status is GuaranteeStatus.UNKNOWN
    assert assess(20, 20, 0.95).status is GuaranteeStatus.PROVISIONAL  # 0.891 < 0.92
    assert assess(28, 28, 0.95).status is GuaranteeStatus.HOLDING  # 0.921 >= 0.92
    assert assess(27, 27, 0.95).status is GuaranteeStatus.PROVISIONAL
    assert assess(0, 1, 0.95).status is GuaranteeStatus.PROVISIONAL  # one label refutes nothing
    assert assess(0, 2, 0.95).status is GuaranteeStatus.BREACHED
    assert assess(80, 100, 0.95).status is GuaranteeStatus.BREACHED
    # 0.94 observed: within the margin of the promise, and not proved below it
    assert assess(940, 1000, 0.95).status is GuaranteeStatus.HOLDING
    assert assess(900, 1000, 0.95).status is GuaranteeStatus.BREACHED


def test_figures_are_reported_in_the_open() -> None:
    figures = assess(45, 50, 0.95).as_dict()
    assert figures["labelled"] == 50 and figures["correct"] == 45
    assert figures["precision"] == 0.9
    assert figures["lower_bound"] == pytest.approx(0.822382, abs=1e-6)
    assert figures["holding_at"] == 0.92
    assert figures["status"] == "provisional"
    assert assess(0, 0, 0.95).precision is None


def test_labels_a_route_needs_before_it_can_read_holding() -> None:
    # all correct: n >= ln(0.1) / ln(0.92) = 27.6
    assert labels_to_hold(0.95) == 28 == math.ceil(math.log(0.1) / math.log(0.92))
    assert labels_to_hold(0.95, margin=0.0) == 45  # the bound at the promise itself
    needed = [labels_to_hold(0.95, incorrect=wrong) for wrong in range(4)]
    assert needed == [28, 48, 65, 82]
    for wrong, n in enumerate([28, 48, 65, 82]):
        assert assess(n - wrong, n, 0.95).status is GuaranteeStatus.HOLDING
        assert assess(n - 1 - wrong, n - 1, 0.95).status is not GuaranteeStatus.HOLDING
    assert labels_to_hold(0.95, incorrect=50, limit=100) is None


def test_an_adversarial_judge_breaks_the_promise_within_100_labels() -> None:
    # the issue's goal: every accepted answer labelled incorrect from now on, after a history
    # of correct labels as long as the monitor's default window (500)
    assert labels_to_breach(0.95, correct_before=0) == 2
    assert labels_to_breach(0.95, correct_before=500) <= 100
    wrong = labels_to_breach(0.95, correct_before=500)
    assert assess(500, 500 + wrong, 0.95).status is GuaranteeStatus.BREACHED
    assert assess(500, 500 + wrong - 1, 0.95).status is not GuaranteeStatus.BREACHED


@pytest.mark.parametrize(
    ("correct", "labelled", "confidence"), [(-1, 3, 0.9), (4, 3, 0.9), (1, 3, 1.0), (1, 3, 0.0)]
)
def test_bad_counts_are_refused(correct: int, labelled: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        lower_bound(correct, labelled, confidence)


def test_bad_promises_are_refused() -> None:
    with pytest.raises(ValueError, match="accept_alpha"):
        assess(1, 1, 1.0)
    with pytest.raises(ValueError, match="margin"):
        assess(1, 1, 0.9, margin=0.95)
