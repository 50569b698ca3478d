"""Per-row sampling and log-probabilities on tiny logits."""

from __future__ import annotations

import math

import pytest
import torch

from sdm_router.backends.local.sampling import (
    choose_tokens,
    make_sampler,
    step_logprobs,
    top_p_probabilities,
)


def test_top_p_one_is_plain_softmax_at_temperature() -> None:
    logits = torch.tensor([1.0, 2.0, 3.0])
    probs = top_p_probabilities(logits, temperature=2.0, top_p=1.0)
    assert torch.allclose(probs, torch.softmax(logits / 2.0, dim=-1))


def test_top_p_keeps_the_smallest_nucleus_and_renormalizes() -> None:
    probs_in = torch.tensor([0.5, 0.3, 0.15, 0.05])
    probs = top_p_probabilities(probs_in.log(), temperature=1.0, top_p=0.7)
    # 0.5 alone is below 0.7, so 0.3 joins; the mass before 0.15 is 0.8 >= 0.7, so it goes.
    assert torch.allclose(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]))


def test_tiny_top_p_keeps_only_the_best_token() -> None:
    probs = top_p_probabilities(torch.tensor([0.1, 3.0, 0.2]), temperature=1.0, top_p=1e-6)
    assert probs.tolist() == [0.0, 1.0, 0.0]


def test_greedy_rows_take_the_argmax() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [9.0, 0.0, 1.0]])
    tokens = choose_tokens(logits, [make_sampler(0.0, 1.0, None)] * 2)
    assert tokens.tolist() == [1, 0]
    assert make_sampler(0.0, 1.0, 7).generator is None


def test_seeded_sampling_is_reproducible_per_row_whatever_shares_the_batch() -> None:
    logits = torch.zeros((1, 1000))
    alone = [int(choose_tokens(logits, [make_sampler(1.0, 1.0, 42)])[0]) for _ in range(3)]
    batched = choose_tokens(
        torch.zeros((3, 1000)),
        [make_sampler(0.0, 1.0, None), make_sampler(1.0, 1.0, 42), make_sampler(1.0, 1.0, 7)],
    )
    assert len(set(alone)) == 1
    assert int(batched[1]) == alone[0]
    assert int(batched[0]) == 0  # greedy over ties takes the first index


def test_one_generator_draws_a_sequence_not_a_constant() -> None:
    sampler = make_sampler(1.0, 1.0, 3)
    logits = torch.zeros((1, 1000))
    draws = {int(choose_tokens(logits, [sampler])[0]) for _ in range(5)}
    assert len(draws) > 1


def test_sampling_with_tiny_top_p_is_greedy() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    for seed in range(5):
        assert int(choose_tokens(logits, [make_sampler(1.5, 1e-6, seed)])[0]) == 1


def test_choose_tokens_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="samplers"):
        choose_tokens(torch.zeros((2, 3)), [make_sampler(0.0, 1.0, None)])


def test_step_logprobs_are_the_raw_log_softmax_with_sorted_alternatives() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    scored = step_logprobs(logits, torch.tensor([0, 2]), top_k=2)
    expected = torch.log_softmax(logits, dim=-1)
    assert scored.chosen[0] == pytest.approx(float(expected[0, 0]))
    assert scored.chosen[1] == pytest.approx(-math.log(4))
    assert scored.top_ids[0] == [2, 1]
    assert scored.top_values[0] == pytest.approx(expected[0, [2, 1]].tolist())
    assert all(value <= 0.0 for value in scored.chosen)


def test_step_logprobs_without_alternatives() -> None:
    scored = step_logprobs(torch.zeros((2, 5)), torch.tensor([1, 1]), top_k=0)
    assert scored.top_ids == [[], []]
    assert scored.top_values == [[], []]
