"""Nested high-reliability regions, membership, centroid and DKW-lower alphas, ESS.

A region R = (α, q′_min, ψ) is fitted on calibration rows (paper A, Alg. 1); the ladder
visits α from high to low on the residual rows not yet admitted by a higher rung.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .activation import rescaled_similarity, sdm_activation
from .errors import SDMConfigurationError

F32Array = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MIN_ALPHA_RESOLUTION = 0.00005


@dataclass(frozen=True)
class Region:
    """One calibrated region: admitted rows have q′ ≥ q′_min and {c : p_c ≥ ψ_c} = {ŷ}."""

    alpha: float
    minimum_rescaled_similarity: float
    output_thresholds: tuple[float, ...]

    def __post_init__(self) -> None:
        # A tuple of floats whatever sequence was passed: regions are hashed (cached arrays).
        object.__setattr__(self, "output_thresholds", tuple(map(float, self.output_thresholds)))


def ladder_alphas(alpha_resolution: float) -> list[float]:
    """{round(1 − k·r, 10) : k = 1, 2, … while > 0.5}."""
    if not (MIN_ALPHA_RESOLUTION <= alpha_resolution < 0.5) or not math.isfinite(alpha_resolution):
        raise SDMConfigurationError("alpha resolution must be finite and in [0.00005, 0.5)")
    alphas: list[float] = []
    k = 1
    while (alpha := round(1.0 - k * alpha_resolution, 10)) > 0.5:
        alphas.append(alpha)
        k += 1
    return alphas


def _allowed_below(tail: float, counts: IntArray) -> IntArray:
    return np.floor(tail * counts.astype(np.float64)).astype(np.int64)


def fit_region(
    probabilities: F32Array, q_prime: F32Array, labels: IntArray, rows: IntArray, alpha: float
) -> Region | None:
    """First ascending q′ cutoff t at which every class's ψ_c ≥ α, or None."""
    if rows.size == 0:
        return None
    classes = probabilities.shape[1]
    order = rows[np.argsort(q_prime[rows], kind="stable")]
    sorted_q = q_prime[order]
    sorted_labels = labels[order]
    below = probabilities[order, sorted_labels] < np.float32(alpha)
    one_hot = np.eye(classes, dtype=np.int64)[sorted_labels]
    # Suffix sums: rows kept at cutoff position i are order[i:].
    counts = np.cumsum(one_hot[::-1], axis=0)[::-1]
    below_counts = np.cumsum(one_hot[::-1] * below[::-1, None], axis=0)[::-1]
    starts = np.flatnonzero(np.r_[True, sorted_q[1:] != sorted_q[:-1]])
    tail = round(1.0 - alpha, 10)
    group_counts, group_below = counts[starts], below_counts[starts]
    ok = np.all((group_counts > 0) & (group_below <= _allowed_below(tail, group_counts)), axis=1)
    if not ok.any():
        return None
    start = int(starts[int(np.argmax(ok))])
    kept, kept_labels = order[start:], sorted_labels[start:]
    thresholds = []
    for c in range(classes):
        values = np.sort(probabilities[kept[kept_labels == c], c])
        position = min(int(np.floor(tail * values.size)), values.size - 1)
        thresholds.append(max(float(values[position]), 0.0))
    return Region(alpha, float(sorted_q[start]), tuple(thresholds))


def region_members(
    region: Region,
    q_prime: F32Array,
    probabilities: F32Array,
    predictions: IntArray,
    ood_limit: int,
) -> BoolArray:
    """Membership test of paper A eq. 9, vectorized over rows (float32 comparisons)."""
    q32 = np.asarray(q_prime, dtype=np.float32)
    gate = (np.floor(q32) > ood_limit) & (q32 >= np.float32(region.minimum_rescaled_similarity))
    above = np.asarray(probabilities, dtype=np.float32) >= np.asarray(
        region.output_thresholds, dtype=np.float32
    )
    singleton = above.sum(axis=1) == 1
    predicted = above[np.arange(predictions.size), predictions]
    return np.asarray(gate & singleton & predicted)


