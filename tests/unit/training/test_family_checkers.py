"""The exact checkers of the newer families: right answers in sentence form are accepted;
wrong ones, lists, hedges, negations and echoes of the question are not."""

from __future__ import annotations

import pytest

from sdm_router.training.suites import get_item

CASES: dict[str, dict[str, list[str]]] = {
    "units/down/meters-centimeters/3/p0": {
        "correct": [
            "300",
            "There are 300 centimeters in 3 meters.",
            "3 meters is 300 centimeters.",
            "3 × 100 = 300",
            "Answer: 300",
        ],
        "wrong": [
            "30",
            "3",  # the question's number, repeated
            "300 or 3000",
            "100, 200, 300",
            "about 300",
            "at least 300",
            "3 meters is not 300 centimeters.",
            "It is 300 centimeters, I think.",
        ],
    },
    "units/up/hours-minutes/2/p1": {
        "correct": ["2", "120 minutes is 2 hours.", "120 / 60 = 2", "two hours"],
        "wrong": ["120", "2 or 3", "1, 2", "60"],
    },
    "number_words/to_words/347/p0": {
        "correct": [
            "three hundred forty-seven",
            "Three hundred and forty-seven.",
            "347 in words is three hundred forty-seven.",
            "Answer: three hundred forty seven",
        ],
        "wrong": [
            "347",  # digits, not words
            "three hundred forty-eight",
            "forty-seven",
            "three forty-seven",
            "three hundred forty-seven or three hundred seventy-four",
            "It is not three hundred forty-seven.",
            "Maybe three hundred forty-seven.",
        ],
    },
    "number_words/to_digits/347/p1": {
        "correct": ["347", "The number is 347.", "'three hundred forty-seven' is 347."],
        "wrong": [
            "three hundred forty-seven",  # the question's words, repeated
            "374",
            "3, 4, 7",
            "347 or 348",
            "not 347",
        ],
    },
    "letters/first/garden/p0": {
        "correct": [
            "g",
            "G",
            "The first letter of 'garden' is 'g'.",
            "It is a g.",
            "**G**",
            "g-a-r-d-e-n: the first letter is g.",
        ],
        "wrong": ["a", "The answer is a.", "g or a", "g, a, r", "Not g.", "I think g.", "garden"],
    },
    "letters/last/garden/p2": {
        "correct": ["n", "The last letter of garden is n.", "g-a-r-d-e-n, so the last one is n."],
        "wrong": ["g", "e", "n or e", "The word garden ends with e, n."],
    },
    "letters/next/g/p0": {
        "correct": [
            "h",
            "The letter after 'g' is 'h'.",
            "g is followed by h.",
            "g -> h",
            "H comes after G.",
        ],
        "wrong": ["g", "i", "g, h", "f, g, h", "h or i", "It is not h."],
    },
    "letters/previous/j/p1": {
        "correct": ["i", "I", "The letter before j is i."],
        "wrong": ["k", "I think it is i.", "h, i"],
    },
    "ordering/sort_asc/34-12-56-7/p0": {
        "correct": [
            "7, 12, 34, 56",
            "7 < 12 < 34 < 56",
            "The numbers 34, 12, 56, 7 sorted are 7, 12, 34, 56.",
            "Sorted: 7, 12, 34, and 56.",
            "1. 7\n2. 12\n3. 34\n4. 56",
        ],
        "wrong": [
            "34, 12, 56, 7",  # the question's order, repeated
            "56, 34, 12, 7",
            "7, 12, 56, 34",
            "7, 12, 34",
            "7, 12, 34, 56 or 56, 34, 12, 7",
            "not 7, 12, 34, 56",
            "Probably 7, 12, 34, 56.",
        ],
    },
    "ordering/sort_words/river-apple-lemon-zebra/p1": {
        "correct": [
            "apple, lemon, river, zebra",
            "'apple', 'lemon', 'river', 'zebra'",
            "Apple, Lemon, River, Zebra.",
        ],
        "wrong": [
            "river, apple, lemon, zebra",
            "zebra, river, lemon, apple",
            "apple, lemon, river, zebra or apple, river, lemon, zebra",
        ],
    },
    "ordering/largest/34-12-56-7/p0": {
        "correct": [
            "56",
            "The largest is 56.",
            "56 is larger than 34, 12 and 7.",
            "Of 34, 12, 56, 7 the largest is 56.",
        ],
        "wrong": ["34", "7, 12, 34, 56", "56 or 34", "not 56", "34, 56"],
    },
    "ordering/smallest/34-12-56-7/p3": {
        "correct": ["7", "The smallest number is 7."],
        "wrong": ["12", "7 or 12", "I believe it is 7."],
    },
    "dates/date_after/2025-03-25/10/p0": {
        "correct": [
            "April 4",
            "April 4, 2025",
            "4 April 2025",
            "the 4th of April",
            "10 days after March 25, 2025 is April 4, 2025.",
            "March 25 + 10 days = April 4",
            "2025-04-04",
        ],
        "wrong": [
            "April 5",
            "March 25",  # the question's date, not after a restating cue
            "March 25, April 4",
            "April 4, 2026",
            "April 4 or April 5",
            "It is not April 4.",
            "Maybe April 4.",
        ],
    },
    "dates/date_before/2025-01-05/10/p2": {
        "correct": ["December 26, 2024", "December 26", "It was December 26, 2024."],
        "wrong": ["December 26, 2025", "January 15"],
    },
    "dates/month_after/november/3/p1": {
        "correct": ["February", "3 months after November is February.", "It will be February."],
        "wrong": ["January", "November", "November, December, January, February"],
    },
    "dates/days_in_month/april/p0": {
        "correct": ["30", "April has 30 days."],
        "wrong": ["31", "30 or 31", "28, 29, 30"],
    },
    "countries/continent/south-africa/p0": {
        "correct": [
            "Africa",
            "South Africa is in Africa.",
            "It lies on the African continent, Africa.",
        ],
        "wrong": [
            "South Africa is a country.",  # the question's "Africa" only
            "Europe",
            "Africa or Asia",
            "Not Africa.",
        ],
    },
    "countries/continent/peru/p2": {
        "correct": ["South America", "Peru is located in South America."],
        "wrong": ["North America", "America", "South America and North America"],
    },
    "countries/currency/canada/p0": {
        "correct": [
            "The Canadian dollar.",
            "dollars",
            "The currency of Canada is the dollar, not the euro.",
        ],
        "wrong": [
            "The US dollar",  # contains "dollar", but names another currency
            "The Australian dollar.",
            "Canadian dollar or euro",
            "euro",
            "It is not the Canadian dollar.",
        ],
    },
    "countries/currency/japan/p3": {
        "correct": ["yen", "The Japanese yen.", "Japan uses the yen."],
        "wrong": ["yuan", "yen or won", "renminbi", "The yen, I guess."],
    },
    "countries/currency/papua-new-guinea/p0": {
        "correct": ["kina", "The Papua New Guinean kina.", "It is not the US dollar but the kina."],
        "wrong": ["It is not Papua New Guinean kina.", "Papua New Guinean dollar"],
    },
    "countries/currency/germany/p1": {
        "correct": ["The euro.", "Germany uses euros."],
        "wrong": ["The Deutsche Mark and the euro, or the pound.", "Swiss franc"],
    },
}


