"""Representation variants: which pooled blocks and which attributes make a verifier input.

A variant is written ``POOLING[,POOLING...]@LAYER[,LAYER...][+lp][+sc]``:

* poolings from ``probe.POOLINGS`` (``enc.final``, ``enc.mean``, ``gen.last``, ``gen.answer``,
  ``gen.turn``), concatenated per layer;
* layers ``1..L-1`` or ``final``, concatenated in the order given;
* ``+lp``: the generator's logprob attributes (``verifier.features.ATTRIBUTE_NAMES``);
* ``+sc``: the self-consistency attributes (``verifier.consistency.CONSISTENCY_NAMES``).

``enc.final,enc.mean@20+lp`` is the shipped verifier's input (the encoder's
``[final ‖ mean]`` of layer 20 and the logprob attributes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sdm_router.training.ablation.probe import POOLINGS, ProbeFeatures, block_key, layer_names
from sdm_router.training.records import AnswerRecord
from sdm_router.verifier.consistency import CONSISTENCY_DIMENSION, consistency_matrix
from sdm_router.verifier.features import ATTRIBUTE_DIMENSION, attribute_matrix
from sdm_router.verifier.recipe import ANSWER_POOLING, FINAL_LAYER, POOLING, EncoderRecipe

F32Array = npt.NDArray[np.float32]

SHIPPED = "enc.final,enc.mean@20+lp"
# One factor at a time from the shipped input: the generator's view with the same pooling,
# answer-only vs whole-turn means, the layer, a few layers concatenated, the attributes.
DEFAULT_VARIANTS: tuple[str, ...] = (
    SHIPPED,
    "enc.final,enc.mean@20",
    "gen.last,gen.turn@20+lp",
    "gen.last,gen.answer@20+lp",
    "gen.answer@20+lp",
    "gen.last@20+lp",
    "gen.last,gen.answer@12+lp",
    "gen.last,gen.answer@16+lp",
    "gen.last,gen.answer@24+lp",
    "gen.last,gen.answer@final+lp",
    "gen.last,gen.answer@16,24+lp",
    "gen.last,gen.answer@12,20,final+lp",
    "gen.last,gen.answer@20",
    "gen.last,gen.answer@20+lp+sc",
)
SAMPLED_PREFIX = "sampled-"
# The probe blocks each ``verifier build --pooling`` encodes.
BUILD_POOLINGS: dict[tuple[str, ...], str] = {
    ("enc.final", "enc.mean"): POOLING,
    ("gen.last", "gen.answer"): ANSWER_POOLING,
}


@dataclass(frozen=True, slots=True)
class Variant:
    """One representation: blocks ``layer × pooling`` (layer-major), then the attributes."""

    poolings: tuple[str, ...]
    layers: tuple[str, ...]
    logprobs: bool = False
    consistency: bool = False

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """Read ``POOLING[,...]@LAYER[,...][+lp][+sc]``; ValueError names what is wrong."""
        head, *flags = spec.strip().split("+")
        unknown = set(flags) - {"lp", "sc"}
        if unknown or "@" not in head or len(set(flags)) != len(flags):
            raise ValueError(f"variant {spec!r}: expected POOLING[,..]@LAYER[,..][+lp][+sc]")
        poolings_text, layers_text = head.split("@", 1)
        poolings = tuple(p.strip() for p in poolings_text.split(","))
        layers = tuple(layer.strip() for layer in layers_text.split(","))
        bad = [p for p in poolings if p not in POOLINGS]
        if bad or len(set(poolings)) != len(poolings):
            raise ValueError(f"variant {spec!r}: poolings must be distinct ones of {POOLINGS}")
        if not all(layers) or len(set(layers)) != len(layers):
            raise ValueError(f"variant {spec!r}: layers must be distinct and non-empty")
        return cls(poolings, layers, "lp" in flags, "sc" in flags)

    @property
    def name(self) -> str:
        """The canonical spec."""
        flags = ("+lp" if self.logprobs else "") + ("+sc" if self.consistency else "")
        return f"{','.join(self.poolings)}@{','.join(self.layers)}{flags}"

    def canonical(self, total_layers: int) -> Variant:
        """The same variant with layer names as the probe writes them (L -> ``final``)."""
        return Variant(
            self.poolings, layer_names(self.layers, total_layers), self.logprobs, self.consistency
        )

    def dimension(self, hidden_size: int) -> int:
        """Length of one input vector."""
        attributes = ATTRIBUTE_DIMENSION * self.logprobs + CONSISTENCY_DIMENSION * self.consistency
        return hidden_size * len(self.layers) * len(self.poolings) + attributes

    def build_recipe(self) -> EncoderRecipe | None:
        """The encoder ``verifier build`` makes of this (canonical) variant, whose inputs always
        carry the logprob attributes; None when the build cannot make it (several layers,
        other poolings, no ``+lp``, ``+sc``)."""
        pooling = BUILD_POOLINGS.get(self.poolings)
        if pooling is None or len(self.layers) != 1 or not self.logprobs or self.consistency:
            return None
        layer = self.layers[0]
        return EncoderRecipe(None if layer == FINAL_LAYER else int(layer), pooling)

    def blocks(self) -> list[str]:
        """The probe blocks it reads, in order."""
        return [block_key(layer, pooling) for layer in self.layers for pooling in self.poolings]


def tier_keys(records: Sequence[AnswerRecord]) -> list[Hashable | None]:
    """Which answers one best-of-n tier gave to one request: the ``sampled-<k>`` rows of one
    item with the same conversation share a key; every other row has None (no siblings)."""
    keys: list[Hashable | None] = []
    for record in records:
        if not record.variant.startswith(SAMPLED_PREFIX):
            keys.append(None)
            continue
        digest = hashlib.sha256()
        for message in record.messages:
            digest.update(f"{message.role}\x00{message.content}\x00".encode())
        keys.append((record.item_id, digest.hexdigest()))
    return keys


def variant_features(
    variant: Variant, probed: ProbeFeatures, records: Sequence[AnswerRecord]
) -> F32Array:
    """``[len(records), dimension]`` inputs of ``variant`` (``probed`` aligned to ``records``)."""
    parts = [probed.block(name) for name in variant.blocks()]
    if variant.logprobs:
        parts.append(attribute_matrix([record.verification_input() for record in records]))
    if variant.consistency:
        responses = [record.response for record in records]
        parts.append(consistency_matrix(responses, tier_keys(records)))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
