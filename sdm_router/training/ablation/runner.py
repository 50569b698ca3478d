"""The ablation: every variant trained on the same splits, judged on a validation split only.

1. ``split_records`` makes the build's split (the one ``verifier build`` uses: train,
   calibration, test, the held-out shift families, the held-out phrasings). Test, shift and
   phrasing rows are dropped here, unread.
2. The development pool is the build's train + calibration (``limit``: whole groups of it, in
   a seeded order, until that many rows). ``carve`` splits the pool again by group, with the
   same ``split_records``, into train / calibration / validation.
3. Per variant and run: ``train_model`` on train (support) and calibration, exactly as
   ``verifier build`` calls it (grouped, ``shuffle=False``), then score validation. Run k uses
   the training seed block ``seed + k * shuffles`` (and, with ``vary_splits``, the carve seed
   ``validation_seed + k``); every variant sees the same runs.
4. Gateway view at each alpha: an answer is accepted when it is in distribution, predicted
   correct and its region alpha (``estimator``) reaches alpha; accepted %, precision, recall
   of the correct answers, and whether calibration found a region at alpha.
5. Baselines on the same splits: a mean-token-logprob threshold fitted on calibration, and one
   threshold per family (a family without calibration rows, or whose threshold never reaches
   alpha, accepts nothing).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from sdm_router.core.verdict import Estimator
from sdm_router.training.ablation.probe import ProbeFeatures, RepresentationProbe, probe_records
from sdm_router.training.ablation.variants import DEFAULT_VARIANTS, Variant, variant_features
from sdm_router.training.evaluation import mean_token_logprobs
from sdm_router.training.records import AnswerRecord
from sdm_router.training.report.metrics import admission_stats, admitted_at, fit_logprob_threshold
from sdm_router.training.splits import (
    DEFAULT_HOLDOUT_PHRASINGS,
    EmptyDataMix,
    HoldOut,
    PhrasingHoldOut,
    covered_families,
    holdout_families,
    holdout_phrasings,
    keep_covered,
    split_records,
)
from sdm_router.training.suites import DEFAULT_HOLDOUT
from sdm_router.training.verifier_build import CLASS_NAMES, DEFAULT_TRAINING, has_region
from sdm_router.verifier.sdm import SDMModel, TrainingConfig, train_model

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Log = Callable[[str], None]

BASELINES = ("mean-logprob", "mean-logprob-per-family")
DEFAULT_ALPHAS = (0.90, 0.95)
PRIMARY_ALPHA = 0.95
# A variant is eligible to win when calibration found a region in at least this share of runs.
REGION_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class AblationOptions:
    """What to compare and how (see the module doc). ``validation_fractions``: train,
    calibration and validation shares of the development pool's groups."""

    variants: tuple[str, ...] = DEFAULT_VARIANTS
    seeds: int = 5
    limit: int | None = None
    holdout_family: HoldOut = DEFAULT_HOLDOUT
    holdout_phrasing: PhrasingHoldOut = DEFAULT_HOLDOUT_PHRASINGS
    split_seed: int = 0
    validation_seed: int = 0
    validation_fractions: tuple[float, float, float] = (0.45, 0.35, 0.20)
    vary_splits: bool = False
    min_family_accuracy: float = 0.0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    estimator: Estimator = Estimator.LOWER
    training: TrainingConfig = DEFAULT_TRAINING

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError("seeds must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be positive")
        if not self.variants:
            raise ValueError("name at least one variant")
        if not all(0.0 < alpha < 1.0 for alpha in self.alphas):
            raise ValueError("alphas must lie in (0, 1)")
        if not 0.0 <= self.min_family_accuracy <= 1.0:
            raise ValueError("min_family_accuracy must lie in [0, 1]")

    def parsed_variants(self) -> list[Variant]:
        """The variants, parsed (ValueError on a bad spec)."""
        return [Variant.parse(spec) for spec in self.variants]

    def run_seeds(self, run: int) -> tuple[int, int]:
        """(training seed, carve seed) of run ``run`` (0-based)."""
        training = (self.training.seed + run * self.training.shuffles) % 2**64
        carve = self.validation_seed + (run if self.vary_splits else 0)
        return training, carve


