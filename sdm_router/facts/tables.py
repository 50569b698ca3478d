"""The fact tables in ``sdm_router/facts/data`` as typed rows (read with importlib.resources)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

from sdm_router.facts.text import slug

DATA_PACKAGE = "sdm_router.facts.data"
CAPITALS_FILE = "capitals.csv"
ELEMENTS_FILE = "elements.csv"
COUNTRIES_FILE = "countries.csv"
CONTINENTS: tuple[str, ...] = (
    "Africa",
    "Antarctica",
    "Asia",
    "Europe",
    "North America",
    "Oceania",
    "South America",
)


def country_slug(name: str) -> str:
    """The id fragment of a country name ("the Netherlands" -> "netherlands")."""
    return slug(name[4:] if name.startswith("the ") else name)


class _NamedCountry:
    """The id fragment and sentence-start name of a row's ``country``."""

    __slots__ = ()
    country: str

    @property
    def slug(self) -> str:
        """The id fragment of the country ("the Netherlands" -> "netherlands")."""
        return country_slug(self.country)

    @property
    def title(self) -> str:
        """The country name for the start of a sentence ("The Netherlands")."""
        return self.country[:1].upper() + self.country[1:]


@dataclass(frozen=True, slots=True)
class Country(_NamedCountry):
    """A sovereign state and its capital; ``aliases`` are other accepted capitals/spellings."""

    country: str
    capital: str
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Element:
    """A chemical element; ``aliases`` are other accepted spellings of the name."""

    number: int
    symbol: str
    name: str
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CountryFacts(_NamedCountry):
    """A country's continent and currency; either is "" where the table leaves it out (a
    country on two continents, a currency in transition). ``currency_aliases`` are other
    accepted names of the currency (the bare unit, plurals, older names)."""

    country: str
    continent: str
    currency: str
    currency_aliases: tuple[str, ...]


def read_table(filename: str) -> list[dict[str, str]]:
    """The rows of a CSV file in the data package, whitespace-stripped."""
    text = resources.files(DATA_PACKAGE).joinpath(filename).read_text(encoding="utf-8")
    return [
        {key: (value or "").strip() for key, value in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


def _aliases(field: str) -> tuple[str, ...]:
    return tuple(alias.strip() for alias in field.split("|") if alias.strip())


@cache
def load_capitals() -> tuple[Country, ...]:
    """Every country with its capital, in file order."""
    return tuple(
        Country(row["country"], row["capital"], _aliases(row["aliases"]))
        for row in read_table(CAPITALS_FILE)
    )


@cache
def load_elements() -> tuple[Element, ...]:
    """All 118 elements, in file order (by atomic number)."""
    return tuple(
        Element(int(row["number"]), row["symbol"], row["name"], _aliases(row["aliases"]))
        for row in read_table(ELEMENTS_FILE)
    )


@cache
def load_country_facts() -> tuple[CountryFacts, ...]:
    """Countries with their continent and currency, in file order."""
    return tuple(
        CountryFacts(
            row["country"], row["continent"], row["currency"], _aliases(row["currency_aliases"])
        )
        for row in read_table(COUNTRIES_FILE)
    )
