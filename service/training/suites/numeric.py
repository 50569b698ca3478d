"""The number checker: which number a free-text response commits to, and is it right.

Rule (documented for the dataset, keep it stable):

1. Numbers are read from the response: optional minus sign ("-" or "−") directly before the
   digits, thousands separators ("1,234"), decimals ("12.0" equals 12). Digits glued to
   letters on the left ("Fe2O3", "x5") are not numbers. If the response has no digits at all,
   the number words zero..twenty, the tens up to ninety, "hundred", "once" and "twice" count.
2. The committed answer is the **last** number that does not repeat a number from the prompt;
   when every number repeats the prompt, it is the last number. So "7 + 5 = 12" and
   "The answer is 12 (7 + 5)" commit to 12, "3 meters is 300 centimeters" to 300, and a
   chain of working ("7 + 3 = 10, 10 + 2 = 12") to its final result.
3. Wrong regardless of the value: hedged ("maybe", ... see ``checking``; or "about" / "around" /
   "nearly" / "almost" / "~" right before the committed number), two numbers
   offered as alternatives ("12 or 13", "12/13", "12 to 13"), or the committed number negated
   ("the answer is not 12").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise

from service.training.suites.checking import (
    CheckResult,
    char_span_tokens,
    is_hedged,
    is_negated,
    tokenize,
)

_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_APPROXIMATION = re.compile(
    r"(?:\babout|\baround|\bnearly|\balmost|\bapprox\.?|~|≈)\s*$", re.IGNORECASE
)
_ALTERNATIVE_GAP = re.compile(r"^\s*,?\s*(?:or|/|to)\s*$", re.IGNORECASE)
_WORD_VALUES: dict[str, int] = {
    word: value
    for value, word in enumerate(
        (
            *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
            *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"),
            *("seventeen", "eighteen", "nineteen", "twenty"),
        )
    )
}
_WORD_VALUES.update(
    {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80}
)
_WORD_VALUES.update({"ninety": 90, "hundred": 100, "once": 1, "twice": 2})
_WORD = re.compile(r"\b(" + "|".join(_WORD_VALUES) + r")\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class NumberMention:
    """A number found in a response, with its character span."""

    value: Fraction
    start: int
    end: int


def parse_number(text: str) -> Fraction:
    """The value of a number as written: "1,234" -> 1234, "-3" -> -3, "12.0" -> 12."""
    return Fraction(text.replace(",", "").replace("−", "-"))


def find_numbers(text: str) -> list[NumberMention]:
    """Every number in ``text`` in order (number words only when there are no digits)."""
    text = text.replace("−", "-")
    found = [
        NumberMention(parse_number(match.group()), match.start(), match.end())
        for match in _NUMBER.finditer(text)
    ]
    if found:
        return found
    return [
        NumberMention(Fraction(_WORD_VALUES[match.group().lower()]), match.start(), match.end())
        for match in _WORD.finditer(text)
    ]


def committed_number(
    response: str, prompt_numbers: Iterable[Fraction] = ()
) -> NumberMention | None:
    """The number ``response`` commits to under the module rule, or None without numbers.

    Negated numbers ("12, not 13") are skipped; None also when every candidate is negated.
    """
    echoes = set(prompt_numbers)
    mentions = find_numbers(response)
    fresh = [mention for mention in mentions if mention.value not in echoes] or mentions
    affirmed = [
        mention
        for mention in fresh
        if not is_negated(*char_span_tokens(response, mention.start, mention.end))
    ]
    return affirmed[-1] if affirmed else None


def offers_alternatives(response: str, mentions: list[NumberMention]) -> bool:
    """True when two different numbers are joined by "or", "/" or "to"."""
    text = response.replace("−", "-")
    return any(
        left.value != right.value and _ALTERNATIVE_GAP.match(text[left.end : right.start])
        for left, right in pairwise(mentions)
    )


def _format(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(float(value))


@dataclass(frozen=True, slots=True)
class NumberChecker:
    """Accepts a response whose committed number (module rule) equals ``expected``."""

    expected: Fraction
    prompt_numbers: frozenset[Fraction] = field(default_factory=frozenset)

    @classmethod
    def build(cls, expected: int | str | Fraction, prompt: str = "") -> NumberChecker:
        """A checker for ``expected``; numbers in ``prompt`` are echoes, not answers."""
        value = expected if isinstance(expected, Fraction) else parse_number(str(expected))
        echoes = frozenset(mention.value for mention in find_numbers(prompt))
        return cls(expected=value, prompt_numbers=echoes)

    def check(self, response: str) -> CheckResult:
        """See the module rule."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        mentions = find_numbers(response)
        if not mentions:
            return CheckResult("no_answer")
        if offers_alternatives(response, mentions):
            return CheckResult("multiple_answers")
        committed = committed_number(response, self.prompt_numbers)
        if committed is None:
            return CheckResult("negated")
        extracted = _format(committed.value)
        if _APPROXIMATION.search(response[: committed.start]):
            return CheckResult("hedged", extracted)
        if committed.value != self.expected:
            return CheckResult("wrong", extracted)
        return CheckResult("correct", extracted)
