"""Checker quirks reported against the labelled data, each pinned by a test.

Every case here was mislabelled before the fix: an answer counted correct that commits to
nothing or to several answers (an echo of the question, a list, a lucky number), or a right
answer rejected ("He is the symbol for helium.").
"""

from __future__ import annotations

import pytest

from sdm_router.training.suites import get_item

# --------------------------------------------------------------------------- reported quirks


@pytest.mark.parametrize(
    "response",
    [
        "He is the symbol for helium.",
        "He is the chemical symbol for helium.",
        "He is helium's symbol.",
        "He stands for helium.",
        "He represents helium.",
    ],
)
def test_ambiguous_symbol_at_the_start_of_a_sentence_is_accepted(response: str) -> None:
    item = get_item("elements/symbol/2/p0")
    assert item.check(response).outcome == "correct", item.check(response)


@pytest.mark.parametrize(
    ("item_id", "response"),
    [
        ("elements/symbol/49/p0", "In is the symbol for indium."),
        ("elements/symbol/53/p0", "I is the chemical symbol of iodine."),
        ("elements/symbol/33/p0", "As stands for arsenic."),
    ],
)
def test_other_ambiguous_symbols_with_a_symbol_cue_are_accepted(
    item_id: str, response: str
) -> None:
    assert get_item(item_id).is_correct(response), get_item(item_id).check(response)


@pytest.mark.parametrize(
    "response", ["He is not sure.", "He is a chemist.", "He is not the symbol for helium."]
)
def test_ambiguous_symbol_as_a_pronoun_is_still_no_answer(response: str) -> None:
    assert not get_item("elements/symbol/2/p0").is_correct(response)


@pytest.mark.parametrize(
    ("item_id", "response"),
    [
        # the start day of the question, repeated, is not an answer
        ("weekdays/after/monday/7/p0", "Today is Monday."),
        ("weekdays/after/monday/7/p0", "If today is Monday, what day of the week will it be?"),
        ("weekdays/after/monday/14/p1", "14 days after Monday."),
        ("weekdays/before/friday/7/p2", "Today is Friday."),
        # several weekdays listed
        ("weekdays/after/monday/3/p0", "Monday, Thursday"),
        ("weekdays/after/monday/3/p0", "Monday and Thursday."),
        ("weekdays/after/monday/3/p0", "Monday Tuesday Wednesday Thursday"),
        ("weekdays/after/monday/7/p0", "Monday, Tuesday, Wednesday, Thursday, Friday, Monday"),
    ],
)
def test_echoed_or_listed_weekdays_are_not_correct(item_id: str, response: str) -> None:
    assert not get_item(item_id).is_correct(response), get_item(item_id).check(response)


@pytest.mark.parametrize(
    ("item_id", "response"),
    [
        ("weekdays/after/monday/7/p0", "Monday"),
        ("weekdays/after/monday/7/p0", "It will be Monday again."),
        ("weekdays/after/monday/7/p0", "If today is Monday, in 7 days it will be Monday."),
        ("weekdays/after/monday/3/p0", "Today is Monday, so in 3 days it will be Thursday."),
        ("weekdays/after/monday/3/p1", "3 days after Monday is Thursday."),
        ("weekdays/after/monday/3/p1", "Thursday comes 3 days after Monday."),
        ("weekdays/after/monday/3/p0", "Monday + 3 days = Thursday"),
        ("weekdays/before/monday/3/p1", "3 days before Monday is Friday."),
        ("weekdays/before/monday/3/p0", "If today is Monday, 3 days ago it was Friday."),
    ],
)
def test_restating_the_question_around_the_answer_is_still_correct(
    item_id: str, response: str
) -> None:
    assert get_item(item_id).is_correct(response), get_item(item_id).check(response)


@pytest.mark.parametrize(
    "response",
    [
        "1, 2, 3",
        "2, 3",
        "2 3",
        "It appears 2, 3 times.",
        "The letter r appears 1 time, 2 times, 3 times.",
        "3 or more",
        "at least 3",
        "more than 3 times",
        "up to 3 times",
        "I think 3.",
        "I believe it is 3.",
        "My guess is 3.",
        "one, two, three",
    ],
)
def test_lucky_letter_counts_are_not_correct(response: str) -> None:
    item = get_item("letter_count/count/strawberry/r/p0")
    assert not item.is_correct(response), item.check(response)


