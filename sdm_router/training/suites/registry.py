"""The suite registry: task families by name and suites (ordered sets of families)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

from sdm_router.training.suites.arithmetic import ArithmeticFamily
from sdm_router.training.suites.base import (
    FamilyKind,
    TaskFamily,
    TaskItem,
    draw_style,
    split_style,
)
from sdm_router.training.suites.capitals import CapitalsFamily
from sdm_router.training.suites.countries import CountriesFamily
from sdm_router.training.suites.dates import DatesFamily
from sdm_router.training.suites.elements import ElementsFamily
from sdm_router.training.suites.letter_count import LetterCountFamily
from sdm_router.training.suites.letters import LettersFamily
from sdm_router.training.suites.number_words import NumberWordsFamily
from sdm_router.training.suites.ordering import OrderingFamily
from sdm_router.training.suites.reversal import ReversalFamily
from sdm_router.training.suites.units import UnitsFamily
from sdm_router.training.suites.weekdays import WeekdaysFamily

_FACTORIES: dict[str, Callable[[], TaskFamily]] = {
    "arithmetic": ArithmeticFamily,
    "capitals": CapitalsFamily,
    "countries": CountriesFamily,
    "dates": DatesFamily,
    "elements": ElementsFamily,
    "letter_count": LetterCountFamily,
    "letters": LettersFamily,
    "number_words": NumberWordsFamily,
    "ordering": OrderingFamily,
    "reversal": ReversalFamily,
    "units": UnitsFamily,
    "weekdays": WeekdaysFamily,
}
# The families ``verifier build`` holds out of training by default, as the shift test: one
# procedural, one factual; their kinds of question and checker never appear in the support.
DEFAULT_HOLDOUT: tuple[str, ...] = ("weekdays", "countries")
# Suites made of several families; every family name is also a suite of one family.
COMPOSITE_SUITES: tuple[str, ...] = ("default", "factual", "procedural")


@cache
def get_family(name: str) -> TaskFamily:
    """The task family called ``name`` (``KeyError`` naming the known ones otherwise)."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(_FACTORIES)}") from None


def list_families() -> tuple[str, ...]:
    """Every family name, in registry order."""
    return tuple(_FACTORIES)


def families_of_kind(kind: FamilyKind) -> tuple[str, ...]:
    """The names of the "factual" (retrieval helps) or "procedural" families."""
    return tuple(name for name in _FACTORIES if get_family(name).kind == kind)


def list_suites() -> tuple[str, ...]:
    """Every suite name: the composite suites, then one suite per family."""
    return (*COMPOSITE_SUITES, *_FACTORIES)


@dataclass(frozen=True, slots=True)
class Suite:
    """An ordered set of task families that generates a deterministic mix of items."""

    name: str
    families: tuple[TaskFamily, ...]

    @property
    def family_names(self) -> tuple[str, ...]:
        """The names of the suite's families."""
        return tuple(family.name for family in self.families)

    def generate(
        self,
        seed: int = 0,
        limit: int | None = None,
        limit_per_family: int | None = None,
        styled: bool = False,
    ) -> list[TaskItem]:
        """Items of all families interleaved round-robin, so any ``limit`` stays balanced.

        ``styled``: each item gets the prompt style ``draw_style(id, seed)`` (answer format,
        system prompt, earlier turn), as ``data build`` asks; else every item is the bare
        question. The same ``seed`` and caps give the same items in the same order.
        """
        pools = [family.generate(seed)[:limit_per_family] for family in self.families]
        if styled:
            pools = [
                [item.with_style(draw_style(item.id, seed)) for item in pool] for pool in pools
            ]
        mixed = [
            pool[index]
            for index in range(max((len(pool) for pool in pools), default=0))
            for pool in pools
            if index < len(pool)
        ]
        return mixed[:limit]

    def without(self, *names: str) -> Suite:
        """This suite minus the named families (e.g. one held out for a shift test)."""
        for name in names:
            get_family(name)  # an unknown name is a typo, not a no-op
        kept = tuple(family for family in self.families if family.name not in names)
        return Suite(f"{self.name}-without-{'-'.join(names)}", kept)


def _suite_family_names(name: str) -> tuple[str, ...]:
    if name == "default":
        return list_families()
    if name in {"factual", "procedural"}:
        return families_of_kind("factual" if name == "factual" else "procedural")
    if name in _FACTORIES:
        return (name,)
    raise KeyError(f"unknown suite {name!r}; known: {', '.join(list_suites())}")


def get_suite(name: str, exclude: Iterable[str] = ()) -> Suite:
    """The suite called ``name`` (see ``list_suites``), minus the families in ``exclude``."""
    suite = Suite(name, tuple(get_family(family) for family in _suite_family_names(name)))
    excluded = tuple(exclude)
    return suite.without(*excluded) if excluded else suite


def get_item(item_id: str) -> TaskItem:
    """Rebuild any item, in its prompt style, from its id, e.g. to re-check a stored response."""
    base_id, style = split_style(item_id)
    return get_family(item_id.split("/", 1)[0]).item_from_id(base_id).with_style(style)
