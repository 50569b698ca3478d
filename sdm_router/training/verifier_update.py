"""``verifier update``: grow an SDM artifact with newly labelled rows, or retrain with them.

The rule (documented in docs/own-verifier.md): each new row's *group* (its conversation, see
``training.importing.conversation_group``) is hashed with SHA-256 to a number u in [0, 1);
``u < held_out`` is held out (never trained or calibrated on, only used for the before/after
report), ``u < held_out + support`` joins the support (the training rows), the rest joins
calibration. A group never straddles two parts, and the same group always lands in the same part,
so rows imported again by a later update stay where they were: held-out rows stay held out.
Rows whose id the parent artifact already holds are skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdm_router.core.verdict import Estimator
from sdm_router.training.featurize import encode_records
from sdm_router.training.records import AnswerRecord, calibrated_on, read_records
from sdm_router.training.report.metrics import AdmissionStats, admission_stats, admitted_at
from sdm_router.training.splits import keep_covered
from sdm_router.training.verifier_build import CLASS_NAMES, DEFAULT_TRAINING, SPLITS_DIR
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.sdm import SDMModel, TrainingConfig, train_model
from sdm_router.verifier.sdm.update import LabelledRows, attach_calibration_vectors, extend

PARTS = ("support", "calibration", "held_out")


@dataclass(frozen=True, slots=True)
class UpdateRule:
    """Which part a new row's group goes to (see the module docstring)."""

    held_out: float = 0.2
    support: float = 0.4

    def __post_init__(self) -> None:
        if not (0 <= self.held_out < 1 and self.support > 0 and self.held_out + self.support < 1):
            raise ValueError(
                "held_out and support must be fractions leaving room for calibration "
                f"(held_out={self.held_out}, support={self.support})"
            )

    def part(self, group_id: str) -> str:
        """``support``, ``calibration`` or ``held_out`` for one group."""
        digest = hashlib.sha256(group_id.encode("utf-8")).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if u < self.held_out:
            return "held_out"
        return "support" if u < self.held_out + self.support else "calibration"

    def describe(self) -> dict[str, Any]:
        """The rule as recorded in the artifact's lineage."""
        return {
            "assign": "sha256(group_id) -> u in [0, 1); u < heldOut: held out; "
            "u < heldOut + support: support; else calibration",
            "heldOut": self.held_out,
            "support": self.support,
            "calibration": round(1 - self.held_out - self.support, 6),
        }


def assign_parts(
    records: Sequence[AnswerRecord], rule: UpdateRule, known_ids: set[str]
) -> tuple[dict[str, list[AnswerRecord]], int]:
    """Rows per part, and how many were skipped because the parent already holds them."""
    parts: dict[str, list[AnswerRecord]] = {name: [] for name in PARTS}
    skipped = 0
    for record in records:
        if record.id in known_ids:
            skipped += 1
            continue
        parts[rule.part(record.group_id)].append(record)
    return parts, skipped


@dataclass(frozen=True, slots=True)
class UpdateOptions:
    """What to update, with which data, and how to judge the result."""

    out: Path
    data: Path
    alpha: float = 0.95
    estimator: Estimator = Estimator.LOWER
    rule: UpdateRule = field(default_factory=UpdateRule)
    retrain: bool = False
    parent_data: Path | None = None
    force: bool = False
    overwrite: bool = False
    show_progress: bool = True


@dataclass(frozen=True, slots=True)
class HeldOutComparison:
    """Admission and accepted precision of both artifacts on the held-out rows."""

    rows: int
    parent: AdmissionStats
    updated: AdmissionStats
    bar: float | None

    @property
    def passes(self) -> bool:
        """Whether the updated artifact's accepted precision holds the bar (vacuous when it
        accepts nothing)."""
        precision = self.updated.precision
        return self.bar is None or precision is None or precision >= self.bar - 1e-12

    def to_json(self) -> dict[str, Any]:
        """The comparison as recorded in the lineage and printed."""

        def view(stats: AdmissionStats) -> dict[str, Any]:
            return {
                "accepted": stats.accepted,
                "acceptanceRate": stats.acceptance_rate,
                "acceptedPrecision": stats.precision,
                "admitted": stats.admitted,
            }

        return {
            "rows": self.rows,
            "alpha": self.parent.alpha,
            "bar": self.bar,
            "parent": view(self.parent),
            "updated": view(self.updated),
        }


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """The updated model (written or not) and what the update did."""

    model: SDMModel
    counts: dict[str, int]
    skipped: int
    comparison: HeldOutComparison
    written: bool
    seconds: dict[str, float]


class UpdateRefused(Exception):
    """The update cannot run; the message says why and what to give instead."""


