"""The two-affine-layer adaptor: exemplar h′ = W₁x̂ + b₁ and logits z′ = W₂h′ + b₂."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from .blas import TORCH_MIN_ROWS, single_threaded_blas
from .normalization import Normalization

F32Array = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]

# Rows per forward chunk; fixed so exemplars do not depend on the caller's batch size.
FORWARD_CHUNK = 256


@dataclass(frozen=True)
class AdaptorWeights:
    """W₁ [M, D], b₁ [M], W₂ [C, M], b₂ [C], all float32."""

    projection_weight: F32Array
    projection_bias: F32Array
    classifier_weight: F32Array
    classifier_bias: F32Array

    @property
    def shape(self) -> tuple[int, int, int]:
        """(D, M, C)."""
        exemplar, embedding = self.projection_weight.shape
        return int(embedding), int(exemplar), int(self.classifier_weight.shape[0])

    @staticmethod
    def element_count(embedding: int, exemplar: int, classes: int) -> int:
        """M·D + M + C·M + C."""
        return exemplar * embedding + exemplar + classes * exemplar + classes

    @classmethod
    def initialize(
        cls, rng: np.random.Generator, embedding: int, exemplar: int, classes: int
    ) -> AdaptorWeights:
        """PyTorch-default uniform init, drawn from ``rng`` in the order W₁, b₁, W₂, b₂."""
        first = 1.0 / math.sqrt(embedding)
        second = 1.0 / math.sqrt(exemplar)
        return cls(
            rng.uniform(-first, first, (exemplar, embedding)).astype(np.float32),
            rng.uniform(-first, first, exemplar).astype(np.float32),
            rng.uniform(-second, second, (classes, exemplar)).astype(np.float32),
            rng.uniform(-second, second, classes).astype(np.float32),
        )

    def flatten(self) -> F32Array:
        """Row-major concatenation W₁, b₁, W₂, b₂ (the artifact's ``weights.f32`` order)."""
        parts = (
            self.projection_weight,
            self.projection_bias,
            self.classifier_weight,
            self.classifier_bias,
        )
        return np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1) for p in parts])

    @classmethod
    def from_flat(
        cls, flat: F32Array, embedding: int, exemplar: int, classes: int
    ) -> AdaptorWeights:
        """Inverse of :meth:`flatten`."""
        sizes = [exemplar * embedding, exemplar, classes * exemplar, classes]
        bounds = np.cumsum([0, *sizes])
        pieces = [flat[bounds[i] : bounds[i + 1]].copy() for i in range(4)]
        return cls(
            pieces[0].reshape(exemplar, embedding),
            pieces[1],
            pieces[2].reshape(classes, exemplar),
            pieces[3],
        )

    def tensors(self, device: str) -> tuple[torch.Tensor, ...]:
        """Device copies of the four parameters."""
        return tuple(
            torch.tensor(np.asarray(v), dtype=torch.float32, device=device)
            for v in (
                self.projection_weight,
                self.projection_bias,
                self.classifier_weight,
                self.classifier_bias,
            )
        )


def forward(
    parameters: tuple[torch.Tensor, ...], normalized: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, exemplars) for already normalized rows."""
    w1, b1, w2, b2 = parameters
    exemplars = normalized @ w1.transpose(0, 1) + b1
    return exemplars @ w2.transpose(0, 1) + b2, exemplars


class Adaptor:
    """Holds the weights on a device and projects raw rows (normalizing them) in fixed chunks."""

    def __init__(self, weights: AdaptorWeights, normalization: Normalization, device: str) -> None:
        self.weights = weights
        self.normalization = normalization
        self.device = device
        self._parameters = weights.tensors(device)
        self._mean = float(np.float32(normalization.mean))
        self._std = float(np.float32(normalization.standard_deviation))

    def project(self, raw: F32Array) -> tuple[F32Array, F32Array]:
        """(logits [n, C], exemplars [n, M]) for raw input rows; normalization on the device."""
        if self.device == "cpu" and raw.shape[0] < TORCH_MIN_ROWS:
            return self._project_host(raw)
        return self._project_torch(raw)

    def exemplars_float64(self, raw: F32Array) -> F64Array:
        """Exemplars of raw rows computed in float64 throughout (no BLAS-dependent rounding
        at float32 precision); for the few near-tie rows whose d₀ is settled exactly."""
        x = (np.asarray(raw, dtype=np.float64) - self._mean) / self._std
        w = self.weights
        result: F64Array = x @ w.projection_weight.astype(np.float64).T + w.projection_bias
        return result

    def _project_torch(self, raw: F32Array) -> tuple[F32Array, F32Array]:
        logits, exemplars = [], []
        with torch.inference_mode():
            for start in range(0, raw.shape[0], FORWARD_CHUNK):
                batch = torch.as_tensor(
                    np.ascontiguousarray(raw[start : start + FORWARD_CHUNK]),
                    dtype=torch.float32,
                    device=self.device,
                )
                batch = (batch - self._mean) / self._std
                chunk_logits, chunk_exemplars = forward(self._parameters, batch)
                logits.append(chunk_logits.cpu().numpy())
                exemplars.append(chunk_exemplars.cpu().numpy())
        if not logits:
            return self._empty()
        return (
            np.ascontiguousarray(np.concatenate(logits), dtype=np.float32),
            np.ascontiguousarray(np.concatenate(exemplars), dtype=np.float32),
        )

    def _project_host(self, raw: F32Array) -> tuple[F32Array, F32Array]:
        # Small CPU batches: single-threaded numpy BLAS (torch's OpenMP pool costs
        # milliseconds per tiny batch when faiss's runtime shares the cores). Larger batches
        # take torch in FORWARD_CHUNK rows, like training; both agree within float32 noise.
        if raw.shape[0] == 0:
            return self._empty()
        x = np.asarray(raw, dtype=np.float32) - np.float32(self._mean)
        x /= np.float32(self._std)
        w = self.weights
        # In place: the same float32 additions without a second [n, M] temporary.
        with single_threaded_blas():
            exemplars = x @ w.projection_weight.T
            exemplars += w.projection_bias
            logits = exemplars @ w.classifier_weight.T
        logits += w.classifier_bias
        return (
            np.ascontiguousarray(logits, dtype=np.float32),
            np.ascontiguousarray(exemplars, dtype=np.float32),
        )

    def _empty(self) -> tuple[F32Array, F32Array]:
        _, exemplar, classes = self.weights.shape
        return np.empty((0, classes), np.float32), np.empty((0, exemplar), np.float32)
