"""JSONL datasets in the reference's row format and array validation naming the bad row.

A row is ``{id, label, embedding?, attributes?, document?}``. The feature vector is
``embedding``, or ``attributes``, or ``embedding ‖ attributes`` when both exist (the
reference's ``composition=auto``); every row of a file must resolve the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import DatasetError

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
UNLABELED, SUPPORT_ONLY_OOD = -1, -99


@dataclass(frozen=True)
class Dataset:
    """Rows read from a JSONL file."""

    ids: list[str]
    labels: IntArray
    vectors: F32Array
    documents: list[str | None]
    composition: str


def _vector(row: dict[str, Any], source: str, number: int) -> tuple[list[float], str]:
    parts: list[float] = []
    names: list[str] = []
    for key in ("embedding", "attributes"):
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value
        ):
            raise DatasetError(source, number, f"{key} must be a list of numbers")
        if not all(math.isfinite(float(x)) for x in value):
            raise DatasetError(source, number, f"{key} contains NaN or infinity")
        parts.extend(float(x) for x in value)
        names.append(key)
    if not names:
        raise DatasetError(source, number, "row has neither embedding nor attributes")
    return parts, "+".join(names)


def _label(row: dict[str, Any], source: str, number: int, classes: int | None) -> int:
    label = row.get("label", UNLABELED)
    if isinstance(label, bool) or not isinstance(label, int):
        raise DatasetError(source, number, f"label {label!r} must be an integer")
    allowed = label in (UNLABELED, SUPPORT_ONLY_OOD) or (
        label >= 0 and (classes is None or label < classes)
    )
    if not allowed:
        raise DatasetError(source, number, f"label {label} is outside 0..{(classes or 0) - 1}")
    return int(label)


def _parse_line(line: str, source: str, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line, parse_constant=lambda token: float("nan"))
    except json.JSONDecodeError as error:
        raise DatasetError(source, number, f"invalid JSON ({error.msg})") from error
    if not isinstance(row, dict):
        raise DatasetError(source, number, "row must be a JSON object")
    return row


def read_jsonl(
    path: str | Path, classes: int | None = None, dimension: int | None = None
) -> Dataset:
    """Read and validate a JSONL dataset; errors name the file and the 1-based row."""
    source = str(path)
    ids: list[str] = []
    labels: list[int] = []
    vectors: list[list[float]] = []
    documents: list[str | None] = []
    composition = ""
    with Path(path).open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            row = _parse_line(line, source, number)
            vector, kind = _vector(row, source, number)
            composition = composition or kind
            if kind != composition:
                raise DatasetError(source, number, f"has {kind}, earlier rows have {composition}")
            expected = (
                dimension if dimension is not None else (len(vectors[0]) if vectors else None)
            )
            if expected is not None and len(vector) != expected:
                what = "wrong dimension" if dimension is not None else "ragged vector"
                raise DatasetError(
                    source, number, f"{what}: {len(vector)} values, expected {expected}"
                )
            ids.append(str(row.get("id", f"row-{number}")))
            labels.append(_label(row, source, number, classes))
            vectors.append(vector)
            document = row.get("document")
            documents.append(document if isinstance(document, str) else None)
    if not vectors:
        raise DatasetError(source, None, "no rows")
    if len(set(ids)) != len(ids):
        raise DatasetError(source, None, "ids must be unique")
    return Dataset(
        ids, np.asarray(labels, np.int64), np.asarray(vectors, np.float32), documents, composition
    )


def validate_split(
    vectors: Any, labels: Any, classes: int, source: str, dimension: int | None = None
) -> tuple[F32Array, IntArray]:
    """Finite float32 [n, D] vectors and int labels covering every class, or DatasetError."""
    try:
        x = np.asarray(vectors, dtype=np.float32)
    except ValueError as error:
        raise DatasetError(source, None, "ragged vectors: rows differ in length") from error
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DatasetError(source, None, f"vectors must be a non-empty matrix, got {x.shape}")
    if dimension is not None and x.shape[1] != dimension:
        raise DatasetError(source, None, f"wrong dimension {x.shape[1]}, expected {dimension}")
    if y.size != x.shape[0] or y.dtype.kind not in "iu":
        raise DatasetError(source, None, "labels must be integers, one per row")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DatasetError(source, int(np.argmax(bad)), "contains a NaN or infinite value")
    outside = (y < 0) | (y >= classes)
    if outside.any():
        row = int(np.argmax(outside))
        raise DatasetError(source, row, f"label {int(y[row])} is not a class 0..{classes - 1}")
    missing = sorted(set(range(classes)) - set(np.unique(y).tolist()))
    if missing:
        raise DatasetError(source, None, f"split is missing class(es) {missing}")
    return np.ascontiguousarray(x), y.astype(np.int64)
