"""``sdm-router router build|evaluate``: the prompt router (see ``router_build``)."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

from sdm_router.core.errors import ConfigurationError


def _layers(text: str) -> tuple[int | None, ...]:
    return tuple(None if part == "final" else int(part) for part in text.split(",") if part)


def _read_rows(path: Path) -> list[Any]:
    from sdm_router.training.records import AnswerRecord, read_records

    if path.suffix != ".gz":
        return read_records(path)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [AnswerRecord.from_json(json.loads(line)) for line in handle if line.strip()]


def _build(args: argparse.Namespace) -> int:
    from sdm_router.models.causal_lm import load_causal_lm
    from sdm_router.training.router_build import RouterBuildOptions, build_router
    from sdm_router.verifier.encoder import HiddenStateEncoder

    layers = _layers(args.layers)
    records = _read_rows(args.data)
    source = None if args.encoder == "embedded" else args.encoder
    loaded = load_causal_lm(source, device=args.device)
    encoders = {layer: HiddenStateEncoder(loaded, layer=layer) for layer in layers}
    options = RouterBuildOptions(
        out=args.out,
        splits_dir=args.splits,
        layers=layers,
        retrieval=not args.no_retrieval,
        holdout_family=args.holdout_family,
        holdout_phrasing=args.holdout_phrasings,
        skip_alpha=args.skip_alpha,
        calibrated_on=tuple(args.calibrated_on.split(",")) if args.calibrated_on else None,
        overwrite=args.overwrite,
    )
    try:
        manifest = build_router(options, encoders, records)
    except FileExistsError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    print(json.dumps(manifest, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from sdm_router.training.router_evaluate import evaluate_at, markdown
    from sdm_router.verifier.encoder import HiddenStateEncoder
    from sdm_router.verifier.prompt_router import PromptRouterModel
    from sdm_router.verifier.recipe import layer_from_identity

    try:
        router = PromptRouterModel.load(args.router)
    except ConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    source = None if args.encoder == "embedded" else args.encoder
    encoder = HiddenStateEncoder.from_local(
        source, device=args.device, layer=layer_from_identity(router.identity)
    )
    alphas = [float(value) for value in args.skip_alpha.split(",")]
    reports = evaluate_at(router, encoder, args.splits, alphas)
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "report.json").write_text(json.dumps(reports, indent=2) + "\n")
    text = "\n".join(markdown(report) for report in reports)
    (args.report / "README.md").write_text(text + "\n")
    print(text)
    return 0


def register(commands: Any) -> None:
    """Add the ``router`` command group."""
    router = commands.add_parser("router", help="build and evaluate the prompt router")
    sub = router.add_subparsers(dest="router_command", required=True)
    build = sub.add_parser("build", help="train and calibrate one SDM model per tier on prompts")
    build.add_argument(
        "--data", type=Path, required=True, help="data rows (rows.jsonl or .jsonl.gz)"
    )
    build.add_argument("--out", type=Path, required=True, help="the router folder to write")
    build.add_argument("--splits", type=Path, required=True, help="where the prompt splits go")
    build.add_argument(
        "--layers", default="8,16,24,final",
        help="candidate layers, chosen on a validation carve of train (default: %(default)s)",
    )  # fmt: skip
    build.add_argument("--holdout-family", default="weekdays")
    build.add_argument("--holdout-phrasings", default="1")
    build.add_argument("--skip-alpha", type=float, default=0.95)
    build.add_argument(
        "--no-retrieval", action="store_true",
        help="tier 0's label ignores the answers regenerated with retrieved context",
    )  # fmt: skip
    build.add_argument("--calibrated-on", default=None, help="model identities, comma-separated")
    build.add_argument("--encoder", default="embedded")
    build.add_argument("--device", default="auto")
    build.add_argument("--overwrite", action="store_true")
    build.set_defaults(func=_build)
    evaluate = sub.add_parser("evaluate", help="skip rates and false skips per family")
    evaluate.add_argument("--router", type=Path, required=True)
    evaluate.add_argument("--splits", type=Path, required=True, help="router build's --splits")
    evaluate.add_argument("--report", type=Path, required=True)
    evaluate.add_argument(
        "--skip-alpha", default="0.9,0.95",
        help="the skip_alpha values to report, comma-separated (one reading of each split)",
    )  # fmt: skip
    evaluate.add_argument("--encoder", default="embedded")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(func=_evaluate)
