"""``router build``: the prompt router, one SDM model per tier of a route over the prompt alone.

Each tier's model predicts, from the prompt's representation (``HiddenStateEncoder.
encode_prompts``: the last prompt token's state and the mean over the prompt, at one layer),
whether that tier will answer correctly. Same estimator, training and calibration as the
answer verifier (``verifier.sdm.train_model``), same splits (``splits.split_records``: whole
facts per split, held-out families as the shift test, held-out templates as the phrasing check).

Labels per question (``prompt_rows``), from the data rows of ``data build`` (every answer of a
question, labelled by the exact checkers):

- tier 0: the greedy answer is correct, or, on a route with retrieval, the answer regenerated
  with retrieved context is (the route retrieves at tier 0 before it escalates: the router
  predicts "with retrieval");
- tier 1 (best-of-n sampling): any answer of the question is correct (greedy, sampled or with
  context): the data hold one or two samples per question, fewer than the tier's n, so any
  correct answer of the model counts as a chance the tier has.

A label is "correct", not "accepted and correct": a tier that cannot answer correctly cannot be
accepted correctly either, so a skip the router is sure of is safe under either; skipping on
"correct" is the more cautious of the two (it skips less).

The layer is chosen on a validation carve of the training facts only (``choose_layer``); the
calibration split calibrates and the test split is read once, by ``router evaluate``.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sdm_router.core.verdict import Verdict
from sdm_router.pipeline.prompt_routing import fails_confidently
from sdm_router.training.records import AnswerRecord, calibrated_on, write_records
from sdm_router.training.splits import HoldOut, PhrasingHoldOut, Splits, split_records
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.prompt_router import (
    ROUTER_FILE,
    ROUTER_FORMAT,
    PromptRouterModel,
    tier_artifact,
)
from sdm_router.verifier.recipe import FINAL_LAYER, PROMPT_POOLING
from sdm_router.verifier.sdm import SDMModel, TrainingConfig, train_model
from sdm_router.verifier.sdm_verifier import to_verdicts

F32Array = npt.NDArray[np.float32]
CLASS_NAMES = ("fails", "answers")
ROUTER_TRAINING = TrainingConfig(
    exemplar_dimension=64, epochs=40, learning_rate=1e-3, max_neighbors=1024, shuffles=3
)
# The cost of a false skip in validation, in right skips: 1 / (1 - 0.95) at the default
# skip_alpha (a skip may be wrong at most 5 % of the time).
FALSE_SKIP_COST = 20.0


@dataclass(frozen=True, slots=True)
class PromptRow:
    """One question: its prompt (as a verifier-less record) and whether each tier answers it."""

    record: AnswerRecord  # response "", label = tier 0's
    labels: tuple[int, ...]  # per tier: 1 when the tier would answer correctly


def prompt_rows(records: Sequence[AnswerRecord], retrieval: bool) -> list[PromptRow]:
    """One row per question (``item_id``) with the labels of a two-tier route (greedy, then
    best-of-n), see the module; questions without a greedy answer are left out."""
    by_item: dict[str, list[AnswerRecord]] = defaultdict(list)
    for record in records:
        by_item[record.item_id].append(record)
    rows = []
    for item_id in sorted(by_item):
        answers = by_item[item_id]
        greedy = next((r for r in answers if r.variant == "greedy"), None)
        if greedy is None:
            continue
        with_context = any(r.label for r in answers if r.variant == "retrieval")
        first = int(bool(greedy.label) or (retrieval and with_context))
        any_correct = int(any(r.label for r in answers))
        record = replace(
            greedy,
            id=f"{item_id}#prompt",
            variant="prompt",
            response="",
            token_logprobs=None,
            label=first,
        )
        rows.append(PromptRow(record, (first, max(first, any_correct))))
    return rows


@dataclass(frozen=True, slots=True)
class RouterBuildOptions:
    """Data, split and output choices. ``layers``: the candidates ``choose_layer`` picks from
    on validation (one candidate: no choice)."""

    out: Path
    splits_dir: Path
    layers: tuple[int | None, ...] = (8, 16, 24, None)
    retrieval: bool = True
    holdout_family: HoldOut = "weekdays"
    holdout_phrasing: PhrasingHoldOut = "1"
    split_seed: int = 0
    skip_alpha: float = 0.95
    training: TrainingConfig = ROUTER_TRAINING
    calibrated_on: tuple[str, ...] | None = None
    overwrite: bool = False


def _labels(rows: Sequence[PromptRow], tier: int) -> npt.NDArray[np.int64]:
    return np.asarray([row.labels[tier] for row in rows], dtype=np.int64)


Vectors = dict[int | None, dict[str, F32Array]]  # layer -> item id -> prompt vector


def encode_rows(
    encoder: HiddenStateEncoder, rows: Sequence[PromptRow], layers: Sequence[int | None]
) -> Vectors:
    """Each row's prompt vector at every candidate layer, one forward per batch."""
    encoded = encoder.encode_prompt_layers([row.record.messages for row in rows], layers)
    return {
        layer: {row.record.item_id: encoded[layer][i] for i, row in enumerate(rows)}
        for layer in layers
    }


def _matrix(vectors: dict[str, F32Array], rows: Sequence[PromptRow]) -> F32Array:
    return np.stack([vectors[row.record.item_id] for row in rows]).astype(np.float32)


