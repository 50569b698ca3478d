"""``verifier build`` retrains with the next seed block while no region reaches the target."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from sdm_router.core.verdict import VerificationInput
from sdm_router.training.cli import _verifier_build_options
from sdm_router.training.records import ROWS_FILE, AnswerRecord, write_records
from sdm_router.training.splits import EmptyDataMix
from sdm_router.training.verifier_build import (
    DEFAULT_TRAINING,
    VerifierBuildOptions,
    build_verifier,
    has_region,
)
from sdm_router.verifier.sdm import SDMModel


class ToyEncoder:
    """A deterministic 4-d vector per answer; label 1 answers sit near +1, label 0 near -1."""

    fingerprint = "toy-encoder-v1"
    identity: ClassVar[dict[str, str]] = {"model": "toy"}
    representation: ClassVar[dict[str, str]] = {"provider": "test", "fingerprint": fingerprint}

    def encode(self, items: Sequence[VerificationInput]) -> np.ndarray[Any, Any]:
        rows = []
        for item in items:
            rng = np.random.default_rng(sum(map(ord, item.response)))
            sign = 1.0 if item.response.startswith("right") else -1.0
            rows.append(sign + 0.8 * rng.standard_normal(4))
        return np.asarray(rows, dtype=np.float32)


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


TINY_TRAINING = replace(
    DEFAULT_TRAINING, exemplar_dimension=8, epochs=2, max_neighbors=64, shuffles=1, device="cpu"
)


def build_tiny(
    tmp_path: Path, records: list[AnswerRecord], **changes: Any
) -> tuple[SDMModel, Path]:
    """A verifier built with ``ToyEncoder`` over ``records`` (tiny training, no shift family,
    ``changes`` to ``VerifierBuildOptions``), and its data folder."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    write_records(data / ROWS_FILE, records)
    options = VerifierBuildOptions(
        data=data, out=tmp_path / "v.sdmkitmodel", training=TINY_TRAINING, holdout_family=None,
        show_progress=False,
    )  # fmt: skip
    encoder: Any = ToyEncoder()
    return build_verifier(replace(options, **changes), encoder), data


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
