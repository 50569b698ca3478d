"""Suite registry and deterministic item generation."""

from __future__ import annotations

from collections import Counter

import pytest

from sdm_router.core.generation import Message
from sdm_router.training.suites import (
    ANSWER_FORMATS,
    CONTEXT_TURNS,
    PLAIN,
    SYSTEM_PROMPTS,
    PromptStyle,
    draw_style,
    families_of_kind,
    get_family,
    get_item,
    get_suite,
    list_families,
    list_suites,
)

FAMILIES = list_families()


def test_registry_lists_families_and_suites() -> None:
    assert set(FAMILIES) >= {"arithmetic", "capitals", "elements", "units", "number_words"}
    assert set(FAMILIES) >= {"letters", "ordering", "dates", "countries"}
    assert len(FAMILIES) >= 12
    assert set(list_suites()) == {"default", "factual", "procedural", *FAMILIES}
    assert get_suite("default").family_names == FAMILIES


def test_factual_and_procedural_partition_the_families() -> None:
    factual, procedural = families_of_kind("factual"), families_of_kind("procedural")
    assert set(factual) == {"capitals", "countries", "elements"}
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
    items = get_family(family).generate(seed=0)
    templates: dict[str, set[str]] = {}
    for item in items:
        templates.setdefault(item.kind, set()).add(item.id.rsplit("/", 1)[1])
        assert item.question and item.answer
        assert item.style == PLAIN and item.prompt == item.question
        assert item.messages == (Message("user", item.question),)
        assert item.group_id == item.id.rsplit("/", 1)[0]
        if get_family(family).kind == "factual":
            assert item.retrieval_key
        else:
            assert item.retrieval_key is None
    assert all(len(used) >= 5 for used in templates.values()), templates


@pytest.mark.parametrize("family", FAMILIES)
def test_suites_put_items_in_every_prompt_style(family: str) -> None:
    items = get_suite(family).generate(seed=0, styled=True)
    styles = [item.style for item in items]
    assert {style.format_kind for style in styles} == {"plain", "short", "sentence", "labelled"}
    assert {style.system for style in styles} == set(range(len(SYSTEM_PROMPTS)))
    assert {style.context for style in styles} == set(range(len(CONTEXT_TURNS)))
    for item in items[:200]:
        assert item.id.endswith(item.style.code)
        assert (
            item.group_id
            == get_family(family).item_from_id(item.id.removesuffix(item.style.code)).group_id
        )
        roles = [message.role for message in item.messages]
        assert roles[-1] == "user" and item.messages[-1].content == item.prompt
        assert item.prompt.startswith(item.question)
        assert ("system" in roles) == bool(item.style.system)
        assert ("assistant" in roles) == bool(item.style.context)


def test_styled_messages_in_order() -> None:
    item = get_item("capitals/france/p0f4s1c3")
    assert item.style == PromptStyle(answer_format=4, system=1, context=3)
    assert item.group_id == "capitals/france"
    assert [(m.role, m.content) for m in item.messages] == [
        ("system", SYSTEM_PROMPTS[1]),
        ("user", CONTEXT_TURNS[3][0]),
        ("assistant", CONTEXT_TURNS[3][1]),
        ("user", f"What is the capital of France? {ANSWER_FORMATS[4].instruction}"),
    ]
    assert item.is_correct("The capital of France is Paris.")
    assert get_item("capitals/france/p0").style == PLAIN


def test_styles_are_drawn_from_the_seed_alone() -> None:
    assert draw_style("capitals/france/p0", 3) == draw_style("capitals/france/p0", 3)
    drawn = {draw_style("capitals/france/p0", seed) for seed in range(40)}
    assert len(drawn) > 10
    suite = get_suite("default")
    styled = suite.generate(seed=5, limit=80, styled=True)
    assert [i.id for i in styled] == [i.id for i in suite.generate(seed=5, styled=True)[:80]]
    plain = suite.generate(seed=5, limit=80)
    assert all(item.style == PLAIN for item in plain)
    assert [item.group_id for item in plain] == [item.group_id for item in styled]
    assert [item.with_style(draw_style(item.id, 5)) for item in plain] == styled


