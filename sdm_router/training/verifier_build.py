"""``verifier build``: encode labelled answers, split them, train and calibrate the SDM verifier."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdm_router.training.featurize import encode_records
from sdm_router.training.records import (
    ROWS_FILE,
    AnswerRecord,
    calibrated_on,
    read_records,
    write_records,
)
from sdm_router.training.splits import (
    DEFAULT_HOLDOUT_PHRASINGS,
    EmptyDataMix,
    HoldOut,
    PhrasingHoldOut,
    Splits,
    covered_families,
    held_out_templates,
    holdout_families,
    holdout_phrasings,
    keep_covered,
    split_records,
)
from sdm_router.training.suites import DEFAULT_HOLDOUT
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.features import FEATURE_COMPOSITION
from sdm_router.verifier.sdm import SDMModel, TrainingConfig, train_model

SPLITS_DIR = "splits"
CLASS_NAMES = ("incorrect", "correct")

# The gateway verifier's training choices where they differ from the reference's defaults.
DEFAULT_TRAINING = TrainingConfig(
    exemplar_dimension=128, epochs=40, learning_rate=1e-3, max_neighbors=1024
)


@dataclass(frozen=True, slots=True)
class VerifierBuildOptions:
    """Data, split, attempt and output choices, plus the SDM ``training`` choices.

    ``build_verifier`` always trains on the grouped split as given (``shuffle=False``:
    calibration facts never appear in the support) and names the classes ``CLASS_NAMES``,
    whatever ``training`` says; ``training.seed`` starts the first attempt's seed block.
    ``holdout_family``: the families kept out as the shift test (one name, a comma-separated
    list, a tuple of names, or None), by default ``suites.DEFAULT_HOLDOUT``.
    ``holdout_phrasing``: the templates kept out of train / calibration / test as the phrasing
    check (``splits.holdout_phrasings``), by default p1 of every family.
    ``min_family_accuracy``: train and calibrate only on the families at least this share of
    whose training answers are correct (``splits.covered_families``; 0 keeps every family);
    the test, shift and phrasing splits keep every family, so the report shows what the
    verifier does on the families it left out.
    ``exemplar_text``: store each support row's text (its question and answer) in the artifact,
    for the console's nearest exemplars; off by default, since it copies training data into
    the artifact.
    ``calibrated_on``: the model identities to record as what the artifact was calibrated on,
    instead of the rows' ``model`` (rows that name a backend, as older ``data build`` rows do,
    or nothing); None records the rows' own.
    """

    data: Path
    out: Path
    training: TrainingConfig = DEFAULT_TRAINING
    holdout_family: HoldOut = DEFAULT_HOLDOUT
    holdout_phrasing: PhrasingHoldOut = DEFAULT_HOLDOUT_PHRASINGS
    split_seed: int = 0
    min_family_accuracy: float = 0.0
    target_alpha: float | None = None
    attempts: int = 1
    overwrite: bool = False
    show_progress: bool = True
    calibrated_on: tuple[str, ...] | None = None
    exemplar_text: bool = False


def write_splits(splits: Splits, folder: Path) -> dict[str, int]:
    """Write each split as JSONL (``verifier evaluate`` reads test, shift and phrasing)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: write_records(folder / f"{name}.jsonl", rows)
        for name, rows in splits.as_dict().items()
    }


def has_region(alphas: list[float], target: float | None) -> bool:
    """Whether a calibrated ladder reaches ``target`` (always true without a target)."""
    return target is None or any(alpha >= target - 1e-9 for alpha in alphas)


def _labels(records: list[AnswerRecord]) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.asarray([record.label for record in records], dtype=np.int64)


def exemplar_text(record: AnswerRecord) -> str:
    """A support row's text as the console shows it: the question, then the answer given."""
    return f"Q: {record.question}\nA: {record.response}"


def with_exemplar_text(model: SDMModel, support: Sequence[AnswerRecord]) -> SDMModel:
    """``model`` with each support row's text (``exemplar_text``) stored beside its id."""
    texts = {record.id: exemplar_text(record) for record in support}
    rows = model.contents.support
    documents = tuple(texts.get(identifier) for identifier in rows.ids)
    contents = replace(model.contents, support=replace(rows, documents=documents))
    return SDMModel(contents, device=model.device)


