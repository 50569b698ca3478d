"""Countries (factual): the continent a country lies on and the currency it uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from sdm_router.facts.tables import CONTINENTS, CountryFacts, load_country_facts
from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.checking import NameChecker

PHRASINGS: dict[str, tuple[str, ...]] = {
    "continent": (
        "On which continent is {country}?",
        "Which continent is {country} in?",
        "{title} is located on which continent?",
        "Name the continent where {country} lies.",
        "What continent is {country} part of?",
    ),
    "currency": (
        "What is the currency of {country}?",
        "Which currency is used in {country}?",
        "What is the official currency of {country}?",
        "Name the currency of {country}.",
        "What money do people use in {country}?",
    ),
}


def with_plurals(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` and their plurals ("euro" -> "euros", "Swiss franc" -> "Swiss francs")."""
    return tuple(
        dict.fromkeys(
            variant
            for name in names
            for variant in (name, name if name.endswith("s") else name + "s")
        )
    )


@dataclass(frozen=True)
class CountriesFamily:
    """Every country of ``countries.csv`` with a continent or a currency, in every template.

    Currencies: the full name, the bare unit ("dollar" for Canada) and plurals are accepted;
    another country's currency is a competitor, and the longer name wins where one contains
    the other ("US dollar" for Canada is wrong, not a "dollar").
    """

    name: str = "countries"
    kind: FamilyKind = "factual"

    @cached_property
    def _countries(self) -> dict[str, CountryFacts]:
        return {country.slug: country for country in load_country_facts()}

    @cached_property
    def _all_currencies(self) -> tuple[str, ...]:
        return with_plurals(
            name
            for country in load_country_facts()
            if country.currency
            for name in (country.currency, *country.currency_aliases)
        )

    def _fact(self, kind: str, country: CountryFacts) -> tuple[str, tuple[str, ...]]:
        if kind == "continent":
            return country.continent, ()
        return country.currency, country.currency_aliases

    def make_item(self, kind: str, country: CountryFacts, phrasing: int) -> TaskItem:
        """The ``kind`` question about ``country`` in template number ``phrasing``."""
        item_id = f"{self.name}/{kind}/{country.slug}/p{phrasing}"
        answer, aliases = self._fact(kind, country)
        if not answer:
            raise KeyError(item_id)
        question = template(PHRASINGS[kind], phrasing, item_id).format(
            country=country.country, title=country.title
        )
        if kind == "continent":
            checker = NameChecker.build((answer,), CONTINENTS, prompt=question)
        else:
            accepted = with_plurals((answer, *aliases))
            checker = NameChecker.build(accepted, self._all_currencies, prompt=question)
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=answer,
            aliases=aliases,
            checker=checker,
            retrieval_key=f"{kind} of {country.country}",
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """Every (kind, country) the table fills, in every template, shuffled by ``seed``."""
        items = [
            self.make_item(kind, country, phrasing)
            for country in self._countries.values()
            for kind, phrasings in PHRASINGS.items()
            if self._fact(kind, country)[0]
            for phrasing in range(len(phrasings))
        ]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``countries/<continent|currency>/<country slug>/p<k>``."""
        (kind, key), phrasing = split_id(item_id, self.name, 2)
        if kind not in PHRASINGS or key not in self._countries:
            raise KeyError(item_id)
        return self.make_item(kind, self._countries[key], phrasing)
