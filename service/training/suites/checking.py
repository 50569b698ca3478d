"""Checkers: decide whether a free-text model response commits to the expected answer.

Models answer in sentences ("The capital of France is Paris."), so a checker looks for the
answer inside the response instead of comparing strings. The rules, shared by all checkers:

* **Hedged** responses are wrong: any phrase from ``HEDGE_PHRASES`` ("maybe", "not sure",
  "could be", "approximately", ...) or the word "either".
* **Several candidates** are wrong: a second, different candidate of the same kind (another
  capital, another weekday, another element, another number joined by "or" / "/" / "to"), or
  an "or" right next to the answer ("Paris or Lyon"). A candidate that is itself negated
  ("Canberra, not Wellington") does not count as a second candidate.
* **Negated** answers are wrong: "not" / "never" / "isn't" / "rather than" / "instead of" among
  the three words before the answer in the same clause, or "is not" / "isn't" / "was not" right
  after it ("Paris is not the capital of France").
* Names compare case-, diacritics-, punctuation- and apostrophe-insensitively on whole words
  ("Bogota" = "Bogotá", "St. John's" = "Saint Johns"). Element symbols compare case-sensitively.
* Numbers (see ``NumberChecker``): the committed answer is the **last** number in the response
  that does not repeat a number from the prompt (falling back to the last number when all of
  them do); "3 meters is 300 centimeters" commits to 300, "7 + 5 = 12" to 12. Number words
  ("three", "twice") count only when the response has no digits at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Literal, Protocol

from service.facts.text import fold

CheckOutcome = Literal["correct", "wrong", "no_answer", "multiple_answers", "hedged", "negated"]

HEDGE_PHRASES: tuple[str, ...] = (
    "not sure",
    "unsure",
    "not certain",
    "uncertain",
    "dont know",
    "do not know",
    "no idea",
    "cannot be sure",
    "cant be sure",
    "maybe",
    "perhaps",
    "possibly",
    "probably",
    "might be",
    "could be",
    "may be",
    "approximately",
    "roughly",
    "or so",
    "either",
    "i guess",
)
_NEGATORS = frozenset({"not", "never", "isnt", "wasnt", "arent", "werent", "nor", "neither"})
_NEGATING_BIGRAMS = frozenset({("rather", "than"), ("instead", "of"), ("other", "than")})
_COPULAS = frozenset({"is", "was", "are", "were", "would"})
_BOUNDARY = "|"
_NEGATION_WINDOW = 3


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on one response and, when found, the answer it committed to."""

    outcome: CheckOutcome
    extracted: str | None = None

    @property
    def correct(self) -> bool:
        """True when the response commits to the expected answer and nothing else."""
        return self.outcome == "correct"


class Checker(Protocol):
    """Decides whether a free-text response is correct."""

    def check(self, response: str) -> CheckResult:
        """The verdict on ``response``."""
        ...


# --------------------------------------------------------------------------- text handling

_ABBREVIATIONS = (
    (re.compile(r"\bSt\.\s*"), "Saint "),
    (re.compile(r"\bD\.\s*C\.", re.IGNORECASE), "DC"),
)
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\n]|\s-\s|—|–")
_NON_WORD = re.compile(r"[^0-9a-z|]+")


def tokenize(text: str) -> list[str]:
    """Folded word tokens of ``text`` with ``"|"`` marking clause boundaries.

    "St." becomes "saint" and "D.C." becomes "dc" before punctuation is dropped.
    """
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    text = _CLAUSE_BREAK.sub(f" {_BOUNDARY} ", fold(text))
    tokens = _NON_WORD.sub(" ", text).split()
    return ["saint" if token == "st" else token for token in tokens]


@cache
def phrase_tokens(phrase: str) -> tuple[str, ...]:
    """The tokens a name is matched by (clause marks inside a name are dropped)."""
    return tuple(token for token in tokenize(phrase) if token != _BOUNDARY)


