"""Ordering (procedural): sort numbers or words, pick the largest or smallest number."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sdm_router.facts.text import fold
from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.checking import (
    Checker,
    CheckResult,
    char_span_tokens,
    is_hedged,
    is_negated,
    next_to_or,
    tokenize,
)
from sdm_router.training.suites.numeric import find_numbers
from sdm_router.training.suites.words import WORDS

PHRASINGS: dict[str, tuple[str, ...]] = {
    "sort_asc": (
        "Sort these numbers from smallest to largest: {items}.",
        "Put the numbers {items} in ascending order.",
        "Arrange {items} in increasing order.",
        "Order these numbers from lowest to highest: {items}.",
        "List {items} from the smallest to the largest.",
    ),
    "sort_desc": (
        "Sort these numbers from largest to smallest: {items}.",
        "Put the numbers {items} in descending order.",
        "Arrange {items} in decreasing order.",
        "Order these numbers from highest to lowest: {items}.",
        "List {items} from the largest to the smallest.",
    ),
    "sort_words": (
        "Sort these words alphabetically: {items}.",
        "Put the words {items} in alphabetical order.",
        "Arrange {items} in alphabetical order.",
        "List these words in dictionary order: {items}.",
        "Order the words {items} from A to Z.",
    ),
    "largest": (
        "Which number is the largest: {items}?",
        "What is the biggest of these numbers: {items}?",
        "Of {items}, which is the greatest?",
        "Pick the largest number from {items}.",
        "Which of {items} has the highest value?",
    ),
    "smallest": (
        "Which number is the smallest: {items}?",
        "What is the lowest of these numbers: {items}?",
        "Of {items}, which is the least?",
        "Pick the smallest number from {items}.",
        "Which of {items} has the lowest value?",
    ),
}
OPTIONS = 4
PER_KIND = 120
NUMERIC_KINDS = frozenset({"sort_asc", "sort_desc", "largest", "smallest"})

# Between two listed items: separators, quotes, bold, "and", "then", "<" / ">".
_LIST_GAP = re.compile(
    r"^(?:\s|[,;<>*'\"`‘’“”]|\band\b|\bthen\b|\bfollowed\s+by\b)*$", re.IGNORECASE
)
_NUMBERING = re.compile(r"(?:^|(?<=\n))\s*(?:\d+[.)]|[-*•])\s+")
_COMPARISON = re.compile(r"\b(?:than|over)\s*[\"'*`‘“]?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Mention:
    key: str
    start: int
    end: int


def _without_numbering(response: str) -> str:
    """``response`` with list numbering ("1. ", "- ") blanked out, positions kept."""
    return _NUMBERING.sub(lambda match: " " * len(match.group()), response)


def _mentions(text: str, numeric: bool, options: Sequence[str]) -> list[_Mention]:
    """Numbers (every number) or the option words, in order."""
    if numeric:
        return [
            _Mention(str(mention.value), mention.start, mention.end)
            for mention in find_numbers(text, digits_only=True)
        ]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, options)) + r")\b", re.IGNORECASE)
    return [_Mention(fold(m.group()), m.start(), m.end()) for m in pattern.finditer(text)]


def _runs(response: str, mentions: list[_Mention]) -> list[list[_Mention]]:
    runs: list[list[_Mention]] = []
    for mention in mentions:
        if runs and _LIST_GAP.match(response[runs[-1][-1].end : mention.start]):
            runs[-1].append(mention)
        else:
            runs.append([mention])
    return runs


def _contiguous_in(run: Sequence[str], order: Sequence[str]) -> bool:
    size = len(run)
    return any(tuple(order[i : i + size]) == tuple(run) for i in range(len(order) - size + 1))


def _run_state(response: str, run: list[_Mention]) -> tuple[bool, bool]:
    """(negated, next to "or") for a run, judged at its first and last mention."""
    tokens, start, _ = char_span_tokens(response, run[0].start, run[-1].end)
    end = start + 1
    return is_negated(tokens, start, end), next_to_or(tokens, start, end)


@dataclass(frozen=True, slots=True)
class SequenceChecker:
    """Accepts a response that lists ``expected`` in order and no other ordering.

    A list is a run of items joined only by separators ("7, 12, 34 and 56", "7 < 12 < 34",
    a numbered list). A run that repeats part of the question's order (``given``) is an echo;
    two different orderings, an ordering next to "or", or a negated one are wrong.
    """

    expected: tuple[str, ...]
    given: tuple[str, ...]
    numeric: bool

    def check(self, response: str) -> CheckResult:
        """See the class docstring and ``checking``'s module rules."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        response = _without_numbering(response)
        runs = [
            run
            for run in _runs(response, _mentions(response, self.numeric, self.given))
            if len(run) > 1 and not _contiguous_in([m.key for m in run], self.given)
        ]
        if not runs:
            return CheckResult("no_answer")
        states = [_run_state(response, run) for run in runs]
        affirmed = [run for run, (negated, _) in zip(runs, states, strict=True) if not negated]
        if not affirmed:
            return CheckResult("negated")
        orders = {tuple(m.key for m in run) for run in affirmed}
        extracted = ", ".join(m.key for m in affirmed[0])
        if len(orders) > 1 or any(beside_or for _, beside_or in states):
            return CheckResult("multiple_answers", extracted)
        return CheckResult("correct" if orders == {self.expected} else "wrong", extracted)


