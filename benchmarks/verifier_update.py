"""How long ``verifier update`` takes for 1k and 10k added rows, against retraining.

On the shipped artifact (1378 support rows, 1050 calibration rows, D = 1157, M = 64), in one
run and one process, for each size n: n synthetic feature rows (Gaussian at the artifact's
normalization, half labelled correct), split 40/40/20 by the update rule's fractions:

- *recalibrate*: ``sdm.update.extend`` (project the new support and calibration rows, re-match
  every calibration row against the grown support, refit CDFs and regions): what ``verifier
  update`` does after encoding;
- *retrain*: ``train_model`` on (support-sized synthetic parent rows + new support) and (parent
  calibration + new calibration) with the shipped artifact's training choices: what
  ``--retrain`` does after encoding.

Encoding is measured separately on the embedded encoder (``--encode-rows`` real answers from
the shipped data), since it is the same for both and dominates on CPU.

Run: ``python -m benchmarks.verifier_update [--sizes 1000 10000] [--encode-rows 64]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import sdm_router
from sdm_router.training.verifier_update import UpdateRule, parent_training_config
from sdm_router.verifier.sdm import SDMModel, train_model
from sdm_router.verifier.sdm.update import LabelledRows, extend

ARTIFACT = Path(sdm_router.__file__).parent / "artifacts" / "smollm2-135m.sdmkitmodel"
DATA = Path(__file__).resolve().parents[1] / "data" / "smollm2-135m-default-rows.jsonl.gz"


def _rows(model: SDMModel, count: int, prefix: str, seed: int) -> LabelledRows:
    rng = np.random.default_rng(seed)
    norm = model.contents.normalization
    vectors = rng.normal(norm.mean, norm.standard_deviation, (count, model.embedding_dimension))
    labels = np.asarray([i % 2 for i in range(count)], dtype=np.int64)
    return LabelledRows(
        vectors.astype(np.float32), labels, tuple(f"{prefix}-{i}" for i in range(count))
    )


def _recalibrate(model: SDMModel, n: int) -> tuple[float, int]:
    rule = UpdateRule()
    support = _rows(model, round(n * rule.support), "s", 1)
    calibration = _rows(model, n - round(n * rule.support) - round(n * rule.held_out), "c", 2)
    started = time.perf_counter()
    updated = extend(model, support, calibration)
    return time.perf_counter() - started, updated.support_size


def _retrain(model: SDMModel, n: int) -> float:
    rule = UpdateRule()
    parent_train = _rows(model, model.support_size, "pt", 3)
    parent_cal = _rows(model, len(model.contents.calibration_rows or []), "pc", 4)
    support = _rows(model, round(n * rule.support), "s", 1)
    calibration = _rows(model, n - round(n * rule.support) - round(n * rule.held_out), "c", 2)
    config = replace(parent_training_config(model), device="cpu")
    started = time.perf_counter()
    train_model(
        np.concatenate([parent_train.vectors, support.vectors]),
        np.concatenate([parent_train.labels, support.labels]),
        np.concatenate([parent_cal.vectors, calibration.vectors]),
        np.concatenate([parent_cal.labels, calibration.labels]),
        config,
        ids_train=list(parent_train.ids + support.ids),
        ids_cal=list(parent_cal.ids + calibration.ids),
    )
    return time.perf_counter() - started


def _encode_rate(rows: int) -> float:
    from sdm_router.training.featurize import encode_records
    from sdm_router.training.records import AnswerRecord
    from sdm_router.verifier.sdm_verifier import load_recorded_encoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        records = [AnswerRecord.from_json(json.loads(next(handle))) for _ in range(rows)]
    model = SDMModel.load(ARTIFACT, device="cpu")
    encoder = load_recorded_encoder(model, "embedded", device="cpu")
    encode_records(records[:4], encoder, None, show_progress=False)  # warm up
    started = time.perf_counter()
    encode_records(records, encoder, None, show_progress=False)
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--encode-rows", type=int, default=64)
    parser.add_argument("--skip-retrain", action="store_true")
    args = parser.parse_args()
    model = SDMModel.load(ARTIFACT, device="cpu")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; artifact "
        f"{model.artifact_id}: {model.support_size} support, "
        f"{len(model.contents.calibration_rows or [])} calibration rows, "
        f"D={model.embedding_dimension}"
    )
    print(f"{'added rows':>10} {'recalibrate s':>14} {'retrain s':>10} {'retrain/recal':>14}")
    for n in args.sizes:
        recal, _ = _recalibrate(model, n)
        retrain = float("nan") if args.skip_retrain else _retrain(model, n)
        print(f"{n:>10} {recal:>14.2f} {retrain:>10.1f} {retrain / recal:>14.1f}", flush=True)
    if args.encode_rows:
        rate = _encode_rate(args.encode_rows)
        print(
            f"encode (embedded SmolLM2, layer 20, {args.encode_rows} real rows): {rate:.1f} rows/s;"
            f" so 1k rows ~{1000 / rate:.0f} s, 10k rows ~{10000 / rate:.0f} s of encoding"
        )


if __name__ == "__main__":
    main()
