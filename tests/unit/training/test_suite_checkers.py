"""Checkers accept the answer in sentence form and reject wrong, hedged and multi-answers."""

from __future__ import annotations

from fractions import Fraction

import pytest

from sdm_router.training.suites import TaskItem, get_item, get_suite, list_families
from sdm_router.training.suites.numeric import committed_number, find_numbers

SAMPLE = get_suite("default").generate(seed=11, limit_per_family=80, styled=True)


def _kind(item: TaskItem) -> str:
    """The question kind within a family (elements ask for symbols, names or numbers)."""
    return item.kind


def _other_answer(item: TaskItem) -> str:
    """A different answer of the same family, to build wrong and multi-answer responses."""
    banned = {item.answer.casefold(), *(alias.casefold() for alias in item.aliases)}
    for other in SAMPLE:
        same_kind = _kind(other) == _kind(item)
        if other.family == item.family and same_kind and other.answer.casefold() not in banned:
            return other.answer
    raise AssertionError(f"no other answer for {item.id}")


@pytest.mark.parametrize("family", list_families())
def test_every_item_accepts_its_answer_in_sentence_forms(family: str) -> None:
    for item in (item for item in SAMPLE if item.family == family):
        for response in (
            item.answer,
            f"{item.answer}.",
            f"The answer is {item.answer}.",
            f"Answer: **{item.answer}**",
            f"The answer is {item.answer}. I hope this helps!",
        ):
            assert item.is_correct(response), (item.id, response, item.check(response))
        for alias in item.aliases:
            assert item.is_correct(f"The answer is {alias}."), (item.id, alias)


@pytest.mark.parametrize("family", list_families())
def test_every_item_rejects_wrong_hedged_negated_and_multiple_answers(family: str) -> None:
    for item in (item for item in SAMPLE if item.family == family):
        other = _other_answer(item)
        rejected = {
            "wrong": f"The answer is {other}.",
            "multiple_answers": f"The answer is {item.answer} or {other}.",
            "hedged": f"Maybe {item.answer}, I am not sure.",
            "negated": f"The answer is not {item.answer}.",
            "empty": "",
            "refusal": "I cannot answer that question.",
        }
        for kind, response in rejected.items():
            result = item.check(response)
            assert not result.correct, (item.id, kind, response, result)
        assert item.check(f"Maybe {item.answer}.").outcome == "hedged"


CAPITAL_CASES = {
    "capitals/france/p0": {
        "correct": [
            "Paris",
            "The capital of France is Paris.",
            "Paris is the capital of France.",
            "PARIS!",
            "The capital city of France is Paris, which is also its largest city.",
            "The capital of France is Paris, not Lyon.",
            "It is Paris, not Berlin.",
        ],
        "wrong": [
            "Paris is not the capital of France.",
            "The capital of France isn't Paris.",
            "The capital of France is Lyon, rather than Paris.",
            "Paris or Berlin.",
            "It could be Paris or Lyon.",
            "The capital of France is Berlin.",
            "Marseille",
            "I don't know.",
            "Probably Paris.",
        ],
    },
    "capitals/colombia/p1": {
        "correct": ["Bogota", "The capital of Colombia is Bogotá.", "BOGOTÁ"],
        "wrong": ["Medellín", "Bogotá or Quito"],
    },
    "capitals/antigua-and-barbuda/p0": {
        "correct": ["St. John's", "Saint John's is the capital.", "St Johns"],
        "wrong": ["Saint George's"],
    },
    "capitals/united-states/p2": {
        "correct": ["Washington, D.C.", "Washington D.C.", "It is Washington DC."],
        "wrong": ["New York City", "Washington or Ottawa"],
    },
    "capitals/bolivia/p0": {
        "correct": ["Sucre", "La Paz", "The constitutional capital is Sucre."],
        "wrong": ["Lima", "Sucre or Quito"],
    },
    "capitals/djibouti/p0": {
        "correct": ["The capital of Djibouti is Djibouti City."],
        "wrong": ["The capital of Djibouti is Addis Ababa."],
    },
}

ELEMENT_CASES = {
    "elements/symbol/26/p0": {
        "correct": [
            "Fe",
            "The chemical symbol for iron is Fe.",
            "Iron's symbol is Fe (from ferrum).",
        ],
        "wrong": ["fe", "Ir", "I", "The symbol is Fe or Ir.", "Iron", "It is not Fe."],
    },
    "elements/symbol/2/p0": {
        "correct": ["He", "The symbol for helium is He."],
        "wrong": ["H", "He is not sure."],
    },
    "elements/name/11/p1": {
        "correct": ["Sodium", "Na stands for sodium.", "The element with the symbol Na is sodium."],
        "wrong": ["Potassium", "Sodium or potassium", "Neon"],
    },
    "elements/by_number/13/p0": {
        "correct": ["Aluminum", "aluminium", "Element 13 is aluminum (Al)."],
        "wrong": ["Silicon", "Magnesium or aluminium"],
    },
    "elements/number/26/p0": {
        "correct": ["26", "Iron has atomic number 26.", "The atomic number of iron (Fe) is 26."],
        "wrong": ["27", "26 or 27", "about 26", "Iron"],
    },
}

