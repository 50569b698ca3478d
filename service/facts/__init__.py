"""The packaged fact tables (countries and capitals, chemical elements) as typed rows: the
knowledge behind the embedded retrieval corpus and the task suites' checkers."""
