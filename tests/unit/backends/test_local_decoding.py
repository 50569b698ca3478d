"""The batched decoding loop on a tiny random Llama: padding, KV cache, dropped rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from service.backends.local.decoding import BatchDecoder, left_pad
from service.backends.local.rows import RowSpec, RowState
from service.backends.local.sampling import make_sampler
from service.backends.local.text import TextTracker

VOCAB = 64
EOS = 63


@pytest.fixture(scope="module")
def tiny_model() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


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
