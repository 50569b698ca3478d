"""Distance d: per-class calibration eCDFs of d₀ and the left-insertion reverse quantile."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def distance_cdfs(
    d0: F32Array, labels: IntArray, q: npt.NDArray[np.generic], classes: int, ood_limit: int
) -> list[F32Array]:
    """Sorted d₀ per true class over rows with q > ood_limit."""
    d0_32 = np.asarray(d0, dtype=np.float32)
    keep = np.asarray(q) > ood_limit
    return [np.sort(d0_32[(labels == c) & keep]) for c in range(classes)]


def distance_quantiles(d0: F32Array, cdfs: list[F32Array]) -> F32Array:
    """d = min_c (1 − #{A_c < d₀}/n_c); an empty class CDF forces d = 0 for every row."""
    values = np.maximum(np.asarray(d0, dtype=np.float32).reshape(-1), np.float32(0.0))
    result = np.ones(values.shape[0], dtype=np.float32)
    for cdf in cdfs:
        if cdf.size == 0:
            return np.zeros(values.shape[0], dtype=np.float32)
        below = np.searchsorted(cdf, values, side="left").astype(np.float32)
        np.minimum(result, np.float32(1.0) - below / np.float32(cdf.size), out=result)
    return result
