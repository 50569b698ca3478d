"""Self-consistency attributes: agreement among one best-of-n tier's answers."""

from __future__ import annotations

import numpy as np
import pytest

from sdm_router.verifier.consistency import (
    CONSISTENCY_DIMENSION,
    agreement,
    consistency_matrix,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("Paris.", "paris"),
        ("  PARIS!! ", "paris"),
        ("Answer: Paris", "paris"),
        ("Let me think.\nAnswer: Bogotá.", "bogota"),
        ("The Hague", "hague"),
        ("forty-two", "forty two"),
        ("12 + 30 = 42", "12 30 42"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, form: str) -> None:
    assert normalize_answer(text) == form


def test_agreement_counts_the_other_answers() -> None:
    assert agreement(["Paris.", "paris", "Lyon", "Answer: Paris"]) == [2 / 3, 2 / 3, 0.0, 2 / 3]
    assert agreement(["7", "8"]) == [0.0, 0.0]
    assert agreement(["alone"]) == [0.0]


def test_the_matrix_flags_answers_without_siblings() -> None:
    answers = ["Paris", "paris.", "Lyon", "Rome", "Rome", "Oslo"]
    tiers = ["a", "a", "a", None, None, "b"]  # "b" has one answer: no siblings either
    matrix = consistency_matrix(answers, tiers)
    assert matrix.shape == (6, CONSISTENCY_DIMENSION)
    np.testing.assert_allclose(
        matrix, [[0.5, 1.0], [0.5, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], atol=1e-7
    )
    with pytest.raises(ValueError):
        consistency_matrix(["x"], [])
