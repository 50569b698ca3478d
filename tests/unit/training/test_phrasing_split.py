"""The held-out phrasings: one template of every family kept out of train / calibration / test
as ``splits/phrasing.jsonl``, and never a question text that training also asks."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sdm_router.training.records import AnswerRecord, read_records
from sdm_router.training.splits import (
    DEFAULT_HOLDOUT_PHRASINGS,
    PhrasingHoldout,
    holdout_phrasings,
    question_text,
    split_records,
    template_index,
)
from sdm_router.training.suites import list_families
from sdm_router.training.suites.registry import get_family, get_suite
from tests.support.verifier_builds import build_tiny


def _record(item_id: str, question: str, variant: str = "greedy", label: int = 1) -> AnswerRecord:
    family = item_id.split("/", maxsplit=1)[0]
    return AnswerRecord.from_json(
        {
            "id": f"{item_id}#{variant}",
            "item_id": item_id,
            "group_id": item_id.rsplit("/", 1)[0],
            "family": family,
            "variant": variant,
            "question": question,
            "messages": [{"role": "user", "content": question}],
            "response": "r",
            "token_logprobs": None,
            "label": label,
        }
    )


def _suite_records(seed: int = 0) -> list[AnswerRecord]:
    """Two answers for each of 600 styled items of the default suite (every family)."""
    items = get_suite("default").generate(seed, limit=600, styled=True)
    return [
        _record(item.id, item.prompt, variant, label=int(variant == "greedy"))
        for item in items
        for variant in ("greedy", "sampled-0")
    ]


# --- the rule ------------------------------------------------------------------------------------


def test_the_default_keeps_four_templates_of_every_kind_in_training() -> None:
    for name in list_families():
        templates: dict[str, set[int]] = defaultdict(set)
        for item in get_family(name).generate(0):
            templates[item.kind].add(int(item.id.rsplit("/p", 1)[1]))
        held = set(DEFAULT_HOLDOUT_PHRASINGS.templates(name))
        for kind, indices in templates.items():
            assert indices == set(range(len(indices))), (name, kind)  # p0 … p<n-1>
            assert held <= indices, (name, kind)  # the held-out template exists ...
            kept = indices - held
            assert len(held & indices) == 1, (name, kind)  # ... exactly one per kind
            if len(indices) >= 5:
                assert len(kept) >= 4, (name, kind)


@pytest.mark.parametrize(
    ("spelling", "every", "own", "spec"),
    [
        (None, (), (), "none"),
        ("none", (), (), "none"),
        ("", (), (), "none"),
        ("1", (1,), (), "1"),
        (" 2 , 1 ,1", (1, 2), (), "1,2"),
        ("1,capitals:3,capitals:0,elements:none", (1,), (("capitals", (0, 3)), ("elements", ())),
         "1,capitals:0,capitals:3,elements:none"),
    ],
)  # fmt: skip
def test_holdout_phrasings_reads_every_spelling(
    spelling: str | None, every: tuple[int, ...], own: tuple[Any, ...], spec: str
) -> None:
    rule = holdout_phrasings(spelling)
    assert (rule.every_family, rule.per_family, rule.spec) == (every, own, spec)
    assert holdout_phrasings(rule.spec) == rule  # the spec reads back as the same rule
    assert holdout_phrasings(rule) is rule


def test_per_family_entries_replace_the_default() -> None:
    rule = holdout_phrasings("1,capitals:3,elements:none")
    assert rule.templates("capitals") == (3,)
    assert rule.templates("elements") == ()
    assert rule.templates("arithmetic") == (1,)
    assert bool(rule) and not bool(holdout_phrasings("none"))
    assert PhrasingHoldout(every_family=(1,)) == DEFAULT_HOLDOUT_PHRASINGS


@pytest.mark.parametrize("bad", ["p1", "-1", "capitals:", "capitals:x", "1.5", "a b:1"])
def test_a_bad_spelling_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="holdout phrasing"):
        holdout_phrasings(bad)


def test_template_index_and_question_text() -> None:
    assert template_index(_record("capitals/france/p2f4s1c3", "q")) == 2
    assert template_index(_record("elements/symbol/8/p11", "q")) == 11
    assert template_index(_record("q17", "q")) is None  # imported traffic names no template
    styled = _record("capitals/france/p1f3", "Which city is  the capital of France?  Be brief.")
    assert question_text(styled) == "which city is the capital of france?"
    labelled = _record(
        "capitals/france/p1f6",
        "What is the capital of France? End your reply with a line of the form "
        "'Answer: <your answer>'.",
    )
    assert question_text(labelled) == "what is the capital of france?"


# --- the split -----------------------------------------------------------------------------------


def test_phrasing_rows_leave_train_calibration_and_test() -> None:
    records = _suite_records()
    splits = split_records(records, ("weekdays", "countries"))
    kept = [*splits.train, *splits.calibration, *splits.test]
    assert len(kept) + len(splits.shift) + len(splits.phrasing) == len(records)
    assert {r.family for r in splits.shift} == {"weekdays", "countries"}
    # every other family contributes, and only with its held-out template
    families = set(list_families()) - {"weekdays", "countries"}
    assert {r.family for r in splits.phrasing} == families
    assert {template_index(r) for r in splits.phrasing} == {1}
    # no phrasing row asks a question that train, calibration or test asks
    asked = {question_text(r) for r in kept}
    assert not any(question_text(r) in asked for r in splits.phrasing)
    # rows of a held-out template left in a split are only those whose question is asked there
    others = {question_text(r) for r in kept if template_index(r) != 1}
    assert all(question_text(r) in others for r in kept if template_index(r) == 1)
    # groups still sit in one split; the same fact in another template may be in training
    owners: dict[str, str] = {}
    for name in ("train", "calibration", "test"):
        for record in getattr(splits, name):
            assert owners.setdefault(record.group_id, name) == name
    assert {r.group_id for r in splits.phrasing} & {r.group_id for r in splits.train}


def test_group_assignment_does_not_depend_on_the_rule() -> None:
    records = _suite_records()
    with_rule = split_records(records, "weekdays")
    without = split_records(records, "weekdays", holdout_phrasing=None)
    assert without.phrasing == []
    owner = {}
    for name in ("train", "calibration", "test"):
        owner.update({r.id: name for r in getattr(without, name)})
    for name in ("train", "calibration", "test"):
        assert all(owner[r.id] == name for r in getattr(with_rule, name))
    assert with_rule == split_records(records, "weekdays", holdout_phrasing="1")  # deterministic
    assert split_records(records, "weekdays", holdout_phrasing="none") == without


def test_a_phrasing_row_whose_question_training_asks_stays_with_its_group() -> None:
    records = [
        _record("capitals/a/p0", "What is the capital of A?"),
        _record("capitals/a/p1f3", "Which city is the capital of A? Be brief."),
        # another group asks, in template 1, exactly what a kept row asks (without the format)
        _record("capitals/b/p0", "Which city is the capital of A?"),
        _record("capitals/c/p1", "What is the capital of A?"),
        _record("capitals/d/p1", "Something nobody else asks?"),
    ]
    splits = split_records(records, None)
    assert [r.item_id for r in splits.phrasing] == ["capitals/d/p1"]
    kept = {r.item_id for r in (*splits.train, *splits.calibration, *splits.test)}
    assert kept == {"capitals/a/p0", "capitals/a/p1f3", "capitals/b/p0", "capitals/c/p1"}
    owners = {}
    for name in ("train", "calibration", "test"):
        owners.update({r.item_id: name for r in getattr(splits, name)})
    assert owners["capitals/a/p1f3"] == owners["capitals/a/p0"]  # with its group


# --- `verifier build` --------------------------------------------------------------------------


def test_the_cli_reads_holdout_phrasings() -> None:
    from sdm_router.training.cli import _verifier_build_options, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    base = ["verifier", "build", "--data", "d", "--out", "o"]
    assert _verifier_build_options(parser.parse_args(base)).holdout_phrasing == (
        DEFAULT_HOLDOUT_PHRASINGS
    )
    chosen = parser.parse_args([*base, "--holdout-phrasings", "2,capitals:3"])
    assert _verifier_build_options(chosen).holdout_phrasing == holdout_phrasings("2,capitals:3")
    none = parser.parse_args([*base, "--holdout-phrasings", "none"])
    assert not _verifier_build_options(none).holdout_phrasing
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--holdout-phrasings", "p1"])


def test_build_writes_the_phrasing_split_and_records_the_rule(tmp_path: Path) -> None:

    records = [
        replace(
            _record(f"f/{i // 3}/p{i % 3}", f"question {i}", label=i % 2),
            response=f"{'right' if i % 2 else 'wrong'} answer {i}",
        )
        for i in range(300)
    ]
    model, data = build_tiny(tmp_path, records)
    phrasing = read_records(data / "splits" / "phrasing.jsonl")
    assert len(phrasing) == 100 and {template_index(r) for r in phrasing} == {1}
    assert model.contents.metadata is not None
    recorded = model.contents.metadata["sdmRouter"]
    assert recorded["holdoutPhrasings"] == "1"
    assert recorded["holdoutPhrasingTemplates"] == {"f": [1]}
    assert recorded["splitCounts"]["phrasing"] == 100
    summary = json.loads((data / "build-summary.json").read_text())
    assert summary["splits"]["phrasing"] == 100