@dataclass(frozen=True, slots=True)
class Carved:
    """Indices into the development pool."""

    train: IntArray
    calibration: IntArray
    validation: IntArray

    def counts(self) -> dict[str, int]:
        """Rows per part."""
        return {
            "train": int(self.train.size),
            "calibration": int(self.calibration.size),
            "validation": int(self.validation.size),
        }


def development_pool(
    records: Sequence[AnswerRecord], options: AblationOptions
) -> list[AnswerRecord]:
    """The build's train + calibration rows (never its test, shift or phrasing rows), limited
    by group."""
    splits = split_records(
        records,
        options.holdout_family,
        seed=options.split_seed,
        holdout_phrasing=options.holdout_phrasing,
    )
    pool = [*splits.train, *splits.calibration]
    if options.limit is None or options.limit >= len(pool):
        return pool
    groups: dict[str, list[AnswerRecord]] = defaultdict(list)
    for record in pool:
        groups[record.group_id].append(record)
    keys = sorted(groups)
    random.Random(f"limit-{options.split_seed}").shuffle(keys)
    kept: list[AnswerRecord] = []
    for key in keys:
        if len(kept) >= options.limit:
            break
        kept.extend(groups[key])
    return kept


def carve(
    pool: Sequence[AnswerRecord],
    fractions: tuple[float, float, float],
    seed: int,
    min_family_accuracy: float = 0.0,
) -> Carved:
    """Train / calibration / validation by group, with ``split_records`` (nothing held out:
    the pool has no shift-family or held-out-phrasing rows left). Train and calibration keep
    the families ``covered_families`` keeps by the carved train rows' labels, as ``verifier
    build --min-family-accuracy`` does; validation keeps every family."""
    position = {id(record): i for i, record in enumerate(pool)}
    parts = split_records(pool, None, seed=seed, fractions=fractions, holdout_phrasing=None)
    families = covered_families(parts.train, min_family_accuracy)
    if min_family_accuracy > 0.0 and not families:
        raise EmptyDataMix(min_family_accuracy)

    def indices(rows: Sequence[AnswerRecord]) -> IntArray:
        return np.asarray(sorted(position[id(r)] for r in rows), dtype=np.int64)

    return Carved(
        indices(keep_covered(parts.train, families, min_family_accuracy)),
        indices(keep_covered(parts.calibration, families, min_family_accuracy)),
        indices(parts.test),
    )


@dataclass(frozen=True, slots=True)
class GatewayStats:
    """The gateway view of one method at one alpha on validation."""

    alpha: float
    rows: int
    accepted: int
    acceptance_rate: float
    precision: float | None
    recall: float | None
    region: bool | None  # SDM: calibration found a region at alpha; a baseline: a threshold

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "alpha": self.alpha,
            "rows": self.rows,
            "accepted": self.accepted,
            "acceptanceRate": self.acceptance_rate,
            "precision": self.precision,
            "recall": self.recall,
            "region": self.region,
        }


def gateway_stats(
    accepted: BoolArray, labels: IntArray, alpha: float, region: bool | None
) -> GatewayStats:
    """Accepted %, precision and recall of the correct answers for an accepted set."""
    accepted = np.asarray(accepted, dtype=bool)
    stats = admission_stats(accepted, np.ones(labels.size, dtype=np.int64), labels, alpha)
    return GatewayStats(
        alpha, stats.rows, stats.accepted, stats.acceptance_rate, stats.precision, stats.recall,
        region,
    )  # fmt: skip


def sdm_accepted(model: SDMModel, features: Any, estimator: Estimator, alpha: float) -> BoolArray:
    """What the gateway accepts: in distribution, predicted correct, region alpha ≥ alpha."""
    scores = model.score(features)
    assigned = (
        scores.lower_region_alpha if estimator is Estimator.LOWER else scores.centroid_region_alpha
    )
    result: BoolArray = (
        ~np.asarray(scores.is_ood, dtype=bool)
        & (np.asarray(scores.prediction) == 1)
        & admitted_at(np.asarray(assigned, dtype=np.float64), alpha)
    )
    return result


