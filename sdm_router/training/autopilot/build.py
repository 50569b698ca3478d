"""A candidate verifier from the store's labelled answers, by ``verifier update``'s data rule:
each conversation group's SHA-256 puts it in held-out, support or calibration, so held-out rows
stay held out from one build to the next. The candidate is trained afresh on every labelled
support row and calibrated on every calibration row (the parent, when one is live, is recorded
as its lineage); the held-out rows are encoded for the gate and never trained or calibrated on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdm_router.training.featurize import encode_records
from sdm_router.training.records import AnswerRecord, calibrated_on
from sdm_router.training.verifier_build import CLASS_NAMES, DEFAULT_TRAINING
from sdm_router.training.verifier_update import PARTS, UpdateRule, assign_parts
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.features import FEATURE_COMPOSITION
from sdm_router.verifier.sdm import SDMModel, TrainingConfig, train_model


class NotEnoughData(ValueError):
    """The labelled rows cannot train a verifier yet (the message says what is missing)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A built candidate, where it was written, and the held-out rows for the gate."""

    model: SDMModel
    path: Path
    counts: dict[str, int]
    held_out_vectors: np.ndarray[Any, Any]
    held_out_labels: np.ndarray[Any, Any]
    seconds: float


def _labels(rows: list[AnswerRecord]) -> np.ndarray[Any, Any]:
    return np.asarray([row.label for row in rows], dtype=np.int64)


def encode(
    rows: list[AnswerRecord], encoder: HiddenStateEncoder, cache: Path
) -> np.ndarray[Any, Any]:
    """The rows' features (cached by encoder under ``cache``)."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return encode_records(rows, encoder, cache, show_progress=False)


def build_candidate(
    records: list[AnswerRecord],
    encoder: HiddenStateEncoder,
    folder: Path,
    rule: UpdateRule,
    parent_id: str | None,
    training: TrainingConfig = DEFAULT_TRAINING,
) -> Candidate:
    """Split by the rule, encode, train, calibrate and write the candidate to ``folder``."""
    started = time.perf_counter()
    parts, _ = assign_parts(records, rule, set())
    for name in ("support", "calibration"):
        present = {row.label for row in parts[name]}
        if present != {0, 1}:
            raise NotEnoughData(
                f"{name} has {len(parts[name])} rows; it needs both correct and incorrect answers"
            )
    cache = folder / "cache"
    vectors = {name: encode(parts[name], encoder, cache) for name in PARTS}
    learnt = [*parts["support"], *parts["calibration"]]
    metadata: dict[str, Any] = {
        "sdmRouter": {
            "encoder": encoder.identity,
            "featureComposition": FEATURE_COMPOSITION,
            "lineage": {
                "parentArtifactId": parent_id,
                "mode": "autopilot",
                "rule": rule.describe(),
                "counts": {name: len(parts[name]) for name in PARTS},
                "heldOut": [row.id for row in parts["held_out"]],
            },
        }
    }
    models = calibrated_on(learnt)
    if models:
        metadata["sdmRouter"]["calibratedOn"] = models
    model = train_model(
        vectors["support"],
        _labels(parts["support"]),
        vectors["calibration"],
        _labels(parts["calibration"]),
        replace(training, shuffle=False, class_names=CLASS_NAMES),
        ids_train=[row.id for row in parts["support"]],
        ids_cal=[row.id for row in parts["calibration"]],
        representation=encoder.representation,
        metadata=metadata,
        progress=None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model.artifact_id}.sdmkitmodel"
    model.save(path, overwrite=True)
    return Candidate(
        model=model,
        path=path,
        counts={name: len(parts[name]) for name in PARTS},
        held_out_vectors=vectors["held_out"],
        held_out_labels=_labels(parts["held_out"]),
        seconds=round(time.perf_counter() - started, 2),
    )