@pytest.mark.parametrize(("item_id", "cases"), CASES.items())
def test_family_checker_cases(item_id: str, cases: dict[str, list[str]]) -> None:
    item = get_item(item_id)
    for response in cases["correct"]:
        assert item.is_correct(response), (item.question, response, item.check(response))
    for response in cases["wrong"]:
        assert not item.is_correct(response), (item.question, response, item.check(response))


@pytest.mark.parametrize(
    ("item_id", "response", "outcome"),
    [
        ("units/down/meters-centimeters/3/p0", "300 or 3000", "multiple_answers"),
        ("number_words/to_words/347/p0", "347", "no_answer"),
        ("letters/next/g/p0", "g, h", "multiple_answers"),
        ("ordering/sort_asc/34-12-56-7/p0", "34, 12, 56, 7", "no_answer"),
        ("ordering/sort_asc/34-12-56-7/p0", "not 7, 12, 34, 56", "negated"),
        ("ordering/largest/34-12-56-7/p0", "34", "wrong"),
        ("dates/date_after/2025-03-25/10/p0", "March 25, April 4", "multiple_answers"),
        ("dates/date_after/2025-03-25/10/p0", "It is not April 4.", "negated"),
        ("countries/currency/canada/p0", "The US dollar", "wrong"),
        ("countries/continent/south-africa/p0", "South Africa is a country.", "no_answer"),
    ],
)
def test_family_checker_outcomes(item_id: str, response: str, outcome: str) -> None:
    assert get_item(item_id).check(response).outcome == outcome
