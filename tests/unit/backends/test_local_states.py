"""Layer states recorded during batched decoding equal a teacher-forced pass over the same ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from sdm_router.backends.local.decoding import BatchDecoder
from sdm_router.backends.local.rows import RowSpec, RowState
from sdm_router.backends.local.sampling import make_sampler
from sdm_router.backends.local.states import LayerTap, RowRecorder
from sdm_router.backends.local.text import TextTracker
from sdm_router.core.states import CUT_BY_STOP
from tests.support.tiny_llama import tiny_llama
from tests.unit.backends.test_local_decoding import EOS, VOCAB, Owner, decode

LAYERS = frozenset({1, 2, 3})
TOLERANCE = 1e-5  # float32 rounding of batched, padded and cached matmuls; states reach ~3


@pytest.fixture(scope="module")
def tiny_model() -> Any:
    return tiny_llama(VOCAB, layers=3, positions=128)


def recording_row(
    prompt: Sequence[int], max_new: int, stops: tuple[str, ...] = (), owner: Owner | None = None
) -> RowState:
    spec = RowSpec(tuple(prompt), max_new, make_sampler(0.0, 1.0, None), stop=stops)
    tracker = TextTracker(decode, stops)
    return RowState(spec, owner or Owner(), tracker, frozenset({EOS}), str, RowRecorder(LAYERS))


def teacher_forced(model: Any, ids: Sequence[int], layer: int) -> torch.Tensor:
    with torch.inference_mode():
        output = model(input_ids=torch.tensor([list(ids)]), output_hidden_states=True)
    states: torch.Tensor = output.hidden_states[layer][0]
    return states


def assert_close(recorded: Any, expected: torch.Tensor) -> None:
    assert float((torch.from_numpy(recorded) - expected).abs().max()) <= TOLERANCE


def test_recorded_spans_are_the_teacher_forced_states_with_joins_and_cuts(
    tiny_model: Any,
) -> None:
    tap = LayerTap(tiny_model)
    tap.want("test", LAYERS)
    decoder = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0, tap=tap)
    first = recording_row([1, 2, 3], max_new=9)
    late = [recording_row([4, 5, 6, 7, 8, 9, 10, 11], 4), recording_row([12], 1)]
    calls: list[int] = []

    def poll(decoding: int, may_join: bool) -> list[RowState]:
        calls.append(decoding)
        return [late[0]] if len(calls) == 2 else [late[1]] if len(calls) == 4 else []

    decoder.decode([first], poll)
    for row in [first, *late]:
        recorded = row.recorded_states()
        assert recorded is not None and recorded.missing is None
        prompt = list(row.spec.prompt_ids)
        answer = [token for token in row.token_ids if token != EOS]
        assert recorded.token_ids == (*prompt, *answer)
        assert recorded.prompt_length == len(prompt)
        assert set(recorded.layers) == LAYERS
        for layer in LAYERS:
            states = teacher_forced(tiny_model, recorded.token_ids, layer)
            spans = recorded.layers[layer]
            assert_close(spans.prompt.last, states[len(prompt) - 1])
            assert_close(spans.prompt.mean, states[: len(prompt)].mean(dim=0))
            assert spans.answer is not None
            assert_close(spans.answer.last, states[-1])
            assert_close(spans.answer.mean, states[len(prompt) :].mean(dim=0))


def test_recording_changes_no_token_and_finishes_each_row_once(tiny_model: Any) -> None:
    """A row cut by max_tokens stays one more step (its last token fed back for its states),
    yet its tokens, finish reason and the number of finishes are those of plain decoding."""
    prompts = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    plain = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0)
    tap = LayerTap(tiny_model)
    tap.want("test", LAYERS)
    recording = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0, tap=tap)
    owners = [Owner() for _ in prompts]
    rows = [
        recording_row(p, max_new=3 + i, owner=o)
        for i, (p, o) in enumerate(zip(prompts, owners, strict=True))
    ]
    recording.decode(rows)
    reference = [recording_row(p, max_new=3 + i) for i, p in enumerate(prompts)]
    for row in reference:
        row.recorder = None
    plain.decode(reference)
    assert [row.token_ids for row in rows] == [row.token_ids for row in reference]
    assert [row.finish_reason for row in rows] == [row.finish_reason for row in reference]
    assert [owner.finished for owner in owners] == [1, 1, 1]
    assert recording.stats.tokens == plain.stats.tokens
    assert any(row.finish_reason == "length" for row in rows)


def test_a_stop_string_leaves_the_states_missing(tiny_model: Any) -> None:
    tap = LayerTap(tiny_model)
    tap.want("test", LAYERS)
    decoder = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0, tap=tap)
    row = recording_row([1, 2, 3], max_new=6, stops=(">",))  # every token decodes to "<n>"
    decoder.decode([row])
    recorded = row.recorded_states()
    assert row.tracker.stopped
    assert recorded is not None and recorded.missing == CUT_BY_STOP


def test_hooks_record_only_inside_capture_and_go_when_unwanted(tiny_model: Any) -> None:
    modules = [*tiny_model.model.layers, tiny_model.model.norm]
    hooks_before = [len(module._forward_hooks) for module in modules]
    tap = LayerTap(tiny_model)
    assert tap.supported
    tap.want("a", frozenset({2}))
    tap.want("b", frozenset({2, 3}))
    assert tap.layers == {2, 3}
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        tiny_model(input_ids=ids)  # outside capture: nothing kept anywhere
        with tap.capture() as captured:
            tiny_model(input_ids=ids)
    assert set(captured) == {2, 3}
    assert tuple(captured[2].shape) == (1, 3, 32)
    assert_close(captured[3][0, -1].numpy(), teacher_forced(tiny_model, [1, 2, 3], 3)[-1])
    tap.want("b", frozenset())
    assert tap.layers == {2}
    tap.want("a", frozenset())
    assert tap.layers == frozenset()
    assert [len(module._forward_hooks) for module in modules] == hooks_before


@pytest.mark.parametrize("layer", [0, 4])
def test_a_layer_the_model_lacks_is_refused(tiny_model: Any, layer: int) -> None:
    with pytest.raises(ValueError, match=r"the model has layers 1\.\.3"):
        LayerTap(tiny_model).want("test", frozenset({layer}))
