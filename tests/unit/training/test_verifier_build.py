"""``verifier build`` retrains with the next seed block while no region reaches the target."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sdm_router.training.cli import _verifier_build_options
from sdm_router.training.records import AnswerRecord
from sdm_router.training.splits import EmptyDataMix
from sdm_router.training.verifier_build import (
    VerifierBuildOptions,
    has_region,
)
from tests.support.verifier_builds import TINY_TRAINING, build_tiny


def _records(count: int) -> list[AnswerRecord]:
    return [
        AnswerRecord.from_json(
            {
                "id": f"f/{i}#greedy",
                "item_id": f"f/{i}",
                "family": "f",
                "variant": "greedy",
                "question": f"question {i}",
                "label": i % 2,
                "token_logprobs": None,
                "messages": [{"role": "user", "content": f"question {i}"}],
                "response": f"{'right' if i % 2 else 'wrong'} answer {i}",
            }
        )
        for i in range(count)
    ]


def _build(tmp_path: Path, target: float | None, attempts: int) -> dict[str, Any]:
    model, data = build_tiny(
        tmp_path, _records(240), out=tmp_path / f"v-{attempts}.sdmkitmodel",
        training=replace(TINY_TRAINING, seed=3, shuffles=2), target_alpha=target,
        attempts=attempts,
    )  # fmt: skip
    summary: dict[str, Any] = json.loads((data / "build-summary.json").read_text())
    assert model.contents.metadata is not None
    assert model.contents.metadata["sdmRouter"]["trainingSeed"] == summary["training_seed"]
    return summary


def test_without_a_target_one_attempt_is_made(tmp_path: Path) -> None:
    summary = _build(tmp_path, None, 3)
    assert summary["training_seed"] == 3
    assert summary["rejected_seeds"] == []


def test_an_unreachable_target_uses_every_attempt_and_keeps_the_last(tmp_path: Path) -> None:
    summary = _build(tmp_path, 1.5, 3)
    # Seed blocks of `shuffles` = 2: 3, 5, 7; the last is kept, the others are recorded.
    assert summary["training_seed"] == 7
    assert [entry["seed"] for entry in summary["rejected_seeds"]] == [3, 5]


@pytest.mark.parametrize(
    ("alphas", "target", "expected"),
    [([0.9, 0.8], 0.95, False), ([0.95, 0.8], 0.95, True), ([], None, True), ([], 0.5, False)],
)
def test_has_region(alphas: list[float], target: float | None, expected: bool) -> None:
    assert has_region(alphas, target) is expected


def test_the_command_line_defaults_are_the_options_defaults(tmp_path: Path) -> None:
    from sdm_router.cli import build_parser

    out = tmp_path / "v.sdmkitmodel"
    args = build_parser().parse_args(
        ["verifier", "build", "--data", str(tmp_path), "--out", str(out)]
    )
    assert _verifier_build_options(args) == VerifierBuildOptions(data=tmp_path, out=out)


def test_a_data_mix_trains_and_calibrates_on_the_covered_families_only(tmp_path: Path) -> None:
    hard = [
        replace(record, id=f"hard/{i}#greedy", item_id=f"hard/{i}", group_id=f"hard/{i}",
                family="hard", label=0, response=f"wrong answer {i}")
        for i, record in enumerate(_records(120))
    ]  # fmt: skip
    model, data = build_tiny(tmp_path, [*_records(240), *hard], min_family_accuracy=0.15)
    assert model.contents.metadata is not None
    recorded = model.contents.metadata["sdmRouter"]
    assert (recorded["minFamilyAccuracy"], recorded["verifierFamilies"]) == (0.15, ["f"])
    splits = {
        name: (data / "splits" / f"{name}.jsonl").read_text()
        for name in ("train", "calibration", "test")
    }
    assert '"family": "hard"' not in splits["train"] + splits["calibration"]
    assert '"family": "hard"' in splits["test"]  # the report still sees the left-out family
    assert model.support_size == recorded["splitCounts"]["train"]


def test_a_data_mix_no_family_reaches_is_refused_before_encoding(tmp_path: Path) -> None:
    with pytest.raises(EmptyDataMix, match="lower --min-family-accuracy"):
        build_tiny(tmp_path, _records(40), min_family_accuracy=1.0)
    assert not (tmp_path / "data" / "cache").exists()


def test_the_artifact_records_the_models_it_was_calibrated_on(tmp_path: Path) -> None:
    records = [
        replace(record, model="org/small" if index % 3 else "")
        for index, record in enumerate(_records(120))
    ]
    model, data = build_tiny(tmp_path, records)
    recorded = (model.contents.metadata or {})["sdmRouter"]["calibratedOn"]
    splits = json.loads((data / "build-summary.json").read_text())["splits"]
    assert [entry["model"] for entry in recorded] == ["org/small"]  # rows naming none: left out
    assert 0 < recorded[0]["rows"] < splits["train"] + splits["calibration"]
    named, _ = build_tiny(
        tmp_path, records, out=tmp_path / "named.sdmkitmodel", calibrated_on=("local:embedded",)
    )
    assert (named.contents.metadata or {})["sdmRouter"]["calibratedOn"] == [
        {"model": "local:embedded", "rows": splits["train"] + splits["calibration"]}
    ]
    unnamed, _ = build_tiny(tmp_path, _records(120), out=tmp_path / "unnamed.sdmkitmodel")
    assert "calibratedOn" not in (unnamed.contents.metadata or {})["sdmRouter"]
