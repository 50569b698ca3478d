"""Column-space screening: same distances, near-ties flagged, same q as exemplar space."""

from dataclasses import replace

import numpy as np

from sdm_router.verifier.sdm import SDMModel
from sdm_router.verifier.sdm.adaptor import AdaptorWeights
from sdm_router.verifier.sdm.index import FaissExemplarIndex
from sdm_router.verifier.sdm.manifest import Support
from sdm_router.verifier.sdm.similarity import SupportLabels, match_support
from sdm_router.verifier.sdm.subspace import exemplar_subspace, orthonormal_basis


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


def _true_q(exemplars, support, good_for_class, predictions, k):
    """q from float64 distances ordered by (distance, index): the ground truth."""
    result = []
    for exemplar, prediction in zip(exemplars.astype(np.float64), predictions, strict=True):
        distances = ((support.astype(np.float64) - exemplar) ** 2).sum(axis=1)
        order = np.lexsort((np.arange(len(support)), distances))[:k]
        good = good_for_class[prediction][order]
        result.append(int(np.argmin(good)) if not good.all() else len(order))
    return np.asarray(result)


def test_screened_q_equals_float64_truth_on_near_duplicate_support(tiny_contents) -> None:
    rng = np.random.default_rng(3)
    weights = AdaptorWeights.initialize(rng, 6, 24, 2)
    configuration = replace(
        tiny_contents.configuration, embedding_dimension=6, exemplar_dimension=24, max_neighbors=64
    )
    plain = SDMModel(
        replace(tiny_contents, configuration=configuration, weights=weights),
        device="cpu", use_subspace=False,
    )  # fmt: skip
    # Pairs of support rows ~1e-4 apart, one good and one bad: near-ties at many run breaks.
    base = rng.standard_normal((200, 6)).astype(np.float32)
    inputs = np.concatenate([base, base + 1e-4 * rng.standard_normal((200, 6)).astype(np.float32)])
    logits, exemplars = plain.transform(inputs)
    predictions = np.argmax(logits, axis=1)
    labels = predictions.copy()
    labels[200:] = 1 - predictions[200:]
    contents = replace(
        tiny_contents,
        configuration=configuration,
        weights=weights,
        support=Support(exemplars, tuple(f"s{i}" for i in range(400)), labels, predictions),
    )
    screened = SDMModel(contents, device="cpu")
    assert screened.uses_subspace
    queries = base[:150] + 0.05 * rng.standard_normal((150, 6)).astype(np.float32)
    query_logits, query_exemplars = screened.transform(queries)
    query_predictions = np.argmax(query_logits, axis=1)
    screen, subspace = screened._matcher._screen, screened._matcher._subspace
    assert screen is not None and subspace is not None
    screened_only = match_support(
        screen,  # the raw screen, to show near-ties do occur here
        subspace.coordinates(query_exemplars),
        query_predictions, screened._support, 64,
        tolerance=screen.rounding_tolerance(subspace.coordinates(query_exemplars)),
    )  # fmt: skip
    assert screened_only.ambiguous.sum() >= 5
    good_for_class = [(labels == predictions) & (predictions == c) for c in (0, 1)]
    truth = _true_q(query_exemplars, exemplars, good_for_class, query_predictions, 64)
    np.testing.assert_array_equal(screened.score(queries).q, truth)
    unscreened = SDMModel(contents, device="cpu", use_subspace=False)  # dense, exemplar space
    np.testing.assert_array_equal(unscreened.score(queries).q, truth)
    alone = [screened.score(queries[i : i + 1]).q[0] for i in range(0, 150, 7)]
    np.testing.assert_array_equal(alone, truth[::7])


def test_orthonormal_basis_spans_the_columns_and_falls_back_when_ill_conditioned() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((60, 12))
    basis = orthonormal_basis(matrix)
    np.testing.assert_allclose(basis.T @ basis, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(basis @ (basis.T @ matrix), matrix, atol=1e-12)
    # Nearly dependent columns: the Gram matrix loses orthonormality, Householder QR answers.
    matrix[:, 0] = matrix[:, 1] * (1 + 1e-9) + 1e-12
    basis = orthonormal_basis(matrix)
    np.testing.assert_allclose(basis.T @ basis, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(basis @ (basis.T @ matrix), matrix, atol=1e-9)