def fit_nested_regions(
    probabilities: F32Array,
    q_prime: F32Array,
    labels: IntArray,
    predictions: IntArray,
    alpha_resolution: float,
    ood_limit: int = 0,
) -> list[Region]:
    """The nested ladder: fit each α on the residual, remove its members, skip empty rungs."""
    p32 = np.asarray(probabilities, dtype=np.float32)
    q32 = np.asarray(q_prime, dtype=np.float32).reshape(-1)
    residual = np.ones(q32.size, dtype=bool)
    not_ood = np.floor(q32) > ood_limit
    regions: list[Region] = []
    for alpha in ladder_alphas(alpha_resolution):
        rows = np.flatnonzero(residual & not_ood)
        if rows.size == 0:
            break
        region = fit_region(p32, q32, labels, rows, alpha)
        if region is None:
            continue
        regions.append(region)
        residual &= ~region_members(region, q32, p32, predictions, ood_limit)
    return regions


@dataclass(frozen=True)
class _Ladder:
    """A region list as arrays (built once per list: scoring one row reads them every call)."""

    alphas: F64Array
    minimum: F32Array  # q′_min per rung
    thresholds: F32Array  # ψ per rung [R, C]
    dkw_numerators: F32Array  # ln(2 / (1 − α)) per rung, float32


@functools.lru_cache(maxsize=32)
def _ladder(regions: tuple[Region, ...]) -> _Ladder:
    ladder = _Ladder(
        np.asarray([r.alpha for r in regions], dtype=np.float64),
        np.asarray([r.minimum_rescaled_similarity for r in regions], np.float32),
        np.asarray([r.output_thresholds for r in regions], np.float32),
        _dkw_numerators([r.alpha for r in regions]),
    )
    for array in (ladder.alphas, ladder.minimum, ladder.thresholds, ladder.dkw_numerators):
        array.flags.writeable = False  # shared by every later call with the same regions
    return ladder


def _stacked_members(
    ladder: _Ladder,
    q_prime: F32Array,
    probabilities: F32Array,
    predictions: IntArray,
    ood_limit: int,
) -> BoolArray:
    """Membership [R, n]: q_prime [R, n] or [n], probabilities [R, n, C] or [n, C]."""
    q32 = np.asarray(q_prime, dtype=np.float32)
    gate = (np.floor(q32) > ood_limit) & (q32 >= ladder.minimum[:, None])
    above = np.asarray(probabilities, dtype=np.float32) >= ladder.thresholds[:, None, :]
    # Exactly one class at or above its threshold, and it is the prediction.
    only = above.sum(axis=2) == 1
    predicted = above.reshape(-1, above.shape[-1])[
        np.arange(above.shape[0] * above.shape[1]), np.tile(predictions, above.shape[0])
    ].reshape(above.shape[:2])
    return np.asarray(gate & only & predicted)


def _first_region(ladder: _Ladder, members: BoolArray) -> tuple[F64Array, IntArray, BoolArray]:
    """(assigned alpha, index of the first admitting region, whether any admits) per row."""
    first = np.argmax(members, axis=0)
    admitted = members[first, np.arange(members.shape[1])]
    assigned = np.asarray(np.where(admitted, ladder.alphas[first], 0.0), dtype=np.float64)
    return assigned, np.asarray(first, dtype=np.int64), np.asarray(admitted, dtype=bool)


def assign_alphas(
    regions: list[Region],
    q_prime: F32Array,
    probabilities: F32Array,
    predictions: IntArray,
    ood_limit: int,
) -> F64Array:
    """Centroid estimator: alpha of the first (highest) region admitting the row, else 0."""
    if not regions:
        return np.zeros(predictions.size, dtype=np.float64)
    ladder = _ladder(tuple(regions))
    members = _stacked_members(ladder, q_prime, probabilities, predictions, ood_limit)
    return _first_region(ladder, members)[0]


def effective_sample_sizes(q_prime: F32Array, q_prime_cdfs: list[F32Array]) -> IntArray:
    """n̂_c = #{calibration q′ of class c ≤ q′} (right insertion, ties included)."""
    values = np.asarray(q_prime, dtype=np.float32).reshape(-1)
    sizes = np.zeros((values.size, len(q_prime_cdfs)), dtype=np.int64)
    for c, cdf in enumerate(q_prime_cdfs):
        sizes[:, c] = np.searchsorted(cdf, values, side="right")
    return sizes


