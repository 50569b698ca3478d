"""Dense per-group matching gives what the adaptive top-k search gives."""

import numpy as np
import pytest

from sdm_router.verifier.sdm.adaptor import AdaptorWeights
from sdm_router.verifier.sdm.dense import CHUNK, GroupedSupport, dense_match
from sdm_router.verifier.sdm.index import FaissExemplarIndex
from sdm_router.verifier.sdm.matcher import ExemplarMatcher
from sdm_router.verifier.sdm.similarity import SupportLabels, match_support


def _clustered(rng: np.random.Generator, n: int, dimension: int = 5, with_clusters=False):
    centers = rng.standard_normal((4, dimension)).astype(np.float32) * 4.0
    cluster = rng.integers(0, 4, n)
    points = (centers[cluster] + rng.standard_normal((n, dimension))).astype(np.float32)
    return (points, cluster) if with_clusters else points


def _random_case(rng: np.random.Generator, support_rows: int, query_rows: int):
    """Clustered support with random labels and predictions, and clustered queries."""
    support = _clustered(rng, support_rows)
    labels = SupportLabels(rng.integers(0, 2, support_rows), rng.integers(0, 2, support_rows))
    queries = _clustered(rng, query_rows)
    return support, labels, queries, rng.integers(0, 2, query_rows)


def _both(support, labels, queries, predictions, k, exclude=None, display=0, tolerance=None):
    index = FaissExemplarIndex(support)
    if tolerance is None:
        tolerance = index.rounding_tolerance(queries)
    adaptive = match_support(
        index, queries, predictions, labels, k, exclude, display, tolerance=tolerance
    )
    grouped = GroupedSupport(index.stored_vectors, labels, classes=2)
    dense, ties = dense_match(
        grouped, index.center(queries), predictions, k, tolerance, exclude, display
    )
    # Every ambiguous row comes with its window: at least the break and a good row near it.
    assert sorted(tie.row for tie in ties) == list(np.flatnonzero(dense.ambiguous))
    assert all(tie.candidates.size >= 2 for tie in ties)
    assert all(tie.counted == dense.q[tie.row] for tie in ties)
    return adaptive, dense


@pytest.mark.parametrize("k", [3, 40, 5000])
def test_dense_equals_adaptive_with_identity_exclusion_and_display(k: int) -> None:
    rng = np.random.default_rng(1)
    support, cluster = _clustered(rng, 600, with_clusters=True)
    support[300:320] = support[280:300]  # exact duplicates: distance ties
    cluster[300:320] = cluster[280:300]
    # Labels follow the clusters, 5% of rows mispredicted: long runs, some past a small K.
    truth = (cluster % 2).astype(np.int64)
    predicted = np.where(rng.random(600) < 0.05, 1 - truth, truth)
    labels = SupportLabels(truth, predicted)
    predictions = predicted.copy()
    adaptive, dense = _both(
        support, labels, support, predictions, k, exclude=np.arange(600), display=4
    )
    np.testing.assert_array_equal(dense.ambiguous, adaptive.ambiguous)
    clear = ~dense.ambiguous  # ambiguous rows get their q from the float64 re-ranking
    assert clear.sum() > 500
    np.testing.assert_array_equal(dense.q[clear], adaptive.q[clear])
    np.testing.assert_array_equal(dense.nearest, adaptive.nearest)
    bound = FaissExemplarIndex(support).rounding_tolerance(support)
    assert (np.abs(dense.d0 - adaptive.d0) <= bound).all()  # two float32 computations
    np.testing.assert_array_equal(dense.neighbor_indices, adaptive.neighbor_indices)
    assert (dense.nearest != np.arange(600)).all()  # the identity is never a neighbour
    # K counts the identity as the reference does: at most min(K, N) - 1 after excluding it.
    assert dense.q.max() == min(k, 600) - 1 or k == 5000  # some rows saturate at a small K
    assert np.median(dense.q) > 0


def test_near_ties_are_flagged_like_the_adaptive_search() -> None:
    rng = np.random.default_rng(2)
    support, labels, queries, predictions = _random_case(rng, 400, 200)
    # A tolerance this wide makes many rows ambiguous: both paths must flag the same rows.
    tolerance = np.full(200, 0.5, np.float32)
    adaptive, dense = _both(support, labels, queries, predictions, 30, tolerance=tolerance)
    assert 10 <= adaptive.ambiguous.sum() < 200
    np.testing.assert_array_equal(dense.ambiguous, adaptive.ambiguous)
    clear = ~dense.ambiguous
    np.testing.assert_array_equal(dense.q[clear], adaptive.q[clear])


def test_a_class_without_good_rows_and_a_support_without_bad_rows() -> None:
    rng = np.random.default_rng(3)
    support = _clustered(rng, 50)
    queries = _clustered(rng, 10)
    all_good_for_zero = SupportLabels(np.zeros(50, np.int64), np.zeros(50, np.int64))
    mixed = np.array([0] * 5 + [1] * 5)
    adaptive, dense = _both(support, all_good_for_zero, queries, mixed, 20)
    np.testing.assert_array_equal(dense.q, [20] * 5 + [0] * 5)
    np.testing.assert_array_equal(dense.q, adaptive.q)
    assert not dense.ambiguous.any()
    # Identity excluded and no bad row at all: the run is the whole rest of the support.
    adaptive, dense = _both(
        support, all_good_for_zero, support, np.zeros(50, np.int64), 100, exclude=np.arange(50)
    )
    np.testing.assert_array_equal(dense.q, np.full(50, 49))
    np.testing.assert_array_equal(dense.q, adaptive.q)
    assert not dense.ambiguous.any()


