"""Golden cases for ESS, DKW, the ladder, membership and the nested regions."""

import numpy as np
import pytest

from sdm_router.verifier.sdm.calibration import (
    Region,
    assign_alphas,
    distance_band,
    dkw_errors,
    effective_sample_sizes,
    fit_nested_regions,
    ladder_alphas,
    region_members,
)
from sdm_router.verifier.sdm.errors import SDMConfigurationError

f32 = np.float32


def test_ladder_alphas() -> None:
    assert ladder_alphas(0.05) == [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55]
    assert ladder_alphas(0.1) == [0.9, 0.8, 0.7, 0.6]
    with pytest.raises(SDMConfigurationError):
        ladder_alphas(0.5)


def test_effective_sample_sizes_right_insertion_with_ties() -> None:
    cdfs = [np.array([0.0, 0.0, 1.0, 2.0, 2.0], f32), np.array([], f32)]
    sizes = effective_sample_sizes(np.array([2.0, 0.0, 1.5], f32), cdfs)
    np.testing.assert_array_equal(sizes, [[5, 0], [2, 0], [3, 0]])


def test_dkw_band() -> None:
    errors = dkw_errors(np.array([[0, 100]], np.int64), 0.95)
    assert errors[0, 0] == 1.0
    assert errors[0, 1] == pytest.approx(np.sqrt(np.log(40.0) / 200.0), rel=1e-6)
    low, high = distance_band(np.array([0.9], f32), np.array([[0.1, 0.3]], f32))
    assert low[0] == pytest.approx(0.6) and high[0] == 1.0


def _skipped_rung_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """20 rows at q′ = 5: per class 9 correct at p_true = 0.92 and 1 wrong at 0.3."""
    labels = np.repeat([0, 1], 10)
    correct = np.tile([True] * 9 + [False], 2)
    predictions = np.where(correct, labels, 1 - labels)
    p_true = np.where(correct, 0.92, 0.3).astype(f32)
    probabilities = np.empty((20, 2), f32)
    probabilities[np.arange(20), labels] = p_true
    probabilities[np.arange(20), 1 - labels] = 1 - p_true
    return probabilities, np.full(20, 5.0, f32), labels, predictions


def test_nested_ladder_skips_a_rung() -> None:
    probabilities, q_prime, labels, predictions = _skipped_rung_data()
    regions = fit_nested_regions(probabilities, q_prime, labels, predictions, 0.05)
    # 0.95 needs zero rows below α per class (floor(0.5) = 0): skipped. 0.90 allows one.
    assert [r.alpha for r in regions] == [0.9]
    assert regions[0].minimum_rescaled_similarity == 5.0
    assert regions[0].output_thresholds == (float(f32(0.92)), float(f32(0.92)))


def test_membership_and_assignment() -> None:
    region = Region(0.9, 5.0, (0.92, 0.92))
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.5, 0.5], [0.95, 0.05]], f32)
    q_prime = np.array([5.0, 4.99, 9.0, 0.5], f32)
    predictions = np.array([0, 0, 0, 0])
    members = region_members(region, q_prime, probabilities, predictions, 0)
    np.testing.assert_array_equal(members, [True, False, False, False])
    alphas = assign_alphas([region], q_prime, probabilities, predictions, 0)
    np.testing.assert_array_equal(alphas, [0.9, 0, 0, 0])
    # Thresholds given as a list or an array are stored as a tuple (regions are hashed).
    for thresholds in ([0.92, 0.92], np.array([0.92, 0.92])):
        same = Region(0.9, 5.0, thresholds)  # type: ignore[arg-type]
        assert same == region and same.output_thresholds == (0.92, 0.92)
        np.testing.assert_array_equal(
            assign_alphas([same], q_prime, probabilities, predictions, 0), alphas
        )


def test_no_region_when_a_class_has_no_candidates() -> None:
    probabilities = np.array([[0.99, 0.01], [0.99, 0.01]], f32)
    regions = fit_nested_regions(
        probabilities, np.array([3.0, 3.0], f32), np.array([0, 0]), np.array([0, 0]), 0.05
    )
    assert regions == []
