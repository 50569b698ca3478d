"""Verifier input features: the encoder's hidden vector plus attributes of the generator's logprobs.

Attributes (all zeros when the generator reported no logprobs, with the flag saying so):
mean token logprob, minimum token logprob, log1p(number of tokens), fraction of tokens whose
probability is below 1/2, and a 1/0 flag for "logprobs were available". Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sdm_router.core.generation import TokenLogprob
from sdm_router.core.verdict import VerificationInput

F32Array = npt.NDArray[np.float32]

ATTRIBUTE_NAMES = (
    "mean_token_logprob",
    "min_token_logprob",
    "log1p_token_count",
    "fraction_below_half",
    "logprobs_available",
)
ATTRIBUTE_DIMENSION = len(ATTRIBUTE_NAMES)
FEATURE_COMPOSITION = "hidden[final+mean]|logprob-attributes-v1[" + ",".join(ATTRIBUTE_NAMES) + "]"
_LOG_HALF = math.log(0.5)
# A -inf logprob (a token the model gave no mass) would poison every distance; clamp it.
_FLOOR = -100.0


def logprob_attributes(token_logprobs: Sequence[TokenLogprob] | None) -> F32Array:
    """The :data:`ATTRIBUTE_NAMES` vector of one answer."""
    if token_logprobs is None:
        return np.zeros(ATTRIBUTE_DIMENSION, dtype=np.float32)
    if not token_logprobs:
        return np.array([0.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    values = np.array([token.logprob for token in token_logprobs], dtype=np.float64)
    values = np.nan_to_num(values, nan=_FLOOR, neginf=_FLOOR, posinf=0.0).clip(_FLOOR, 0.0)
    return np.array(
        [
            values.mean(),
            values.min(),
            math.log1p(values.size),
            float(np.mean(values < _LOG_HALF)),
            1.0,
        ],
        dtype=np.float32,
    )


def attribute_matrix(items: Sequence[VerificationInput]) -> F32Array:
    """``[len(items), ATTRIBUTE_DIMENSION]`` attributes, one row per item."""
    if not items:
        return np.zeros((0, ATTRIBUTE_DIMENSION), dtype=np.float32)
    return np.stack([logprob_attributes(item.token_logprobs) for item in items])


def compose_features(hidden: npt.ArrayLike, items: Sequence[VerificationInput]) -> F32Array:
    """``[hidden ‖ attributes]`` per item: the verifier input of :data:`FEATURE_COMPOSITION`."""
    vectors = np.asarray(hidden, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(items):
        raise ValueError(f"expected {len(items)} hidden rows, got shape {vectors.shape}")
    return np.concatenate([vectors, attribute_matrix(items)], axis=1)


def feature_dimension(hidden_dimension: int) -> int:
    """Length of a composed feature vector for an encoder of ``hidden_dimension``."""
    return hidden_dimension + ATTRIBUTE_DIMENSION
