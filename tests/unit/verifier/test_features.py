"""Logprob attributes and the [hidden ‖ attributes] composition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.core.verdict import VerificationInput
from sdm_router.verifier.features import (
    ATTRIBUTE_DIMENSION,
    ATTRIBUTE_NAMES,
    FEATURE_COMPOSITION,
    attribute_matrix,
    compose_features,
    feature_dimension,
    logprob_attributes,
)


def item(logprobs: list[float] | None) -> VerificationInput:
    tokens = None if logprobs is None else tuple(TokenLogprob("t", lp) for lp in logprobs)
    return VerificationInput((Message("user", "q"),), "a", tokens)


def test_attributes_of_known_logprobs() -> None:
    values = [math.log(0.9), math.log(0.25), math.log(0.6), math.log(0.1)]
    attributes = logprob_attributes(item(values).token_logprobs)
    assert attributes.dtype == np.float32
    assert attributes.tolist() == pytest.approx(
        [sum(values) / 4, math.log(0.1), math.log1p(4), 0.5, 1.0], rel=1e-6
    )


def test_no_logprobs_is_all_zeros_with_the_flag_down() -> None:
    assert logprob_attributes(None).tolist() == [0.0] * ATTRIBUTE_DIMENSION


def test_an_empty_answer_with_logprobs_keeps_the_flag_up() -> None:
    assert logprob_attributes(()).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]


def test_infinite_logprobs_are_floored() -> None:
    attributes = logprob_attributes(item([float("-inf"), -1.0]).token_logprobs)
    assert np.isfinite(attributes).all()
    assert attributes[1] == -100.0


def test_composition_appends_attributes_row_by_row() -> None:
    items = [item([-0.1, -2.0]), item(None)]
    hidden = np.arange(6, dtype=np.float64).reshape(2, 3)
    features = compose_features(hidden, items)
    assert features.shape == (2, feature_dimension(3))
    assert features.dtype == np.float32
    assert features[:, :3].tolist() == hidden.tolist()
    assert features[:, 3:].tolist() == attribute_matrix(items).tolist()
    assert features[1, 3:].tolist() == [0.0] * ATTRIBUTE_DIMENSION


def test_composition_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="hidden rows"):
        compose_features(np.zeros((3, 4)), [item(None)])


def test_empty_batch() -> None:
    assert attribute_matrix([]).shape == (0, ATTRIBUTE_DIMENSION)


def test_composition_names_every_attribute() -> None:
    assert all(name in FEATURE_COMPOSITION for name in ATTRIBUTE_NAMES)
