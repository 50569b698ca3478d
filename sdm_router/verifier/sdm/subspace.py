"""Exact matching in the adaptor's column space when M > D.

Every exemplar is h′ = W₁x̂ + b₁, so all exemplars lie in the D-dimensional affine subspace
b₁ + range(W₁). With Q an orthonormal basis of range(W₁), ‖h′_a − h′_b‖² = ‖Qᵀ(h′_a − h′_b)‖²:
matching on the D coordinates Qᵀ(h′ − b₁) gives the same squared distances (up to float32
rounding, like any other summation order) at D/M of the cost. Used only when the stored
support really lies in that subspace (checked at load), so hand-built supports fall back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from .adaptor import AdaptorWeights
from .blas import TORCH_MIN_ROWS, single_threaded_blas

F32Array = npt.NDArray[np.float32]

# Batches from TORCH_MIN_ROWS rows compute coordinates with torch, in chunks of this size.
COORDINATE_CHUNK = 1024
# Use the subspace only when it saves at least this factor of the matching work.
MINIMUM_REDUCTION = 1.5
# Largest deviation of QᵀQ from the identity accepted from the Cholesky route.
ORTHONORMALITY_TOLERANCE = 1e-10
# Largest off-subspace residual allowed, relative to the support's typical norm.
RESIDUAL_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Subspace:
    """Orthonormal coordinates of exemplars in b₁ + range(W₁)."""

    origin: F32Array
    basis: F32Array

    def coordinates(self, exemplars: F32Array) -> F32Array:
        """Qᵀ(h′ − b₁) for each row, float32 [n, D]. Large batches go through torch's BLAS
        in row chunks, which is faster than numpy there; the two differ only in float32
        summation order, which the rounding tolerance covers."""
        values = np.asarray(exemplars, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] < TORCH_MIN_ROWS:
            with single_threaded_blas():
                product = (values - self.origin) @ self.basis
            return np.ascontiguousarray(product, dtype=np.float32)
        source = torch.from_numpy(np.ascontiguousarray(values))
        origin, basis = torch.from_numpy(self.origin), torch.from_numpy(self.basis)
        result = torch.empty((values.shape[0], basis.shape[1]))
        scratch = torch.empty((min(COORDINATE_CHUNK, values.shape[0]), values.shape[1]))
        with torch.inference_mode():
            for start in range(0, values.shape[0], COORDINATE_CHUNK):
                rows = source[start : start + COORDINATE_CHUNK]
                centered = torch.sub(rows, origin, out=scratch[: rows.shape[0]])
                torch.matmul(centered, basis, out=result[start : start + rows.shape[0]])
        return result.numpy()


def exemplar_subspace(
    weights: AdaptorWeights, support: F32Array, verify: bool = True
) -> Subspace | None:
    """The subspace when it is worth using and (``verify``) the support lies in it, else None."""
    exemplar, embedding = weights.projection_weight.shape
    if exemplar < MINIMUM_REDUCTION * embedding:
        return None
    basis = orthonormal_basis(weights.projection_weight.astype(np.float64))
    if not verify:
        return Subspace(weights.projection_bias.astype(np.float32), basis.astype(np.float32))
    centered = support.astype(np.float64) - weights.projection_bias.astype(np.float64)
    with single_threaded_blas():
        residual = centered - (centered @ basis) @ basis.T
    scale = float(np.sqrt(np.mean(np.sum(centered * centered, axis=1)))) or 1.0
    if float(np.max(np.linalg.norm(residual, axis=1))) > RESIDUAL_TOLERANCE * scale:
        return None
    return Subspace(weights.projection_bias.astype(np.float32), basis.astype(np.float32))


def orthonormal_basis(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """An orthonormal basis Q of range(A) for a tall full-rank A (float64).

    Cholesky route first (R from AᵀA, Q = A R⁻¹: a few products, much faster than Householder
    QR); it squares A's condition number, so when QᵀQ is not the identity to
    ``ORTHONORMALITY_TOLERANCE`` (or AᵀA is numerically singular) Householder QR answers.
    """
    with single_threaded_blas():  # run once per epoch, between torch products
        try:
            upper = np.linalg.cholesky(matrix.T @ matrix).T
            basis = matrix @ np.linalg.inv(upper)  # D×D inverse: cheaper than D-by-M solves
        except np.linalg.LinAlgError:
            basis = None
        if basis is not None and np.all(np.isfinite(basis)):
            deviation = basis.T @ basis
            deviation[np.diag_indices_from(deviation)] -= 1.0
            if float(np.max(np.abs(deviation))) <= ORTHONORMALITY_TOLERANCE:
                return basis
        householder, _ = np.linalg.qr(matrix)
    return householder
