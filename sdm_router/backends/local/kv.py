"""Surgery on a transformers ``DynamicCache``: drop leading padding, merge two batches.

Only plain full-attention ``DynamicLayer``s are touched (keys/values ``[batch, heads, seq, dim]``);
for any other cache (sliding windows, quantized, static) :func:`supports_surgery` is false and the
decoder runs without joining rows mid-batch. ``DynamicLayer`` is imported at module load: a
transformers release without it fails loudly here instead of quietly turning continuous
batching off (tests/unit/backends/test_transformers_contract.py pins what this relies on).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


def supports_surgery(cache: Any) -> bool:
    """Whether ``cache`` is a DynamicCache made only of full-attention DynamicLayers."""
    layers = getattr(cache, "layers", None)
    return (
        isinstance(layers, list)
        and bool(layers)
        and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)
    )


def _left_pad(states: torch.Tensor, columns: int) -> torch.Tensor:
    return torch.nn.functional.pad(states, (0, 0, columns, 0)) if columns > 0 else states


def trim_left(cache: Any, columns: int) -> None:
    """Drop the first ``columns`` sequence positions (padding no row attends to)."""
    if columns <= 0:
        return
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, columns:]
        layer.values = layer.values[:, :, columns:]


def merge(into: Any, other: Any) -> int:
    """Append ``other``'s rows to ``into``, left-padding the shorter; returns the new length.

    The caller pads the attention masks the same way (zeros on the left).
    """
    length_into = int(into.layers[0].keys.shape[-2])
    length_other = int(other.layers[0].keys.shape[-2])
    length = max(length_into, length_other)
    pad_into, pad_other = length - length_into, length - length_other
    for mine, theirs in zip(into.layers, other.layers, strict=True):
        mine.keys = torch.cat([_left_pad(mine.keys, pad_into), _left_pad(theirs.keys, pad_other)])
        mine.values = torch.cat(
            [_left_pad(mine.values, pad_into), _left_pad(theirs.values, pad_other)]
        )
    return length
