"""Formatting retrieved passages into a context block placed before the question."""

from __future__ import annotations

from collections.abc import Sequence

from sdm_router.retrieval.base import Passage

DEFAULT_CONTEXT_HEADER = "Use these facts if they help:"


def format_context(passages: Sequence[Passage], header: str = DEFAULT_CONTEXT_HEADER) -> str:
    """``header`` then one "- text" line per passage; "" when there are no passages.

    The result is what ``GenerationRequest.with_context`` puts before the user's question.
    """
    lines = [f"- {' '.join(passage.text.split())}" for passage in passages if passage.text.strip()]
    if not lines:
        return ""
    return "\n".join([header, *lines])
