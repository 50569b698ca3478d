"""Letter counting (procedural): occurrences of a letter in a word, and word length."""

from __future__ import annotations

from dataclasses import dataclass

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.numeric import NumberChecker
from sdm_router.training.suites.words import WORDS

PHRASINGS: dict[str, tuple[str, ...]] = {
    "count": (
        "How many times does the letter '{letter}' appear in the word '{word}'?",
        "Count the occurrences of the letter '{letter}' in '{word}'.",
        "In the word '{word}', how many times does the letter '{letter}' occur?",
        "How often does the letter '{letter}' occur in '{word}'?",
        "Tell me how many times '{letter}' appears in the word '{word}'.",
    ),
    "length": (
        "How many letters are in the word '{word}'?",
        "How many letters does the word '{word}' have?",
        "Count the letters in the word '{word}'.",
        "What is the length of the word '{word}' in letters?",
        "How long is the word '{word}', counted in letters?",
    ),
}


@dataclass(frozen=True, slots=True)
class LetterCountFamily:
    """For every word: each letter it contains (counts of at least 1) and its length."""

    name: str = "letter_count"
    kind: FamilyKind = "procedural"

    def make_item(self, word: str, letter: str | None, phrasing: int) -> TaskItem:
        """Count ``letter`` in ``word``, or the length of ``word`` when ``letter`` is None."""
        if letter is None:
            kind, answer, params = "length", len(word), word
        else:
            kind, answer, params = "count", word.count(letter), f"{word}/{letter}"
        item_id = f"{self.name}/{kind}/{params}/p{phrasing}"
        question = template(PHRASINGS[kind], phrasing, item_id).format(word=word, letter=letter)
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=str(answer),
            aliases=(),
            checker=NumberChecker.build(answer, question),
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """Every (word, letter) count and every word length in every template, shuffled."""
        items = [
            self.make_item(word, letter, phrasing)
            for word in WORDS
            for letter in (None, *sorted(set(word)))
            for phrasing in range(len(PHRASINGS["count" if letter else "length"]))
        ]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``letter_count/count/<word>/<letter>/p<k>`` or ``.../length/<word>/p<k>``."""
        question = item_id.split("/")[1] if item_id.count("/") >= 1 else ""
        if question == "length":
            (_, word), phrasing = split_id(item_id, self.name, 2)
            letter = None
        else:
            (kind, word, letter_text), phrasing = split_id(item_id, self.name, 3)
            if kind != "count" or len(letter_text) != 1 or letter_text not in word:
                raise KeyError(item_id)
            letter = letter_text
        if not word.isalpha():
            raise KeyError(item_id)
        return self.make_item(word, letter, phrasing)
