"""``ShadowScorer``: the candidate scores the live batch's features on its own thread; each
live verdict gets the candidate's verdict on the same row; a full backlog skips a batch."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sdm_router.core.verdict import Verdict
from sdm_router.verifier.sdm import SDMModel, SDMScores, TrainingConfig, train_model
from sdm_router.verifier.sdm_verifier import ShadowScorer, to_verdicts


@pytest.fixture(scope="module")
def candidate() -> SDMModel:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1, 1, (200, 5)), rng.normal(-1, 1, (200, 5))]).astype("f4")
    y = np.asarray([1] * 200 + [0] * 200)
    order = rng.permutation(400)
    x, y = x[order], y[order]
    config = TrainingConfig(exemplar_dimension=3, epochs=2, max_neighbors=32, device="cpu")
    return train_model(x[:200], y[:200], x[200:], y[200:], config)


def _live(count: int) -> list[Verdict]:
    return [
        Verdict(1, 0.9, 0.95, 0.95, q=i, d=0.5, q_prime=3.0, is_ood=False) for i in range(count)
    ]


async def test_each_live_verdict_gets_the_candidates_verdict_on_its_row(
    candidate: SDMModel,
) -> None:
    scorer = ShadowScorer(candidate, backlog=4, kept=100)
    features = np.random.default_rng(1).normal(0, 1, (6, 5)).astype("f4")
    live = _live(6)
    scorer.submit(features, live)
    expected = to_verdicts(candidate.score(features), [0] * 6)
    got = [await scorer.verdict_for(verdict) for verdict in live]
    assert got == expected
    assert await scorer.verdict_for(live[0]) is None  # asked once
    unknown = Verdict(0, 0.5, 0.0, 0.0, q=0, d=0.0, q_prime=0.0, is_ood=True)
    assert await scorer.verdict_for(unknown) is None
    scorer.close()


async def test_a_full_backlog_skips_the_batch_and_never_blocks(candidate: SDMModel) -> None:
    scorer = ShadowScorer(candidate, backlog=1, kept=100)
    gate = threading.Event()
    original = candidate.score

    def slow(
        values: Any,
        nearest_exemplars: int = 0,
        identity_support_indices: npt.NDArray[np.int64] | None = None,
    ) -> SDMScores:
        gate.wait(10)
        return original(values, nearest_exemplars, identity_support_indices)

    candidate.score = slow  # type: ignore[method-assign]
    try:
        features = np.zeros((1, 5), "f4")
        first, second = _live(1), _live(1)
        scorer.submit(features, first)
        scorer.submit(features, second)  # the first still waits: skipped, returns at once
        assert scorer.skipped == 1
        assert await scorer.verdict_for(second[0]) is None
        gate.set()
        assert await scorer.verdict_for(first[0]) is not None
    finally:
        del candidate.score
        scorer.close()


def test_the_oldest_results_are_dropped_beyond_kept(candidate: SDMModel) -> None:
    scorer = ShadowScorer(candidate, backlog=8, kept=3)
    live = _live(5)
    scorer.submit(np.zeros((5, 5), "f4"), live)
    assert len(scorer._results) == 3
    scorer.close()
