"""``sdm-router data build`` and ``sdm-router verifier build|evaluate``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from sdm_router.core.errors import ConfigurationError
from sdm_router.verifier.recipe import POOLINGS as ENCODER_POOLINGS

if TYPE_CHECKING:
    from sdm_router.training.verifier_build import VerifierBuildOptions


def _data_build(args: argparse.Namespace) -> int:
    from sdm_router.config import load_settings
    from sdm_router.training.dataset_build import BuildOptions, build_dataset

    try:
        settings = load_settings(args.config)
    except ConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    if args.max_batch_size is not None:
        settings = _with_batch_size(settings, args.max_batch_size)
    if args.route not in settings.routes:
        print(f"sdm-router: --route: {args.route!r} is not in the config", file=sys.stderr)
        return 2
    from sdm_router.training.suites import get_suite

    try:
        get_suite(args.suite)
    except KeyError as error:
        print(f"sdm-router: --suite: {error.args[0]}", file=sys.stderr)
        return 2
    options = BuildOptions(
        suite=args.suite,
        limit=args.limit,
        seed=args.seed,
        samples=args.samples,
        concurrency=args.concurrency,
        retrieval=not args.no_retrieval,
        styled=not args.plain_prompts,
    )
    started = time.perf_counter()
    written = asyncio.run(build_dataset(settings, args.route, args.out, options))
    elapsed = time.perf_counter() - started
    rate = written / elapsed if elapsed > 0 else 0.0
    print(f"wrote {written} rows to {args.out} in {elapsed:.0f} s ({rate:.2f} answers/s)")
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from sdm_router.training.importing import labelled_decisions, read_import_file
    from sdm_router.training.records import ROWS_FILE, RecordError, write_records

    rows = args.output / ROWS_FILE
    if rows.exists() and not args.overwrite:
        print(f"sdm-router: --output: {rows} exists (add --overwrite)", file=sys.stderr)
        return 2
    if args.input is not None:
        if not args.input.is_file():
            print(f"sdm-router: --input: {args.input} is not a file", file=sys.stderr)
            return 2
        try:
            records = read_import_file(args.input)
        except RecordError as error:
            print(f"sdm-router: --input: {error}", file=sys.stderr)
            return 2
    else:
        from sdm_router.config import load_settings

        try:
            settings = load_settings(args.config)
        except ConfigurationError as error:
            print(f"sdm-router: {error}", file=sys.stderr)
            return 2
        try:
            records = list(
                labelled_decisions(settings.storage, args.route, args.since, args.sources)
            )
        except (ConfigurationError, SQLAlchemyError) as error:
            print(
                f"sdm-router: --from-store: cannot read the decision store: {error}",
                file=sys.stderr,
            )
            return 2
    if not records:
        print("sdm-router: nothing to import (no labelled rows)", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    written = write_records(rows, records)
    correct = sum(record.label for record in records)
    print(f"wrote {written} rows ({correct} labelled correct) to {rows}")
    return 0


def _with_batch_size(settings: Any, size: int) -> Any:
    """A copy whose local backends batch up to ``size`` rows (offline builds favour throughput)."""
    from sdm_router.config import LocalBackendSettings

    backends = {
        name: backend.model_copy(update={"max_batch_size": size})
        if isinstance(backend, LocalBackendSettings)
        else backend
        for name, backend in settings.backends.items()
    }
    return settings.model_copy(update={"backends": backends})


def _verifier_build(args: argparse.Namespace) -> int:
    from sdm_router.training.verifier_build import build_verifier, has_region
    from sdm_router.verifier.encoder import HiddenStateEncoder
    from sdm_router.verifier.sdm import SDMConfigurationError

    problem = _verifier_build_problem(args)
    if problem is not None:
        print(f"sdm-router: {problem}", file=sys.stderr)
        return 2
    try:
        options = _verifier_build_options(args)
    except SDMConfigurationError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    from sdm_router.training.records import ROWS_FILE, RecordError, read_records

    try:
        records = read_records(args.data / ROWS_FILE)
    except RecordError as error:
        print(f"sdm-router: --data: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        encoder = HiddenStateEncoder.from_local(
            args.encoder, device=args.device, layer=args.layer, pooling=args.pooling
        )
    except (ValueError, ConfigurationError) as error:
        print(f"sdm-router: --encoder: {error}", file=sys.stderr)
        return 2
    from sdm_router.training.splits import EmptyDataMix

    try:
        model = build_verifier(options, encoder, records)
    except EmptyDataMix as error:
        print(f"sdm-router: --min-family-accuracy: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote verifier {model.artifact_id} ({model.support_size} support rows) to {args.out} "
        f"in {time.perf_counter() - started:.0f} s"
    )
    alphas = [region.alpha for region in model.contents.regions]
    if not has_region(alphas, args.target_alpha):
        print(
            f"sdm-router: warning: no attempt yielded a region at alpha {args.target_alpha} "
            f"(kept the last; its regions: {alphas or 'none'}); more calibration data or "
            "more --attempts may help",
            file=sys.stderr,
        )
    return 0


def register_training_arguments(parser: Any) -> None:
    """The SDM training choices ``training_options`` reads (``verifier build`` and
    ``verifier ablate``), with the build's defaults."""
    from sdm_router.training.verifier_build import DEFAULT_TRAINING

    parser.add_argument(
        "--exemplar-dimension", type=int, default=DEFAULT_TRAINING.exemplar_dimension
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_TRAINING.epochs)
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_TRAINING.learning_rate)
    parser.add_argument("--max-neighbors", type=int, default=DEFAULT_TRAINING.max_neighbors)
    parser.add_argument("--seed", type=int, default=DEFAULT_TRAINING.seed)
    parser.add_argument("--shuffles", type=int, default=DEFAULT_TRAINING.shuffles)


