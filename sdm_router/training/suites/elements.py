"""Chemical elements (factual): symbol <-> name and name <-> atomic number."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sdm_router.facts.tables import Element, load_elements
from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id
from sdm_router.training.suites.checking import Checker, NameChecker, SymbolChecker
from sdm_router.training.suites.numeric import NumberChecker

# Question kind -> phrasings. symbol: name -> symbol; name: symbol -> name;
# number: name -> atomic number; by_number: atomic number -> name.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "symbol": (
        "What is the chemical symbol for {name}?",
        "Which chemical symbol does the element {name} have?",
        "What is the symbol of the element {name}?",
        "Write the chemical symbol of {name}.",
        "What symbol represents {name} on the periodic table?",
    ),
    "name": (
        "Which element has the chemical symbol {symbol}?",
        "What element does the chemical symbol {symbol} stand for?",
        "Name the chemical element whose symbol is {symbol}.",
        "Which element is represented by the symbol {symbol}?",
        "On the periodic table, which element is {symbol}?",
    ),
    "number": (
        "What is the atomic number of {name}?",
        "How many protons does an atom of {name} have?",
        "What is the atomic number of the element {name}?",
        "How many protons are in the nucleus of an atom of {name}?",
        "What is the number of {name} on the periodic table?",
    ),
    "by_number": (
        "Which element has atomic number {number}?",
        "What is the chemical element with atomic number {number}?",
        "Name the element whose atoms have {number} protons.",
        "Which chemical element has {number} protons in its nucleus?",
        "On the periodic table, which element is number {number}?",
    ),
}


@dataclass(frozen=True)
class ElementsFamily:
    """Every element in ``elements.csv`` in every question kind and phrasing."""

    name: str = "elements"
    kind: FamilyKind = "factual"

    @cached_property
    def _by_number(self) -> dict[int, Element]:
        return {element.number: element for element in load_elements()}

    @cached_property
    def _all_names(self) -> tuple[str, ...]:
        return tuple(name for e in load_elements() for name in (e.name, *e.aliases))

    @cached_property
    def _all_symbols(self) -> tuple[str, ...]:
        return tuple(element.symbol for element in load_elements())

    def _answer(self, kind: str, element: Element, question: str) -> tuple[str, Checker]:
        if kind == "symbol":
            return element.symbol, SymbolChecker(element.symbol, self._all_symbols)
        if kind == "number":
            return str(element.number), NumberChecker.build(element.number, question)
        accepted = (element.name, *element.aliases)
        return element.name, NameChecker.build(accepted, self._all_names, prompt=question)

    def make_item(self, kind: str, element: Element, phrasing: int) -> TaskItem:
        """The question of ``kind`` about ``element`` in template number ``phrasing``."""
        question = PHRASINGS[kind][phrasing].format(
            name=element.name.lower(), symbol=element.symbol, number=element.number
        )
        answer, checker = self._answer(kind, element, question)
        keys = {
            "symbol": f"chemical symbol of {element.name.lower()}",
            "name": f"element with chemical symbol {element.symbol}",
            "number": f"atomic number of {element.name.lower()}",
            "by_number": f"element with atomic number {element.number}",
        }
        return TaskItem(
            id=f"{self.name}/{kind}/{element.number}/p{phrasing}",
            family=self.name,
            question=question,
            answer=answer,
            aliases=element.aliases if kind in {"name", "by_number"} else (),
            checker=checker,
            retrieval_key=keys[kind],
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """All elements times all question kinds and templates, shuffled by ``seed``."""
        items = [
            self.make_item(kind, element, phrasing)
            for element in self._by_number.values()
            for kind, phrasings in PHRASINGS.items()
            for phrasing in range(len(phrasings))
        ]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``elements/<question kind>/<atomic number>/p<k>``."""
        (kind, number), phrasing = split_id(item_id, self.name, 2)
        if kind not in PHRASINGS or phrasing >= len(PHRASINGS[kind]):
            raise KeyError(item_id)
        try:
            element = self._by_number[int(number)]
        except ValueError:
            raise KeyError(item_id) from None
        return self.make_item(kind, element, phrasing)
