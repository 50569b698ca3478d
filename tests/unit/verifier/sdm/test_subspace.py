"""Column-space screening: same distances, near-ties flagged, same q as exemplar space."""

from dataclasses import replace

import numpy as np

from service.verifier.sdm import SDMModel
from service.verifier.sdm.adaptor import AdaptorWeights
from service.verifier.sdm.index import FaissExemplarIndex
from service.verifier.sdm.manifest import Support
from service.verifier.sdm.similarity import SupportLabels, match_support
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


def _line_support() -> tuple[FaissExemplarIndex, SupportLabels]:
    """Support on a line at distances 1, 2, 3, 4, 5 from the origin query; row 2 is bad."""
    support = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]], np.float32) ** 0.5
    labels = SupportLabels(np.zeros(5, np.int64), np.array([0, 0, 1, 0, 0], np.int64))
    return FaissExemplarIndex(support), labels


def test_near_tie_at_the_run_break_is_flagged() -> None:
    index, labels = _line_support()
    query, predictions = np.zeros((1, 1), np.float32), np.zeros(1, np.int64)
    clear = match_support(
        index, query, predictions, labels, 5, tolerance=np.array([0.5], np.float32)
    )
    assert clear.q[0] == 2 and not clear.ambiguous[0]  # squared gaps to the bad row are 1.0
    tied = match_support(
        index, query, predictions, labels, 5, tolerance=np.array([1.01], np.float32)
    )
    assert tied.q[0] == 2 and tied.ambiguous[0]
    exact = match_support(index, query, predictions, labels, 5)
    assert exact.q[0] == 2 and not exact.ambiguous.any()  # no tolerance: never ambiguous


def test_saturated_run_is_ambiguous_only_when_a_bad_row_can_reach_k() -> None:
    index, labels = _line_support()
    query, predictions = np.zeros((1, 1), np.float32), np.zeros(1, np.int64)
    tolerance = np.array([1.01], np.float32)
    at_k = match_support(index, query, predictions, labels, 2, tolerance=tolerance)
    assert at_k.q[0] == 2 and at_k.ambiguous[0]  # bad row 3.0 is 1.0 beyond the K-th (2.0)
    far = match_support(index, query, predictions, labels, 1, tolerance=tolerance)
    assert far.q[0] == 1 and not far.ambiguous[0]  # 3.0 is 2.0 beyond the K-th (1.0)


def test_screened_scores_equal_exemplar_space_single_queries(tiny_contents) -> None:
    rng = np.random.default_rng(3)
    weights = AdaptorWeights.initialize(rng, 6, 24, 2)
    inputs = rng.standard_normal((400, 6)).astype(np.float32)
    configuration = replace(
        tiny_contents.configuration, embedding_dimension=6, exemplar_dimension=24, max_neighbors=64
    )
    plain = SDMModel(
        replace(tiny_contents, configuration=configuration, weights=weights),
        device="cpu", use_subspace=False,
    )  # fmt: skip
    logits, exemplars = plain.transform(inputs)
    predictions = np.argmax(logits, axis=1)
    labels = np.where(rng.random(400) < 0.8, predictions, 1 - predictions)
    contents = replace(
        tiny_contents,
        configuration=configuration,
        weights=weights,
        support=Support(exemplars, tuple(f"s{i}" for i in range(400)), labels, predictions),
    )
    screened = SDMModel(contents, device="cpu")
    exact = SDMModel(contents, device="cpu", use_subspace=False)
    assert screened.uses_subspace and not exact.uses_subspace
    queries = rng.standard_normal((300, 6)).astype(np.float32)
    batch = screened.score(queries)
    alone = [exact.score(queries[i : i + 1]).q[0] for i in range(300)]
    np.testing.assert_array_equal(batch.q, alone)
    np.testing.assert_allclose(batch.d0, exact.score(queries).d0, rtol=1e-4, atol=1e-5)
