"""Bad input is refused with a message naming the row."""

import json
from pathlib import Path

import numpy as np
import pytest

from sdm_router.verifier.sdm import DatasetError
from sdm_router.verifier.sdm.dataset import read_jsonl, validate_split


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_composition_embedding_then_attributes(tmp_path: Path) -> None:
    rows = [{"id": "a", "label": 0, "embedding": [1, 2], "attributes": [3]},
            {"id": "b", "label": 1, "embedding": [4, 5], "attributes": [6]}]  # fmt: skip
    data = read_jsonl(_write(tmp_path / "d.jsonl", rows), classes=2)
    np.testing.assert_array_equal(data.vectors, [[1, 2, 3], [4, 5, 6]])
    assert data.composition == "embedding+attributes"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"label": 0, "embedding": [1, 2]}, {"label": 1, "embedding": [1]}], "row 2: ragged"),
        (
            [{"label": 0, "embedding": [1, 2]}, {"label": 1, "embedding": [1, "x"]}],
            "row 2: embedding",
        ),
        ([{"label": 0, "embedding": [1, 2]}, {"label": 5, "embedding": [1, 2]}], "row 2: label 5"),
        ([{"label": 0, "embedding": [1, 2]}, {"label": 1}], "row 2: row has neither"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, rows: list[dict], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_jsonl(_write(tmp_path / "d.jsonl", rows), classes=2)


def test_nan_and_wrong_dimension_are_named(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"label": 0, "embedding": [1, 2]}\n{"label": 1, "embedding": [NaN, 2]}\n')
    with pytest.raises(DatasetError, match="row 2: embedding contains NaN"):
        read_jsonl(path, classes=2)
    with pytest.raises(DatasetError, match="row 1: wrong dimension: 2 values, expected 3"):
        read_jsonl(_write(path, [{"label": 0, "embedding": [1, 2]}]), dimension=3)


def test_validate_split_missing_class_and_nan() -> None:
    with pytest.raises(DatasetError, match=r"missing class\(es\) \[1\]"):
        validate_split(np.ones((3, 2)), [0, 0, 0], 2, "training")
    x = np.ones((3, 2))
    x[1, 0] = np.nan
    with pytest.raises(DatasetError, match="training: row 1: contains a NaN"):
        validate_split(x, [0, 1, 0], 2, "training")