def test_chunked_groups_with_duplicates_across_chunks_and_groups() -> None:
    # Groups span many chunks and end mid-chunk (padding); duplicated rows sit in different
    # chunks and groups, so the nearest row ties across them and resolves to the lowest index.
    rng = np.random.default_rng(4)
    support, cluster = _clustered(rng, 1500, dimension=3, with_clusters=True)
    support[1400:1450] = support[10:60]
    truth = (cluster % 2).astype(np.int64)
    predicted = np.where(rng.random(1500) < 0.02, 1 - truth, truth)
    predicted[1400:1450] = 1 - predicted[10:60]  # the duplicates land in other groups
    labels = SupportLabels(truth, predicted)
    queries = np.concatenate([support[10:60], support[100:400] + np.float32(0.01)])
    predictions = np.concatenate([rng.integers(0, 2, 50), predicted[100:400]])
    adaptive, dense = _both(support, labels, queries, predictions, 2048, display=3)
    clear = ~dense.ambiguous
    np.testing.assert_array_equal(dense.q[clear], adaptive.q[clear])
    np.testing.assert_array_equal(dense.nearest, adaptive.nearest)
    np.testing.assert_array_equal(dense.nearest[:50], np.arange(10, 60))
    np.testing.assert_array_equal(dense.neighbor_indices, adaptive.neighbor_indices)
    assert dense.q.max() > CHUNK  # long runs read several chunks of their group


def test_nearest_can_be_skipped() -> None:
    rng = np.random.default_rng(5)
    support, labels, queries, predictions = _random_case(rng, 200, 80)
    index = FaissExemplarIndex(support)
    grouped = GroupedSupport(index.stored_vectors, labels, classes=2)
    tolerance = index.rounding_tolerance(queries)
    full, _ = dense_match(grouped, index.center(queries), predictions, 50, tolerance)
    bare, _ = dense_match(
        grouped, index.center(queries), predictions, 50, tolerance, locate_nearest=False
    )
    np.testing.assert_array_equal(bare.q, full.q)
    np.testing.assert_array_equal(bare.d0, full.d0)
    assert (bare.nearest == -1).all() and (full.nearest >= 0).all()
    empty, ties = dense_match(grouped, queries[:0], predictions[:0], 50, tolerance[:0])
    assert empty.q.shape == (0,) and ties == []


def test_small_batches_give_the_same_results_as_one_large_batch() -> None:
    rng = np.random.default_rng(6)
    support, labels, queries, predictions = _random_case(rng, 700, 40)
    _, batched = _both(support, labels, queries, predictions, 100, display=2)
    for start in range(0, 40, 3):  # tiles of 1-3 rows
        rows = slice(start, start + 3)
        _, alone = _both(support, labels, queries[rows], predictions[rows], 100, display=2)
        clear = ~alone.ambiguous
        np.testing.assert_array_equal(alone.q[clear], batched.q[rows][clear])
        np.testing.assert_array_equal(alone.nearest, batched.nearest[rows])
        np.testing.assert_array_equal(alone.neighbor_indices, batched.neighbor_indices[rows])


def test_matcher_single_rows_and_pairs_agree_with_identity_exclusion() -> None:
    """One row takes the adaptive search, two rows the dense path: the same q and nearest."""
    rng = np.random.default_rng(9)
    weights = AdaptorWeights.initialize(rng, 5, 12, 2)
    x, cluster = _clustered(rng, 400, with_clusters=True)
    x[200:220] = x[180:200]  # exact duplicates
    cluster[200:220] = cluster[180:200]
    truth = (cluster % 2).astype(np.int64)
    predicted = np.where(rng.random(400) < 0.05, 1 - truth, truth)
    support = (x @ weights.projection_weight.T + weights.projection_bias).astype(np.float32)
    matcher = ExemplarMatcher(support, SupportLabels(truth, predicted), weights)
    assert matcher.screened
    rows = np.r_[0:400:9, 180:220:3]
    rows = rows[: rows.size // 2 * 2]
    single = [matcher.match(support[[i]], predicted[[i]], 60, exclude=np.array([i])) for i in rows]
    pairs = [
        matcher.match(support[pair], predicted[pair], 60, exclude=pair)
        for pair in rows.reshape(-1, 2)
    ]
    q_single = np.concatenate([m.q for m in single])
    assert q_single.max() > 10 and (q_single == 0).any()  # long runs and immediate breaks
    np.testing.assert_array_equal(np.concatenate([m.q for m in pairs]), q_single)
    nearest = np.concatenate([m.nearest for m in single])
    np.testing.assert_array_equal(np.concatenate([m.nearest for m in pairs]), nearest)
    duplicated = (rows >= 180) & (rows < 220)
    np.testing.assert_array_equal(
        nearest[duplicated], np.where(rows < 200, rows + 20, rows - 20)[duplicated]
    )
    # d₀ within the rounding bound of the norm expansion (1e-5 of the squared norms involved).
    spread = float(np.max(np.sum((support - support[0]) ** 2, axis=1)))
    np.testing.assert_allclose(
        np.concatenate([m.d0 for m in pairs]),
        np.concatenate([m.d0 for m in single]),
        rtol=0,
        atol=2e-5 * spread,
    )