def _train(
    x_train: F32Array,
    train: Sequence[PromptRow],
    x_cal: F32Array,
    calibration: Sequence[PromptRow],
    tier: int,
    config: TrainingConfig,
    **extra: Any,
) -> SDMModel:
    return train_model(
        x_train,
        _labels(train, tier),
        x_cal,
        _labels(calibration, tier),
        replace(config, shuffle=False, class_names=CLASS_NAMES),
        ids_train=[row.record.id for row in train],
        ids_cal=[row.record.id for row in calibration],
        progress=None,
        **extra,
    )


def skip_score(verdicts: Sequence[Verdict], labels: Sequence[int], skip_alpha: float) -> float:
    """Validation score of skip decisions: right skips less ``FALSE_SKIP_COST`` per wrong one."""
    right = wrong = 0
    for verdict, label in zip(verdicts, labels, strict=True):
        if fails_confidently(verdict, skip_alpha):
            right += label == 0
            wrong += label == 1
    return right - FALSE_SKIP_COST * wrong


def choose_layer(
    options: RouterBuildOptions, vectors: Vectors, splits: Splits, rows: dict[str, PromptRow]
) -> tuple[int | None, dict[str, float]]:
    """The candidate layer whose tier-0 model skips best on a validation carve (a quarter of
    the training facts, trained on the rest, calibrated on calibration): never test."""
    groups = sorted({record.group_id for record in splits.train})
    random.Random(options.split_seed).shuffle(groups)
    held = set(groups[: max(1, len(groups) // 4)])
    fit = [rows[r.item_id] for r in splits.train if r.group_id not in held]
    validation = [rows[r.item_id] for r in splits.train if r.group_id in held]
    calibration = [rows[r.item_id] for r in splits.calibration]
    scores: dict[str, float] = {}
    config = replace(options.training, shuffles=1)
    for layer in options.layers:
        at = vectors[layer]
        model = _train(_matrix(at, fit), fit, _matrix(at, calibration), calibration, 0, config)
        scored = model.score(_matrix(at, validation))
        verdicts = to_verdicts(scored, [0] * len(validation))
        labels = [row.labels[0] for row in validation]
        scores[_layer_name(layer)] = skip_score(verdicts, labels, options.skip_alpha)
    best = max(options.layers, key=lambda layer: scores[_layer_name(layer)])
    return best, scores


def _layer_name(layer: int | None) -> str:
    return FINAL_LAYER if layer is None else str(layer)


def build_router(
    options: RouterBuildOptions,
    encoder_for: dict[int | None, HiddenStateEncoder],
    records: Sequence[AnswerRecord],
) -> dict[str, Any]:
    """Split, choose the layer on validation, train and calibrate one model per tier, save the
    router folder and the prompt splits; returns the build summary."""
    started = time.perf_counter()
    if options.out.exists() and not options.overwrite:
        raise FileExistsError(f"{options.out} exists (pass --overwrite)")
    prompt = prompt_rows(records, options.retrieval)
    rows = {row.record.item_id: row for row in prompt}
    splits = split_records(
        [row.record for row in prompt],
        options.holdout_family,
        seed=options.split_seed,
        holdout_phrasing=options.holdout_phrasing,
    )
    options.splits_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.as_dict().items():
        write_records(options.splits_dir / f"{name}.jsonl", part)
    (options.splits_dir / "labels.json").write_text(
        json.dumps({item: list(row.labels) for item, row in rows.items()}) + "\n"
    )
    train = [rows[r.item_id] for r in splits.train]
    calibration = [rows[r.item_id] for r in splits.calibration]
    first = encoder_for[options.layers[0]]
    vectors = encode_rows(first, [*train, *calibration], options.layers)
    layer, validation = choose_layer(options, vectors, splits, rows)
    encoder = encoder_for[layer]
    x_train, x_cal = _matrix(vectors[layer], train), _matrix(vectors[layer], calibration)
    identity = {**encoder.identity, "pooling": PROMPT_POOLING}
    models = [
        {"model": model, "rows": len(train) + len(calibration)}
        for model in options.calibrated_on or ()
    ] or calibrated_on([row.record for row in (*train, *calibration)])
    options.out.mkdir(parents=True, exist_ok=True)
    tiers = []
    for tier in range(2):
        model = _train(
            x_train, train, x_cal, calibration, tier, options.training,
            representation=encoder.representation,
            metadata={"sdmRouter": {"encoder": identity, "promptRouterTier": tier,
                                    "calibratedOn": models}},
        )  # fmt: skip
        model.save(options.out / tier_artifact(tier), overwrite=True)
        tiers.append(
            {
                "artifact": tier_artifact(tier),
                "artifact_id": model.artifact_id,
                "regionAlphas": [region.alpha for region in model.contents.regions],
            }
        )
    manifest = {
        "format": ROUTER_FORMAT,
        "encoder": identity,
        "tiers": tiers,
        "retrievalInLabels": options.retrieval,
        "calibratedOn": models,
        "validationSkipScores": validation,
        "falseSkipCost": FALSE_SKIP_COST,
        "holdoutFamily": options.holdout_family,
        "holdoutPhrasings": options.holdout_phrasing,
        "splitSeed": options.split_seed,
        "splitCounts": {name: len(part) for name, part in splits.as_dict().items()},
        "buildSeconds": round(time.perf_counter() - started, 1),
    }
    (options.out / ROUTER_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    PromptRouterModel.load(options.out)  # what the gateway loads must load
    return manifest
