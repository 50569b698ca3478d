"""``sdm-router verifier evaluate``: accepted answers' precision and recall, admitted sets.

Reads labelled splits (``DATA/splits/test.jsonl``, ``shift.jsonl``, ``phrasing.jsonl``, ...),
scores them with the verifier, fits the baselines on the calibration split and writes
``report.md`` (the issue's goals first, then the gateway view), ``report.json`` and PNG plots.
The numbers come from the pure functions in :mod:`sdm_router.training.report`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdm_router.core.errors import ConfigurationError
from sdm_router.training.records import AnswerRecord, RecordError, read_records
from sdm_router.training.report.estimators import ScoredSplit
from sdm_router.training.report.goals import Goal, evaluate_goals
from sdm_router.training.report.markdown import fmt_accuracy, fmt_rate, render_report
from sdm_router.training.report.metrics import ALPHA_LADDER
from sdm_router.training.report.plots import write_plots
from sdm_router.training.report.results import (
    ACCEPTANCE_ALPHA,
    AcceptanceCheck,
    SplitReport,
    check_acceptance,
    evaluate_split,
    split_json,
)
from sdm_router.verifier.features import ATTRIBUTE_NAMES, attribute_matrix

if TYPE_CHECKING:  # torch and transformers load only once the inputs are known to be good
    from sdm_router.verifier.encoder import HiddenStateEncoder
    from sdm_router.verifier.sdm import SDMModel

CALIBRATION_FILE = "calibration.jsonl"
CHECKED_ESTIMATORS = ("sdm-lower", "sdm-centroid")
MAX_REGIONS = 10  # regions listed in the report header (a 0.01 ladder has 49)


class InputError(Exception):
    """A data file is missing, empty or malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class Inputs:
    """The labelled records to evaluate (by split name) and the calibration records."""

    splits: dict[str, tuple[Path, list[AnswerRecord]]]
    calibration: tuple[Path, list[AnswerRecord]]


def _read(path: Path) -> list[AnswerRecord]:
    if not path.is_file():
        raise InputError(f"{path}: no such data file")
    try:
        records = read_records(path)
    except RecordError as error:
        raise InputError(str(error)) from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason})") from error
    if not records:
        raise InputError(f"{path}: holds no records")
    return records


def read_inputs(data: Sequence[Path], calibration: Path | None) -> Inputs:
    """Read every file; the calibration file defaults to ``calibration.jsonl`` beside data[0]."""
    splits: dict[str, tuple[Path, list[AnswerRecord]]] = {}
    for path in data:
        name, k = path.stem, 2
        while name in splits:
            name, k = f"{path.stem}-{k}", k + 1
        splits[name] = (path, _read(path))
    calibration = calibration or data[0].parent / CALIBRATION_FILE
    return Inputs(splits, (calibration, _read(calibration)))


def cache_dir(path: Path) -> Path:
    """The feature cache ``verifier build`` fills: ``DATA/cache`` for ``DATA/splits/*.jsonl``."""
    parent = path.parent
    return (parent.parent if parent.name == "splits" else parent) / "cache"


