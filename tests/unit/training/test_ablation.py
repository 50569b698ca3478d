"""The representation ablation: variants, the validation carve, the metrics, the baselines,
the seed runs and the report, on synthetic features (no model)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdm_router.training.ablation.command import ablate_command
from sdm_router.training.ablation.probe import POOLINGS, ProbeFeatures, block_key
from sdm_router.training.ablation.report import build_flags, render, write_report
from sdm_router.training.ablation.runner import (
    AblationOptions,
    Carved,
    GatewayStats,
    RunResult,
    Timings,
    baseline_accepted,
    carve,
    choose,
    development_pool,
    gateway_stats,
    run_variants,
    summarize,
)
from sdm_router.training.ablation.variants import Variant, tier_keys, variant_features
from sdm_router.training.records import ROWS_FILE, AnswerRecord, write_records
from sdm_router.training.splits import split_records
from sdm_router.training.verifier_build import DEFAULT_TRAINING
from sdm_router.verifier.features import ATTRIBUTE_DIMENSION
from sdm_router.verifier.recipe import EncoderRecipe

HIDDEN = 4


def _record(
    family: str,
    group: int,
    variant: str,
    label: int,
    response: str = "r",
    logprob: float = -1.0,
    template: int = 0,
) -> AnswerRecord:
    item_id = f"{family}/{group}/p{template}"
    return AnswerRecord.from_json(
        {
            "id": f"{item_id}#{variant}", "item_id": item_id, "group_id": f"{family}/{group}",
            "family": family, "variant": variant, "question": f"q {group} {template}",
            "messages": [{"role": "user", "content": f"q {group} {template}"}],
            "response": response,
            "token_logprobs": [["t", logprob]], "label": label,
        }
    )  # fmt: skip


def _records(groups: int = 60) -> list[AnswerRecord]:
    rows = []
    for family in ("alpha", "beta", "weekdays"):
        for group in range(groups):
            label = int(group % 3 == 0)
            for variant in ("greedy", "sampled-0", "sampled-1"):
                rows.append(_record(family, group, variant, label, f"{variant} {group}"))
    return rows


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("enc.final,enc.mean@20+lp", "enc.final,enc.mean@20+lp"),
        (" gen.last@12,final+sc+lp ", "gen.last@12,final+lp+sc"),
        ("gen.answer@16", "gen.answer@16"),
    ],
)
def test_a_variant_spec_reads_back_to_its_canonical_name(spec: str, name: str) -> None:
    assert Variant.parse(spec).name == name


@pytest.mark.parametrize(
    "spec",
    ["enc.final", "nope@20", "gen.last,gen.last@20", "gen.last@20,20", "gen.last@20+xx",
     "gen.last@20+lp+lp", "gen.last@"],
)  # fmt: skip
def test_a_bad_variant_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        Variant.parse(spec)


def test_variant_features_concatenate_blocks_then_attributes() -> None:
    records = [
        _record("f", 0, "sampled-0", 1, "Paris", -0.5),
        _record("f", 0, "sampled-1", 1, "paris.", -0.25),
        _record("f", 1, "greedy", 0, "Lyon", -2.0),
    ]
    blocks = {
        block_key(layer, p): np.full((3, HIDDEN), float(10 * i + j), dtype=np.float32)
        for i, layer in enumerate(("20", "final"))
        for j, p in enumerate(POOLINGS)
    }
    probed = ProbeFeatures(blocks, np.ones(3, bool), np.ones(3, np.int64), 0, 0.0)
    variant = Variant.parse("gen.last,gen.answer@final,20+lp+sc").canonical(30)
    x = variant_features(variant, probed, records)
    assert x.shape == (3, variant.dimension(HIDDEN)) == (3, 4 * HIDDEN + ATTRIBUTE_DIMENSION + 2)
    assert x[0, :HIDDEN].tolist() == [12.0] * HIDDEN  # final / gen.last first
    assert x[0, HIDDEN : 2 * HIDDEN].tolist() == [13.0] * HIDDEN
    assert x[0, 2 * HIDDEN : 3 * HIDDEN].tolist() == [2.0] * HIDDEN  # then layer 20
    assert x[:, 4 * HIDDEN].tolist() == [-0.5, -0.25, -2.0]  # mean token logprob
    np.testing.assert_allclose(x[:, -2:], [[1, 1], [1, 1], [0, 0]])  # agree / has siblings
    assert tier_keys(records)[0] == tier_keys(records)[1] and tier_keys(records)[2] is None


def test_the_development_pool_never_holds_test_shift_or_phrasing_rows() -> None:
    # A second template (p1) of some facts: the build's default phrasing holdout.
    records = [*_records(), *(_record("alpha", g, "greedy", 1, template=1) for g in range(9))]
    options = AblationOptions(holdout_family="weekdays", split_seed=4)
    pool = development_pool(records, options)
    build = split_records(records, "weekdays", seed=4)
    assert len(build.phrasing) == 9 and build.shift and build.test
    assert {r.id for r in pool} == {r.id for r in (*build.train, *build.calibration)}
    assert not any(r.family == "weekdays" or r.item_id.endswith("p1") for r in pool)
    carved = carve(pool, (0.45, 0.35, 0.20), seed=0)
    assert carved.train.size + carved.calibration.size + carved.validation.size == len(pool)
    limited = development_pool(records, replace(options, limit=50))
    groups = {r.group_id for r in limited}
    assert 50 <= len(limited) < 50 + 3  # whole groups: every variant of a fact together
    assert all(r.id in {p.id for p in pool} for r in limited)
    assert sum(r.group_id in groups for r in pool) == len(limited)


def test_the_carve_keeps_groups_whole_and_covers_the_pool() -> None:
    pool = development_pool(_records(), AblationOptions(holdout_family="weekdays"))
    carved = carve(pool, (0.45, 0.35, 0.20), seed=1)
    parts = [carved.train, carved.calibration, carved.validation]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(pool)))
    group_sets = [{pool[i].group_id for i in part} for part in parts]
    assert all(not (a & b) for i, a in enumerate(group_sets) for b in group_sets[i + 1 :])
    assert carve(pool, (0.45, 0.35, 0.20), seed=1).validation.tolist() == carved.validation.tolist()
    assert carve(pool, (0.45, 0.35, 0.20), seed=2).validation.tolist() != carved.validation.tolist()


def test_gateway_stats() -> None:
    stats = gateway_stats(
        np.array([True, True, False, False, True]), np.array([1, 1, 1, 0, 0]), 0.95, True
    )
    assert (stats.accepted, stats.acceptance_rate) == (3, 0.6)
    assert stats.precision == pytest.approx(2 / 3) and stats.recall == pytest.approx(2 / 3)
    empty = gateway_stats(np.zeros(2, bool), np.array([1, 0]), 0.95, False)
    assert (empty.accepted, empty.precision, empty.recall) == (0, None, 0.0)


def test_the_baselines_fit_thresholds_on_calibration_only() -> None:
    # Family a: calibration correct above -1; family b: calibration correct above -3.
    cal_scores = [-0.5, -0.8, -1.5, -2.0, -2.5, -2.8, -3.5, -4.0]
    cal_labels = [1, 1, 0, 0, 1, 1, 0, 0]
    cal_families = ["a", "a", "a", "a", "b", "b", "b", "b"]
    val_scores = [-0.6, -1.2, -2.6, -3.8, -0.1, np.nan]
    val_labels = [1, 0, 1, 0, 1, 1]
    val_families = ["a", "a", "b", "b", "c", "a"]  # c has no calibration rows
    scores = np.asarray(cal_scores + val_scores, dtype=np.float64)
    labels = np.asarray(cal_labels + val_labels, dtype=np.int64)
    carved = Carved(np.zeros(0, np.int64), np.arange(8), np.arange(8, 14))
    found = baseline_accepted(scores, labels, cal_families + val_families, carved, 0.95)
    single, single_found = found["mean-logprob"]
    assert single_found and single.tolist() == [True, False, False, False, True, False]
    per_family, any_found = found["mean-logprob-per-family"]
    assert any_found and per_family.tolist() == [True, False, True, False, False, False]


def _result(
    method: str, run: int, precision: float | None, recall: float, region: bool
) -> RunResult:
    stats = GatewayStats(0.95, 100, 0 if precision is None else 10, 0.1, precision, recall, region)
    return RunResult(method, run, run, 0, 1.0, 8, (0.95,) if region else (), (stats,))


def test_the_winner_is_chosen_on_validation_medians_and_region_share() -> None:
    results = [
        *(_result("steady", r, 0.96, 0.30, True) for r in range(5)),
        # a higher recall, but calibration found a region in only 3 of 5 runs
        *(_result("lottery", r, 0.99, 0.60, r < 3) for r in range(5)),
        # a region every time, but its accepted answers are not 0.95 correct
        *(_result("loose", r, 0.90, 0.80, True) for r in range(5)),
        *(_result("mean-logprob", r, 1.0, 0.9, True) for r in range(5)),  # baselines never win
        # a region every time and precise, but the median run accepts nothing
        *(
            _result("idle", r, 1.0 if r < 2 else None, 0.9 if r < 2 else 0.0, True)
            for r in range(5)
        ),
    ]
    summaries = summarize(results, [0.95])
    lottery = next(s for s in summaries if s.method == "lottery")
    assert (lottery.regions, lottery.runs, lottery.recall.median) == (3, 5, 0.60)
    loose = next(s for s in summaries if s.method == "loose")
    assert loose.holds == 0 and loose.precision.low == 0.90
    assert choose(summaries, 0.95) == "steady"
    idle = next(s for s in summaries if s.method == "idle")
    assert (idle.regions, idle.precision.median, idle.recall.median) == (5, 1.0, 0.0)
    assert choose(summarize(results[5:10], [0.95]), 0.95) is None
    assert choose(summaries, 0.95, among=lambda method: method != "steady") is None


@pytest.mark.parametrize(
    ("spec", "recipe"),
    [
        ("enc.final,enc.mean@20+lp", EncoderRecipe(20, "final+mean")),
        ("gen.last,gen.answer@16+lp", EncoderRecipe(16, "last+answer")),
        ("gen.last,gen.answer@30+lp", EncoderRecipe(None, "last+answer")),  # layer L is final
        ("gen.last,gen.answer@final+lp", EncoderRecipe(None, "last+answer")),
        ("gen.last,gen.answer@16", None),  # the build always adds the logprob attributes
        ("gen.last,gen.answer@16+lp+sc", None),  # the build has no self-consistency
        ("gen.last,gen.answer@12,20+lp", None),  # one layer only
        ("gen.answer,gen.last@16+lp", None),  # another block order
        ("gen.last@16+lp", None),
    ],
)
def test_a_variant_names_the_build_recipe_that_makes_it(
    spec: str, recipe: EncoderRecipe | None
) -> None:
    assert Variant.parse(spec).canonical(30).build_recipe() == recipe


def _probed(records: list[AnswerRecord], seed: int = 0) -> ProbeFeatures:
    """``gen.last`` separates the labels; ``enc.final`` is noise."""
    rng = np.random.default_rng(seed)
    labels = np.asarray([r.label for r in records], dtype=np.float32)
    signal = (2 * labels - 1)[:, None] * 2.0 + 0.5 * rng.standard_normal((len(records), HIDDEN))
    noise = rng.standard_normal((len(records), HIDDEN))
    blocks = {
        block_key("final", "gen.last"): signal.astype(np.float32),
        block_key("final", "enc.final"): noise.astype(np.float32),
    }
    return ProbeFeatures(blocks, np.ones(len(records), bool), np.ones(len(records), np.int64), 0, 0)


def _options(**changes: Any) -> AblationOptions:
    training = replace(
        DEFAULT_TRAINING, exemplar_dimension=8, epochs=5, learning_rate=3e-2, max_neighbors=64,
        device="cpu", seed=7,
    )  # fmt: skip
    base = AblationOptions(
        variants=("gen.last@final", "enc.final@final"), seeds=3, holdout_family="weekdays",
        alphas=(0.90,), training=training,
    )  # fmt: skip
    return replace(base, **changes)


def test_each_variant_runs_every_seed_on_the_same_splits() -> None:
    records = _records(90)
    options = _options()
    pool = development_pool(records, options)
    results = run_variants(pool, _probed(pool), options, Timings(), log=lambda _: None)
    sdm = [r for r in results if r.method in options.variants]
    assert [(r.method, r.run, r.training_seed) for r in sdm] == [
        (v, run, 7 + run) for v in options.variants for run in range(3)
    ]
    assert {r.carve_seed for r in results} == {0}
    assert len([r for r in results if r.method == "mean-logprob"]) == 3
    summaries = {s.method: s for s in summarize(results, options.alphas)}
    signal, noise = summaries["gen.last@final"], summaries["enc.final@final"]
    assert signal.regions == 3 and signal.precision.low is not None and signal.precision.low >= 0.9
    assert signal.recall.median is not None and signal.recall.median > 0.3
    assert noise.recall.median is not None and noise.recall.median < signal.recall.median
    assert choose(list(summaries.values()), 0.90) == "gen.last@final"
    varied = replace(options, vary_splits=True, seeds=2, variants=("gen.last@final",))
    seeds = {r.carve_seed for r in run_variants(pool, _probed(pool), varied, Timings(), print)}
    assert seeds == {0, 1}


def test_the_report_renders_every_method_and_alpha(tmp_path: Path) -> None:
    records = _records(60)
    options = _options(seeds=2, alphas=(0.90, 0.95), variants=("gen.last@final",))
    pool = development_pool(records, options)
    timings = Timings()
    results = run_variants(pool, _probed(pool), options, timings, log=lambda _: None)
    summaries = summarize(results, options.alphas)
    from sdm_router.training.ablation.runner import _options_json

    document = {
        "options": _options_json(options),
        "probe": {"model": "toy", "layers": "final"},
        "rows": {"data": len(records), "pool": len(pool), "validationCorrect": 5,
                 "carved": carve(pool, options.validation_fractions, 0).counts(),
                 "inexactTokenization": 0},
        "winner": {str(a): choose(summaries, a) for a in options.alphas},
        "buildWinner": {"0.9": "gen.last@final", "0.95": None},
        "buildRecipes": {"gen.last@final": {"layer": None, "pooling": "last+answer"}},
        "summaries": [s.to_json() for s in summaries],
        "runs": [r.to_json() for r in results],
        "timings": timings.to_json(),
        "wallSeconds": 1.0,
    }  # fmt: skip
    markdown, data = write_report(tmp_path, document, "sdm-router verifier ablate ...")
    text = markdown.read_text()
    assert "### α = 0.9" in text and "### α = 0.95" in text
    assert text.count("`gen.last@final`") >= 2 and "*mean-logprob-per-family*" in text
    assert "build it with `verifier build --pooling last+answer`" in text
    assert build_flags({"layer": 16, "pooling": "final+mean"}) == "--layer 16 --pooling final+mean"
    recipe = {"layer": None, "pooling": "last+answer"}
    assert build_flags(recipe, 0.15) == "--pooling last+answer --min-family-accuracy 0.15"
    assert json.loads(data.read_text())["summaries"] == document["summaries"]
    assert render(document) != text  # the command line is only in the written report


def test_the_command_refuses_bad_input_before_loading_a_model(tmp_path: Path) -> None:
    def args(**changes: object) -> argparse.Namespace:
        values = {
            "data": tmp_path, "out": tmp_path / "out", "limit": None, "seeds": 5,
            "variants": ["gen.last@20+lp"], "layers": "20", "holdout_family": "weekdays",
            "holdout_phrasings": "1",
            "split_seed": 0, "validation_seed": 0, "vary_splits": False, "alphas": [0.95],
            "min_family_accuracy": 0.0, "estimator": "lower", "exemplar_dimension": 8,
            "epochs": 1, "learning_rate": 1e-3,
            "max_neighbors": 64, "shuffles": 1, "seed": 0, "encoder": "embedded",
            "device": "cpu", "threads": None, "batch_size": 4, "cache": None,
        }  # fmt: skip
        return argparse.Namespace(**{**values, **changes})

    assert ablate_command(args()) == 2  # no rows.jsonl
    write_records(tmp_path / ROWS_FILE, _records(3))
    assert ablate_command(args(variants=["gen.last"])) == 2
    assert ablate_command(args(seeds=0)) == 2
    assert ablate_command(args(exemplar_dimension=0)) == 2
    assert ablate_command(args(holdout_phrasings="p1")) == 2
    assert ablate_command(args(min_family_accuracy=1.5)) == 2


def test_a_data_mix_carves_train_and_calibration_but_validates_on_every_family() -> None:
    rows = [
        *_records(60),
        *(replace(r, family="never", label=0) for r in _records(20) if r.family == "alpha"),
    ]
    pool = development_pool(rows, _options())
    whole = carve(pool, (0.45, 0.35, 0.20), 0)
    mixed = carve(pool, (0.45, 0.35, 0.20), 0, min_family_accuracy=0.15)

    def families(indices: np.ndarray) -> set[str]:
        return {pool[i].family for i in indices}

    assert families(whole.train) == families(whole.calibration) == {"alpha", "beta", "never"}
    assert families(mixed.train) == families(mixed.calibration) == {"alpha", "beta"}
    np.testing.assert_array_equal(mixed.validation, whole.validation)
    assert "never" in families(mixed.validation)
