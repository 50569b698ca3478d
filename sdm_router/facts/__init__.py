"""The packaged fact tables (countries and capitals, chemical elements, countries' continents
and currencies) as typed rows: the knowledge behind the embedded retrieval corpus and the task
suites' checkers."""
