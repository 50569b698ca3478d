"""Checkers: decide whether a free-text model response commits to the expected answer.

Models answer in sentences ("The capital of France is Paris."), so a checker looks for the
answer inside the response instead of comparing strings. The rules, shared by all checkers:

* **Hedged** responses are wrong: any phrase from ``HEDGE_PHRASES`` ("maybe", "not sure",
  "could be", "approximately", "I think", "my guess", ...) or the word "either".
* **Several candidates** are wrong: a second, different candidate of the same kind (another
  capital, another weekday, another element, another number joined by "or" / "/" / "to" or
  listed with commas), or an "or" right next to the answer ("Paris or Lyon"). A candidate
  that is itself negated ("Canberra, not Wellington") does not count as a second candidate.
  Where one candidate's name contains another's ("US dollar" / "dollar"), the longer
  mention wins.
* **Negated** answers are wrong: "not" / "never" / "isn't" / "wouldn't" / "rather than" /
  "instead of" among the three words before the answer in the same clause, or a copula
  followed by "not" / "wrong" / "incorrect" right after it ("Paris is not the capital of
  France", "Paris would be wrong").
* **Echoes** of the question are not answers: a name the question itself contains (the
  start day of a weekday question, a country that shares its capital's name) counts only
  where the response does not restate the question around it: not inside a word window it
  shares with the question ("the capital of Luxembourg", "today is Monday") and not right
  after a family's restating cue ("3 days after Monday"). Such a mention is neither the
  answer nor a competing candidate.
* Names compare case-, diacritics-, punctuation- and apostrophe-insensitively on whole words
  ("Bogota" = "Bogotá", "St. John's" = "Saint Johns"). Element symbols compare case-sensitively;
  a symbol that is also an English word ("He", "In", "I") counts at the start of a sentence
  only when a symbol cue follows ("He is the symbol for helium", "He stands for helium").
* Numbers (see ``NumberChecker``): the committed answer is the **last** number in the response
  that does not repeat a number from the prompt (falling back to the last number when all of
  them do); "3 meters is 300 centimeters" commits to 300, "7 + 5 = 12" to 12. Number words
  ("three", "forty-two", "one hundred and five") count only when the response has no digits.
  A list of different numbers ("1, 2, 3") and a bound ("at least 3", "3 or more") are wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Literal, Protocol

from sdm_router.facts.text import fold

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
    "likely",
    "might be",
    "could be",
    "may be",
    "approximately",
    "roughly",
    "or so",
    "either",
    "i guess",
    "my guess",
    "would guess",
    "i think",
    "i believe",
    "it seems",
    "seems to be",
    "if im not mistaken",
    "or something",
)
_NEGATORS = frozenset(
    {
        *("not", "never", "isnt", "wasnt", "arent", "werent", "nor", "neither"),
        *("wouldnt", "doesnt", "didnt", "dont", "cannot", "cant", "couldnt", "shouldnt"),
    }
)
_NEGATING_BIGRAMS = frozenset({("rather", "than"), ("instead", "of"), ("other", "than")})
_COPULAS = frozenset({"is", "was", "are", "were", "would", "be", "been", "seems"})
_AFTER_NEGATORS = frozenset({"not", "never", "wrong", "incorrect", "false", "mistaken"})
_CONTRACTED_COPULAS = frozenset({"isnt", "wasnt", "arent", "werent", "wouldnt"})
_BOUNDARY = "|"
_NEGATION_WINDOW = 3
_ECHO_WINDOW = 2


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
    (re.compile(r"\bU\.\s*S\.(?:\s*A\.)?"), "US"),
    (re.compile(r"\bU\.\s*K\."), "UK"),
)
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\n]|\s-\s|—|–")
_NON_WORD = re.compile(r"[^0-9a-z|]+")


def tokenize(text: str) -> list[str]:
    """Folded word tokens of ``text`` with ``"|"`` marking clause boundaries.

    "St." becomes "saint", "D.C." "dc", "U.S." "us" and "U.K." "uk" before punctuation is
    dropped.
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
    after = list(tokens[end : end + 4])
    if after[:1] and after[0] in _CONTRACTED_COPULAS:
        return True
    copulas = 0
    while copulas < len(after) and after[copulas] in _COPULAS:
        copulas += 1
    return 0 < copulas < len(after) and after[copulas] in _AFTER_NEGATORS


def is_echo(
    tokens: Sequence[str],
    start: int,
    end: int,
    prompt: Sequence[str],
    cues_before: Iterable[Sequence[str]] = (),
    cues_after: Iterable[Sequence[str]] = (),
) -> bool:
    """True when ``tokens[start:end]`` restates the question rather than answering it.

    Only a phrase the prompt contains can be an echo. It is one when the phrase with up to two
    words on its left, or on its right, within its clause, also occurs in the prompt ("today
    is Monday", "the capital of Luxembourg"), or when one of ``cues_before`` ends right
    before it ("after Monday") or one of ``cues_after`` starts right after it ("Monday plus
    3").
    """
    phrase = tuple(tokens[start:end])
    if not prompt or not find_phrase(prompt, phrase):
        return False
    left = 0
    while left < _ECHO_WINDOW and start - left > 0 and tokens[start - left - 1] != _BOUNDARY:
        left += 1
    if left and find_phrase(prompt, tuple(tokens[start - left : end])):
        return True
    right = 0
    while right < _ECHO_WINDOW and end + right < len(tokens) and tokens[end + right] != _BOUNDARY:
        right += 1
    if right and find_phrase(prompt, tuple(tokens[start : end + right])):
        return True
    for cue in cues_before:
        size = len(cue)
        if size and start >= size and tuple(tokens[start - size : start]) == tuple(cue):
            return True
    return any(len(cue) and tuple(tokens[end : end + len(cue)]) == tuple(cue) for cue in cues_after)


