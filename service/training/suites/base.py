"""Task items and the task-family protocol."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Protocol

from service.training.suites.checking import Checker, CheckResult

FamilyKind = Literal["factual", "procedural"]


@dataclass(frozen=True, slots=True)
class TaskItem:
    """One question with an exactly checkable answer.

    ``id`` is ``family/parameters.../p<phrasing index>`` and is stable across runs and seeds;
    ``group_id`` drops the phrasing so that train/calibration splits can keep all phrasings of
    one fact together. ``retrieval_key`` is what to search for (factual families only).
    """

    id: str
    family: str
    prompt: str
    answer: str
    aliases: tuple[str, ...]
    checker: Checker = field(compare=False, repr=False)
    retrieval_key: str | None = None

    @property
    def group_id(self) -> str:
        """The id without the phrasing index: the same fact or computation in any wording."""
        return self.id.rsplit("/", 1)[0]

    def check(self, response: str) -> CheckResult:
        """The checker's verdict on a free-text ``response``."""
        return self.checker.check(response)

    def is_correct(self, response: str) -> bool:
        """True when ``response`` commits to this item's answer and nothing else."""
        return self.checker.check(response).correct

    def to_record(self) -> dict[str, object]:
        """A JSON-ready dict of the item without its checker (rebuild with ``get_item``)."""
        return {
            "id": self.id,
            "family": self.family,
            "prompt": self.prompt,
            "answer": self.answer,
            "aliases": list(self.aliases),
            "retrieval_key": self.retrieval_key,
        }


class TaskFamily(Protocol):
    """A family of questions sharing a template set and a checker kind."""

    @property
    def name(self) -> str:
        """The family's registry name, also the first part of its items' ids."""
        ...

    @property
    def kind(self) -> FamilyKind:
        """The family kind: "factual" when retrieval can supply the answer, else "procedural"."""
        ...

    def generate(self, seed: int) -> list[TaskItem]:
        """The family's item pool in an order shuffled deterministically by ``seed``."""
        ...

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild the item with this id (raises ``KeyError`` for an unknown id)."""
        ...


def family_rng(family: str, seed: int) -> random.Random:
    """A random generator that depends only on the family name and the seed."""
    return random.Random(f"{family}:{seed}")


def split_id(item_id: str, family: str, parts: int) -> tuple[list[str], int]:
    """The parameters and phrasing index of ``family/<parts params>/p<k>``; KeyError if not."""
    pieces = item_id.split("/")
    if len(pieces) != parts + 2 or pieces[0] != family or not pieces[-1].startswith("p"):
        raise KeyError(item_id)
    try:
        return pieces[1:-1], int(pieces[-1][1:])
    except ValueError:
        raise KeyError(item_id) from None