PROCEDURAL_CASES = {
    "arithmetic/add/7/5/p0": {
        "correct": [
            "12",
            "7 + 5 = 12",
            "The answer is 12 (7 + 5).",
            "The sum of 7 and 5 is 12.",
            "7 + 5 is not 13, it is 12.",
            "7 + 3 = 10, and 10 + 2 = 12. So the answer is 12.",
            "twelve",
            "12.0",
        ],
        "wrong": ["13", "7 + 5 = 13", "12 or 13", "12/13", "The answer is not 12.", "7", "five"],
    },
    "arithmetic/mul/1/7/p0": {"correct": ["7", "1 × 7 = 7"], "wrong": ["8", "1 × 7 = 17"]},
    "arithmetic/mul/123/45/p0": {
        "correct": ["5535", "5,535", "123 × 45 = 5,535"],
        "wrong": ["5,536", "5535 or 5545"],
    },
    "letter_count/count/strawberry/r/p0": {
        "correct": ["3", "There are 3 r's in strawberry.", "The letter r appears three times."],
        "wrong": ["2", "twice", "2 or 3", "It appears 2 times."],
    },
    "letter_count/length/banana/p0": {
        "correct": ["6", "The word banana has 6 letters."],
        "wrong": ["7", "banana"],
    },
    "reversal/apple/p0": {
        "correct": [
            "elppa",
            'The word "apple" spelled backwards is "elppa".',
            "e-l-p-p-a",
            "ELPPA",
        ],
        "wrong": ["apple", "elpap", "elppa or elpap", "It is not elppa."],
    },
    "weekdays/after/monday/3/p0": {
        "correct": ["Thursday", "If today is Monday, in 3 days it will be Thursday."],
        "wrong": ["Friday", "Monday", "Thursday or Friday", "It will be Friday, not Thursday."],
    },
}


@pytest.mark.parametrize(
    ("item_id", "cases"),
    [*CAPITAL_CASES.items(), *ELEMENT_CASES.items(), *PROCEDURAL_CASES.items()],
)
def test_sentence_level_cases(item_id: str, cases: dict[str, list[str]]) -> None:
    item = get_item(item_id)
    for response in cases["correct"]:
        assert item.is_correct(response), (response, item.check(response))
    for response in cases["wrong"]:
        assert not item.is_correct(response), (response, item.check(response))


@pytest.mark.parametrize(
    ("response", "prompt", "expected"),
    [
        ("7 + 5 = 12", "What is 7 + 5?", Fraction(12)),
        ("The answer is 12 (7 + 5).", "What is 7 + 5?", Fraction(12)),
        ("300 centimeters are in 3 meters.", "How many cm in 3 m?", Fraction(300)),
        ("5 - 7 = -2", "What is 5 - 7?", Fraction(-2)),
        ("5 − 7 = −2", "", Fraction(-2)),
        ("1,234.5", "", Fraction(2469, 2)),
        ("Fe2O3 has 5 atoms", "", Fraction(5)),
        ("The answer is 7.", "What is 7 × 1?", Fraction(7)),
        ("It is 12, not 13.", "", Fraction(12)),
        ("no digits here, just three words", "", Fraction(3)),
    ],
)
def test_committed_number_rule(response: str, prompt: str, expected: Fraction) -> None:
    echoes = [mention.value for mention in find_numbers(prompt)]
    committed = committed_number(response, echoes)
    assert committed is not None
    assert committed.value == expected


def test_committed_number_is_none_without_numbers_or_when_all_negated() -> None:
    assert committed_number("I have no idea") is None
    assert committed_number("It is not 12.") is None


def test_check_result_reports_what_was_extracted() -> None:
    item = get_item("arithmetic/add/7/5/p0")
    assert item.check("7 + 5 = 13").extracted == "13"
    assert item.check("7 + 5 = 13").outcome == "wrong"
    assert item.check("").outcome == "no_answer"
    assert item.check("12 or 13").outcome == "multiple_answers"
    capital = get_item("capitals/france/p0")
    assert capital.check("Paris is not the capital.").outcome == "negated"
    assert capital.check("Paris or Berlin").outcome == "multiple_answers"
    assert capital.check("Berlin").extracted == "berlin"