def next_to_or(tokens: Sequence[str], start: int, end: int) -> bool:
    """True when an "or" joins the span at ``tokens[start:end]`` to another word."""
    return (start > 0 and tokens[start - 1] == "or") or (end < len(tokens) and tokens[end] == "or")


def _overlaps(span: tuple[int, int], others: Iterable[tuple[int, int]]) -> bool:
    return any(span[0] < other[1] and other[0] < span[1] for other in others)


# --------------------------------------------------------------------------- names


def _longest_mentions(
    hits: list[tuple[int, int]], rivals: list[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Resolve overlapping mentions, longest first: a mention inside a longer one of its own
    kind is dropped ("kina" in "Papua New Guinean kina"), a hit inside a longer rival ("dollar"
    in "US dollar") is dropped, and a rival overlapping a hit at least as long is dropped."""

    def size(span: tuple[int, int]) -> int:
        return span[1] - span[0]

    def outermost(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        unique = sorted(set(spans))
        return [
            span
            for span in unique
            if not any(o != span and o[0] <= span[0] and span[1] <= o[1] for o in unique)
        ]

    hits, rivals = outermost(hits), outermost(rivals)
    kept_hits = [
        hit for hit in hits if not any(_overlaps(hit, [r]) and size(r) > size(hit) for r in rivals)
    ]
    kept_rivals = [
        rival
        for rival in rivals
        if not any(_overlaps(rival, [hit]) and size(hit) >= size(rival) for hit in kept_hits)
    ]
    return kept_hits, kept_rivals


Phrase = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NameChecker:
    """Accepts a response that names one of ``accepted`` and no competing candidate.

    ``competitors`` are the other answers of the same kind (other capitals, other weekdays);
    naming one of them as well makes the response a multi-answer. ``prompt`` holds the
    question's tokens: a mention that restates it (see ``is_echo``; ``echo_before`` and
    ``echo_after`` are the family's restating cues, e.g. "after" for weekdays) is neither an
    answer nor a competitor.
    """

    accepted: tuple[Phrase, ...]
    competitors: tuple[Phrase, ...]
    prompt: Phrase = ()
    echo_before: tuple[Phrase, ...] = ()
    echo_after: tuple[Phrase, ...] = ()

    @classmethod
    def build(
        cls,
        accepted: Iterable[str],
        competitors: Iterable[str],
        prompt: str = "",
        echo_before: Iterable[str] = (),
        echo_after: Iterable[str] = (),
    ) -> NameChecker:
        """A checker from plain names; ``prompt`` is the question (for echoes); the echo cues
        are plain words or phrases ("after", "today is")."""
        accepted_tokens = tuple(dict.fromkeys(phrase_tokens(name) for name in accepted))
        rivals = (phrase_tokens(name) for name in competitors)
        kept = tuple(
            dict.fromkeys(rival for rival in rivals if rival and rival not in accepted_tokens)
        )
        return cls(
            accepted=accepted_tokens,
            competitors=kept,
            prompt=tuple(tokenize(prompt)),
            echo_before=tuple(phrase_tokens(cue) for cue in echo_before),
            echo_after=tuple(phrase_tokens(cue) for cue in echo_after),
        )

    def _spans(self, tokens: list[str], phrases: Iterable[Phrase]) -> list[tuple[int, int]]:
        return [
            span
            for phrase in phrases
            for span in find_phrase(tokens, phrase)
            if not is_echo(tokens, *span, self.prompt, self.echo_before, self.echo_after)
        ]

    def check(self, response: str) -> CheckResult:
        """See the module rules: hedged, echoes, negated, several candidates, else found or not."""
        tokens = tokenize(response)
        if is_hedged(tokens):
            return CheckResult("hedged")
        hits, rival_spans = _longest_mentions(
            self._spans(tokens, self.accepted), self._spans(tokens, self.competitors)
        )
        rivals = sorted(span for span in rival_spans if not is_negated(tokens, *span))
        if not hits:
            if rivals:
                return CheckResult("wrong", " ".join(tokens[rivals[0][0] : rivals[0][1]]))
            return CheckResult("no_answer")
        hits.sort()
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
# After an ambiguous symbol: "He is the symbol for ...", "He is helium's symbol", "He stands for".
_SYMBOL_FOLLOW_CUE = re.compile(
    r"^\s+(?:(?:is|was|=)\s+(?:the\s+|its\s+|[a-z]+['’]s\s+)?(?:chemical\s+|element\s+|atomic\s+)?"
    r"symbol\b|stands\s+for\b|represents\b|denotes\b)",
    re.IGNORECASE,
)


def _symbol_spans(response: str, symbol: str, strict: bool) -> list[tuple[int, int]]:
    spans = []
    for match in re.finditer(rf"(?<![A-Za-z]){re.escape(symbol)}(?![A-Za-z])", response):
        if strict:
            rest = response[match.end() :]
            following = rest.lstrip(" ")
            cued = _SYMBOL_CUE.search(response[: match.start()]) or _SYMBOL_FOLLOW_CUE.match(rest)
            if following[:1].islower() and not cued:
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
