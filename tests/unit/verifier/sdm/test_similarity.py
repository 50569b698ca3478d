"""Neighbour order, identity exclusion, adaptive-k widening and saturation at K."""

import numpy as np

from sdm_router.verifier.sdm.index import SMALL_BATCH_MAX_QUERIES, FaissExemplarIndex
from sdm_router.verifier.sdm.similarity import SupportLabels, match_support


def _brute_force(queries, support, good_support, predictions, support_predictions, k, exclude):
    q_values, nearest = [], []
    for row, query in enumerate(queries):
        distances = ((support - query) ** 2).sum(axis=1)
        order = [int(i) for i in np.lexsort((np.arange(len(support)), distances))]
        if exclude is not None:
            order.remove(int(exclude[row]))
        order = order[: min(k, len(support)) - (exclude is not None)]
        run = 0
        for i in order:
            if not (good_support[i] and support_predictions[i] == predictions[row]):
                break
            run += 1
        q_values.append(run)
        nearest.append(order[0])
    return np.array(q_values), np.array(nearest)


def test_stable_ties_and_identity_exclusion() -> None:
    support = np.array([[1, 0], [0, 0], [0, 0], [2, 0], [0, 0]], np.float32)
    index = FaissExemplarIndex(support)
    _, indices = index.search(support[2:3], 5)
    np.testing.assert_array_equal(indices[0], [1, 2, 4, 0, 3])
    labels = SupportLabels(np.array([0, 0, 0, 1, 0]), np.array([0, 0, 0, 1, 0]))
    matches = match_support(
        index, support[2:3], np.array([0]), labels, 5, exclude=np.array([2]), display=3
    )
    np.testing.assert_array_equal(matches.neighbor_indices[0], [1, 4, 0])
    assert matches.q[0] == 3  # 1, 4, 0 good; 3 predicts class 1
    assert matches.d0[0] == 0.0


def test_adaptive_widening_equals_full_search_on_tied_grid() -> None:
    rng = np.random.default_rng(0)
    support = rng.integers(0, 3, (300, 3)).astype(np.float32)  # many exact ties
    labels = rng.integers(0, 2, 300)
    support_predictions = np.where(rng.random(300) < 0.97, labels, 1 - labels)
    support_predictions[:150] = 0
    labels[:150] = 0
    predictions = rng.integers(0, 2, 300)
    index = FaissExemplarIndex(support)
    facts = SupportLabels(labels.astype(np.int64), support_predictions.astype(np.int64))
    for k_max in (64, 300, 1000):
        for exclude in (None, np.arange(300)):
            matches = match_support(index, support, predictions, facts, k_max, exclude, initial_k=2)
            q, nearest = _brute_force(
                support, support, facts.correct, predictions, support_predictions, k_max, exclude
            )
            np.testing.assert_array_equal(matches.q, q)
            np.testing.assert_array_equal(matches.nearest, nearest)
            hint = rng.integers(0, 400, 300)  # a first-k hint never changes the result
            hinted = match_support(index, support, predictions, facts, k_max, exclude, hint=hint)
            np.testing.assert_array_equal(hinted.q, q)
            np.testing.assert_array_equal(hinted.nearest, nearest)
            # Small batches select from distance rows computed once, widening from k = 2.
            for start in range(0, 60, SMALL_BATCH_MAX_QUERIES):
                rows = np.arange(start, start + SMALL_BATCH_MAX_QUERIES)
                small = match_support(
                    index, support[rows], predictions[rows], facts, k_max,
                    None if exclude is None else exclude[rows], initial_k=2,
                )  # fmt: skip
                np.testing.assert_array_equal(small.q, q[rows])
                np.testing.assert_array_equal(small.nearest, nearest[rows])


def test_saturation_at_k_and_support_size() -> None:
    support = np.arange(20, dtype=np.float32).reshape(10, 2)
    facts = SupportLabels(np.zeros(10, np.int64), np.zeros(10, np.int64))
    index = FaissExemplarIndex(support)
    queries = support[:1]
    assert match_support(index, queries, np.array([0]), facts, 4).q[0] == 4
    assert match_support(index, queries, np.array([0]), facts, 50).q[0] == 10
    excluded = match_support(index, queries, np.array([0]), facts, 50, exclude=np.array([0]))
    assert excluded.q[0] == 9
    assert match_support(index, queries, np.array([1]), facts, 50).q[0] == 0
