"""The batched decoding loop on a tiny random Llama: padding, KV cache, dropped rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from sdm_router.backends.local.decoding import BatchDecoder, left_pad
from sdm_router.backends.local.rows import RowSpec, RowState
from sdm_router.backends.local.sampling import make_sampler
from sdm_router.backends.local.text import TextTracker
from tests.support.tiny_llama import tiny_llama

VOCAB = 64
EOS = 63


@pytest.fixture(scope="module")
def tiny_model() -> Any:
    return tiny_llama(VOCAB, positions=128)


def decode(ids: Sequence[int]) -> str:
    return "".join(f"<{i}>" for i in ids)


class Owner:
    """Records progress; cancels itself after ``cancel_after`` tokens when set."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.cancel_after = cancel_after
        self.steps = 0
        self.finished = 0

    def cancelled(self) -> bool:
        return self.cancel_after is not None and self.steps >= self.cancel_after

    def on_progress(self, row: RowState) -> None:
        self.steps += 1

    def on_finished(self, row: RowState) -> None:
        self.finished += 1

    def on_error(self, error: BaseException) -> None:
        raise AssertionError(error)


def make_row(prompt: Sequence[int], max_new: int = 8, owner: Owner | None = None) -> RowState:
    spec = RowSpec(tuple(prompt), max_new, make_sampler(0.0, 1.0, None), top_logprobs=2)
    return RowState(spec, owner or Owner(), TextTracker(decode), frozenset({EOS}), str)


def test_left_pad_counts_positions_over_real_tokens() -> None:
    ids, mask, positions = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_batched_greedy_equals_each_row_alone(tiny_model: Any) -> None:
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11, 12]]
    decoder = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0)
    alone = []
    for prompt in prompts:
        row = make_row(prompt)
        decoder.decode([row])
        alone.append(row.token_ids)
    rows = [make_row(prompt) for prompt in prompts]
    decoder.decode(rows)
    assert [row.token_ids for row in rows] == alone
    for row in rows:
        assert row.finish_reason in ("stop", "length")
        assert all(lp.logprob <= 0.0 for lp in row.logprobs)
        assert all(len(lp.top_logprobs) == 2 for lp in row.logprobs)


def test_greedy_matches_transformers_generate(tiny_model: Any) -> None:
    prompt = [3, 1, 4, 1, 5]
    row = make_row(prompt, max_new=6)
    BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0).decode([row])
    reference = tiny_model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
        max_new_tokens=6,
        do_sample=False,
        eos_token_id=EOS,
        pad_token_id=0,
    )[0, len(prompt) :].tolist()
    assert row.token_ids == reference[: len(row.token_ids)]


def test_a_cancelled_row_leaves_the_batch_and_the_others_continue(tiny_model: Any) -> None:
    quitter = Owner(cancel_after=2)
    rows = [make_row([1, 2, 3], max_new=8, owner=quitter), make_row([4, 5], max_new=8)]
    alone = make_row([4, 5], max_new=8)
    decoder = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0)
    decoder.decode([alone])
    decoder.decode(rows)
    assert len(rows[0].token_ids) == 2
    assert rows[0].finish_reason is None
    assert rows[1].token_ids == alone.token_ids


def test_rows_cancelled_before_the_prefill_are_skipped(tiny_model: Any) -> None:
    row = make_row([1, 2], owner=Owner(cancel_after=0))
    BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0).decode([row])
    assert row.token_ids == []


def test_rows_queued_meanwhile_join_the_running_batch(tiny_model: Any) -> None:
    decoder = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11], [12]]
    alone = []
    for prompt in prompts:
        row = make_row(prompt, max_new=10)
        decoder.decode([row])
        alone.append(row.token_ids)
    first = make_row(prompts[0], max_new=10)
    late = [make_row(prompts[1], max_new=10), make_row(prompts[2], max_new=10)]
    calls: list[int] = []

    def poll(decoding: int, may_join: bool) -> list[RowState]:
        assert may_join  # a DynamicCache of full-attention layers supports merging
        calls.append(decoding)
        # The longer prompt joins after 2 steps, the single-token one after 4.
        if len(calls) == 2:
            return [late[0]]
        if len(calls) == 4:
            return [late[1]]
        return []

    before = decoder.stats.joined_rows
    decoder.decode([first], poll)
    assert decoder.stats.joined_rows - before == 2
    assert [first.token_ids, late[0].token_ids, late[1].token_ids] == alone
    assert calls[:4] == [1, 1, 2, 2]


def test_a_joiner_cancelled_while_queued_is_skipped(tiny_model: Any) -> None:
    decoder = BatchDecoder(tiny_model, torch.device("cpu"), pad_id=0)
    first = make_row([1, 2], max_new=4)
    gone = make_row([3, 4], owner=Owner(cancel_after=0))
    decoder.decode([first], lambda decoding, may_join: [gone] if decoding and may_join else [])
    assert gone.token_ids == []
    assert first.finished


def test_cache_merge_left_pads_the_shorter_batch(tiny_model: Any) -> None:
    from sdm_router.backends.local import kv

    with torch.inference_mode():
        short = tiny_model(input_ids=torch.tensor([[1, 2]]), use_cache=True).past_key_values
        long = tiny_model(input_ids=torch.tensor([[3, 4, 5, 6]]), use_cache=True).past_key_values
    assert kv.supports_surgery(short)
    original = short.layers[0].keys.clone()
    assert kv.merge(short, long) == 4
    keys = short.layers[0].keys
    assert keys.shape[0] == 2 and keys.shape[-2] == 4
    assert torch.equal(keys[0, :, 2:], original[0])
    assert torch.count_nonzero(keys[0, :, :2]) == 0
    kv.trim_left(short, 1)
    assert short.layers[1].values.shape[-2] == 3
