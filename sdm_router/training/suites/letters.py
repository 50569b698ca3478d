"""String operations on letters (procedural): the first, last or n-th letter of a word, and
the letter before or after a letter in the alphabet."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.checking import (
    CheckResult,
    char_span_tokens,
    is_hedged,
    is_negated,
    tokenize,
)
from sdm_router.training.suites.words import WORDS

PHRASINGS: dict[str, tuple[str, ...]] = {
    "first": (
        "What is the first letter of the word '{word}'?",
        "Which letter does the word '{word}' start with?",
        "Name the first letter of '{word}'.",
        "The word '{word}' begins with which letter?",
        "Tell me the initial letter of the word '{word}'.",
    ),
    "last": (
        "What is the last letter of the word '{word}'?",
        "Which letter does the word '{word}' end with?",
        "Name the last letter of '{word}'.",
        "The word '{word}' ends with which letter?",
        "Tell me the final letter of the word '{word}'.",
    ),
    "nth": (
        "What is the {ordinal} letter of the word '{word}'?",
        "Which letter is in position {n} of the word '{word}'?",
        "In the word '{word}', what is letter number {n}?",
        "Counting from the left, which letter is {ordinal} in '{word}'?",
        "Name the {ordinal} letter of '{word}'.",
    ),
    "next": (
        "Which letter comes right after '{letter}' in the English alphabet?",
        "What letter follows '{letter}' in the alphabet?",
        "In the alphabet, what is the next letter after '{letter}'?",
        "Name the letter that comes immediately after '{letter}' in the alphabet.",
        "Which letter of the alphabet is just after '{letter}'?",
    ),
    "previous": (
        "Which letter comes right before '{letter}' in the English alphabet?",
        "What letter precedes '{letter}' in the alphabet?",
        "In the alphabet, what is the letter just before '{letter}'?",
        "Name the letter that comes immediately before '{letter}' in the alphabet.",
        "Which letter of the alphabet is just before '{letter}'?",
    ),
}
ORDINALS = {2: "second", 3: "third", 4: "fourth"}
ALPHABET = string.ascii_lowercase

# A single letter standing alone: not inside a word, not a contraction ("don't") or a plural
# ("r's").
_LETTER = re.compile(r"(?<![A-Za-z0-9])(?<![A-Za-z]['’])[A-Za-z](?![A-Za-z0-9])(?!['’][A-Za-z])")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|a\.m|p\.m)\.?", re.IGNORECASE)
# "a", "A" and "I" are English words; they count as a letter when quoted or bold, when no
# word follows them ("The answer is a."), or before "is" / "comes" / "follows" / "or" / "and".
_AMBIGUOUS = frozenset("aAI")
_QUOTE_BEFORE = re.compile(r"[\"'*`(‘“-]$")
_AMBIGUOUS_FOLLOW = re.compile(
    r"^(?:\s*(?:$|[.,!?;:)\]\"'*`’”-])|\s+(?:is|comes|follows|or|and)\b)", re.IGNORECASE
)
_SPELLED_GAP = re.compile(r"^[\s,.-]{1,3}$")
_MIN_SPELLED = 3
# Around the question's own letter: "after 'g'", "'g' is followed by", "g -> h".
_ECHO_BEFORE = re.compile(
    r"(?:after|before|follows|following|precedes|preceding|from|than)\s*[\"'*`‘“]?\s*$",
    re.IGNORECASE,
)
_ECHO_AFTER = re.compile(
    r"^\s*[\"'*`’”]?\s*(?:is\s+(?:followed|preceded)|comes\s+(?:before|after)|then\b|precedes"
    r"|follows|->|→|\+|plus\b|minus\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class LetterMention:
    """A letter named in a response."""

    letter: str
    start: int
    end: int


def find_letters(response: str) -> list[LetterMention]:
    """Single letters named in ``response`` (see ``_AMBIGUOUS``); runs of three or more
    letters ("g-a-r-d-e-n", "e l p p a") spell a word and are not letters."""
    text = _ABBREVIATION.sub(lambda match: " " * len(match.group()), response)
    found: list[LetterMention] = []
    for match in _LETTER.finditer(text):
        letter = match.group()
        if letter in _AMBIGUOUS:
            quoted = _QUOTE_BEFORE.search(text[: match.start()])
            if not quoted and not _AMBIGUOUS_FOLLOW.match(text[match.end() :]):
                continue
        found.append(LetterMention(letter.lower(), match.start(), match.end()))
    runs: list[list[LetterMention]] = []
    for mention in found:
        if runs and _SPELLED_GAP.match(text[runs[-1][-1].end : mention.start]):
            runs[-1].append(mention)
        else:
            runs.append([mention])
    return [mention for run in runs if len(run) < _MIN_SPELLED for mention in run]


@dataclass(frozen=True, slots=True)
class LetterChecker:
    """Accepts a response naming the letter ``expected`` (any case) and no other letter.

    ``given`` is the question's own letter (alphabet questions): named right after "after" /
    "before" / "follows" or before "is followed by" / "comes before" / "->" it restates the
    question and is skipped; named anywhere else it is a competing answer.
    """

    expected: str
    given: str = ""

    def _is_echo(self, response: str, mention: LetterMention) -> bool:
        if mention.letter != self.given:
            return False
        return bool(
            _ECHO_BEFORE.search(response[: mention.start])
            or _ECHO_AFTER.match(response[mention.end :])
        )

    def check(self, response: str) -> CheckResult:
        """See the class docstring and ``checking``'s module rules."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        mentions = [m for m in find_letters(response) if not self._is_echo(response, m)]
        if not mentions:
            return CheckResult("no_answer")
        affirmed = [
            m for m in mentions if not is_negated(*char_span_tokens(response, m.start, m.end))
        ]
        if not affirmed:
            return CheckResult("negated")
        letters = {mention.letter for mention in affirmed}
        extracted = affirmed[0].letter
        if len(letters) > 1:
            return CheckResult("multiple_answers", extracted)
        if letters != {self.expected}:
            return CheckResult("wrong", extracted)
        return CheckResult("correct", extracted)