def training_options(args: argparse.Namespace) -> Any:
    """The SDM training choices (``SDMTrainingOptions``) of ``verifier build`` or
    ``verifier ablate`` arguments: the defaults with what the command line sets."""
    from sdm_router.training.verifier_build import DEFAULT_TRAINING

    return replace(
        DEFAULT_TRAINING,
        exemplar_dimension=args.exemplar_dimension,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        max_neighbors=args.max_neighbors,
        seed=args.seed,
        shuffles=args.shuffles,
        device=args.device,
    )


def _verifier_build_options(args: argparse.Namespace) -> VerifierBuildOptions:
    """``VerifierBuildOptions`` from the arguments (the training choices are checked here)."""
    from sdm_router.training.splits import holdout_families
    from sdm_router.training.verifier_build import VerifierBuildOptions

    return VerifierBuildOptions(
        data=args.data,
        out=args.out,
        training=training_options(args),
        holdout_family=holdout_families(args.holdout_family),
        holdout_phrasing=args.holdout_phrasings,
        split_seed=args.split_seed,
        min_family_accuracy=args.min_family_accuracy,
        target_alpha=args.target_alpha,
        attempts=args.attempts,
        overwrite=args.overwrite,
        exemplar_text=args.exemplar_text,
        calibrated_on=None
        if args.calibrated_on is None
        else tuple(part.strip() for part in args.calibrated_on.split(",") if part.strip()),
    )


def _build_option_default(name: str) -> Any:
    """``VerifierBuildOptions``' default for the field ``name`` (defaults live there once)."""
    from sdm_router.training.verifier_build import VerifierBuildOptions

    (default,) = (item.default for item in fields(VerifierBuildOptions) if item.name == name)
    return default


