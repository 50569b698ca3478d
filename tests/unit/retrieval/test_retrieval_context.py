"""The context block placed before the question."""

from __future__ import annotations

from sdm_router.retrieval.base import Passage
from sdm_router.retrieval.context import DEFAULT_CONTEXT_HEADER, format_context


def test_formats_one_line_per_passage_under_the_header() -> None:
    passages = [
        Passage("capitals/france", "The capital of France is Paris.", 0.9),
        Passage("elements/26", "The element with atomic number 26\n is Iron.", 0.8),
    ]
    assert format_context(passages) == (
        f"{DEFAULT_CONTEXT_HEADER}\n"
        "- The capital of France is Paris.\n"
        "- The element with atomic number 26 is Iron."
    )


def test_no_passages_give_no_context() -> None:
    assert format_context([]) == ""
    assert format_context([Passage("x", "   ", 0.5)]) == ""


def test_custom_header() -> None:
    assert format_context([Passage("a", "A.", 1.0)], header="Facts:") == "Facts:\n- A."
