"""Per-row token choice and log-probabilities over a batch of next-token logits.

Log-probabilities are always the log-softmax of the raw logits (temperature 1, no top-p), as the
OpenAI API reports them; temperature and top-p only shape the distribution that is sampled from.
Sampling happens on CPU with one ``torch.Generator`` per row, so a seed reproduces the same
tokens on any device and whatever else shares the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class RowSampler:
    """How one row picks its next token: greedy when ``temperature`` is 0."""

    temperature: float = 0.0
    top_p: float = 1.0
    generator: torch.Generator | None = None

    @property
    def greedy(self) -> bool:
        """Whether the row takes the most likely token."""
        return self.temperature <= 0.0


def make_sampler(temperature: float, top_p: float, seed: int | None) -> RowSampler:
    """A sampler with its own CPU generator, seeded by ``seed`` or from OS entropy."""
    if temperature <= 0.0:
        return RowSampler(0.0, top_p, None)
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return RowSampler(temperature, top_p, generator)


def top_p_probabilities(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Softmax of ``logits / temperature`` restricted to the smallest nucleus of mass ``top_p``.

    ``logits`` is one row (``[vocab]``); the result sums to 1 over the kept tokens.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    # A token stays when the mass of the tokens ranked above it is below top_p (the first always).
    sorted_probs = torch.where(mass_before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum()


def choose_tokens(logits: torch.Tensor, samplers: Sequence[RowSampler]) -> torch.Tensor:
    """The next token of every row of ``logits`` (``[batch, vocab]``) as a CPU ``long`` tensor."""
    if logits.shape[0] != len(samplers):
        raise ValueError(f"{logits.shape[0]} rows of logits for {len(samplers)} samplers")
    tokens = logits.argmax(dim=-1).cpu()
    sampled = [index for index, sampler in enumerate(samplers) if not sampler.greedy]
    if not sampled:
        return tokens
    rows = logits[sampled].float().cpu()
    for row, index in zip(rows, sampled, strict=True):
        sampler = samplers[index]
        probs = top_p_probabilities(row, sampler.temperature, sampler.top_p)
        tokens[index] = torch.multinomial(probs, 1, generator=sampler.generator)[0]
    return tokens


@dataclass(frozen=True, slots=True)
class StepLogprobs:
    """Log-probabilities of one decoding step, on CPU.

    ``chosen[i]`` is the logprob of row ``i``'s token; ``top_ids``/``top_values`` hold the ``k``
    best alternatives per row (``k`` may be 0).
    """

    chosen: list[float]
    top_ids: list[list[int]]
    top_values: list[list[float]]


def step_logprobs(logits: torch.Tensor, tokens: torch.Tensor, top_k: int) -> StepLogprobs:
    """Log-softmax of the raw ``logits`` at ``tokens``, plus the ``top_k`` best per row."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    index = tokens.to(logprobs.device).view(-1, 1)
    chosen = logprobs.gather(-1, index).view(-1).cpu().tolist()
    if top_k <= 0:
        empty: list[list[int]] = [[] for _ in chosen]
        return StepLogprobs(chosen, empty, [[] for _ in chosen])
    values, ids = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
    return StepLogprobs(chosen, ids.cpu().tolist(), values.cpu().tolist())
