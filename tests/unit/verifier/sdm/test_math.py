"""Golden cases for the SDM activation, q′, left-insertion d and the normalization."""

import math

import numpy as np
import pytest

from sdm_router.verifier.sdm.activation import rescaled_similarity, sdm_activation
from sdm_router.verifier.sdm.distance import distance_cdfs, distance_quantiles
from sdm_router.verifier.sdm.normalization import Normalization

f32 = np.float32


def test_activation_uniform_when_d_or_q_and_offset_vanish() -> None:
    logits = np.array([[3.0, -1.0], [5.0, 2.0]], dtype=f32)
    p = sdm_activation(logits, np.array([0, 7], f32), np.array([1.0, 0.0], f32), 1.0 + 1e-12)
    np.testing.assert_allclose(p[0], [0.5, 0.5], atol=1e-6)  # ln(1 + 0) ≈ 0
    np.testing.assert_allclose(p[1], [0.5, 0.5], atol=0)  # d = 0


def test_activation_recovers_softmax_at_q_equal_e_minus_offset() -> None:
    logits = np.array([[1.0, 0.0, -2.0]], dtype=f32)
    p = sdm_activation(logits, np.array([math.e - 2.0], f32), np.array([1.0], f32), 2.0)
    expected = np.exp([1.0, 0.0, -2.0]) / np.exp([1.0, 0.0, -2.0]).sum()
    np.testing.assert_allclose(p[0], expected, rtol=1e-5)


def test_activation_golden_value() -> None:
    # base 22: SDM = [22, 1] / 23; q′ = min(20, 22 ** (22/23)) = 19.2286...
    logits = np.array([[1.0, 0.0]], dtype=f32)
    p = sdm_activation(logits, np.array([20.0], f32), np.array([1.0], f32), 2.0)
    np.testing.assert_allclose(p[0], [22 / 23, 1 / 23], rtol=1e-6)
    q_prime = rescaled_similarity(np.array([20.0], f32), p[:, 0], 2.0)
    assert q_prime[0] == pytest.approx(22 ** (22 / 23), rel=1e-6)


def test_rescaled_similarity_boundaries() -> None:
    q = np.array([0.0, 1.0, 8.0], dtype=f32)
    q_prime = rescaled_similarity(q, np.array([0.9, 0.99, 10 / 11], f32), 2.0)
    assert q_prime[0] == 0.0
    assert q_prime[1] == 1.0  # (2 + 1) ** p ≥ 1 is capped by q = 1
    assert q_prime[2] == 8.0  # 10 ** (10/11) = 8.11 > q


def test_left_insertion_boundaries() -> None:
    cdfs = [np.array([1.0, 2.0, 2.0, 3.0], f32)]
    d0 = np.array([0.0, 1.0, 2.0, np.nextafter(f32(2.0), f32(3.0)), 3.0, 3.5], f32)
    np.testing.assert_array_equal(
        distance_quantiles(d0, cdfs), np.array([1.0, 1.0, 0.75, 0.25, 0.25, 0.0], f32)
    )


def test_minimum_over_classes_and_negative_d0_clamped() -> None:
    cdfs = [np.array([1.0, 5.0], f32), np.array([0.5, 0.6, 0.7, 0.8], f32)]
    np.testing.assert_array_equal(
        distance_quantiles(np.array([0.65, -1.0], f32), cdfs), np.array([0.5, 1.0], f32)
    )


def test_empty_class_cdf_forces_d_zero() -> None:
    labels = np.array([0, 0, 1], np.int64)
    cdfs = distance_cdfs(np.array([0.1, 0.2, 0.3], f32), labels, np.array([3, 4, 0]), 2, 0)
    assert cdfs[1].size == 0  # the only class-1 row has q = 0
    np.testing.assert_array_equal(distance_quantiles(np.array([0.0, 0.15], f32), cdfs), [0, 0])


def test_normalization_is_global_scalar_with_sample_std() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=f32)
    norm = Normalization.fit(x)
    assert norm.mean == pytest.approx(3.0)
    assert norm.standard_deviation == pytest.approx(np.std([1, 2, 3, 6], ddof=1), rel=1e-6)
    np.testing.assert_allclose(norm.apply(x), (x - 3.0) / norm.standard_deviation, rtol=1e-6)
