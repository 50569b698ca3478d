"""Word reversal (procedural): "Write the word 'apple' backwards." -> "elppa"."""

from __future__ import annotations

from dataclasses import dataclass

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id
from sdm_router.training.suites.checking import (
    CheckResult,
    is_hedged,
    is_negated,
    next_to_or,
    tokenize,
)
from sdm_router.training.suites.words import WORDS

PHRASINGS: tuple[str, ...] = (
    "Reverse the letters of the word '{word}'.",
    "What is the word '{word}' spelled backwards?",
    "Write the word '{word}' backwards.",
    "Spell the word '{word}' in reverse order.",
    "Write '{word}' with its letters in reverse order.",
)
_MIN_SPELLED = 3


def _with_spelled_words(tokens: list[str]) -> list[tuple[str, int, int]]:
    """Tokens with their spans, plus runs of single letters joined ("e-l-p-p-a" -> "elppa")."""
    found = [(token, index, index + 1) for index, token in enumerate(tokens)]
    run: list[int] = []
    for index, token in enumerate([*tokens, "end"]):
        if len(token) == 1 and token.isalpha():
            run.append(index)
        elif token != "|" or not run:
            if len(run) >= _MIN_SPELLED:
                word = "".join(tokens[i] for i in run)
                found.append((word, run[0], run[-1] + 1))
            run = []
    return found


@dataclass(frozen=True, slots=True)
class ReversalChecker:
    """Accepts a response containing ``expected`` as a word (letters may be spelled out).

    Another rearrangement of the word's letters (other than the word itself) in the response
    is a competing candidate.
    """

    word: str
    expected: str

    def check(self, response: str) -> CheckResult:
        """See ``checking``'s module rules; case-insensitive, whole words."""
        tokens = tokenize(response)
        if is_hedged(tokens):
            return CheckResult("hedged")
        letters = sorted(self.word)
        words = _with_spelled_words(tokens)
        hits = [(start, end) for token, start, end in words if token == self.expected]
        rivals = [
            token
            for token, start, end in words
            if token not in {self.word, self.expected}
            and sorted(token) == letters
            and not is_negated(tokens, start, end)
        ]
        if not hits:
            return CheckResult("wrong", rivals[0]) if rivals else CheckResult("no_answer")
        if all(is_negated(tokens, *span) for span in hits):
            return CheckResult("negated", self.expected)
        if rivals or any(next_to_or(tokens, *span) for span in hits):
            return CheckResult("multiple_answers", self.expected)
        return CheckResult("correct", self.expected)


@dataclass(frozen=True, slots=True)
class ReversalFamily:
    """Every word in ``WORDS`` in every phrasing."""

    name: str = "reversal"
    kind: FamilyKind = "procedural"

    def make_item(self, word: str, phrasing: int) -> TaskItem:
        """The reversal question for ``word`` in phrasing number ``phrasing``."""
        answer = word[::-1]
        return TaskItem(
            id=f"{self.name}/{word}/p{phrasing}",
            family=self.name,
            question=PHRASINGS[phrasing].format(word=word),
            answer=answer,
            aliases=(),
            checker=ReversalChecker(word, answer),
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """All words times all phrasings, shuffled by ``seed``."""
        items = [self.make_item(w, p) for w in WORDS for p in range(len(PHRASINGS))]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``reversal/<word>/p<k>``."""
        (word,), phrasing = split_id(item_id, self.name, 1)
        if not word.isalpha() or phrasing >= len(PHRASINGS):
            raise KeyError(item_id)
        return self.make_item(word, phrasing)