def mean_token_logprobs(records: Sequence[AnswerRecord]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Each answer's mean token logprob; NaN where the generator reported no tokens."""
    attributes = attribute_matrix([record.verification_input() for record in records])
    mean = attributes[:, ATTRIBUTE_NAMES.index("mean_token_logprob")].astype(np.float64)
    available = attributes[:, ATTRIBUTE_NAMES.index("logprobs_available")] > 0
    has_tokens = attributes[:, ATTRIBUTE_NAMES.index("log1p_token_count")] > 0
    return np.where(available & has_tokens, mean, np.nan)


def score_split(
    name: str,
    path: Path,
    records: Sequence[AnswerRecord],
    model: SDMModel,
    encoder: HiddenStateEncoder,
) -> ScoredSplit:
    """Encode (with the on-disk feature cache) and score one split."""
    from sdm_router.training.featurize import encode_records

    features = encode_records(records, encoder, cache_dir=cache_dir(path))
    return ScoredSplit.from_scores(
        name,
        model.score(features),
        [r.label for r in records],
        [r.family for r in records],
        mean_token_logprobs(records),
    )


def write_report(
    folder: Path,
    reports: Sequence[SplitReport],
    checks: Sequence[AcceptanceCheck],
    meta: dict[str, Any],
    goals: Sequence[Goal] = (),
) -> list[Path]:
    """Write ``report.md``, ``report.json`` and each split's PNGs; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = {r.name: write_plots(r, folder) for r in reports}
    names = {split: [p.name for p in paths] for split, paths in plots.items()}
    markdown = folder / "report.md"
    markdown.write_text(render_report(reports, checks, names, meta, goals), encoding="utf-8")
    document = {
        "meta": meta,
        "alphas": list(ALPHA_LADDER),
        "goals": [_goal_json(g) for g in goals],
        "acceptance": [_check_json(c) for c in checks],
        "splits": {r.name: split_json(r) for r in reports},
    }
    data = folder / "report.json"
    data.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return [markdown, data, *(p for paths in plots.values() for p in paths)]


def _goal_json(goal: Goal) -> dict[str, Any]:
    return {
        "goal": goal.key,
        "target": goal.target,
        "estimator": goal.estimator,
        "figure": goal.figure,
        "met": goal.met,
    }


def _check_json(check: AcceptanceCheck) -> dict[str, Any]:
    return {
        "split": check.split,
        "estimator": check.estimator,
        "alpha": check.alpha,
        "shifted": check.shifted,
        "verdict": check.verdict,
        "admissionRate": check.admission_rate,
        "holds": check.holds,
    }


def summary_lines(report: SplitReport, alpha: float = ACCEPTANCE_ALPHA) -> list[str]:
    """One console line per estimator at ``alpha``."""
    lines = [f"{report.name} ({report.rows} rows) at α = {alpha}:"]
    for curve in report.curves:
        s = curve.at(alpha)
        lines.append(
            f"  {curve.name:<19} admitted {fmt_rate(s.admission_rate):>6} (n={s.admitted}) "
            f"acc {fmt_accuracy(s.marginal_accuracy)} "
            f"min class {fmt_accuracy(s.min_class_accuracy)} "
            f"min pred {fmt_accuracy(s.min_prediction_accuracy)} [{s.verdict}]; accepted "
            f"{fmt_rate(s.acceptance_rate)} precision {fmt_accuracy(s.precision)}"
        )
    return lines


def _meta(args: argparse.Namespace, model: SDMModel, inputs: Inputs) -> dict[str, Any]:
    fitted = model.manifest["regions"]
    regions = ", ".join(
        f"{r['alpha']} (q′ ≥ {r['minimumRescaledSimilarity']:.3g})" for r in fitted[:MAX_REGIONS]
    ) + (f", … ({len(fitted)} in all)" if len(fitted) > MAX_REGIONS else "")
    path, rows = inputs.calibration
    return {
        "verifier": f"{args.verifier} ({model.artifact_id}, {model.support_size} support rows)",
        "calibrated regions": regions or "none",
        "baseline calibration": f"{path} ({len(rows)} rows; every baseline threshold is "
        "fitted here)",
        "data": ", ".join(
            f"split `{name}` = {p} ({len(r)} rows)" for name, (p, r) in inputs.splits.items()
        ),
        "encoder": model.representation.get("fingerprint") or "unknown",
    }


def _load(args: argparse.Namespace) -> tuple[SDMModel, HiddenStateEncoder]:
    from sdm_router.verifier.sdm import SDMModel
    from sdm_router.verifier.sdm_verifier import load_recorded_encoder

    model = SDMModel.load(args.verifier, device=args.device)
    try:
        encoder = load_recorded_encoder(model, args.encoder, device=args.device)
    except ValueError as error:  # a recorded layer or pooling this encoder cannot read
        raise ConfigurationError(f"{args.verifier}: {error}") from error
    expected = model.representation.get("fingerprint")
    if expected and expected != encoder.fingerprint:
        print(
            f"sdm-router: warning: encoder {encoder.fingerprint} differs from the verifier's "
            f"{expected}",
            file=sys.stderr,
        )
    return model, encoder


def _score_all(args: argparse.Namespace, inputs: Inputs) -> tuple[SDMModel, list[SplitReport]]:
    model, encoder = _load(args)
    calibration = score_split("calibration", *inputs.calibration, model, encoder)
    reports = [
        evaluate_split(score_split(name, path, records, model, encoder), calibration)
        for name, (path, records) in inputs.splits.items()
    ]
    return model, reports


def evaluate_command(args: argparse.Namespace) -> int:
    """Score the splits, write the report under ``args.report``; 0, or 2 on bad input."""
    try:
        if not Path(args.verifier).exists():
            raise InputError(f"{args.verifier}: no such verifier artifact")
        inputs = read_inputs(args.data, args.calibration)
    except InputError as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    from sdm_router.verifier.sdm import SDMError

    try:
        model, reports = _score_all(args, inputs)
    except (SDMError, ConfigurationError, OSError) as error:
        print(f"sdm-router: {error}", file=sys.stderr)
        return 2
    checks = [check_acceptance(r, estimator) for r in reports for estimator in CHECKED_ESTIMATORS]
    goals = [g for estimator in CHECKED_ESTIMATORS for g in evaluate_goals(reports, estimator)]
    write_report(args.report, reports, checks, _meta(args, model, inputs), goals)
    for report in reports:
        print("\n".join(summary_lines(report)))
    for goal in goals:
        met = {True: "met", False: "NOT met", None: "not evaluated"}[goal.met]
        print(f"goal {goal.key} ({goal.estimator}): {met}: {goal.figure}")
    print(f"report: {args.report / 'report.md'}")
    return 0
