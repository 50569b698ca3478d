"""Column-space matching: same squared distances; refused for off-subspace supports."""

import numpy as np

from service.verifier.sdm.adaptor import AdaptorWeights
from service.verifier.sdm.subspace import exemplar_subspace


def test_distances_preserved_and_fallback() -> None:
    rng = np.random.default_rng(0)
    weights = AdaptorWeights.initialize(rng, 8, 20, 2)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    support = x @ weights.projection_weight.T + weights.projection_bias
    subspace = exemplar_subspace(weights, support)
    assert subspace is not None and subspace.basis.shape == (20, 8)
    coords = subspace.coordinates(support)
    full = ((support[:, None, :] - support[None, :, :]) ** 2).sum(-1)
    reduced = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(reduced, full, rtol=1e-4, atol=1e-5)
    assert exemplar_subspace(weights, rng.standard_normal((50, 20)).astype(np.float32)) is None
    narrow = AdaptorWeights.initialize(rng, 8, 10, 2)  # M < 1.5 D: not worth it
    assert exemplar_subspace(narrow, np.zeros((3, 10), np.float32)) is None