def baseline_accepted(
    mean_logprob: npt.NDArray[np.float64],
    labels: IntArray,
    families: Sequence[str],
    carved: Carved,
    alpha: float,
) -> dict[str, tuple[BoolArray, bool]]:
    """Validation rows each baseline accepts at ``alpha`` (thresholds fitted on calibration),
    and whether a threshold reaching alpha was found (per family: for at least one family)."""
    cal, val = carved.calibration, carved.validation
    correct = labels == 1
    with np.errstate(invalid="ignore"):  # NaN (no logprobs) is never accepted
        threshold = fit_logprob_threshold(mean_logprob[cal], correct[cal], alpha)
        single = mean_logprob[val] >= threshold
        family_array = np.asarray(families)
        per_family = np.zeros(val.size, dtype=bool)
        found = []
        for family in sorted(set(family_array[val].tolist())):
            cal_rows = cal[family_array[cal] == family]
            val_mask = family_array[val] == family
            fitted = fit_logprob_threshold(mean_logprob[cal_rows], correct[cal_rows], alpha)
            found.append(math.isfinite(fitted))
            per_family[val_mask] = mean_logprob[val][val_mask] >= fitted
    return {
        "mean-logprob": (single, math.isfinite(threshold)),
        "mean-logprob-per-family": (per_family, any(found)),
    }


@dataclass(frozen=True, slots=True)
class RunResult:
    """One method (a variant or a baseline) on one run."""

    method: str
    run: int
    training_seed: int | None
    carve_seed: int
    seconds: float
    dimension: int | None
    region_alphas: tuple[float, ...]
    stats: tuple[GatewayStats, ...]

    def at(self, alpha: float) -> GatewayStats:
        """The stats at ``alpha``."""
        return next(s for s in self.stats if abs(s.alpha - alpha) < 1e-9)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "method": self.method,
            "run": self.run,
            "trainingSeed": self.training_seed,
            "carveSeed": self.carve_seed,
            "seconds": round(self.seconds, 2),
            "dimension": self.dimension,
            "regionAlphas": list(self.region_alphas),
            "perAlpha": [s.to_json() for s in self.stats],
        }