@dataclass(frozen=True, slots=True)
class ChoiceChecker:
    """Accepts a response that picks ``expected`` among the question's numbers (``given``).

    A run of two or more numbers is a listing: an echo of the question when it repeats part
    of its order or follows "than" ("56 is larger than 34, 12 and 7"), else several answers.
    A single number after "than" is a comparison, not a pick.
    """

    expected: str
    given: tuple[str, ...]

    def check(self, response: str) -> CheckResult:
        """See the class docstring and ``checking``'s module rules."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        response = _without_numbering(response)
        picks: list[list[_Mention]] = []
        for run in _runs(response, _mentions(response, True, self.given)):
            if _COMPARISON.search(response[: run[0].start]):
                continue
            if len(run) > 1:
                if _contiguous_in([m.key for m in run], self.given):
                    continue
                return CheckResult("multiple_answers", ", ".join(m.key for m in run))
            picks.append(run)
        if not picks:
            return CheckResult("no_answer")
        states = [_run_state(response, run) for run in picks]
        affirmed = [
            run[0].key for run, (negated, _) in zip(picks, states, strict=True) if not negated
        ]
        if not affirmed:
            return CheckResult("negated")
        if len(set(affirmed)) > 1 or any(beside_or for _, beside_or in states):
            return CheckResult("multiple_answers", affirmed[0])
        return CheckResult("correct" if affirmed[0] == self.expected else "wrong", affirmed[0])


@dataclass(frozen=True, slots=True)
class OrderingFamily:
    """``PER_KIND`` random lists of ``OPTIONS`` numbers (1 to 999) or words per kind, one
    random template each; the question's order is never already sorted either way."""

    name: str = "ordering"
    kind: FamilyKind = "procedural"

    def make_item(self, kind: str, given: tuple[str, ...], phrasing: int) -> TaskItem:
        """The ``kind`` question about the items ``given`` (in the question's order)."""
        item_id = f"{self.name}/{kind}/{'-'.join(given)}/p{phrasing}"
        text = template(PHRASINGS.get(kind, ()), phrasing, item_id)
        if len(given) < 2 or len(set(given)) != len(given):
            raise KeyError(item_id)
        checker: Checker
        if kind in NUMERIC_KINDS:
            if not all(value.isdigit() and value == str(int(value)) for value in given):
                raise KeyError(item_id)
            ordered = tuple(sorted(given, key=int, reverse=kind in {"sort_desc", "largest"}))
        else:
            if not all(value in WORDS for value in given):
                raise KeyError(item_id)
            ordered = tuple(sorted(given))
        if kind in {"largest", "smallest"}:
            answer = ordered[0]
            checker = ChoiceChecker(answer, given)
        else:
            if given in (ordered, ordered[::-1]):
                raise KeyError(item_id)
            answer = ", ".join(ordered)
            checker = SequenceChecker(ordered, given, numeric=kind in NUMERIC_KINDS)
        return TaskItem(
            id=item_id,
            family=self.name,
            question=text.format(items=", ".join(given)),
            answer=answer,
            aliases=(),
            checker=checker,
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """See the class docstring; shuffled by ``seed``."""
        rng = family_rng(self.name, seed)
        items: list[TaskItem] = []
        for kind, phrasings in PHRASINGS.items():
            chosen: set[tuple[str, ...]] = set()
            while len(chosen) < PER_KIND:
                if kind in NUMERIC_KINDS:
                    digits = [rng.choice((1, 2, 3)) for _ in range(OPTIONS)]
                    values = [str(rng.randrange(10 ** (d - 1), 10**d)) for d in digits]
                else:
                    values = rng.sample(WORDS, OPTIONS)
                given = tuple(values)
                ordered = sorted(given, key=int) if kind in NUMERIC_KINDS else sorted(given)
                sortable = kind in {"largest", "smallest"} or list(given) not in (
                    ordered,
                    ordered[::-1],
                )
                if len(set(given)) == OPTIONS and sortable:
                    chosen.add(given)
            items += [
                self.make_item(kind, given, rng.randrange(len(phrasings)))
                for given in sorted(chosen)
            ]
        rng.shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``ordering/<kind>/<item>-<item>-.../p<k>``."""
        (kind, joined), phrasing = split_id(item_id, self.name, 2)
        return self.make_item(kind, tuple(joined.split("-")), phrasing)