def refusal_bar(parent: AdmissionStats, alpha: float) -> float | None:
    """The accepted precision the update must keep on held-out rows: ``alpha`` when the parent
    met it (or accepted nothing), else the parent's own precision (never worse than before)."""
    if parent.rows == 0:
        return None
    if parent.precision is None or parent.precision >= alpha - 1e-12:
        return alpha
    return parent.precision


def held_out_stats(
    model: SDMModel,
    vectors: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    options: UpdateOptions,
) -> AdmissionStats:
    """The gateway's view on ``vectors``: accepted = in distribution, predicted correct, and
    the estimator's region alpha at least ``alpha`` (the cascade's ``judge``)."""
    if labels.size == 0:
        empty = np.zeros(0, dtype=bool)
        return admission_stats(empty, np.zeros(0, np.int64), labels, options.alpha)
    scores = model.score(vectors)
    alphas = (
        scores.lower_region_alpha if options.estimator is Estimator.LOWER
        else scores.centroid_region_alpha
    )  # fmt: skip
    admitted = admitted_at(np.asarray(alphas, dtype=np.float64), options.alpha)
    admitted &= ~np.asarray(scores.is_ood, dtype=bool)
    return admission_stats(admitted, scores.prediction, labels, options.alpha)


def _rows(records: list[AnswerRecord], vectors: np.ndarray[Any, Any]) -> LabelledRows:
    labels = np.asarray([record.label for record in records], dtype=np.int64)
    return LabelledRows(vectors.astype(np.float32), labels, tuple(r.id for r in records))


def _parent_split(parent_data: Path | None, name: str) -> list[AnswerRecord]:
    if parent_data is None:
        raise UpdateRefused(f"--parent-data is needed (its {SPLITS_DIR}/{name}.jsonl)")
    path = parent_data / SPLITS_DIR / f"{name}.jsonl"
    if not path.is_file():
        raise UpdateRefused(f"--parent-data: {path} does not exist (a `verifier build` folder)")
    return read_records(path)


def attach_from_build(
    parent: SDMModel, parent_data: Path, encoder: HiddenStateEncoder, show_progress: bool = True
) -> SDMModel:
    """``parent`` with its calibration exemplars, recomputed from the calibration split of the
    ``verifier build`` folder it came from (checked against its stored logits)."""
    calibration = _parent_split(parent_data, "calibration")
    vectors = encode_records(
        calibration, encoder, parent_data / "cache", show_progress=show_progress
    )
    return attach_calibration_vectors(parent, _rows(calibration, vectors))


def parent_training_config(parent: SDMModel) -> TrainingConfig:
    """The parent's training choices, from its recorded ``trainingRun``."""
    run = (parent.contents.metadata or {}).get("trainingRun", {}).get("configuration", {})
    cfg = parent.configuration
    return replace(
        DEFAULT_TRAINING,
        exemplar_dimension=cfg.exemplar_dimension,
        max_neighbors=cfg.max_neighbors,
        alpha_resolution=cfg.alpha_resolution,
        epochs=int(run.get("epochs", DEFAULT_TRAINING.epochs)),
        batch_size=int(run.get("batchSize", DEFAULT_TRAINING.batch_size)),
        learning_rate=float(run.get("learningRate", DEFAULT_TRAINING.learning_rate)),
        seed=int(run.get("seed", DEFAULT_TRAINING.seed)),
        shuffles=int(run.get("iterations", DEFAULT_TRAINING.shuffles)),
        shuffle=False,
        class_names=CLASS_NAMES,
    )


def _lineage(
    parent: SDMModel,
    parts: dict[str, list[AnswerRecord]],
    options: UpdateOptions,
    comparison: HeldOutComparison | None,
) -> dict[str, Any]:
    return {
        "parentArtifactId": parent.artifact_id,
        "parentLineage": (parent.contents.metadata or {}).get("sdmRouter", {}).get("lineage"),
        "mode": "retrain" if options.retrain else "recalibrate",
        "rule": options.rule.describe(),
        "data": str(options.data),
        "added": {name: [record.id for record in parts[name]] for name in PARTS},
        "heldOutComparison": None if comparison is None else comparison.to_json(),
    }


def _with_lineage(
    model: SDMModel, lineage: dict[str, Any], added: Sequence[AnswerRecord]
) -> SDMModel:
    """The updated artifact with its lineage, and its ``calibratedOn`` record grown by the
    models of the ``added`` support and calibration rows."""
    metadata = dict(model.contents.metadata or {})
    router = dict(metadata.get("sdmRouter", {}))
    router["lineage"] = lineage
    models = calibrated_on(added, router.get("calibratedOn") or ())
    if models:
        router["calibratedOn"] = models
    metadata["sdmRouter"] = router
    return SDMModel(replace(model.contents, metadata=metadata), device=model.device)