@dataclass(slots=True)
class Timings:
    """Wall seconds per stage, with what a stage counted (rows probed, models trained)."""

    stages: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def add(self, stage: str, seconds: float, count: int | None = None, unit: str = "rows") -> None:
        """Accumulate one stage."""
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        if count is not None:
            self.counts[stage] = self.counts.get(stage, 0) + count
            self.units[stage] = unit

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: seconds per stage and, where counted, e.g. ``"70 runs"``."""
        return {
            "seconds": {k: round(v, 2) for k, v in self.stages.items()},
            "counts": {k: f"{n} {self.units[k]}" for k, n in self.counts.items()},
        }


def train_variant(
    x: Any, labels: IntArray, ids: Sequence[str], carved: Carved, config: TrainingConfig
) -> SDMModel:
    """``train_model`` on the carved train and calibration rows, as ``verifier build`` calls it."""
    config = replace(config, shuffle=False, class_names=CLASS_NAMES)
    return train_model(
        x[carved.train],
        labels[carved.train],
        x[carved.calibration],
        labels[carved.calibration],
        config,
        ids_train=[ids[i] for i in carved.train],
        ids_cal=[ids[i] for i in carved.calibration],
        progress=None,
    )


def run_variants(
    pool: Sequence[AnswerRecord],
    probed: ProbeFeatures,
    options: AblationOptions,
    timings: Timings,
    log: Log = print,
) -> list[RunResult]:
    """Every variant and every baseline on every run (see the module doc)."""
    labels = np.asarray([record.label for record in pool], dtype=np.int64)
    ids = [record.id for record in pool]
    carves: dict[int, Carved] = {}
    results: list[RunResult] = []
    for seed in sorted({options.run_seeds(run)[1] for run in range(options.seeds)}):
        carves[seed] = carve(pool, options.validation_fractions, seed, options.min_family_accuracy)
    results.extend(_baselines(pool, labels, carves, options))
    for variant in options.parsed_variants():
        started = time.perf_counter()
        x = variant_features(variant, probed, pool)
        timings.add("features", time.perf_counter() - started)
        for run in range(options.seeds):
            training_seed, carve_seed = options.run_seeds(run)
            carved = carves[carve_seed]
            began = time.perf_counter()
            model = train_variant(
                x, labels, ids, carved, replace(options.training, seed=training_seed)
            )
            trained = time.perf_counter()
            regions = tuple(region.alpha for region in model.contents.regions)
            stats = tuple(
                gateway_stats(
                    sdm_accepted(model, x[carved.validation], options.estimator, alpha),
                    labels[carved.validation],
                    alpha,
                    has_region(list(regions), alpha),
                )
                for alpha in options.alphas
            )
            scored = time.perf_counter()
            timings.add("train", trained - began, count=1, unit="runs")
            timings.add("score", scored - trained, count=int(carved.validation.size))
            result = RunResult(
                variant.name, run, training_seed, carve_seed, scored - began, int(x.shape[1]),
                regions, stats,
            )  # fmt: skip
            results.append(result)
            log(_run_line(result))
    return results


def _run_line(result: RunResult) -> str:
    cells = []
    for s in result.stats:
        precision = "-" if s.precision is None else f"{s.precision:.3f}"
        recall = "-" if s.recall is None else f"{s.recall:.3f}"
        region = "region" if s.region else "no region"
        cells.append(
            f"α {s.alpha}: {region}, accepted {100 * s.acceptance_rate:.1f}% "
            f"p {precision} r {recall}"
        )
    return f"  {result.method} run {result.run} ({result.seconds:.1f} s): " + "; ".join(cells)


def _baselines(
    pool: Sequence[AnswerRecord],
    labels: IntArray,
    carves: dict[int, Carved],
    options: AblationOptions,
) -> list[RunResult]:
    mean_logprob = mean_token_logprobs(pool)
    families = [record.family for record in pool]
    results = []
    for run in range(options.seeds):
        _, carve_seed = options.run_seeds(run)
        carved = carves[carve_seed]
        per_alpha = {
            alpha: baseline_accepted(mean_logprob, labels, families, carved, alpha)
            for alpha in options.alphas
        }
        for name in BASELINES:
            stats = tuple(
                gateway_stats(
                    per_alpha[a][name][0], labels[carved.validation], a, per_alpha[a][name][1]
                )
                for a in options.alphas
            )
            results.append(RunResult(name, run, None, carve_seed, 0.0, None, (), stats))
    return results


@dataclass(frozen=True, slots=True)
class Spread:
    """median, min and max of a statistic over runs (None where no run defines it)."""

    median: float | None
    low: float | None
    high: float | None
    count: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        """Over the defined values."""
        defined = [v for v in values if v is not None]
        if not defined:
            return cls(None, None, None, 0)
        return cls(statistics.median(defined), min(defined), max(defined), len(defined))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.count}


@dataclass(frozen=True, slots=True)
class Summary:
    """One method at one alpha over its runs."""

    method: str
    alpha: float
    runs: int
    regions: int
    holds: int  # runs whose accepted answers are at least alpha correct (or none accepted)
    acceptance: Spread
    precision: Spread
    recall: Spread
    dimension: int | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "runs": self.runs,
            "regionsFound": self.regions,
            "precisionHolds": self.holds,
            "acceptanceRate": self.acceptance.to_json(),
            "precision": self.precision.to_json(),
            "recall": self.recall.to_json(),
            "dimension": self.dimension,
            "medianRunSeconds": round(self.seconds, 2),
        }


def summarize(results: Sequence[RunResult], alphas: Sequence[float]) -> list[Summary]:
    """Per method (in first-seen order) and alpha: the distribution over runs."""
    methods = list(dict.fromkeys(r.method for r in results))
    summaries = []
    for method in methods:
        runs = [r for r in results if r.method == method]
        for alpha in alphas:
            stats = [r.at(alpha) for r in runs]
            holds = sum(
                s.accepted == 0 or (s.precision is not None and s.precision >= alpha - 1e-9)
                for s in stats
            )
            summaries.append(
                Summary(
                    method=method,
                    alpha=alpha,
                    runs=len(runs),
                    regions=sum(bool(s.region) for s in stats),
                    holds=holds,
                    acceptance=Spread.of([s.acceptance_rate for s in stats]),
                    precision=Spread.of([s.precision for s in stats]),
                    recall=Spread.of([s.recall for s in stats]),
                    dimension=runs[0].dimension,
                    seconds=statistics.median(r.seconds for r in runs),
                )
            )
    return summaries


def choose(
    summaries: Sequence[Summary],
    alpha: float = PRIMARY_ALPHA,
    among: Callable[[str], bool] = lambda method: True,
) -> str | None:
    """The validation winner at ``alpha`` among the SDM variants (those ``among`` keeps):
    calibration found a region in at least ``REGION_SHARE`` of the runs, the median run
    accepts something and the median precision reaches alpha; then the highest median recall,
    the highest minimum recall, the smallest input. None if no variant qualifies."""
    eligible = [
        s
        for s in summaries
        if s.method not in BASELINES
        and among(s.method)
        and abs(s.alpha - alpha) < 1e-9
        and s.regions >= math.ceil(REGION_SHARE * s.runs)
        and s.precision.median is not None
        and s.precision.median >= alpha - 1e-9
        and (s.recall.median or 0.0) > 0.0
    ]
    if not eligible:
        return None
    best = max(
        eligible,
        key=lambda s: (s.recall.median or 0.0, s.recall.low or 0.0, -(s.dimension or 0)),
    )
    return best.method


def ablate(
    records: Sequence[AnswerRecord],
    probe: RepresentationProbe,
    options: AblationOptions,
    cache_dir: Path | None,
    log: Log = print,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The whole ablation over ``records`` (a ``data build`` set); returns the results
    document (``report.write_report`` writes it)."""
    timings = Timings()
    started = time.perf_counter()
    variants = [v.canonical(probe.total_layers) for v in options.parsed_variants()]
    missing = sorted({layer for v in variants for layer in v.layers} - set(probe.layers))
    if missing:
        raise ValueError(f"the probe does not pool layers {missing}")
    options = replace(options, variants=tuple(v.name for v in variants))
    pool = development_pool(records, options)
    if not pool:
        raise ValueError("no development rows (is every family held out?)")
    timings.add("split", time.perf_counter() - started, count=len(records))
    log(
        f"development pool: {len(pool)} of {len(records)} rows "
        "(the build's test, shift and phrasing rows are not read)"
    )
    bar = tqdm(total=len(pool), desc="probe", unit="row", disable=not show_progress)
    probed = probe_records(pool, probe, cache_dir, progress=bar.update)
    bar.close()
    timings.add("probe", probed.seconds, count=probed.encoded_rows)
    rate = probed.encoded_rows / probed.seconds if probed.seconds > 0 else 0.0
    log(
        f"probe: ran {probed.encoded_rows} distinct new answers in {probed.seconds:.1f} s "
        f"({rate:.2f} rows/s); {len(pool) - probed.encoded_rows} rows reused the cache; "
        f"{int((~probed.exact).sum())} rows tokenize differently inside the turn"
    )
    results = run_variants(pool, probed, options, timings, log)
    recipes = {v.name for v in variants if v.build_recipe() is not None}
    buildable = recipes.__contains__
    summaries = summarize(results, options.alphas)
    first = carve(
        pool, options.validation_fractions, options.run_seeds(0)[1], options.min_family_accuracy
    )
    labels = np.asarray([r.label for r in pool], dtype=np.int64)
    return {
        "options": _options_json(options),
        "probe": probe.identity,
        "rows": {
            "data": len(records),
            "pool": len(pool),
            "carved": first.counts(),
            "validationCorrect": int(labels[first.validation].sum()),
            "inexactTokenization": int((~probed.exact).sum()),
        },
        "winner": {str(a): choose(summaries, a) for a in options.alphas},
        "buildWinner": {str(a): choose(summaries, a, buildable) for a in options.alphas},
        "buildRecipes": {
            v.name: asdict(recipe) for v in variants if (recipe := v.build_recipe()) is not None
        },
        "summaries": [s.to_json() for s in summaries],
        "runs": [r.to_json() for r in results],
        "timings": timings.to_json(),
        "wallSeconds": round(time.perf_counter() - started, 1),
    }


def _options_json(options: AblationOptions) -> dict[str, Any]:
    training = options.training
    return {
        "variants": list(options.variants),
        "seeds": options.seeds,
        "limit": options.limit,
        "holdoutFamilies": list(holdout_families(options.holdout_family)),
        "holdoutPhrasings": holdout_phrasings(options.holdout_phrasing).spec,
        "splitSeed": options.split_seed,
        "validationSeed": options.validation_seed,
        "validationFractions": list(options.validation_fractions),
        "varySplits": options.vary_splits,
        "minFamilyAccuracy": options.min_family_accuracy,
        "alphas": list(options.alphas),
        "estimator": options.estimator.value,
        "training": {
            "exemplarDimension": training.exemplar_dimension,
            "epochs": training.epochs,
            "learningRate": training.learning_rate,
            "maxNeighbors": training.max_neighbors,
            "shuffles": training.shuffles,
            "seed": training.seed,
            "device": training.device,
        },
    }
