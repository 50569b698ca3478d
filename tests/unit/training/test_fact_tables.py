"""The packaged fact tables are complete and well-formed."""

from __future__ import annotations

from importlib import resources

from sdm_router.facts.tables import CONTINENTS, DATA_PACKAGE, read_table
from sdm_router.facts.text import fold
from sdm_router.training.suites import load_capitals, load_country_facts, load_elements


def test_all_118_elements_numbered_1_to_118_once() -> None:
    elements = load_elements()
    assert [element.number for element in elements] == list(range(1, 119))


def test_element_symbols_and_names_are_unique_and_well_formed() -> None:
    elements = load_elements()
    symbols = [element.symbol for element in elements]
    names = [fold(element.name) for element in elements]
    assert len(set(symbols)) == 118
    assert len(set(names)) == 118
    for element in elements:
        assert element.symbol[0].isupper() and element.symbol[1:] == element.symbol[1:].lower()
        assert 1 <= len(element.symbol) <= 2, element
        assert element.name.isalpha(), element


def test_well_known_elements() -> None:
    by_number = {element.number: element for element in load_elements()}
    assert (by_number[1].symbol, by_number[1].name) == ("H", "Hydrogen")
    assert (by_number[26].symbol, by_number[26].name) == ("Fe", "Iron")
    assert (by_number[79].symbol, by_number[79].name) == ("Au", "Gold")
    assert (by_number[118].symbol, by_number[118].name) == ("Og", "Oganesson")
    assert "Aluminum" in by_number[13].aliases


def test_capitals_cover_the_sovereign_states() -> None:
    countries = load_capitals()
    names = [fold(country.country) for country in countries]
    assert len(countries) >= 190
    assert len(set(names)) == len(names)


def test_no_empty_fields_and_aliases_differ_from_the_capital() -> None:
    for row in read_table("capitals.csv"):
        assert row["country"] and row["capital"], row
    for row in read_table("elements.csv"):
        assert row["number"] and row["symbol"] and row["name"], row
    for country in load_capitals():
        assert all(alias for alias in country.aliases), country
        assert fold(country.capital) not in {fold(alias) for alias in country.aliases}, country


def test_capitals_with_several_seats_list_the_others_as_aliases() -> None:
    by_country = {country.country: country for country in load_capitals()}
    assert by_country["Bolivia"].capital == "Sucre"
    assert "La Paz" in by_country["Bolivia"].aliases
    assert by_country["France"].capital == "Paris"
    assert by_country["Japan"].capital == "Tokyo"
    assert by_country["the Netherlands"].title == "The Netherlands"


def test_tables_and_sources_ship_as_package_data() -> None:
    data = resources.files(DATA_PACKAGE)
    for name in ("capitals.csv", "elements.csv", "countries.csv", "SOURCES.md"):
        assert data.joinpath(name).is_file(), name
    sources = data.joinpath("SOURCES.md").read_text(encoding="utf-8")
    assert "World Factbook" in sources and "countries.csv" in sources


def test_country_facts_are_unique_and_spelled_as_in_capitals() -> None:
    facts = load_country_facts()
    names = [fold(country.country) for country in facts]
    assert len(names) == len(set(names)) >= 90
    capitals = {country.country for country in load_capitals()}
    for country in facts:
        assert country.country in capitals, country  # one spelling of every country
        assert country.continent or country.currency, country
        assert not country.continent or country.continent in CONTINENTS, country
        if not country.currency:
            assert not country.currency_aliases, country
        folded = [fold(alias) for alias in country.currency_aliases]
        assert fold(country.currency) not in folded and len(folded) == len(set(folded)), country


def test_well_known_country_facts() -> None:
    by_country = {country.country: country for country in load_country_facts()}
    assert (by_country["Japan"].continent, by_country["Japan"].currency) == ("Asia", "Japanese yen")
    assert by_country["France"].currency == "euro"
    assert by_country["the United Kingdom"].currency == "pound sterling"
    assert "dollar" in by_country["Canada"].currency_aliases
    assert by_country["Peru"].continent == "South America"
    assert by_country["Kenya"].continent == "Africa"
    assert by_country["New Zealand"].continent == "Oceania"
    # a country on two continents, or a currency in transition, leaves the field empty
    assert "Russia" not in by_country and "Turkey" not in by_country and "Egypt" not in by_country
    assert by_country["Australia"].continent == ""
    assert by_country["Brazil"].currency == ""
    euro = {c.country for c in by_country.values() if c.currency == "euro"}
    assert euro >= {"Germany", "Italy", "Spain", "the Netherlands"}
    assert not euro & {"the United Kingdom", "Switzerland", "Sweden", "Denmark", "Poland"}
