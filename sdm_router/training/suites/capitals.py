"""Country capitals (factual): "What is the capital of France?" -> Paris."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sdm_router.facts.tables import Country, load_capitals
from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id
from sdm_router.training.suites.checking import NameChecker

PHRASINGS: tuple[str, ...] = (
    "What is the capital of {country}?",
    "Which city is the capital of {country}?",
    "Name the capital city of {country}.",
    "What city serves as the capital of {country}?",
    "Tell me the capital of {country}.",
    "{title} has which city as its capital?",
)


@dataclass(frozen=True)
class CapitalsFamily:
    """Every country in ``capitals.csv`` in every phrasing."""

    name: str = "capitals"
    kind: FamilyKind = "factual"

    @cached_property
    def _countries(self) -> dict[str, Country]:
        return {country.slug: country for country in load_capitals()}

    @cached_property
    def _all_capitals(self) -> tuple[str, ...]:
        return tuple(
            name for country in load_capitals() for name in (country.capital, *country.aliases)
        )

    def make_item(self, country: Country, phrasing: int) -> TaskItem:
        """The question about ``country`` in template number ``phrasing``."""
        question = PHRASINGS[phrasing].format(country=country.country, title=country.title)
        accepted = (country.capital, *country.aliases)
        return TaskItem(
            id=f"{self.name}/{country.slug}/p{phrasing}",
            family=self.name,
            question=question,
            answer=country.capital,
            aliases=country.aliases,
            checker=NameChecker.build(accepted, self._all_capitals, prompt=question),
            retrieval_key=f"capital of {country.country}",
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """All countries times all templates, shuffled by ``seed``."""
        items = [
            self.make_item(country, phrasing)
            for country in self._countries.values()
            for phrasing in range(len(PHRASINGS))
        ]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``capitals/<country slug>/p<k>``."""
        (key,), phrasing = split_id(item_id, self.name, 1)
        if phrasing >= len(PHRASINGS):
            raise KeyError(item_id)
        return self.make_item(self._countries[key], phrasing)