def dkw_errors(sample_sizes: IntArray, alpha: float) -> F32Array:
    """ε = sqrt(ln(2/(1 − α)) / (2 n̂)) in float32, or 1 where n̂ = 0 (DKW, Massart)."""
    errors = _stacked_dkw_errors(sample_sizes, _dkw_numerators([alpha]))[0]
    return np.asarray(errors, dtype=np.float32)


def _dkw_numerators(alphas: list[float]) -> F32Array:
    return np.asarray([np.log(np.float32(2.0 / (1.0 - a))) for a in alphas], np.float32)


def _stacked_dkw_errors(sample_sizes: IntArray, numerators: F32Array) -> F32Array:
    """:func:`dkw_errors` for several α at once: [len(numerators), *sample_sizes.shape]."""
    doubled = np.maximum(2 * sample_sizes, 1).astype(np.float32)
    shape = (numerators.size,) + (1,) * sample_sizes.ndim
    errors = np.sqrt(numerators.reshape(shape) / doubled).astype(np.float32)
    return np.asarray(np.where(sample_sizes > 0, errors, np.float32(1.0)), dtype=np.float32)


def distance_band(d: F32Array, errors: F32Array) -> tuple[F32Array, F32Array]:
    """(clip(d − max_c ε_c), clip(d + max_c ε_c)) in [0, 1]; errors [n, C] or [R, n, C]."""
    widest = np.max(errors, axis=-1).astype(np.float32)
    d32 = np.asarray(d, dtype=np.float32)
    low = np.clip(d32 - widest, np.float32(0.0), np.float32(1.0)).astype(np.float32)
    high = np.clip(d32 + widest, np.float32(0.0), np.float32(1.0)).astype(np.float32)
    return low, high


@dataclass(frozen=True)
class LowerEstimate:
    """DKW-lower estimator outputs per row."""

    alpha: F64Array
    d_lower: F32Array
    d_upper: F32Array
    sdm_lower: F32Array
    q_prime_lower: F32Array
    errors: F32Array


def lower_alphas(
    regions: list[Region],
    logits: F32Array,
    q: F32Array,
    d: F32Array,
    predictions: IntArray,
    sample_sizes: IntArray,
    q_offset: float,
    ood_limit: int,
) -> LowerEstimate:
    """First rung admitting (q′_lower, p_lower) with that rung's DKW ε; defaults use ε = 1.

    All rungs are evaluated at once ([R, n] arrays) with the same float32 operations per
    element as a rung-by-rung loop.
    """
    n, classes = predictions.size, sample_sizes.shape[1]
    rows = np.arange(n)
    errors = np.ones((n, classes), dtype=np.float32)
    d_low, d_high = distance_band(d, errors)
    sdm_low = sdm_activation(logits, q, d_low, q_offset)
    q_low = rescaled_similarity(q, sdm_low[rows, predictions], q_offset)
    assigned = np.zeros(n, dtype=np.float64)
    if not regions or n == 0:
        return LowerEstimate(assigned, d_low, d_high, sdm_low, q_low, errors)
    ladder = _ladder(tuple(regions))
    count = ladder.alphas.size
    rung_errors = _stacked_dkw_errors(sample_sizes, ladder.dkw_numerators)  # [R, n, C]
    rung_low, rung_high = distance_band(d, rung_errors)  # [R, n]
    tiled_q = np.tile(np.asarray(q, np.float32), count)
    rung_sdm = sdm_activation(np.tile(logits, (count, 1)), tiled_q, rung_low.ravel(), q_offset)
    rung_q = rescaled_similarity(
        tiled_q, rung_sdm[np.arange(count * n), np.tile(predictions, count)], q_offset
    )
    members = _stacked_members(
        ladder, rung_q.reshape(count, n), rung_sdm.reshape(count, n, classes), predictions,
        ood_limit,
    )  # fmt: skip
    assigned, first, admitted = _first_region(ladder, members)
    chosen = rows[admitted]
    picked = first[admitted]
    errors[chosen] = rung_errors[picked, chosen]
    d_low[chosen] = rung_low[picked, chosen]
    d_high[chosen] = rung_high[picked, chosen]
    sdm_low[chosen] = rung_sdm[picked * n + chosen]
    q_low[chosen] = rung_q[picked * n + chosen]
    return LowerEstimate(assigned, d_low, d_high, sdm_low, q_low, errors)
