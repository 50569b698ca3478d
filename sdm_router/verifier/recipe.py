"""What a verifier artifact records about the encoder it was built with: the layer and the
pooling (torch-free, so the CLI and the config can name them without loading a model)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FINAL_LAYER = "final"
POOLING = "final+mean"  # the end-of-turn marker's state and the mean over the whole turn
ANSWER_POOLING = "last+answer"  # the last answer token's state and the mean over the answer
POOLINGS = (POOLING, ANSWER_POOLING)
# the prompt router's: the last prompt token's state and the mean over the prompt (no answer)
PROMPT_POOLING = "last+prompt"


def layer_from_identity(identity: Mapping[str, Any] | None) -> int | None:
    """The decoder layer an artifact's recorded encoder identity names (None: the final layer)."""
    value = (identity or {}).get("layer", FINAL_LAYER)
    return None if value in (None, FINAL_LAYER) else int(value)


def pooling_from_identity(identity: Mapping[str, Any] | None) -> str:
    """The pooling an artifact's recorded encoder identity names (``final+mean`` if none)."""
    value = str((identity or {}).get("pooling", POOLING))
    if value not in POOLINGS:
        raise ValueError(f"unknown encoder pooling {value!r} (expected one of {POOLINGS})")
    return value


@dataclass(frozen=True, slots=True)
class EncoderRecipe:
    """What an encoder reads: one decoder layer (None: the final hidden state) and a pooling."""

    layer: int | None = None
    pooling: str = POOLING

    @classmethod
    def from_identity(cls, identity: Mapping[str, Any] | None) -> EncoderRecipe:
        """The recipe an artifact's recorded encoder identity names."""
        return cls(layer_from_identity(identity), pooling_from_identity(identity))
