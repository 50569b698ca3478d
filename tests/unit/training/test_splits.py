"""Grouped splits with one or several families held out as the shift test."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from sdm_router.training.records import AnswerRecord
from sdm_router.training.splits import (
    EmptyDataMix,
    covered_families,
    holdout_families,
    keep_covered,
    split_records,
)
from sdm_router.training.suites import DEFAULT_HOLDOUT, families_of_kind, list_families
from sdm_router.training.verifier_build import VerifierBuildOptions


def _record(family: str, group: int, variant: str = "greedy") -> AnswerRecord:
    item_id = f"{family}/{group}/p0"
    return AnswerRecord.from_json(
        {
            "id": f"{item_id}#{variant}",
            "item_id": item_id,
            "group_id": f"{family}/{group}",
            "family": family,
            "variant": variant,
            "question": "q",
            "messages": [{"role": "user", "content": "q"}],
            "response": "r",
            "token_logprobs": None,
            "label": group % 2,
        }
    )


RECORDS = [
    _record(family, group, variant)
    for family in ("capitals", "countries", "weekdays", "arithmetic")
    for group in range(20)
    for variant in ("greedy", "sampled-0")
]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ()),
        ("none", ()),
        ("", ()),
        ("weekdays", ("weekdays",)),
        ("weekdays,countries", ("weekdays", "countries")),
        (" weekdays , countries ,", ("weekdays", "countries")),
        (("weekdays", "countries", "weekdays"), ("weekdays", "countries")),
        (["capitals"], ("capitals",)),
    ],
)
def test_holdout_families_reads_every_spelling(
    given: str | tuple[str, ...] | list[str] | None, expected: tuple[str, ...]
) -> None:
    assert holdout_families(given) == expected


def test_several_families_go_to_shift_whole() -> None:
    splits = split_records(RECORDS, ("weekdays", "countries"))
    assert {r.family for r in splits.shift} == {"weekdays", "countries"}
    assert len(splits.shift) == 80
    kept = splits.train + splits.calibration + splits.test
    assert {r.family for r in kept} == {"capitals", "arithmetic"}
    assert len(kept) + len(splits.shift) == len(RECORDS)
    owners: dict[str, str] = {}
    for name in ("train", "calibration", "test"):
        for record in getattr(splits, name):
            assert owners.setdefault(record.group_id, name) == name  # a group in one split only


def test_a_single_name_and_none_keep_working() -> None:
    assert {r.family for r in split_records(RECORDS, "weekdays").shift} == {"weekdays"}
    assert split_records(RECORDS, None).shift == []
    assert split_records(RECORDS, "weekdays,countries") == split_records(
        RECORDS, ("weekdays", "countries")
    )


def test_the_default_holdout_is_one_factual_and_one_procedural_family() -> None:
    assert VerifierBuildOptions(data=Path("d"), out=Path("o")).holdout_family == DEFAULT_HOLDOUT
    assert set(DEFAULT_HOLDOUT) <= set(list_families())
    assert set(DEFAULT_HOLDOUT) & set(families_of_kind("factual"))
    assert set(DEFAULT_HOLDOUT) & set(families_of_kind("procedural"))


def test_the_cli_reads_a_comma_separated_holdout() -> None:
    from sdm_router.training.cli import _verifier_build_options, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    base = ["verifier", "build", "--data", "d", "--out", "o"]

    default = _verifier_build_options(parser.parse_args(base))
    assert default.holdout_family == DEFAULT_HOLDOUT
    chosen = parser.parse_args([*base, "--holdout-family", "weekdays,dates"])
    assert _verifier_build_options(chosen).holdout_family == ("weekdays", "dates")
    none = parser.parse_args([*base, "--holdout-family", "none"])
    assert _verifier_build_options(none).holdout_family == ()


def _labelled(family: str, right: int, rows: int) -> list[AnswerRecord]:
    return [replace(_record(family, i), label=int(i < right)) for i in range(rows)]


def test_covered_families_keep_those_answered_right_often_enough() -> None:
    train = [*_labelled("capitals", 4, 10), *_labelled("dates", 1, 10), *_labelled("units", 0, 5)]
    assert covered_families(train, 0.0) == ("capitals", "dates", "units")
    assert covered_families(train, 0.1) == ("capitals", "dates")  # 1 of 10 is exactly 0.1
    assert covered_families(train, 0.15) == ("capitals",)
    assert covered_families(train, 1.0) == ()
    with pytest.raises(ValueError, match="minimum family accuracy"):
        covered_families(train, 1.5)


def test_without_a_data_mix_every_family_stays_even_one_absent_from_train() -> None:
    calibration = [*_labelled("capitals", 1, 2), *_labelled("rare", 0, 2)]
    families = covered_families(_labelled("capitals", 1, 2), 0.0)
    assert families == ("capitals",)
    assert keep_covered(calibration, families, 0.0) == calibration
    assert [r.family for r in keep_covered(calibration, families, 0.1)] == ["capitals"] * 2
    assert "lower --min-family-accuracy" in str(EmptyDataMix(0.5))