def _phrasing_rule(value: str) -> Any:
    """``--holdout-phrasings`` as a ``PhrasingHoldout`` (a bad spelling is a usage error)."""
    from sdm_router.training.splits import holdout_phrasings

    try:
        return holdout_phrasings(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _verifier_build_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``verifier build``'s arguments, checked before any model loads."""
    from sdm_router.training.records import ROWS_FILE

    if args.attempts < 1:
        return "--attempts must be at least 1"
    if not 0.0 <= args.min_family_accuracy <= 1.0:
        return f"--min-family-accuracy must lie in [0, 1], got {args.min_family_accuracy}"
    rows = args.data / ROWS_FILE
    if not rows.is_file():
        return f"--data: {rows} does not exist (give a `data build` or `data import` folder)"
    if args.out.exists() and not args.overwrite:
        return f"--out: {args.out} exists (add --overwrite to replace it)"
    if args.encoder != "embedded" and not Path(args.encoder).expanduser().exists():
        return (
            f"--encoder: {args.encoder} does not exist (embedded, a .gguf file or a model folder)"
        )
    return None


def _verifier_update(args: argparse.Namespace) -> int:
    from sdm_router.config import load_settings
    from sdm_router.training.records import ROWS_FILE, RecordError, read_records
    from sdm_router.training.verifier_update import (
        UpdateOptions,
        UpdateRefused,
        UpdateRule,
        update_verifier,
    )
    from sdm_router.verifier.sdm import SDMError, SDMModel
    from sdm_router.verifier.sdm_verifier import check_compatible, load_recorded_encoder

    rows = args.data / ROWS_FILE
    if not rows.is_file():
        print(
            f"sdm-router: --data: {rows} does not exist (a `data import` folder)", file=sys.stderr
        )
        return 2
    if args.out.exists() and not args.overwrite:
        print(f"sdm-router: --out: {args.out} exists (add --overwrite)", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
        rule = UpdateRule(held_out=args.held_out, support=args.support)
    except (ConfigurationError, ValueError) as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    route = settings.routes.get(args.route)
    if route is None:
        print(f"sdm-router: --route: {args.route!r} is not in the config", file=sys.stderr)
        return 2
    try:
        records = read_records(rows)
        parent = SDMModel.load(args.verifier, device=args.device)
        encoder = load_recorded_encoder(parent, args.encoder, device=args.device)
        check_compatible(parent, encoder, args.verifier)
    except (RecordError, SDMError, ConfigurationError, ValueError) as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    options = UpdateOptions(
        out=args.out,
        data=args.data,
        alpha=route.accept_alpha if args.alpha is None else args.alpha,
        estimator=route.estimator,
        rule=rule,
        retrain=args.retrain,
        parent_data=args.parent_data,
        force=args.force,
        overwrite=args.overwrite,
    )
    try:
        outcome = update_verifier(parent, records, encoder, options)
    except (UpdateRefused, SDMError) as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    _print_update(outcome, parent.artifact_id, options)
    return 0 if outcome.written else 1


def _print_update(outcome: Any, parent_id: str, options: Any) -> None:
    comparison = outcome.comparison
    counts = outcome.counts
    print(
        f"new rows: {counts['support']} support, {counts['calibration']} calibration, "
        f"{counts['held_out']} held out ({outcome.skipped} already in the parent, skipped); "
        f"encode {outcome.seconds['encode']} s, update {outcome.seconds['update']} s"
    )
    print(f"held-out rows: {comparison.rows}, alpha {options.alpha} ({options.estimator.value})")
    print(f"  {'artifact':<40} {'accepted':>8} {'rate':>7} {'precision':>9}")
    for name, identifier, stats in (
        ("parent", parent_id, comparison.parent),
        ("updated", outcome.model.artifact_id, comparison.updated),
    ):
        precision = "-" if stats.precision is None else f"{stats.precision:.3f}"
        label = f"{name} {identifier}"
        print(f"  {label:<40} {stats.accepted:>8} {stats.acceptance_rate:>7.3f} {precision:>9}")
    regions = [round(region.alpha, 3) for region in outcome.model.contents.regions]
    if comparison.rows == 0:
        print(
            "warning: no held-out rows, so the precision check could not be made", file=sys.stderr
        )
    if outcome.written:
        print(
            f"wrote {options.out} ({outcome.model.artifact_id}, {outcome.model.support_size} "
            f"support rows, regions {regions})"
        )
    else:
        print(
            f"sdm-router: refused: the updated artifact's accepted precision on held-out rows "
            f"({comparison.updated.precision:.3f}) is below {comparison.bar:.3f}, which the "
            "parent met; nothing written (add --force to write it anyway)",
            file=sys.stderr,
        )


def _verifier_attach(args: argparse.Namespace) -> int:
    from sdm_router.training.verifier_update import UpdateRefused, attach_from_build
    from sdm_router.verifier.sdm import SDMError, SDMModel
    from sdm_router.verifier.sdm_verifier import check_compatible, load_recorded_encoder

    try:
        parent = SDMModel.load(args.verifier, device=args.device)
        encoder = load_recorded_encoder(parent, args.encoder, device=args.device)
        check_compatible(parent, encoder, args.verifier)
        model = attach_from_build(parent, args.parent_data, encoder)
    except (UpdateRefused, SDMError, ConfigurationError, ValueError) as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    model.save(args.verifier, overwrite=True)
    print(
        f"stored {model.contents.calibration_rows and len(model.contents.calibration_rows)} "
        f"calibration exemplars in {args.verifier} ({model.artifact_id}, scoring unchanged)"
    )
    return 0


def _verifier_compare(args: argparse.Namespace) -> int:
    import json

    from sdm_router.config import load_settings
    from sdm_router.training.shadow_compare import compare_shadow, format_comparison

    try:
        settings = load_settings(args.config)
        storage = settings.storage
        if args.store is not None:
            storage = storage.model_copy(update={"url": SecretStr(args.store)})
        comparisons = compare_shadow(storage, args.route, args.since)
    except (ConfigurationError, SQLAlchemyError) as error:
        print(f"sdm-router: cannot read the decision store: {error}", file=sys.stderr)
        return 2
    if not comparisons:
        print("sdm-router: no shadow decisions in the store (set verifier.shadow)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([c.to_json() for c in comparisons], indent=2))
    else:
        print("\n\n".join(format_comparison(c) for c in comparisons))
    return 0


def _register_update(verifier_commands: Any) -> None:
    from sdm_router.training.verifier_update import UpdateRule

    update = verifier_commands.add_parser(
        "update", help="grow an artifact with new labelled rows (recalibrate or --retrain)"
    )
    update.add_argument("--verifier", type=Path, required=True, help="the parent .sdmkitmodel")
    update.add_argument("--data", type=Path, required=True, help="a `data import` folder")
    update.add_argument("--out", type=Path, required=True, help="the .sdmkitmodel to write")
    update.add_argument("--config", type=Path, default=None, help="config naming the route")
    update.add_argument("--route", default="auto", help="whose accept_alpha judges the result")
    update.add_argument("--alpha", type=float, default=None, help="instead of the route's")
    rule = UpdateRule()
    update.add_argument(
        "--held-out", type=float, default=rule.held_out, help="fraction of groups held out"
    )
    update.add_argument(
        "--support", type=float, default=rule.support, help="fraction of groups for support"
    )
    update.add_argument(
        "--retrain", action="store_true", help="train a new adaptor (needs --parent-data)"
    )
    update.add_argument(
        "--parent-data", type=Path, default=None,
        help="the `verifier build` folder of the parent (for --retrain, or for a parent that "
        "stores no calibration exemplars)",
    )  # fmt: skip
    update.add_argument("--encoder", default="embedded")
    update.add_argument("--device", default="auto")
    update.add_argument("--force", action="store_true", help="write even if the check fails")
    update.add_argument("--overwrite", action="store_true")
    update.set_defaults(func=_verifier_update)

    attach = verifier_commands.add_parser(
        "attach-calibration",
        help="store an older artifact's calibration exemplars (so `update` can use it alone)",
    )
    attach.add_argument("--verifier", type=Path, required=True, help="the .sdmkitmodel")
    attach.add_argument(
        "--parent-data", type=Path, required=True, help="the `verifier build` folder it came from"
    )
    attach.add_argument("--encoder", default="embedded")
    attach.add_argument("--device", default="auto")
    attach.set_defaults(func=_verifier_attach)

    compare = verifier_commands.add_parser(
        "compare", help="live vs shadow artifact: agreement, coverage, accepted precision"
    )
    compare.add_argument(
        "--config", type=Path, default=None, help="gateway config naming the store"
    )
    compare.add_argument(
        "--store", default=None, help="a database URL instead of the config's storage"
    )
    compare.add_argument("--route", default=None, help="only this route's requests")
    compare.add_argument(
        "--since", type=float, default=None, help="only requests since (epoch seconds)"
    )
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(func=_verifier_compare)


def _verifier_evaluate(args: argparse.Namespace) -> int:
    from sdm_router.training.evaluation import evaluate_command

    return evaluate_command(args)


def _register_import(data_commands: Any) -> None:
    importing = data_commands.add_parser(
        "import", help="labelled answers from a JSONL file or from the decision store"
    )
    source = importing.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="JSONL of {messages|prompt, response, label}")
    source.add_argument(
        "--from-store", action="store_true", help="the labelled decisions in the decision store"
    )
    importing.add_argument("--output", type=Path, required=True, help="the rows folder to write")
    importing.add_argument(
        "--config", type=Path, default=None, help="gateway config naming the store (--from-store)"
    )
    importing.add_argument("--route", default=None, help="only this route's decisions")
    importing.add_argument(
        "--since", type=float, default=None, help="only decisions since (epoch seconds)"
    )
    importing.add_argument(
        "--sources", type=_label_kinds, default=None,
        help="--from-store: which labels count, comma-separated kinds of human, judge, "
        "reference (default: all; a person's label overrides a machine's either way)",
    )  # fmt: skip
    importing.add_argument("--overwrite", action="store_true")
    importing.set_defaults(func=_data_import)


def _label_kinds(value: str) -> Any:
    """``--sources`` as a set of ``LabelKind`` (an unknown kind is a usage error)."""
    from sdm_router.core.decisions import LabelKind

    try:
        return frozenset(LabelKind(part.strip()) for part in value.split(",") if part.strip())
    except ValueError:
        known = ", ".join(kind.value for kind in LabelKind)
        raise argparse.ArgumentTypeError(f"give kinds among {known}, got {value!r}") from None


def _register_holdouts(vbuild: Any) -> None:
    """``verifier build``'s ``--holdout-family`` and ``--holdout-phrasings``."""
    from sdm_router.training.splits import holdout_families

    vbuild.add_argument(
        "--holdout-family",
        default=",".join(holdout_families(_build_option_default("holdout_family"))),
        help="families kept out as the shift test, comma-separated, or none (default: %(default)s)",
    )
    vbuild.add_argument(
        "--holdout-phrasings",
        type=_phrasing_rule,
        default=_build_option_default("holdout_phrasing").spec,
        help="templates kept out of train/calibration/test as splits/phrasing.jsonl: k (template "
        "p<k> of every family), family:k, family:none, comma-separated, or none "
        "(default: %(default)s)",
    )


def _register_recipe(vbuild: Any) -> None:
    """``verifier build``'s representation and data-mix choices (``verifier ablate`` picks
    them on validation)."""
    vbuild.add_argument(
        "--layer", type=int, default=None,
        help="decoder layer whose hidden states are pooled (default: the final layer)",
    )  # fmt: skip
    vbuild.add_argument(
        "--pooling", choices=list(ENCODER_POOLINGS), default=ENCODER_POOLINGS[0],
        help="final+mean: the end marker's state and the mean over the turn; last+answer: the "
        "last answer token's state and the mean over the answer tokens, the states of the "
        "generation pass (default: %(default)s)",
    )  # fmt: skip
    vbuild.add_argument(
        "--min-family-accuracy", type=float,
        default=_build_option_default("min_family_accuracy"),
        help="train and calibrate only on the families at least this share of whose training "
        "answers are correct; test, shift and phrasing keep every family (default: %(default)s, "
        "every family)",
    )  # fmt: skip


def register(commands: Any) -> None:
    """Add the ``data`` and ``verifier`` command groups."""
    from sdm_router.training.verifier_build import DEFAULT_TRAINING

    data = commands.add_parser("data", help="build labelled answer data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = data_commands.add_parser("build", help="run a route's models over a task suite")
    build.add_argument(
        "--config", type=Path, default=None, help="gateway config (default: embedded)"
    )
    build.add_argument("--route", default="auto")
    build.add_argument("--suite", default="default")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--limit", type=int, default=None, help="at most this many questions")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--samples", type=int, default=2, help="sampled answers per question")
    build.add_argument("--concurrency", type=int, default=16)
    build.add_argument("--max-batch-size", type=int, default=None, help="local batch size")
    build.add_argument("--no-retrieval", action="store_true", help="skip retrieval variants")
    build.add_argument(
        "--plain-prompts",
        action="store_true",
        help="bare questions only (no drawn system prompt, earlier turn or answer format)",
    )
    build.set_defaults(func=_data_build)

    _register_import(data_commands)

    verifier = commands.add_parser("verifier", help="build and evaluate SDM verifiers")
    verifier_commands = verifier.add_subparsers(dest="verifier_command", required=True)
    vbuild = verifier_commands.add_parser("build", help="encode, split, train and calibrate")
    vbuild.add_argument("--data", type=Path, required=True, help="a `data build` folder")
    vbuild.add_argument("--out", type=Path, required=True, help="the .sdmkitmodel to write")
    vbuild.add_argument(
        "--encoder", default="embedded", help="causal LM: embedded, .gguf or folder"
    )
    _register_recipe(vbuild)
    _register_holdouts(vbuild)
    vbuild.add_argument("--split-seed", type=int, default=_build_option_default("split_seed"))
    register_training_arguments(vbuild)
    vbuild.add_argument(
        "--target-alpha", type=float, default=_build_option_default("target_alpha"),
        help="retrain with the next block of seeds while calibration yields no region at this "
        "alpha (see --attempts)",
    )  # fmt: skip
    vbuild.add_argument(
        "--attempts",
        type=int,
        default=_build_option_default("attempts"),
        help="training attempts at most",
    )
    vbuild.add_argument(
        "--calibrated-on", default=None,
        help="model identities (comma-separated; e.g. local:embedded, or the upstream's model "
        "name) the artifact records it was calibrated on, instead of the rows' model field",
    )  # fmt: skip
    vbuild.add_argument(
        "--exemplar-text", action="store_true",
        help="store each support row's question and answer in the artifact, so that the "
        "console shows the nearest exemplars' text (off by default: it copies training data "
        "into the artifact)",
    )  # fmt: skip
    vbuild.add_argument("--device", default=DEFAULT_TRAINING.device)
    vbuild.add_argument("--overwrite", action="store_true")
    vbuild.set_defaults(func=_verifier_build)

    _register_update(verifier_commands)

    from sdm_router.training.ablation.command import register as register_ablate

    register_ablate(verifier_commands)

    evaluate = verifier_commands.add_parser("evaluate", help="accuracy vs admission report")
    evaluate.add_argument("--verifier", type=Path, required=True)
    evaluate.add_argument(
        "--data", type=Path, required=True, nargs="+", help="labelled JSONL files"
    )
    evaluate.add_argument(
        "--calibration", type=Path, default=None, help="calibration JSONL for baselines"
    )
    evaluate.add_argument("--report", type=Path, required=True)
    evaluate.add_argument("--encoder", default="embedded")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(func=_verifier_evaluate)