def apply_data_mix(
    parent: SDMModel, parts: dict[str, list[AnswerRecord]]
) -> dict[str, list[AnswerRecord]]:
    """Support and calibration keep the parent's families when it was built with a data mix
    (``minFamilyAccuracy`` > 0, ``verifierFamilies``); held-out rows keep every family, so the
    before/after comparison sees what the artifact does on the others too."""
    recorded = (parent.contents.metadata or {}).get("sdmRouter", {})
    mix = float(recorded.get("minFamilyAccuracy") or 0.0)
    families = [str(name) for name in recorded.get("verifierFamilies") or ()]
    return {
        name: rows if name == "held_out" else keep_covered(rows, families, mix)
        for name, rows in parts.items()
    }


def update_verifier(
    parent: SDMModel,
    records: Sequence[AnswerRecord],
    encoder: HiddenStateEncoder,
    options: UpdateOptions,
) -> UpdateOutcome:
    """Assign, encode, update (recalibrate or retrain), compare on held-out rows, and write
    the result unless it fails the precision bar (and ``force`` is off)."""
    started = time.perf_counter()
    contents = parent.contents
    known = set(contents.support.ids) | {str(row["id"]) for row in contents.calibration_rows or []}
    parts, skipped = assign_parts(records, options.rule, known)
    parts = apply_data_mix(parent, parts)
    if not parts["support"] and not parts["calibration"]:
        raise UpdateRefused(
            f"no new rows for support or calibration ({skipped} already in the artifact, "
            f"{len(parts['held_out'])} held out)"
        )
    cache = options.data / "cache"

    def encode(rows: list[AnswerRecord]) -> np.ndarray[Any, Any]:
        if not rows:
            return np.zeros((0, parent.embedding_dimension), dtype=np.float32)
        return encode_records(rows, encoder, cache, show_progress=options.show_progress)

    vectors = {name: encode(parts[name]) for name in PARTS}
    encoded = time.perf_counter()
    if options.retrain:
        updated = _retrain(parent, parts, vectors, encode, options)
    else:
        base = parent
        if contents.calibration_vectors is None:
            if options.parent_data is None:
                raise UpdateRefused(
                    "the parent stores no calibration exemplars (calibration.f32); give "
                    "--parent-data (its `verifier build` folder) to recompute them"
                )
            base = attach_from_build(parent, options.parent_data, encoder, options.show_progress)
        updated = extend(
            base,
            _rows(parts["support"], vectors["support"]),
            _rows(parts["calibration"], vectors["calibration"]),
        )
    trained = time.perf_counter()
    labels = np.asarray([record.label for record in parts["held_out"]], dtype=np.int64)
    before = held_out_stats(parent, vectors["held_out"], labels, options)
    after = held_out_stats(updated, vectors["held_out"], labels, options)
    comparison = HeldOutComparison(
        int(labels.size), before, after, refusal_bar(before, options.alpha)
    )
    added = [*parts["support"], *parts["calibration"]]
    updated = _with_lineage(updated, _lineage(parent, parts, options, comparison), added)
    written = comparison.passes or options.force
    if written:
        updated.save(options.out, overwrite=options.overwrite)
    return UpdateOutcome(
        model=updated,
        counts={name: len(parts[name]) for name in PARTS},
        skipped=skipped,
        comparison=comparison,
        written=written,
        seconds={
            "encode": round(encoded - started, 2),
            "update": round(trained - encoded, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    )


def _retrain(
    parent: SDMModel,
    parts: dict[str, list[AnswerRecord]],
    vectors: dict[str, np.ndarray[Any, Any]],
    encode: Any,
    options: UpdateOptions,
) -> SDMModel:
    """A fresh adaptor trained on the parent's training rows plus the new support rows, and
    calibrated on the parent's calibration rows plus the new calibration rows."""
    train = _parent_split(options.parent_data, "train")
    calibration = _parent_split(options.parent_data, "calibration")
    if {record.id for record in train} != set(parent.contents.support.ids):
        raise UpdateRefused(
            "--parent-data: its train split is not the artifact's support (another build?)"
        )
    x_train = np.concatenate([encode(train), vectors["support"]])
    x_cal = np.concatenate([encode(calibration), vectors["calibration"]])
    train_rows = train + parts["support"]
    cal_rows = calibration + parts["calibration"]
    metadata = dict(parent.contents.metadata or {})
    metadata.pop("trainingRun", None)
    metadata.pop("bestIterationSplits", None)
    return train_model(
        x_train,
        np.asarray([r.label for r in train_rows], dtype=np.int64),
        x_cal,
        np.asarray([r.label for r in cal_rows], dtype=np.int64),
        parent_training_config(parent),
        ids_train=[r.id for r in train_rows],
        ids_cal=[r.id for r in cal_rows],
        representation=dict(parent.representation),
        metadata=metadata,
        progress=None,
    )
