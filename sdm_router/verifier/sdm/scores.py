"""Score containers: column arrays for a batch, and one row as a small dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class NearestExemplar:
    """One support row near the query, for explanations."""

    support_index: int
    id: str
    label: int
    predicted_label: int
    squared_distance: float


@dataclass(frozen=True)
class SDMRowScore:
    """One row of :class:`SDMScores`, with plain Python values."""

    prediction: int
    q: int
    d0: float
    d: float
    q_prime: float
    sdm: tuple[float, ...]
    z_prime: tuple[float, ...]
    centroid_region_alpha: float
    lower_region_alpha: float
    is_ood: bool
    effective_sample_sizes: tuple[int, ...]
    q_prime_lower: float
    d_lower: float
    sdm_lower: tuple[float, ...]
    nearest_support_index: int
    nearest_support_id: str
    nearest_exemplars: tuple[NearestExemplar, ...]

    def to_dict(self) -> dict[str, Any]:
        """The reference's scored-row field names (camelCase)."""
        row: dict[str, Any] = {
            "prediction": self.prediction,
            "q": self.q,
            "d0": self.d0,
            "d": self.d,
            "qPrime": self.q_prime,
            "sdm": list(self.sdm),
            "zPrime": list(self.z_prime),
            "centroidRegionAlpha": self.centroid_region_alpha,
            "lowerRegionAlpha": self.lower_region_alpha,
            "isOOD": self.is_ood,
            "cumulativeEffectiveSampleSizes": list(self.effective_sample_sizes),
            "qPrimeLower": self.q_prime_lower,
            "dLower": self.d_lower,
            "sdmLower": list(self.sdm_lower),
            "nearestSupportIndex": self.nearest_support_index,
            "nearestSupportID": self.nearest_support_id,
        }
        if self.nearest_exemplars:
            row["nearestSupportMatches"] = [
                {
                    "supportIndex": m.support_index,
                    "id": m.id,
                    "label": m.label,
                    "predictedLabel": m.predicted_label,
                    "squaredDistance": m.squared_distance,
                }
                for m in self.nearest_exemplars
            ]
        return row


@dataclass(frozen=True)
class SDMScores:
    """Column arrays, one entry per scored row."""

    prediction: IntArray
    q: IntArray
    d0: F32Array
    d: F32Array
    q_prime: F32Array
    sdm: F32Array
    z_prime: F32Array
    centroid_region_alpha: F64Array
    lower_region_alpha: F64Array
    is_ood: BoolArray
    effective_sample_sizes: IntArray
    q_prime_lower: F32Array
    d_lower: F32Array
    sdm_lower: F32Array
    nearest_support_index: IntArray
    nearest_support_labels: IntArray
    nearest_support_predictions: IntArray
    nearest_squared_distances: F32Array
    nearest_support_indices: IntArray
    support_ids: tuple[str, ...] = ()
    # Rows whose d₀ lay within rounding of a calibration d₀: their d compares a float64 d₀.
    d_settled: BoolArray | None = None

    def __len__(self) -> int:
        return int(self.prediction.shape[0])

    def row(self, i: int) -> SDMRowScore:
        """Row ``i`` as plain Python values."""
        exemplars = tuple(
            NearestExemplar(
                int(self.nearest_support_indices[i, j]),
                self.support_ids[int(self.nearest_support_indices[i, j])],
                int(self.nearest_support_labels[i, j]),
                int(self.nearest_support_predictions[i, j]),
                float(self.nearest_squared_distances[i, j]),
            )
            for j in range(self.nearest_support_indices.shape[1])
        )
        nearest = int(self.nearest_support_index[i])
        return SDMRowScore(
            prediction=int(self.prediction[i]),
            q=int(self.q[i]),
            d0=float(self.d0[i]),
            d=float(self.d[i]),
            q_prime=float(self.q_prime[i]),
            sdm=tuple(float(x) for x in self.sdm[i]),
            z_prime=tuple(float(x) for x in self.z_prime[i]),
            centroid_region_alpha=float(self.centroid_region_alpha[i]),
            lower_region_alpha=float(self.lower_region_alpha[i]),
            is_ood=bool(self.is_ood[i]),
            effective_sample_sizes=tuple(int(x) for x in self.effective_sample_sizes[i]),
            q_prime_lower=float(self.q_prime_lower[i]),
            d_lower=float(self.d_lower[i]),
            sdm_lower=tuple(float(x) for x in self.sdm_lower[i]),
            nearest_support_index=nearest,
            nearest_support_id=self.support_ids[nearest] if self.support_ids else str(nearest),
            nearest_exemplars=exemplars,
        )
