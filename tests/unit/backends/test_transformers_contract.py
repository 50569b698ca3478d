"""What the decoder and the encoder rely on in transformers: a library change fails here, loudly.

pyproject.toml caps transformers below 4.58 (5.x renamed the cache keyword and changed how hidden
states are recorded). These tests pin the pieces of the 4.57 line that continuous batching's
KV-cache surgery (``backends/local/kv.py``) and the hidden-state encoder use.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import transformers
from packaging.version import Version
from transformers.cache_utils import DynamicCache, DynamicLayer

from sdm_router.backends.local import kv
from tests.support.tiny_llama import tiny_llama

LAYERS, HEADS, KV_HEADS, HIDDEN = 2, 4, 2, 32


@pytest.fixture(scope="module")
def tiny_model() -> Any:
    return tiny_llama(50, hidden_size=HIDDEN, layers=LAYERS, heads=HEADS, kv_heads=KV_HEADS)


def test_the_installed_transformers_is_the_supported_line() -> None:
    version = Version(transformers.__version__)
    assert Version("4.57") <= version < Version("4.58"), (
        f"transformers {version}: the decoder and encoder are written for 4.57; see the cap in "
        "pyproject.toml before moving"
    )


def test_a_prefill_returns_a_dynamic_cache_the_surgery_supports(tiny_model: Any) -> None:
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation of use_cache/logits_to_keep fails here
        output = tiny_model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache = output.past_key_values
    assert isinstance(cache, DynamicCache)
    assert len(cache.layers) == LAYERS
    assert all(type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers)
    first = cache.layers[0]
    assert first.keys is not None and first.values is not None
    assert first.keys.shape == (2, KV_HEADS, 4, HIDDEN // HEADS)
    assert first.values.shape == (2, KV_HEADS, 4, HIDDEN // HEADS)
    assert output.logits.shape[1] == 1  # logits_to_keep is honoured
    assert kv.supports_surgery(cache)  # continuous batching stays on


def test_a_step_takes_the_cache_as_past_key_values_and_rows_can_be_selected(
    tiny_model: Any,
) -> None:
    ids = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")  # 5.x warns that past_key_values is deprecated
        cache = tiny_model(input_ids=ids, use_cache=True).past_key_values
        step = tiny_model(
            input_ids=torch.tensor([[1], [2], [3]]),
            attention_mask=torch.ones((3, 4), dtype=torch.long),
            position_ids=torch.tensor([[3], [3], [3]]),
            past_key_values=cache,
            use_cache=True,
        )
    assert step.past_key_values is cache and cache.layers[0].keys.shape[-2] == 4
    cache.batch_select_indices(torch.tensor([0, 2]))
    assert cache.layers[0].keys.shape[0] == 2


def test_merge_and_trim_keep_what_each_row_computes(tiny_model: Any) -> None:
    """Surgery on real caches: a merged, trimmed batch decodes each row as it decodes alone."""
    with torch.inference_mode():
        alone = tiny_model(input_ids=torch.tensor([[7, 8]]), use_cache=True)
        first = tiny_model(input_ids=torch.tensor([[1, 2, 3, 4]]), use_cache=True).past_key_values
        second = tiny_model(input_ids=torch.tensor([[7, 8]]), use_cache=True).past_key_values
        length = kv.merge(first, second)
        assert length == 4 and first.layers[0].keys.shape[:3] == (2, KV_HEADS, 4)
        mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
        step = tiny_model(
            input_ids=torch.tensor([[5], [9]]), attention_mask=mask,
            position_ids=torch.tensor([[4], [2]]), past_key_values=first, use_cache=True,
        )  # fmt: skip
        solo_cache = alone.past_key_values
        solo = tiny_model(
            input_ids=torch.tensor([[9]]), position_ids=torch.tensor([[2]]),
            past_key_values=solo_cache, use_cache=True,
        )  # fmt: skip
    torch.testing.assert_close(step.logits[1], solo.logits[0], atol=1e-5, rtol=1e-5)
    kv.trim_left(first, 1)
    assert first.layers[0].keys.shape[-2] == 4


def test_hidden_states_are_one_per_layer_plus_the_embeddings(tiny_model: Any) -> None:
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        body = tiny_model.base_model
        assert body is not tiny_model  # the encoder skips the LM head through base_model
        output = body(input_ids=ids, use_cache=False, output_hidden_states=True)
    assert len(output.hidden_states) == LAYERS + 1
    assert output.hidden_states[LAYERS].shape == (1, 3, HIDDEN)
