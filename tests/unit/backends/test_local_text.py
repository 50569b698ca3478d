"""Incremental detokenization, stop strings and streamed deltas of one row."""

from __future__ import annotations

from collections.abc import Sequence

from sdm_router.backends.local.rows import RowSpec, RowState
from sdm_router.backends.local.sampling import RowSampler
from sdm_router.backends.local.text import TextTracker

# A byte-level vocabulary: token i is VOCAB[i]; "é" is two bytes split over tokens 5 and 6.
VOCAB = [b"Hel", b"lo", b" wor", b"ld", b"!", b"\xc3", b"\xa9", b"\n", b"END", b"<eos>"]
EOS = 9


def decode(ids: Sequence[int]) -> str:
    return b"".join(VOCAB[i] for i in ids if i != EOS).decode("utf-8", errors="replace")


def token_text(token_id: int) -> str:
    return decode([token_id])


class Owner:
    """A RowOwner that records nothing and is never cancelled."""

    def cancelled(self) -> bool:
        return False

    def on_progress(self, row: RowState) -> None:
        pass

    def on_finished(self, row: RowState) -> None:
        pass

    def on_error(self, error: BaseException) -> None:
        raise AssertionError(error)


def make_row(stop: tuple[str, ...] = (), max_new_tokens: int = 50) -> RowState:
    spec = RowSpec((1,), max_new_tokens, RowSampler(), stop, logprobs=True, top_logprobs=1)
    return RowState(spec, Owner(), TextTracker(decode, stop), frozenset({EOS}), token_text)


def feed(row: RowState, ids: Sequence[int]) -> None:
    for token in ids:
        row.accept(token, -0.5, [token], [-0.5])


def test_pieces_concatenate_to_the_text_and_wait_for_whole_characters() -> None:
    tracker = TextTracker(decode)
    pieces = [tracker.push(token) for token in (0, 1, 5, 6, 4)]
    assert pieces == ["Hel", "lo", "", "é", "!"]
    assert tracker.text == "Helloé!"


def test_a_stop_string_across_tokens_is_found_and_cut() -> None:
    tracker = TextTracker(decode, stops=("o wo",))
    for token in (0, 1):
        tracker.push(token)
    assert not tracker.stopped
    tracker.push(2)
    assert tracker.stop_at == 4
    assert tracker.final_text == "Hell"


def test_the_earliest_of_several_stop_strings_wins() -> None:
    tracker = TextTracker(decode, stops=("ld", "lo"))
    for token in (0, 1, 2, 3):
        tracker.push(token)
    assert tracker.final_text == "Hel"


def test_safe_length_holds_back_a_possible_stop_prefix() -> None:
    tracker = TextTracker(decode, stops=("lo!",))
    tracker.push(0)
    assert tracker.safe_length() == 2  # "Hel" could start "lo!" at its "l"
    tracker.push(1)
    assert tracker.safe_length() == 3  # "lo" is held back
    tracker.push(2)
    assert tracker.safe_length() == len("Hello wor")


def test_eos_finishes_with_stop_and_adds_no_text() -> None:
    row = make_row()
    feed(row, [0, 1, EOS])
    assert row.finish_reason == "stop"
    assert row.text == "Hello"
    assert len(row.token_ids) == 3
    assert "".join(lp.token for lp in row.kept_logprobs()) == "Hello"


def test_max_tokens_finishes_with_length() -> None:
    row = make_row(max_new_tokens=2)
    feed(row, [0, 1])
    assert row.finish_reason == "length"
    assert row.text == "Hello"


def test_stop_string_is_removed_and_its_tokens_dropped_from_logprobs() -> None:
    row = make_row(stop=("END",))
    feed(row, [0, 1, 8])
    assert row.finish_reason == "stop"
    assert row.text == "Hello"
    assert [lp.token for lp in row.kept_logprobs()] == ["Hel", "lo"]
    assert row.kept_logprobs()[0].top_logprobs[0].token == "Hel"


def test_streamed_deltas_add_up_to_the_final_answer() -> None:
    row = make_row(stop=("\nEND",))
    texts: list[str] = []
    tokens: list[str] = []
    for token in (0, 1, 5, 6, 7, 2, 7, 8):
        row.accept(token, -0.1, [], [])
        delta = row.take_delta()
        texts.append(delta.text)
        tokens.extend(lp.token for lp in delta.token_logprobs)
        if row.finished:
            break
    assert row.finish_reason == "stop"
    assert "".join(texts) == row.text == "Helloé\n wor"
    assert "".join(tokens) == row.text
    assert "\n" not in texts[4]  # the newline was held back until it proved not to be the stop
