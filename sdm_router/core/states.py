"""Hidden states a generator recorded while it wrote an answer, handed to the verifier with it.

The embedded decoder can record chosen decoder layers during its own pass (the prompt's
prefill, then each generated token fed back). For each layer it keeps the prompt span (its last
token's state and its mean) and the answer span (likewise): the pooled views the verifier's
``last+answer`` encoder and a prompt router read, without a second forward pass. ``missing``
says why the states do not cover the whole answer (the verifier then encodes it itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]

# Why an answer's features came from the encoder instead of the generator's recorded states
# (``sdm_router_verifier_features_total{source="encoded", reason}``); "recorded" when they did.
RECORDED: Final = "recorded"
NOT_RECORDED: Final = "not_recorded"  # the backend records nothing (HTTP upstream, a stream)
CUT_BY_LENGTH: Final = "length"  # max_tokens cut it: its last token was never fed back
CUT_BY_STOP: Final = "stop_string"  # a stop string cut the text inside the generated tokens
OTHER_LAYER: Final = "layer"  # the encoder reads a layer (or pooling) that was not recorded
TOKENS_DIFFER: Final = "tokens_differ"  # re-tokenizing the text gives other ids
TRUNCATED: Final = "truncated"  # the encoder would cut the turn to its max_length
DISABLED: Final = "disabled"  # verifier.recorded_states is false
FEATURE_REASONS: Final = frozenset(
    {
        RECORDED, NOT_RECORDED, CUT_BY_LENGTH, CUT_BY_STOP, OTHER_LAYER, TOKENS_DIFFER,
        TRUNCATED, DISABLED,
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SpanStates:
    """One layer's pooled states over one span: its last token's state and the mean."""

    last: F32Array
    mean: F32Array


@dataclass(frozen=True, slots=True)
class LayerStates:
    """One decoder layer's states over the prompt and the answer (None: an empty answer)."""

    prompt: SpanStates
    answer: SpanStates | None


@dataclass(frozen=True, slots=True)
class RecordedStates:
    """What the generator recorded for one answer. ``token_ids``: the prompt's then the answer's
    ids, as fed (``prompt_length`` of them are the prompt); ``layers``: decoder layer (1-based,
    as ``hidden_states[layer]``) -> its states; ``missing``: None when the states cover the
    answer, else why not (one of :data:`FEATURE_REASONS`)."""

    token_ids: tuple[int, ...]
    prompt_length: int
    layers: Mapping[int, LayerStates]
    missing: str | None = None
