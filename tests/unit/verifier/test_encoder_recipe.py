"""Which encoder layer and pooling an artifact's recorded identity names."""

from __future__ import annotations

import pytest

from sdm_router.verifier.recipe import EncoderRecipe, layer_from_identity


@pytest.mark.parametrize(
    ("identity", "layer"),
    [
        ({"layer": "20"}, 20),
        ({"layer": "final"}, None),
        ({"pooling": "final+mean"}, None),  # recorded before layers were configurable
        (None, None),
    ],
)
def test_the_recorded_layer_is_read_back(
    identity: dict[str, str] | None, layer: int | None
) -> None:
    assert layer_from_identity(identity) == layer


def test_a_malformed_layer_is_an_error() -> None:
    with pytest.raises(ValueError):
        layer_from_identity({"layer": "twenty"})


@pytest.mark.parametrize(
    ("identity", "recipe"),
    [
        ({"layer": "16", "pooling": "last+answer"}, EncoderRecipe(16, "last+answer")),
        ({"layer": "20", "pooling": "final+mean"}, EncoderRecipe(20, "final+mean")),
        ({"layer": "final"}, EncoderRecipe(None, "final+mean")),  # recorded before poolings
        (None, EncoderRecipe()),
    ],
)
def test_the_recorded_recipe_is_read_back(
    identity: dict[str, str] | None, recipe: EncoderRecipe
) -> None:
    assert EncoderRecipe.from_identity(identity) == recipe


def test_an_unknown_pooling_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'max'"):
        EncoderRecipe.from_identity({"layer": "16", "pooling": "max"})
