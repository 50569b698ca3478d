"""A tiny hand-built model shared by the artifact and model tests."""

import numpy as np
import pytest

from sdm_router.verifier.sdm.adaptor import AdaptorWeights
from sdm_router.verifier.sdm.calibration import Region
from sdm_router.verifier.sdm.manifest import (
    ModelConfiguration,
    ModelContents,
    Support,
    default_representation,
)


@pytest.fixture
def tiny_contents() -> ModelContents:
    rng = np.random.default_rng(0)
    weights = AdaptorWeights.initialize(rng, 3, 4, 2)
    support = rng.standard_normal((6, 4)).astype(np.float32)
    return ModelContents(
        configuration=ModelConfiguration(2, ("no", "yes"), 3, 4, 8),
        normalization=__import__(
            "sdm_router.verifier.sdm.normalization", fromlist=["Normalization"]
        ).Normalization(0.5, 2.0),
        representation=default_representation({"provider": "test", "fingerprint": "fp-1"}),
        weights=weights,
        support=Support(
            support,
            tuple(f"s{i}" for i in range(6)),
            np.array([0, 1, 0, 1, 0, 1], np.int64),
            np.array([0, 1, 1, 1, 0, 0], np.int64),
        ),
        distance_cdfs=[np.array([0.5, 1.0], np.float32), np.array([0.7], np.float32)],
        q_prime_cdfs=[np.array([0.0, 1.0], np.float32), np.array([2.0], np.float32)],
        regions=[Region(0.9, 1.5, (0.91, 0.95))],
        metadata={"sdmRouter": {"featureComposition": "embedding"}},
    )
