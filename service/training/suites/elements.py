"""Chemical elements (factual): symbol <-> name and name <-> atomic number."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from service.facts.tables import Element, load_elements
from service.training.suites.base import FamilyKind, TaskItem, family_rng, split_id
from service.training.suites.checking import Checker, NameChecker, SymbolChecker
from service.training.suites.numeric import NumberChecker

# Question kind -> phrasings. symbol: name -> symbol; name: symbol -> name;
# number: name -> atomic number; by_number: atomic number -> name.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "symbol": (
        "What is the chemical symbol for {name}?",
        "Which chemical symbol does the element {name} have?",
        "What is the symbol of the element {name}?",
    ),
    "name": (
        "Which element has the chemical symbol {symbol}?",
        "What element does the chemical symbol {symbol} stand for?",
        "Name the chemical element whose symbol is {symbol}.",
    ),
    "number": (
        "What is the atomic number of {name}?",
        "How many protons does an atom of {name} have?",
        "What is the atomic number of the element {name}?",
    ),
    "by_number": (
        "Which element has atomic number {number}?",
        "What is the chemical element with atomic number {number}?",
        "Name the element whose atoms have {number} protons.",
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

    def _answer(self, question: str, element: Element, prompt: str) -> tuple[str, Checker]:
        if question == "symbol":
            return element.symbol, SymbolChecker(element.symbol, self._all_symbols)
        if question == "number":
            return str(element.number), NumberChecker.build(element.number, prompt)
        accepted = (element.name, *element.aliases)
        return element.name, NameChecker.build(accepted, self._all_names, ignore=prompt)

    def make_item(self, question: str, element: Element, phrasing: int) -> TaskItem:
        """The ``question`` kind about ``element`` in phrasing number ``phrasing``."""
        prompt = PHRASINGS[question][phrasing].format(
            name=element.name.lower(), symbol=element.symbol, number=element.number
        )
        answer, checker = self._answer(question, element, prompt)
        keys = {
            "symbol": f"chemical symbol of {element.name.lower()}",
            "name": f"element with chemical symbol {element.symbol}",
            "number": f"atomic number of {element.name.lower()}",
            "by_number": f"element with atomic number {element.number}",
        }
        return TaskItem(
            id=f"{self.name}/{question}/{element.number}/p{phrasing}",
            family=self.name,
            prompt=prompt,
            answer=answer,
            aliases=element.aliases if question in {"name", "by_number"} else (),
            checker=checker,
            retrieval_key=keys[question],
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """All elements times all question kinds and phrasings, shuffled by ``seed``."""
        items = [
            self.make_item(question, element, phrasing)
            for element in self._by_number.values()
            for question, phrasings in PHRASINGS.items()
            for phrasing in range(len(phrasings))
        ]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``elements/<question kind>/<atomic number>/p<k>``."""
        (question, number), phrasing = split_id(item_id, self.name, 2)
        if question not in PHRASINGS or phrasing >= len(PHRASINGS[question]):
            raise KeyError(item_id)
        try:
            element = self._by_number[int(number)]
        except ValueError:
            raise KeyError(item_id) from None
        return self.make_item(question, element, phrasing)