def build_verifier(
    options: VerifierBuildOptions,
    encoder: HiddenStateEncoder,
    records: list[AnswerRecord] | None = None,
) -> SDMModel:
    """Split, encode, train and save; returns the trained model. ``records``: the rows of
    ``options.data`` when the caller has read them already."""
    started = time.perf_counter()
    if records is None:
        records = read_records(options.data / ROWS_FILE)
    splits = split_records(
        records,
        options.holdout_family,
        seed=options.split_seed,
        holdout_phrasing=options.holdout_phrasing,
    )
    mix = options.min_family_accuracy
    families = covered_families(splits.train, mix)
    if mix > 0.0 and not families:
        raise EmptyDataMix(mix)
    splits = replace(
        splits,
        train=keep_covered(splits.train, families, mix),
        calibration=keep_covered(splits.calibration, families, mix),
    )
    counts = write_splits(splits, options.data / SPLITS_DIR)
    cache = options.data / "cache"
    x_train = encode_records(splits.train, encoder, cache, show_progress=options.show_progress)
    x_cal = encode_records(splits.calibration, encoder, cache, show_progress=options.show_progress)
    encoded = time.perf_counter()
    if options.attempts < 1:
        raise ValueError("attempts must be at least 1")
    # Keep the grouped split: calibration facts never appear in the support.
    config = replace(options.training, shuffle=False, class_names=CLASS_NAMES)
    held_out = holdout_families(options.holdout_family)
    metadata: dict[str, dict[str, Any]] = {
        "sdmRouter": {
            "encoder": encoder.identity,
            "featureComposition": FEATURE_COMPOSITION,
            # holdoutFamily: the first held-out family (or null), as artifacts have always
            # recorded it; holdoutFamilies: all of them.
            "holdoutFamily": held_out[0] if held_out else None,
            "holdoutFamilies": list(held_out),
            # holdoutPhrasings: the rule (as --holdout-phrasings spells it);
            # holdoutPhrasingTemplates: family -> template indices in splits/phrasing.jsonl.
            "holdoutPhrasings": holdout_phrasings(options.holdout_phrasing).spec,
            "holdoutPhrasingTemplates": held_out_templates(splits.phrasing),
            "splitSeed": options.split_seed,
            # verifierFamilies: the families train and calibration kept, by the rule
            # minFamilyAccuracy (the share of correct training answers a family needs).
            "minFamilyAccuracy": options.min_family_accuracy,
            "verifierFamilies": list(families),
            "splitCounts": counts,
            "dataRows": len(records),
            "encodeSeconds": round(encoded - started, 1),
        }
    }
    # calibratedOn: the models whose answers the verifier learnt and was calibrated on; the
    # gateway judges a route with it only when it lists every tier's model (rows that name no
    # model leave it out, and the artifact is taken to cover every model)
    learnt = [*splits.train, *splits.calibration]
    models = calibrated_on(learnt)
    if options.calibrated_on is not None:
        models = [{"model": model, "rows": len(learnt)} for model in options.calibrated_on]
    if models:
        metadata["sdmRouter"]["calibratedOn"] = models
    rejected: list[dict[str, Any]] = []
    for attempt in range(options.attempts):
        # Each attempt trains a fresh block of `shuffles` seeds; stop at the first whose
        # calibration (only: the test splits are never looked at) yields a region at the
        # target alpha. The artifact records the seed it kept and the seeds it rejected.
        seed = (config.seed + attempt * config.shuffles) % 2**64
        recorded = {"trainingSeed": seed, "rejectedSeeds": list(rejected)}
        model = train_model(
            x_train,
            _labels(splits.train),
            x_cal,
            _labels(splits.calibration),
            replace(config, seed=seed),
            ids_train=[record.id for record in splits.train],
            ids_cal=[record.id for record in splits.calibration],
            representation=encoder.representation,
            metadata={**metadata, "sdmRouter": {**metadata["sdmRouter"], **recorded}},
            progress=None,
        )
        alphas = [region.alpha for region in model.contents.regions]
        if has_region(alphas, options.target_alpha) or attempt == options.attempts - 1:
            break
        rejected.append({"seed": seed, "regionAlphas": alphas})
    if options.exemplar_text:
        model = with_exemplar_text(model, splits.train)
    model.save(options.out, overwrite=options.overwrite)
    summary = {
        "artifact": str(options.out),
        "artifact_id": model.artifact_id,
        "splits": counts,
        "encode_seconds": round(encoded - started, 1),
        "train_seconds": round(time.perf_counter() - encoded, 1),
        "training_seed": seed,
        "rejected_seeds": rejected,
    }
    (options.data / "build-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return model
