"""`sdm-router sdm train|score|evaluate`: argparse wiring and handlers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .dataset import read_jsonl
from .errors import SDMError
from .evaluation import evaluate
from .model import SDMModel
from .training import TrainingConfig, train_model

SCORE_BATCH = 1024


def register(subparsers: Any) -> None:
    """Add the ``sdm`` command group (train / score / evaluate) to an argparse subparsers."""
    group = subparsers.add_parser("sdm", help="train, score and evaluate SDM estimators")
    commands = group.add_subparsers(dest="sdm_command", required=True)
    _train_parser(commands)
    score = commands.add_parser("score", help="score JSONL rows with a .sdmkitmodel")
    score.add_argument("--model", required=True)
    score.add_argument("--input", required=True)
    score.add_argument("--output", required=True)
    score.add_argument("--nearest-exemplars", type=int, default=5)
    score.add_argument("--device", default="auto")
    score.set_defaults(func=run_score)
    evaluate_parser = commands.add_parser("evaluate", help="accuracy and admission per alpha")
    evaluate_parser.add_argument("--model", required=True)
    evaluate_parser.add_argument("--input", required=True)
    evaluate_parser.add_argument("--output", required=True)
    evaluate_parser.add_argument("--device", default="auto")
    evaluate_parser.set_defaults(func=run_evaluate)


def _train_parser(commands: Any) -> None:
    defaults = TrainingConfig()  # the reference's `sdm train` defaults, kept there once
    train = commands.add_parser("train", help="train an SDM estimator from JSONL splits")
    train.add_argument("--training", required=True)
    train.add_argument("--calibration", required=True)
    train.add_argument("--output", required=True)
    train.add_argument("--number-of-classes", type=int, default=defaults.number_of_classes)
    train.add_argument("--class-names", help="comma-separated, in label order")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--exemplar-dimension", type=int, default=defaults.exemplar_dimension)
    train.add_argument("--max-neighbors", type=int, default=defaults.max_neighbors)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--alpha-resolution", type=float, default=defaults.alpha_resolution)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--shuffles", type=int, default=defaults.shuffles, help="J pooled shuffles")
    train.add_argument("--no-shuffle", action="store_true", help="keep the given splits")
    train.add_argument("--device", default=defaults.device, choices=["auto", "cpu", "cuda"])
    train.add_argument("--fingerprint", default="embedding_v1")
    train.add_argument("--overwrite", action="store_true")
    train.set_defaults(func=run_train)


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def run_train(args: argparse.Namespace) -> int:
    """Handler for ``sdm train``."""
    from tqdm import tqdm

    try:
        classes = args.number_of_classes
        names = tuple(args.class_names.split(",")) if args.class_names else None
        train = read_jsonl(args.training, classes=classes)
        cal = read_jsonl(args.calibration, classes=classes, dimension=train.vectors.shape[1])
        config = TrainingConfig(
            number_of_classes=classes, exemplar_dimension=args.exemplar_dimension,
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            seed=args.seed, max_neighbors=args.max_neighbors,
            alpha_resolution=args.alpha_resolution, shuffles=args.shuffles,
            shuffle=not args.no_shuffle, device=args.device, class_names=names,
        )  # fmt: skip
        with tqdm(total=config.epochs * config.shuffles, desc="epochs", file=sys.stderr) as bar:

            def progress(row: dict[str, Any]) -> None:
                bar.set_postfix(cal_loss=f"{row['balancedCalibrationSDMLoss']:.4f}")
                bar.update(1)

            model = train_model(
                train.vectors, train.labels, cal.vectors, cal.labels, config,
                ids_train=train.ids, ids_cal=cal.ids, progress=progress,
                representation={"fingerprint": args.fingerprint},
                metadata={"sdmRouter": {"featureComposition": train.composition}},
            )  # fmt: skip
        model.save(args.output, overwrite=args.overwrite)
    except (SDMError, OSError) as error:
        return _fail(error)
    run = (model.contents.metadata or {}).get("trainingRun", {})
    print(json.dumps({"output": str(args.output), "modelID": model.artifact_id,
                      "bestIteration": run.get("bestIteration"), "bestEpoch": run.get("bestEpoch"),
                      "regions": len(model.contents.regions)}))  # fmt: skip
    return 0


def run_score(args: argparse.Namespace) -> int:
    """Handler for ``sdm score``: one output row per input row."""
    try:
        model = SDMModel.load(args.model, device=args.device)
        data = read_jsonl(args.input, dimension=model.embedding_dimension)
        with Path(args.output).open("w", encoding="utf-8") as stream:
            for start in range(0, len(data.ids), SCORE_BATCH):
                rows = data.vectors[start : start + SCORE_BATCH]
                scores = model.score(rows, nearest_exemplars=args.nearest_exemplars)
                for i in range(len(scores)):
                    row = {"modelID": model.artifact_id, "id": data.ids[start + i]}
                    row.update(scores.row(i).to_dict())
                    stream.write(json.dumps(row) + "\n")
    except (SDMError, OSError) as error:
        return _fail(error)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler for ``sdm evaluate``."""
    try:
        model = SDMModel.load(args.model, device=args.device)
        classes = model.number_of_classes
        data = read_jsonl(args.input, classes=classes, dimension=model.embedding_dimension)
        scores = model.score(data.vectors)
        alphas = [region.alpha for region in model.contents.regions]
        report = evaluate(scores, data.labels, classes, alphas)
        report["modelID"] = model.artifact_id
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except (SDMError, OSError) as error:
        return _fail(error)
    return 0
