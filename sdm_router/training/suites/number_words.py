"""Number words (procedural): write a number in words, or a number in words in digits."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.checking import (
    Checker,
    CheckResult,
    char_span_tokens,
    is_hedged,
    is_negated,
    tokenize,
)
from sdm_router.training.suites.numeric import NumberChecker, find_number_words, number_words

PHRASINGS: dict[str, tuple[str, ...]] = {
    "to_words": (
        "Write the number {n} in words.",
        "How do you spell the number {n} in English words?",
        "Spell out {n} in words.",
        "Write {n} using words instead of digits.",
        "What is {n} written out in English words?",
    ),
    "to_digits": (
        "Write '{words}' as a number using digits.",
        "What number is '{words}'?",
        "Convert '{words}' to digits.",
        "Which number is written as '{words}'?",
        "Write the number '{words}' in digits.",
    ),
}
MAX_NUMBER = 9999
RANDOM_SMALL = 120  # drawn from 21..999 on top of 0..20, the tens and 100
RANDOM_LARGE = 40  # drawn from 1000..9999


def british_words(value: int) -> str:
    """``number_words`` with "and" after "hundred" ("three hundred and five")."""
    words = number_words(value)
    if value % 100 and value % 1000 >= 100:
        head, _, rest = words.rpartition(" hundred ")
        return f"{head} hundred and {rest}"
    return words


@dataclass(frozen=True, slots=True)
class NumberWordsChecker:
    """Accepts a response that writes ``expected`` in words and no other number in words.

    Compounds are one number ("three hundred and forty-seven" = 347); digits do not count
    (they may restate the question), so "347" alone is no answer. Hedged, negated and
    several different numbers in words are wrong, as everywhere.
    """

    expected: int

    def check(self, response: str) -> CheckResult:
        """See the class docstring and ``checking``'s module rules."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        mentions = find_number_words(response)
        if not mentions:
            return CheckResult("no_answer")
        affirmed = [
            mention
            for mention in mentions
            if not is_negated(*char_span_tokens(response, mention.start, mention.end))
        ]
        if not affirmed:
            return CheckResult("negated")
        values = {mention.value for mention in affirmed}
        extracted = response[affirmed[0].start : affirmed[0].end]
        if len(values) > 1:
            return CheckResult("multiple_answers", extracted)
        if values != {Fraction(self.expected)}:
            return CheckResult("wrong", extracted)
        return CheckResult("correct", extracted)


@dataclass(frozen=True, slots=True)
class NumberWordsFamily:
    """0 to 20, the tens, 100 and random numbers up to 9999, each in both directions and one
    random template per number and direction."""

    name: str = "number_words"
    kind: FamilyKind = "procedural"

    def make_item(self, kind: str, value: int, phrasing: int) -> TaskItem:
        """The ``kind`` ("to_words" / "to_digits") question about ``value``."""
        item_id = f"{self.name}/{kind}/{value}/p{phrasing}"
        if kind not in PHRASINGS or not 0 <= value <= MAX_NUMBER:
            raise KeyError(item_id)
        words = number_words(value)
        question = template(PHRASINGS[kind], phrasing, item_id).format(n=value, words=words)
        checker: Checker
        if kind == "to_words":
            answer, british = words, british_words(value)
            aliases: tuple[str, ...] = (british,) if british != words else ()
            checker = NumberWordsChecker(value)
        else:
            answer, aliases = str(value), ()
            checker = NumberChecker.build(value, question, digits_only=True)
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=answer,
            aliases=aliases,
            checker=checker,
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """See the class docstring; shuffled by ``seed``."""
        rng = family_rng(self.name, seed)
        values = {*range(21), *range(30, 100, 10), 100}
        while len(values) < 21 + 7 + 1 + RANDOM_SMALL:
            values.add(rng.randrange(21, 1000))
        values.update(rng.sample(range(1000, MAX_NUMBER + 1), RANDOM_LARGE))
        items = [
            self.make_item(kind, value, rng.randrange(len(phrasings)))
            for value in sorted(values)
            for kind, phrasings in PHRASINGS.items()
        ]
        rng.shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``number_words/<to_words|to_digits>/<value>/p<k>``."""
        (kind, value), phrasing = split_id(item_id, self.name, 2)
        if not value.isdigit():
            raise KeyError(item_id)
        return self.make_item(kind, int(value), phrasing)
