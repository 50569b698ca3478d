"""A real, tiny Llama (random weights) for tests of the decoder, the encoder and the caches."""

from __future__ import annotations

from typing import Any

import torch


def tiny_llama(
    vocab_size: int,
    *,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    positions: int = 64,
    seed: int = 0,
) -> Any:
    """A ``LlamaForCausalLM`` in eval mode, its weights drawn from ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
    )
    return LlamaForCausalLM(config).eval()
