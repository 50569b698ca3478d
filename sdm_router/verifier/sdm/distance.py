"""Distance d: per-class calibration eCDFs of d₀ and the left-insertion reverse quantile.

Near ties: a query's float32 d₀ carries rounding that depends on the BLAS kernel, so a
calibration d₀ within that rounding of it could land on either side of a strict ``<``. Such rows
(:func:`near_tie_rows`) get their d₀ recomputed in float64 (exemplar and distances, see
``SDMModel``), and d compares that value with the stored float32 CDF entries exactly: the same
artifact and input give the same d on any kernel. Exact ties still count as not below.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def distance_cdfs(
    d0: F32Array, labels: IntArray, q: npt.NDArray[np.generic], classes: int, ood_limit: int
) -> list[F32Array]:
    """Sorted d₀ per true class over rows with q > ood_limit."""
    d0_32 = np.asarray(d0, dtype=np.float32)
    keep = np.asarray(q) > ood_limit
    return [np.sort(d0_32[(labels == c) & keep]) for c in range(classes)]


def distance_quantiles(d0: F32Array | F64Array, cdfs: list[F32Array]) -> F32Array:
    """d = min_c (1 − #{A_c < d₀}/n_c); an empty class CDF forces d = 0 for every row.

    ``d0`` may be float64 (near-tie rows settled exactly); the comparison runs in float64, which
    for float32 values gives exactly the float32 result.
    """
    values = np.maximum(np.asarray(d0, dtype=np.float64).reshape(-1), 0.0)
    result = np.ones(values.shape[0], dtype=np.float32)
    for cdf in cdfs:
        if cdf.size == 0:
            return np.zeros(values.shape[0], dtype=np.float32)
        below = np.searchsorted(cdf.astype(np.float64), values, side="left").astype(np.float32)
        np.minimum(result, np.float32(1.0) - below / np.float32(cdf.size), out=result)
    return result


def near_tie_rows(d0: F32Array, cdfs: list[F32Array], tolerance: F32Array) -> IntArray:
    """Rows with a calibration d₀ within ``tolerance`` (per row) of their own d₀."""
    values = np.asarray(d0, dtype=np.float64).reshape(-1)
    width = np.asarray(tolerance, dtype=np.float64).reshape(-1)
    tied = np.zeros(values.shape[0], dtype=bool)
    for cdf in cdfs:
        if cdf.size == 0:
            continue
        lower = np.searchsorted(cdf, values - width, side="left")
        upper = np.searchsorted(cdf, values + width, side="right")
        tied |= upper > lower
    return np.flatnonzero(tied).astype(np.int64)
