"""Which encoder layer an artifact's recorded identity names."""

from __future__ import annotations

import pytest

from service.verifier.encoder import layer_from_identity


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
