"""Growing a trained estimator with new labelled rows, the adaptor unchanged.

``extend`` projects new support rows through the artifact's adaptor and appends them to the
support, then recalibrates on the artifact's calibration rows (re-matched against the grown
support, from their stored exemplars) plus the new calibration rows. Calibration rows never join
the support. ``attach_calibration_vectors`` recovers the exemplars of an artifact written before
they were stored, from its calibration rows' raw vectors, and checks them against the stored
logits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from .epochs import project
from .errors import DatasetError, SDMConfigurationError
from .manifest import ModelContents, Support
from .model import SDMModel, validate_inputs
from .recalibration import ProjectedRows, calibrate

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
# Recomputed calibration logits must match the stored ones this closely (float32 forwards on
# another batch split or BLAS differ in the last bits, never more).
LOGIT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LabelledRows:
    """Raw input rows [n, D] with labels and unique ids."""

    vectors: F32Array
    labels: IntArray
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != self.labels.size or self.vectors.shape[0] != self.labels.size:
            raise DatasetError("rows", None, "vectors, labels and ids must align")


def _project(model: SDMModel, rows: LabelledRows) -> ProjectedRows:
    contents = model.contents
    raw = validate_inputs(rows.vectors, model.embedding_dimension, "rows")
    if raw.shape[0] == 0:
        classes, exemplar = model.number_of_classes, contents.configuration.exemplar_dimension
        return ProjectedRows(
            np.empty((0, classes), np.float32), np.empty((0, exemplar), np.float32),
            np.empty(0, np.int64), (),
        )  # fmt: skip
    # The same torch forward as training's last step, so new support rows equal what training
    # would have stored for them.
    logits, exemplars = project(
        contents.weights.tensors(model.device), contents.normalization.apply(raw), model.device
    )
    labels = np.asarray(rows.labels, dtype=np.int64)
    if ((labels < 0) | (labels >= model.number_of_classes)).any():
        raise DatasetError("labels", None, f"labels must be in 0..{model.number_of_classes - 1}")
    return ProjectedRows(logits, exemplars, labels, rows.ids)


def stored_calibration(contents: ModelContents) -> ProjectedRows:
    """The artifact's calibration rows as projected rows (needs ``calibration.f32``)."""
    rows, vectors = contents.calibration_rows, contents.calibration_vectors
    if rows is None or vectors is None:
        raise SDMConfigurationError(
            "the artifact stores no calibration exemplars (calibration.f32); attach them first "
            "from the data it was built from (sdm-router verifier update --parent-data DIR)"
        )
    return ProjectedRows(
        np.asarray([row["zPrime"] for row in rows], dtype=np.float32),
        np.asarray(vectors, dtype=np.float32),
        np.asarray([row["label"] for row in rows], dtype=np.int64),
        tuple(str(row["id"]) for row in rows),
    )


def attach_calibration_vectors(model: SDMModel, rows: LabelledRows) -> SDMModel:
    """The same model with its calibration exemplars stored, recomputed from ``rows`` (the raw
    vectors of its calibration rows, any order). Refuses rows that are not exactly those rows, or
    whose logits differ from the stored ones (another encoder or other data)."""
    stored = model.contents.calibration_rows
    if stored is None:
        raise SDMConfigurationError("the artifact has no calibration rows to attach vectors to")
    order = {identifier: i for i, identifier in enumerate(rows.ids)}
    wanted = [str(row["id"]) for row in stored]
    missing = [identifier for identifier in wanted if identifier not in order]
    if missing or len(order) != len(wanted):
        raise DatasetError(
            "calibration", None,
            f"the rows are not the artifact's calibration rows ({len(missing)} of {len(wanted)} "
            f"ids missing, {len(order)} given); give the data the artifact was built from",
        )  # fmt: skip
    index = np.asarray([order[identifier] for identifier in wanted], dtype=np.int64)
    ordered = LabelledRows(rows.vectors[index], rows.labels[index], tuple(wanted))
    projected = _project(model, ordered)
    expected = np.asarray([row["zPrime"] for row in stored], dtype=np.float32)
    worst = float(np.max(np.abs(projected.logits - expected))) if expected.size else 0.0
    if worst > LOGIT_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        raise DatasetError(
            "calibration", None,
            f"recomputed logits differ from the artifact's by up to {worst:.3g}: these vectors "
            "come from another encoder, layer or data",
        )  # fmt: skip
    labels = np.asarray([row["label"] for row in stored], dtype=np.int64)
    if not np.array_equal(labels, ordered.labels):
        raise DatasetError("calibration", None, "the rows' labels differ from the artifact's")
    contents = replace(model.contents, calibration_vectors=projected.exemplars)
    return SDMModel(contents, device=model.device)


def extend(
    model: SDMModel,
    support: LabelledRows,
    calibration: LabelledRows,
    metadata: dict[str, Any] | None = None,
) -> SDMModel:
    """A new model (new id): the support grown by ``support``, recalibrated on the stored
    calibration rows plus ``calibration``; adaptor and normalization unchanged."""
    contents = model.contents
    old_calibration = stored_calibration(contents)
    taken = set(contents.support.ids) | set(old_calibration.ids)
    new_ids = support.ids + calibration.ids
    clashes = sorted(taken.intersection(new_ids))
    if clashes or len(set(new_ids)) != len(new_ids):
        raise DatasetError("ids", None, f"ids must be new and unique (e.g. {clashes[:3]})")
    added = _project(model, support)
    old = contents.support
    documents = None
    if old.documents is not None:
        documents = old.documents + (None,) * len(added.ids)
    grown = Support(
        np.concatenate([old.vectors, added.exemplars]).astype(np.float32),
        old.ids + added.ids,
        np.concatenate([old.labels, added.labels]).astype(np.int64),
        np.concatenate([old.predictions, added.predictions]).astype(np.int64),
        documents,
    )
    fitted = calibrate(
        contents.configuration,
        contents.weights,
        grown,
        old_calibration + _project(model, calibration),
        model.device,
    )
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    updated = replace(
        contents,
        **fitted,
        metadata=metadata if metadata is not None else contents.metadata,
        model_id=str(uuid.uuid4()),
        created_at=created,
    )
    return SDMModel(updated, device=model.device)
