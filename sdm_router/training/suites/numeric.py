"""The number checker: which number a free-text response commits to, and is it right.

Rule (documented for the dataset, keep it stable):

1. Numbers are read from the response: optional minus sign ("-" or "−") directly before the
   digits, thousands separators ("1,234"), decimals ("12.0" equals 12). Digits glued to
   letters on the left ("Fe2O3", "x5") are not numbers. If the response has no digits at all,
   number words count, compounds as one number ("forty-two", "three hundred and twelve",
   "two thousand five hundred"), and "once" / "twice"; a checker built with
   ``digits_only`` ignores number words.
2. The committed answer is the **last** number that does not repeat a number from the prompt;
   when every number repeats the prompt, it is the last number. So "7 + 5 = 12" and
   "The answer is 12 (7 + 5)" commit to 12, "3 meters is 300 centimeters" to 300, and a
   chain of working ("7 + 3 = 10, 10 + 2 = 12") to its final result.
3. Wrong regardless of the value: hedged ("maybe", "I think", ... see ``checking``; or
   "about" / "around" / "nearly" / "almost" / "~" / "at least" / "more than" / "up to" right
   before the committed number, "or more" / "or less" right after it), two numbers offered
   as alternatives ("12 or 13", "12/13" but not "120 / 60", "12 to 13"), a list of different
   numbers that are not in the prompt ("1, 2, 3", "2 3", "1 time, 2 times, 3 times"), or the
   committed number negated ("the answer is not 12").
4. No answer: the question's own numbers restated, in order and nothing else ("What is
   1 × 308?" answered "1 × 308"), even when the answer is one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise

from sdm_router.training.suites.checking import (
    CheckResult,
    char_span_tokens,
    is_hedged,
    is_negated,
    tokenize,
)

_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_APPROXIMATION = re.compile(
    r"(?:\babout|\baround|\bnearly|\balmost|\bapprox\.?|\broughly|\bclose\s+to|~|≈"
    r"|\bat\s+least|\bat\s+most|\bmore\s+than|\bless\s+than|\bfewer\s+than|\bover"
    r"|\bunder|\bup\s+to)\s*$",
    re.IGNORECASE,
)
_BOUND_AFTER = re.compile(r"^\s*(?:or\s+(?:more|less|fewer|so|above|below)\b|-?ish\b)", re.I)
# "12 or 13", "12 to 13", "12/13" (a spaced "120 / 60" is a division, not alternatives).
_ALTERNATIVE_GAP = re.compile(r"^(?:\s*,?\s*(?:or|to)\s*|/)$", re.IGNORECASE)
# Between two listed numbers: a separator, optionally after one word ("1 time, 2 times").
_LIST_GAP = re.compile(r"^\s*(?:[a-z'’]+\s*)?(?:[,;&]|\band\b|\bthen\b)?\s*$", re.IGNORECASE)

UNIT_WORDS: tuple[str, ...] = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"),
    *("seventeen", "eighteen", "nineteen"),
)
TENS_WORDS: tuple[str, ...] = (
    *("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"),
)
_WORD_VALUES: dict[str, int] = {word: value for value, word in enumerate(UNIT_WORDS)}
_WORD_VALUES.update({word: 20 + 10 * index for index, word in enumerate(TENS_WORDS)})
_WORD_VALUES.update({"once": 1, "twice": 2})


def _alternatives(words: Iterable[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_SMALL = (
    rf"(?:(?:{_alternatives(TENS_WORDS)})(?:[\s-]+(?:{_alternatives(UNIT_WORDS[1:10])}))?"
    rf"|{_alternatives(UNIT_WORDS)})"
)
_GROUP = rf"(?:{_SMALL}\s+hundred(?:\s+(?:and\s+)?{_SMALL})?|{_SMALL}|hundred)"
_WORD = re.compile(
    rf"\b(?:{_GROUP}(?:\s+thousand(?:,?\s+(?:and\s+)?{_GROUP})?)?|once|twice)\b",
    re.IGNORECASE,
)


def words_value(text: str) -> int:
    """The value of a number written in words: "forty-two" -> 42, "one hundred and five" ->
    105, "two thousand, three hundred" -> 2300 (``text`` as matched by ``find_numbers``)."""
    total, current = 0, 0
    for word in re.split(r"[\s,-]+", text.lower()):
        if word == "hundred":
            current = (current or 1) * 100
        elif word == "thousand":
            total, current = total + (current or 1) * 1000, 0
        elif word in _WORD_VALUES:
            current += _WORD_VALUES[word]
    return total + current


def number_words(value: int) -> str:
    """``value`` (0 to 9999) in English words: 42 -> "forty-two", 305 -> "three hundred five"."""
    if not 0 <= value <= 9999:
        raise ValueError(f"number_words covers 0 to 9999, got {value}")
    if value < 20:
        return UNIT_WORDS[value]
    if value < 100:
        tens, units = divmod(value, 10)
        return TENS_WORDS[tens - 2] + (f"-{UNIT_WORDS[units]}" if units else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{UNIT_WORDS[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    thousands, rest = divmod(value, 1000)
    return f"{UNIT_WORDS[thousands]} thousand" + (f" {number_words(rest)}" if rest else "")


@dataclass(frozen=True, slots=True)
class NumberMention:
    """A number found in a response, with its character span."""

    value: Fraction
    start: int
    end: int


def parse_number(text: str) -> Fraction:
    """The value of a number as written: "1,234" -> 1234, "-3" -> -3, "12.0" -> 12."""
    return Fraction(text.replace(",", "").replace("−", "-"))


def find_numbers(text: str, digits_only: bool = False) -> list[NumberMention]:
    """Every number in ``text`` in order (number words only when there are no digits)."""
    text = text.replace("−", "-")
    found = [
        NumberMention(parse_number(match.group()), match.start(), match.end())
        for match in _NUMBER.finditer(text)
    ]
    if found or digits_only:
        return found
    return find_number_words(text)


def find_number_words(text: str) -> list[NumberMention]:
    """Every number written in words in ``text``, compounds as one ("forty-two")."""
    return [
        NumberMention(Fraction(words_value(match.group())), match.start(), match.end())
        for match in _WORD.finditer(text)
    ]


def committed_number(
    response: str, prompt_numbers: Iterable[Fraction] = (), digits_only: bool = False
) -> NumberMention | None:
    """The number ``response`` commits to under the module rule, or None without numbers.

    Negated numbers ("12, not 13") are skipped; None also when every candidate is negated.
    """
    echoes = set(prompt_numbers)
    mentions = find_numbers(response, digits_only)
    fresh = [mention for mention in mentions if mention.value not in echoes] or mentions
    affirmed = [
        mention
        for mention in fresh
        if not is_negated(*char_span_tokens(response, mention.start, mention.end))
    ]
    return affirmed[-1] if affirmed else None


def offers_alternatives(response: str, mentions: list[NumberMention]) -> bool:
    """True when two different numbers are joined by "or", "to" or an unspaced "/"."""
    text = response.replace("−", "-")
    return any(
        left.value != right.value and _ALTERNATIVE_GAP.match(text[left.end : right.start])
        for left, right in pairwise(mentions)
    )


def lists_numbers(
    response: str, mentions: list[NumberMention], prompt_numbers: Iterable[Fraction] = ()
) -> bool:
    """True when two adjacent numbers that are not in the prompt differ and only a list
    separator (and at most one word) stands between them: "1, 2, 3", "2 3", "1 time, 2 times".
    """
    echoes = set(prompt_numbers)
    fresh = [mention for mention in mentions if mention.value not in echoes]
    text = response.replace("−", "-")
    return any(
        left.value != right.value and _LIST_GAP.match(text[left.end : right.start])
        for left, right in pairwise(fresh)
    )


def _format(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(float(value))


@dataclass(frozen=True, slots=True)
class NumberChecker:
    """Accepts a response whose committed number (module rule) equals ``expected``.

    ``digits_only``: number words do not count (a "write it in digits" question).
    """

    expected: Fraction
    prompt_numbers: frozenset[Fraction] = field(default_factory=frozenset)
    digits_only: bool = False
    prompt_sequence: tuple[Fraction, ...] = ()

    @classmethod
    def build(
        cls, expected: int | str | Fraction, prompt: str = "", digits_only: bool = False
    ) -> NumberChecker:
        """A checker for ``expected``; numbers in ``prompt`` are echoes, not answers."""
        value = expected if isinstance(expected, Fraction) else parse_number(str(expected))
        sequence = tuple(mention.value for mention in find_numbers(prompt, digits_only))
        return cls(
            expected=value,
            prompt_numbers=frozenset(sequence),
            digits_only=digits_only,
            prompt_sequence=sequence,
        )

    def check(self, response: str) -> CheckResult:
        """See the module rule."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        mentions = find_numbers(response, self.digits_only)
        if not mentions:
            return CheckResult("no_answer")
        if len(mentions) > 1 and tuple(m.value for m in mentions) == self.prompt_sequence:
            return CheckResult("no_answer")  # the question's numbers restated ("1 × 308")
        if offers_alternatives(response, mentions):
            return CheckResult("multiple_answers")
        if lists_numbers(response, mentions, self.prompt_numbers):
            return CheckResult("multiple_answers")
        committed = committed_number(response, self.prompt_numbers, self.digits_only)
        if committed is None:
            return CheckResult("negated")
        extracted = _format(committed.value)
        if _APPROXIMATION.search(response[: committed.start]) or _BOUND_AFTER.match(
            response[committed.end :]
        ):
            return CheckResult("hedged", extracted)
        if committed.value != self.expected:
            return CheckResult("wrong", extracted)
        return CheckResult("correct", extracted)