@pytest.mark.parametrize(
    "response",
    [
        "3",
        "three",
        "The letter r appears 3 times in strawberry.",
        "Strawberry has 10 letters, and the letter r appears 3 times.",
        "It appears three times.",
        "There are 3 r's in strawberry.",
    ],
)
def test_plain_letter_counts_are_still_correct(response: str) -> None:
    item = get_item("letter_count/count/strawberry/r/p0")
    assert item.is_correct(response), item.check(response)


# --------------------------------------------------------------------------- the same elsewhere


@pytest.mark.parametrize(
    ("item_id", "response"),
    [
        # the capital shares the country's name: restating the question is no answer
        ("capitals/luxembourg/p0", "The capital of Luxembourg is unknown to me."),
        ("capitals/monaco/p0", "The capital of Monaco is a question I cannot answer."),
        ("capitals/guinea-bissau/p0", "The capital of Guinea-Bissau is Conakry."),
        ("capitals/singapore/p1", "Which city is the capital of Singapore?"),
    ],
)
def test_a_capital_named_only_in_an_echo_of_the_question_is_not_correct(
    item_id: str, response: str
) -> None:
    assert not get_item(item_id).is_correct(response), get_item(item_id).check(response)


@pytest.mark.parametrize(
    ("item_id", "response"),
    [
        ("capitals/luxembourg/p0", "Luxembourg"),
        ("capitals/luxembourg/p0", "The capital of Luxembourg is Luxembourg City."),
        ("capitals/monaco/p0", "The capital of Monaco is Monaco."),
        ("capitals/guinea-bissau/p0", "The capital of Guinea-Bissau is Bissau."),
    ],
)
def test_a_capital_named_after_its_country_is_still_accepted(item_id: str, response: str) -> None:
    assert get_item(item_id).is_correct(response), get_item(item_id).check(response)


@pytest.mark.parametrize(
    "response",
    [
        "Paris, Berlin, Rome",
        "Paris and Berlin.",
        "Not Paris.",
        "Definitely not Paris.",
        "Paris is wrong; it is Lyon.",
        "Paris would be incorrect.",
        "I think it is Paris.",
    ],
)
def test_capital_lists_negations_and_hedges_are_not_correct(response: str) -> None:
    item = get_item("capitals/france/p0")
    assert not item.is_correct(response), item.check(response)


@pytest.mark.parametrize(
    ("item_id", "response", "correct"),
    [
        ("arithmetic/add/40/2/p0", "forty-two", True),
        ("arithmetic/add/40/2/p0", "The answer is forty two.", True),
        ("arithmetic/add/40/2/p0", "two", False),
        ("arithmetic/add/7/5/p0", "10, 11, 12", False),
        ("arithmetic/add/7/5/p0", "7 + 5 = 12, or 13", False),
        ("arithmetic/add/7/5/p0", "7 + 3 = 10, and 10 + 2 = 12", True),
        ("arithmetic/add/100/5/p0", "one hundred and five", True),
        ("arithmetic/add/100/5/p0", "one hundred", False),
    ],
)
def test_number_answers_in_words_and_lists(item_id: str, response: str, correct: bool) -> None:
    assert get_item(item_id).is_correct(response) is correct, get_item(item_id).check(response)


@pytest.mark.parametrize(
    ("item_id", "response"),
    [
        ("elements/name/11/p0", "Sodium, potassium and lithium."),
        ("elements/name/11/p0", "Not sodium."),
        ("elements/symbol/26/p0", "Fe, Co, Ni"),
        ("elements/symbol/26/p0", "Not Fe."),
        ("elements/number/26/p0", "24, 25, 26"),
        ("reversal/apple/p0", "elppa, elpap"),
        ("reversal/apple/p0", "Not elppa."),
    ],
)
def test_lists_and_negations_in_the_other_checkers(item_id: str, response: str) -> None:
    assert not get_item(item_id).is_correct(response), get_item(item_id).check(response)


@pytest.mark.parametrize(
    ("item_id", "response", "correct"),
    [
        # the answer is one of the question's numbers: restating the question is no answer
        ("arithmetic/mul/1/308/p0", "What is 1 × 308?", False),
        ("arithmetic/mul/1/308/p1", "1 times 308", False),
        ("arithmetic/sub/8/4/p2", "The difference between 8 and 4.", False),
        ("arithmetic/mul/1/308/p0", "308", True),
        ("arithmetic/mul/1/308/p0", "1 × 308 = 308", True),
        ("arithmetic/sub/8/4/p0", "8 - 4 = 4", True),
    ],
)
def test_restated_arithmetic_question_is_no_answer(
    item_id: str, response: str, correct: bool
) -> None:
    assert get_item(item_id).is_correct(response) is correct, get_item(item_id).check(response)