@dataclass(frozen=True, slots=True)
class LettersFamily:
    """First and last letters of every word and the letters next to every letter (every
    template), and the 2nd to 4th letter of every word (one random template each)."""

    name: str = "letters"
    kind: FamilyKind = "procedural"

    def make_item(self, kind: str, subject: str, position: int, phrasing: int) -> TaskItem:
        """The ``kind`` question about ``subject`` (a word, or a letter for next / previous);
        ``position`` (1-based) only for "nth"."""
        params = f"{subject}/{position}" if kind == "nth" else subject
        item_id = f"{self.name}/{kind}/{params}/p{phrasing}"
        text = template(PHRASINGS.get(kind, ()), phrasing, item_id)
        given = ""
        if kind in {"next", "previous"}:
            if len(subject) != 1 or subject not in ALPHABET:
                raise KeyError(item_id)
            step = 1 if kind == "next" else -1
            index = ALPHABET.index(subject) + step
            if not 0 <= index < len(ALPHABET):
                raise KeyError(item_id)
            answer, given = ALPHABET[index], subject
        else:
            if not subject.isalpha() or not subject.islower():
                raise KeyError(item_id)
            if kind == "nth" and (position not in ORDINALS or position > len(subject)):
                raise KeyError(item_id)
            index = {"first": 0, "last": len(subject) - 1}.get(kind, position - 1)
            answer = subject[index]
        question = text.format(
            word=subject, letter=subject, n=position, ordinal=ORDINALS.get(position, "")
        )
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=answer,
            aliases=(),
            checker=LetterChecker(answer, given),
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """See the class docstring; shuffled by ``seed``."""
        rng = family_rng(self.name, seed)
        items = [
            self.make_item(kind, word, 0, phrasing)
            for kind in ("first", "last")
            for word in WORDS
            for phrasing in range(len(PHRASINGS[kind]))
        ]
        items += [
            self.make_item("nth", word, position, rng.randrange(len(PHRASINGS["nth"])))
            for word in WORDS
            for position in ORDINALS
        ]
        items += [
            self.make_item(kind, letter, 0, phrasing)
            for kind, letters in (("next", ALPHABET[:-1]), ("previous", ALPHABET[1:]))
            for letter in letters
            for phrasing in range(len(PHRASINGS[kind]))
        ]
        rng.shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``letters/<first|last|next|previous>/<word or letter>/p<k>`` or
        ``letters/nth/<word>/<position>/p<k>``."""
        pieces = item_id.split("/")
        kind = pieces[1] if len(pieces) > 1 else ""
        if kind not in PHRASINGS:
            raise KeyError(item_id)
        if kind == "nth":
            (_, word, position), phrasing = split_id(item_id, self.name, 3)
            if not position.isdigit():
                raise KeyError(item_id)
            return self.make_item(kind, word, int(position), phrasing)
        (_, subject), phrasing = split_id(item_id, self.name, 2)
        return self.make_item(kind, subject, 0, phrasing)