def find_phrase(tokens: Sequence[str], phrase: Sequence[str]) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` where ``phrase`` occurs in ``tokens`` as whole words."""
    size = len(phrase)
    if size == 0:
        return []
    first = phrase[0]
    return [
        (index, index + size)
        for index, token in enumerate(tokens)
        if token == first and tuple(tokens[index : index + size]) == tuple(phrase)
    ]


def is_hedged(tokens: Sequence[str]) -> bool:
    """True when the response contains a hedge phrase."""
    return any(find_phrase(tokens, phrase_tokens(hedge)) for hedge in HEDGE_PHRASES)


def is_negated(tokens: Sequence[str], start: int, end: int) -> bool:
    """True when the words at ``tokens[start:end]`` are negated within their clause."""
    before: list[str] = []
    for token in reversed(tokens[max(0, start - _NEGATION_WINDOW) : start]):
        if token == _BOUNDARY:
            break
        before.insert(0, token)
    if _NEGATORS.intersection(before):
        return True
    if any(pair in _NEGATING_BIGRAMS for pair in pairwise(before)):
        return True
    after = list(tokens[end : end + 2])
    if after[:1] and after[0] in {"isnt", "wasnt", "arent", "werent"}:
        return True
    return len(after) == 2 and after[0] in _COPULAS and after[1] in {"not", "never"}


def next_to_or(tokens: Sequence[str], start: int, end: int) -> bool:
    """True when an "or" joins the span at ``tokens[start:end]`` to another word."""
    return (start > 0 and tokens[start - 1] == "or") or (end < len(tokens) and tokens[end] == "or")


def _overlaps(span: tuple[int, int], others: Iterable[tuple[int, int]]) -> bool:
    return any(span[0] < other[1] and other[0] < span[1] for other in others)


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class NameChecker:
    """Accepts a response that names one of ``accepted`` and no competing candidate.

    ``competitors`` are the other answers of the same kind (other capitals, other weekdays);
    naming one of them as well makes the response a multi-answer. Competitors that occur in
    ``ignore`` (usually the prompt, e.g. the start day of a weekday question) are skipped.
    """

    accepted: tuple[tuple[str, ...], ...]
    competitors: tuple[tuple[str, ...], ...]

    @classmethod
    def build(
        cls, accepted: Iterable[str], competitors: Iterable[str], ignore: str = ""
    ) -> NameChecker:
        """A checker from plain names; ``ignore`` is text whose names are not competitors."""
        accepted_tokens = tuple(dict.fromkeys(phrase_tokens(name) for name in accepted))
        ignored = tokenize(ignore)
        rivals = (phrase_tokens(name) for name in competitors)
        kept = tuple(
            dict.fromkeys(
                rival
                for rival in rivals
                if rival and rival not in accepted_tokens and not find_phrase(ignored, rival)
            )
        )
        return cls(accepted=accepted_tokens, competitors=kept)

    def check(self, response: str) -> CheckResult:
        """See the module rules: hedged, negated, several candidates, else found or not."""
        tokens = tokenize(response)
        if is_hedged(tokens):
            return CheckResult("hedged")
        hits = [span for phrase in self.accepted for span in find_phrase(tokens, phrase)]
        rivals = [
            span
            for phrase in self.competitors
            for span in find_phrase(tokens, phrase)
            if not _overlaps(span, hits) and not is_negated(tokens, *span)
        ]
        if not hits:
            if rivals:
                return CheckResult("wrong", " ".join(tokens[rivals[0][0] : rivals[0][1]]))
            return CheckResult("no_answer")
        extracted = " ".join(tokens[hits[0][0] : hits[0][1]])
        if all(is_negated(tokens, *span) for span in hits):
            return CheckResult("negated", extracted)
        if rivals or any(next_to_or(tokens, *span) for span in hits):
            return CheckResult("multiple_answers", extracted)
        return CheckResult("correct", extracted)


# --------------------------------------------------------------------------- symbols

# Symbols that are also common English words at the start of a sentence ("He", "In", "I").
AMBIGUOUS_SYMBOLS = frozenset({"I", "In", "As", "At", "Be", "He", "No", "Am", "Es"})
_SYMBOL_CUE = re.compile(r"(?:\bis|\bsymbol|:|[\"'*`(])\s*$", re.IGNORECASE)


def _symbol_spans(response: str, symbol: str, strict: bool) -> list[tuple[int, int]]:
    spans = []
    for match in re.finditer(rf"(?<![A-Za-z]){re.escape(symbol)}(?![A-Za-z])", response):
        if strict:
            following = response[match.end() :].lstrip(" ")
            if following[:1].islower() and not _SYMBOL_CUE.search(response[: match.start()]):
                continue  # "He is ...", "I think ...": an English word, not a symbol
        spans.append(match.span())
    return spans


def char_span_tokens(response: str, start: int, end: int) -> tuple[list[str], int, int]:
    """Tokens of ``response`` with the characters ``start:end`` as one placeholder token.

    Returns the tokens and the placeholder's token span, for ``is_negated`` / ``next_to_or``.
    """
    before = tokenize(response[:start])
    tokens = [*before, "x", *tokenize(response[end:])]
    return tokens, len(before), len(before) + 1


def _char_span_negated(response: str, start: int, end: int) -> bool:
    return is_negated(*char_span_tokens(response, start, end))


def _char_span_next_to_or(response: str, start: int, end: int) -> bool:
    return next_to_or(*char_span_tokens(response, start, end))


@dataclass(frozen=True, slots=True)
class SymbolChecker:
    """Accepts a response containing the chemical symbol ``symbol`` (case-sensitive).

    ``competitors`` are the other symbols; ambiguous ones ("He", "In", "I") are never treated
    as competitors and only count as the answer when not followed by a lowercase word (or when
    right after "is" / "symbol" / a colon or quote).
    """

    symbol: str
    competitors: tuple[str, ...]

    def check(self, response: str) -> CheckResult:
        """See the module rules; the symbol itself is matched case-sensitively."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        hits = _symbol_spans(response, self.symbol, self.symbol in AMBIGUOUS_SYMBOLS)
        rivals = [
            (rival, span)
            for rival in self.competitors
            if rival not in AMBIGUOUS_SYMBOLS and rival != self.symbol
            for span in _symbol_spans(response, rival, strict=False)
            if not _char_span_negated(response, *span)
        ]
        if not hits:
            return CheckResult("wrong", rivals[0][0]) if rivals else CheckResult("no_answer")
        if all(_char_span_negated(response, *span) for span in hits):
            return CheckResult("negated", self.symbol)
        if rivals or any(_char_span_next_to_or(response, *span) for span in hits):
            return CheckResult("multiple_answers", self.symbol)
        return CheckResult("correct", self.symbol)
