"""The packaged fact tables are complete and well-formed."""

from __future__ import annotations

from importlib import resources

from service.facts.tables import DATA_PACKAGE, read_table
from service.facts.text import fold
from service.training.suites import load_capitals, load_elements


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
    for name in ("capitals.csv", "elements.csv", "SOURCES.md"):
        assert data.joinpath(name).is_file(), name
    assert "World Factbook" in data.joinpath("SOURCES.md").read_text(encoding="utf-8")
