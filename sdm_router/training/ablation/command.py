"""``sdm-router verifier ablate``: the argument parser and the command."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from sdm_router.core.errors import ConfigurationError

DEFAULT_LAYERS = "12,16,20,24,final"


def register(verifier_commands: Any) -> None:
    """Add ``verifier ablate`` to the ``verifier`` command group."""
    from sdm_router.core.verdict import Estimator
    from sdm_router.training.ablation.runner import DEFAULT_ALPHAS, AblationOptions
    from sdm_router.training.ablation.variants import DEFAULT_VARIANTS
    from sdm_router.training.cli import register_training_arguments
    from sdm_router.training.splits import holdout_families, holdout_phrasings

    defaults = AblationOptions()
    ablate = verifier_commands.add_parser(
        "ablate",
        help="compare verifier representations on a validation split (never test)",
        description="Train the SDM verifier on each representation variant over several seeds "
        "and report the gateway view on a validation split carved from train + calibration. "
        "See docs/verifier-ablation.md.",
    )
    ablate.add_argument("--data", type=Path, required=True, help="a `data build` folder")
    ablate.add_argument("--out", type=Path, required=True, help="folder for ablation.md/.json")
    ablate.add_argument(
        "--limit", type=int, default=None, help="at most about this many development rows"
    )
    ablate.add_argument("--seeds", type=int, default=defaults.seeds, help="runs per variant")
    ablate.add_argument(
        "--variants", nargs="+", default=list(DEFAULT_VARIANTS),
        help="POOLING[,..]@LAYER[,..][+lp][+sc] specs (default: the one-factor list)",
    )  # fmt: skip
    ablate.add_argument(
        "--layers", default=DEFAULT_LAYERS,
        help="layers the probe pools (and caches) besides the variants' (default: %(default)s)",
    )  # fmt: skip
    ablate.add_argument(
        "--holdout-family", default=",".join(holdout_families(defaults.holdout_family)),
        help="the build's shift families, never read (default: %(default)s)",
    )  # fmt: skip
    ablate.add_argument(
        "--holdout-phrasings", default=holdout_phrasings(defaults.holdout_phrasing).spec,
        help="the build's held-out templates, never read (default: %(default)s)",
    )  # fmt: skip
    ablate.add_argument("--split-seed", type=int, default=0, help="the build's split seed")
    ablate.add_argument("--validation-seed", type=int, default=0, help="the carve's seed")
    ablate.add_argument(
        "--vary-splits", action="store_true", help="carve a new validation split per run"
    )
    ablate.add_argument(
        "--min-family-accuracy", type=float, default=defaults.min_family_accuracy,
        help="train and calibrate each run only on the families at least this share of whose "
        "carved training answers are correct, as verifier build does; validation keeps every "
        "family (default: %(default)s)",
    )  # fmt: skip
    ablate.add_argument(
        "--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS), help="target alphas"
    )
    ablate.add_argument(
        "--estimator", choices=[e.value for e in Estimator], default=defaults.estimator.value
    )
    register_training_arguments(ablate)
    ablate.add_argument("--encoder", default="embedded", help="embedded, a .gguf or a folder")
    ablate.add_argument("--device", default="auto")
    ablate.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    ablate.add_argument("--batch-size", type=int, default=16, help="rows per forward pass")
    ablate.add_argument(
        "--cache", type=Path, default=None, help="probe cache folder (default: DATA/cache)"
    )
    ablate.set_defaults(func=ablate_command)


def _options(args: argparse.Namespace) -> Any:
    from sdm_router.core.verdict import Estimator
    from sdm_router.training.ablation.runner import AblationOptions
    from sdm_router.training.cli import training_options
    from sdm_router.training.splits import holdout_families, holdout_phrasings

    training = training_options(args)
    options = AblationOptions(
        variants=tuple(args.variants),
        seeds=args.seeds,
        limit=args.limit,
        holdout_family=holdout_families(args.holdout_family),
        holdout_phrasing=holdout_phrasings(args.holdout_phrasings),
        split_seed=args.split_seed,
        validation_seed=args.validation_seed,
        vary_splits=args.vary_splits,
        min_family_accuracy=args.min_family_accuracy,
        alphas=tuple(args.alphas),
        estimator=Estimator(args.estimator),
        training=training,
    )
    options.parsed_variants()  # a bad spec fails here, before the model loads
    return options


def ablate_command(args: argparse.Namespace) -> int:
    """Run the ablation; 0, or 2 on bad input."""
    from sdm_router.training.records import ROWS_FILE, RecordError, read_records
    from sdm_router.verifier.sdm import SDMConfigurationError

    rows = args.data / ROWS_FILE
    if not rows.is_file():
        print(f"sdm-router: --data: {rows} does not exist", file=sys.stderr)
        return 2
    try:
        options = _options(args)
    except (ValueError, SDMConfigurationError) as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        records = read_records(rows)
    except RecordError as error:
        print(f"sdm-router: --data: {error}", file=sys.stderr)
        return 2
    read_seconds = time.perf_counter() - started
    print(f"read {len(records)} rows in {read_seconds:.1f} s", flush=True)
    from sdm_router.models.causal_lm import load_causal_lm
    from sdm_router.training.ablation.probe import RepresentationProbe
    from sdm_router.training.ablation.report import write_report
    from sdm_router.training.ablation.runner import ablate

    loading = time.perf_counter()
    try:
        loaded = load_causal_lm(args.encoder, device=args.device, threads=args.threads)
        layers = [
            *args.layers.split(","),
            *(v for p in options.parsed_variants() for v in p.layers),
        ]
        probe = RepresentationProbe(loaded, layers, batch_size=args.batch_size)
    except (ValueError, ConfigurationError) as error:
        print(f"sdm-router: --encoder/--layers: {error}", file=sys.stderr)
        return 2
    load_seconds = time.perf_counter() - loading
    print(f"loaded {loaded.name} in {load_seconds:.1f} s", flush=True)
    try:
        document = ablate(records, probe, options, args.cache or args.data / "cache", log=_log)
    except ValueError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    stages = document["timings"]["seconds"]
    document["timings"]["seconds"] = {
        "read": round(read_seconds, 2),
        "load model": round(load_seconds, 2),
        **stages,
    }
    document["wallSeconds"] = round(time.perf_counter() - started, 1)
    command = "sdm-router " + shlex.join(sys.argv[1:])
    paths = write_report(args.out, document, command)
    counts = document["timings"]["counts"]
    for stage, seconds in document["timings"]["seconds"].items():
        counted = f" ({counts[stage]})" if stage in counts else ""
        print(f"stage {stage}: {seconds:.1f} s{counted}")
    print("winner: " + ", ".join(f"α {a}: {w}" for a, w in document["winner"].items()))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _log(line: str) -> None:
    print(line, flush=True)
