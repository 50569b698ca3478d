"""Global scalar normalization: one mean and one standard deviation over all entries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import SDMConfigurationError

F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Normalization:
    """x̂ = (x − μ)/σ with μ, σ scalars computed in float32 over the training matrix."""

    mean: float
    standard_deviation: float

    @classmethod
    def fit(cls, vectors: F32Array) -> Normalization:
        """μ = mean of all entries, σ = sample standard deviation (ddof = 1), both float32."""
        values = np.asarray(vectors, dtype=np.float32)
        mean = float(np.mean(values, dtype=np.float32))
        std = float(np.std(values, ddof=1, dtype=np.float32))
        if not np.isfinite(std) or std <= 0.0:
            raise SDMConfigurationError("training vectors must have a positive standard deviation")
        return cls(mean=mean, standard_deviation=std)

    def apply(self, vectors: F32Array) -> F32Array:
        """Normalize in float32."""
        values = np.asarray(vectors, dtype=np.float32)
        out = (values - np.float32(self.mean)) / np.float32(self.standard_deviation)
        return np.ascontiguousarray(out, dtype=np.float32)
