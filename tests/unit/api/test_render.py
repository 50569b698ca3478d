"""Response rendering helpers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.api.completion_render import completion_logprobs
from service.core.generation import TokenLogprob, TopLogprob
from service.pipeline.serving import text_pieces


@given(st.text())
def test_stream_pieces_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(text_pieces(text)) == text


def test_completion_logprobs_offsets() -> None:
    tokens = (
        TokenLogprob("Hel", -0.1, (TopLogprob("Hel", -0.1), TopLogprob("He", -2.0))),
        TokenLogprob("lo", -0.2),
    )
    rendered = completion_logprobs(tokens, 1)
    assert rendered is not None
    assert rendered.text_offset == [0, 3]
    assert rendered.top_logprobs == [{"Hel": -0.1}, {}]