def test_context_turns_and_instructions_name_no_answer() -> None:
    """Earlier turns and format instructions must not hand the model a candidate answer."""
    from sdm_router.training.suites.numeric import find_numbers

    texts = [text for turn in CONTEXT_TURNS for text in turn]
    texts += [entry.instruction for entry in ANSWER_FORMATS] + list(SYSTEM_PROMPTS)
    for text in texts:
        assert not find_numbers(text), text
        assert not any(day in text for day in ("Monday", "Friday", "Sunday")), text


@pytest.mark.parametrize("family", FAMILIES)
def test_items_rebuild_from_their_ids(family: str) -> None:
    for item in get_suite(family).generate(seed=3, limit=60, styled=True):
        rebuilt = get_item(item.id)
        assert rebuilt == item
        assert rebuilt.to_record() == item.to_record()


@pytest.mark.parametrize(
    "bad_id",
    [
        "capitals/atlantis/p0",
        "capitals/france/p9",
        "capitals/france/p0x1",
        "capitals/france/p0f99",
        "arithmetic/div/1/2/p0",
        "elements/name/x/p0",
        "weekdays/after/monday/99/p0",
        "units/down/meters-grams/3/p0",
        "number_words/to_words/123456/p0",
        "letters/next/z/p0",
        "letters/nth/apple/9/p0",
        "ordering/sort_asc/1-2-3-4/p0",
        "dates/days_in_month/february/p0",
        "dates/date_after/2025-02-30/3/p0",
        "countries/currency/lithuania/p0",
        "countries/continent/australia/p0",
    ],
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
    item = get_item("capitals/bolivia/p0f1")
    assert item.to_record() == {
        "id": "capitals/bolivia/p0f1",
        "family": "capitals",
        "kind": "",
        "question": "What is the capital of Bolivia?",
        "prompt": "What is the capital of Bolivia? Answer with just the answer.",
        "messages": [
            {
                "role": "user",
                "content": "What is the capital of Bolivia? Answer with just the answer.",
            }
        ],
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
    assert get_item("weekdays/before/monday/14/p4").answer == "Monday"


def test_word_family_answers() -> None:
    assert get_item("reversal/apple/p0").answer == "elppa"
    assert get_item("letter_count/count/strawberry/r/p0").answer == "3"
    assert get_item("letter_count/length/banana/p1").answer == "6"
    assert get_item("elements/symbol/26/p0").answer == "Fe"
    assert get_item("elements/by_number/79/p0").answer == "Gold"


def test_new_family_answers() -> None:
    assert get_item("units/down/meters-centimeters/3/p0").answer == "300"
    assert get_item("units/up/hours-minutes/2/p0").question == "How many hours are in 120 minutes?"
    assert get_item("units/up/hours-minutes/2/p0").answer == "2"
    assert get_item("number_words/to_words/347/p0").answer == "three hundred forty-seven"
    assert get_item("number_words/to_words/347/p0").aliases == ("three hundred and forty-seven",)
    assert get_item("number_words/to_digits/1005/p0").question == (
        "Write 'one thousand five' as a number using digits."
    )
    assert get_item("letters/first/garden/p0").answer == "g"
    assert get_item("letters/nth/garden/3/p0").answer == "r"
    assert get_item("letters/previous/b/p0").answer == "a"
    assert get_item("ordering/sort_desc/34-12-56-7/p0").answer == "56, 34, 12, 7"
    assert get_item("ordering/smallest/34-12-56-7/p0").answer == "7"
    assert get_item("ordering/sort_words/river-apple-lemon-zebra/p0").answer == (
        "apple, lemon, river, zebra"
    )
    assert get_item("dates/date_after/2025-12-25/10/p0").answer == "January 4, 2026"
    assert get_item("dates/date_before/2025-03-01/1/p0").answer == "February 28, 2025"
    assert get_item("dates/month_before/january/1/p0").answer == "December"
    assert get_item("dates/days_in_month/september/p0").answer == "30"
    assert get_item("countries/continent/peru/p0").answer == "South America"
    assert get_item("countries/currency/japan/p0").answer == "Japanese yen"
    assert get_item("countries/currency/japan/p0").aliases == ("yen",)


def test_ordering_questions_are_never_sorted_already() -> None:
    for item in get_family("ordering").generate(seed=0):
        given = item.id.split("/")[2].split("-")
        if item.kind.startswith("sort"):
            assert item.answer != ", ".join(given)
            assert item.answer != ", ".join(reversed(given))
