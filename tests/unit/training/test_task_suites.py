"""Suite registry and deterministic item generation."""

from __future__ import annotations

from collections import Counter

import pytest

from service.training.suites import (
    families_of_kind,
    get_family,
    get_item,
    get_suite,
    list_families,
    list_suites,
)

FAMILIES = list_families()


def test_registry_lists_families_and_suites() -> None:
    assert set(FAMILIES) >= {"arithmetic", "capitals", "elements"}
    assert len(FAMILIES) >= 5
    assert set(list_suites()) == {"default", "factual", "procedural", *FAMILIES}
    assert get_suite("default").family_names == FAMILIES


def test_factual_and_procedural_partition_the_families() -> None:
    factual, procedural = families_of_kind("factual"), families_of_kind("procedural")
    assert set(factual) == {"capitals", "elements"}
    assert "arithmetic" in procedural
    assert set(factual) | set(procedural) == set(FAMILIES)
    assert not set(factual) & set(procedural)
    assert get_suite("factual").family_names == factual


def test_unknown_names_raise_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="capitals"):
        get_suite("capital")
    with pytest.raises(KeyError, match="arithmetic"):
        get_family("maths")
    with pytest.raises(KeyError):
        get_suite("default", exclude=["nope"])


def test_exclude_holds_a_family_out() -> None:
    suite = get_suite("default", exclude=["weekdays"])
    assert "weekdays" not in suite.family_names
    assert all(item.family != "weekdays" for item in suite.generate(seed=0, limit=500))


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_is_deterministic_and_ids_unique(family: str) -> None:
    suite = get_suite(family)
    first = suite.generate(seed=7)
    again = suite.generate(seed=7)
    assert [item.id for item in first] == [item.id for item in again]
    assert [item.prompt for item in first] == [item.prompt for item in again]
    assert len({item.id for item in first}) == len(first) >= 200
    assert [item.id for item in suite.generate(seed=8)] != [item.id for item in first]
    assert all(item.family == family and item.id.startswith(f"{family}/") for item in first)


@pytest.mark.parametrize("family", FAMILIES)
def test_items_are_complete_and_phrased_several_ways(family: str) -> None:
    items = get_suite(family).generate(seed=0)
    phrasings = {item.id.rsplit("/", 1)[1] for item in items}
    assert len(phrasings) >= 3
    for item in items:
        assert item.prompt and item.answer
        assert item.group_id == item.id.rsplit("/", 1)[0]
        if get_family(family).kind == "factual":
            assert item.retrieval_key
        else:
            assert item.retrieval_key is None


@pytest.mark.parametrize("family", FAMILIES)
def test_items_rebuild_from_their_ids(family: str) -> None:
    for item in get_suite(family).generate(seed=3, limit=60):
        rebuilt = get_item(item.id)
        assert rebuilt == item
        assert rebuilt.to_record() == item.to_record()


@pytest.mark.parametrize(
    "bad_id",
    ["capitals/atlantis/p0", "capitals/france/p9", "arithmetic/div/1/2/p0", "elements/name/x/p0"],
)
def test_unknown_ids_raise_key_error(bad_id: str) -> None:
    with pytest.raises(KeyError):
        get_item(bad_id)


def test_limit_keeps_families_balanced() -> None:
    items = get_suite("default").generate(seed=0, limit=120)
    counts = Counter(item.family for item in items)
    assert len(items) == 120
    assert set(counts) == set(FAMILIES)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_limit_per_family_caps_each_family() -> None:
    items = get_suite("default").generate(seed=0, limit_per_family=5)
    assert Counter(item.family for item in items) == dict.fromkeys(FAMILIES, 5)


def test_limited_generation_is_a_prefix_of_the_full_one() -> None:
    suite = get_suite("default")
    assert suite.generate(seed=1, limit=50) == suite.generate(seed=1)[:50]


def test_to_record_is_plain_data() -> None:
    item = get_item("capitals/bolivia/p0")
    assert item.to_record() == {
        "id": "capitals/bolivia/p0",
        "family": "capitals",
        "prompt": "What is the capital of Bolivia?",
        "answer": "Sucre",
        "aliases": ["La Paz"],
        "retrieval_key": "capital of Bolivia",
    }


def test_arithmetic_covers_operations_and_digit_counts() -> None:
    items = get_suite("arithmetic").generate(seed=0)
    operations = Counter(item.id.split("/")[1] for item in items)
    assert set(operations) == {"add", "sub", "mul"}
    digit_counts = {(len(item.id.split("/")[2]), len(item.id.split("/")[3])) for item in items}
    assert {(1, 1), (2, 2), (3, 3), (1, 3), (3, 1)} <= digit_counts
    for item in items:
        _, operation, a, b, _ = item.id.split("/")
        expected = {"add": int(a) + int(b), "sub": int(a) - int(b), "mul": int(a) * int(b)}
        assert int(item.answer) == expected[operation] >= 0


def test_weekday_answers_follow_the_calendar() -> None:
    assert get_item("weekdays/after/monday/3/p0").answer == "Thursday"
    assert get_item("weekdays/before/monday/1/p1").answer == "Sunday"
    assert get_item("weekdays/after/sunday/14/p2").answer == "Sunday"
    assert "in 1 day?" in get_item("weekdays/after/friday/1/p0").prompt


def test_word_family_answers() -> None:
    assert get_item("reversal/apple/p0").answer == "elppa"
    assert get_item("letter_count/count/strawberry/r/p0").answer == "3"
    assert get_item("letter_count/length/banana/p1").answer == "6"
    assert get_item("elements/symbol/26/p0").answer == "Fe"
    assert get_item("elements/by_number/79/p0").answer == "Gold"
