"""The SDM activation and the rescaled similarity q′ (float32, row-batched)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]


def softmax(values: F32Array) -> F32Array:
    """Row-wise float32 softmax with the maximum subtracted first."""
    array = np.asarray(values, dtype=np.float32)
    shifted = array - np.max(array, axis=1, keepdims=True)
    exponentials = np.exp(shifted).astype(np.float32, copy=False)
    total = np.sum(exponentials, axis=1, keepdims=True, dtype=np.float32)
    return np.asarray(exponentials / total, dtype=np.float32)


def sdm_activation(logits: F32Array, q: F32Array, d: F32Array, q_offset: float) -> F32Array:
    """SDM(z′)_i = softmax(z′ · d · ln(q_offset + q))_i; d = 0 gives the uniform vector."""
    z = np.asarray(logits, dtype=np.float32)
    q32 = np.asarray(q, dtype=np.float32).reshape(-1)
    d32 = np.asarray(d, dtype=np.float32).reshape(-1)
    log_base = np.log(q32 + np.float32(q_offset)).astype(np.float32, copy=False)
    scaled = np.asarray(z * d32[:, None] * log_base[:, None], dtype=np.float32)
    return softmax(scaled)


def rescaled_similarity(q: F32Array, predicted_probability: F32Array, q_offset: float) -> F32Array:
    """q′ = min(q, (q_offset + q) ** p_ŷ) in float32; q = 0 gives q′ = 0."""
    q32 = np.asarray(q, dtype=np.float32).reshape(-1)
    p32 = np.asarray(predicted_probability, dtype=np.float32).reshape(-1)
    base = np.float32(q_offset) + q32
    return np.asarray(np.minimum(q32, np.power(base, p32, dtype=np.float32)), dtype=np.float32)


def per_row_sdm_loss(
    logits: F32Array, labels: npt.NDArray[np.int64], q: F32Array, d: F32Array, q_offset: float
) -> F32Array:
    """ℓ = −log_{q_offset+q} SDM(z′)_y, computed as a float32 log-sum-exp."""
    log_base = np.log(np.asarray(q, dtype=np.float32) + np.float32(q_offset)).astype(np.float32)
    scaled = np.asarray(logits, dtype=np.float32) * np.asarray(d, dtype=np.float32)[:, None]
    scaled = scaled * log_base[:, None]
    shifted = scaled - np.max(scaled, axis=1, keepdims=True)
    log_sum = np.log(np.sum(np.exp(shifted), axis=1, dtype=np.float32))
    picked = shifted[np.arange(labels.size), labels]
    return np.asarray((log_sum - picked) / log_base, dtype=np.float32)
