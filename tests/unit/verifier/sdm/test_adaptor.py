"""The adaptor's CPU paths (numpy for small batches, torch from TORCH_MIN_ROWS) and BLAS threads."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

from sdm_router.verifier.sdm.adaptor import Adaptor, AdaptorWeights
from sdm_router.verifier.sdm.blas import TORCH_MIN_ROWS, single_threaded_blas
from sdm_router.verifier.sdm.normalization import Normalization


def test_large_cpu_batches_agree_with_single_rows_and_float64() -> None:
    rng = np.random.default_rng(3)
    weights = AdaptorWeights.initialize(rng, 24, 60, 3)
    adaptor = Adaptor(weights, Normalization(0.25, 1.5), "cpu")
    rows = TORCH_MIN_ROWS * 4 + 7  # torch path, several forward chunks and a partial one
    raw = rng.standard_normal((rows, 24)).astype(np.float32)
    logits, exemplars = adaptor.project(raw)
    assert logits.shape == (rows, 3) and exemplars.shape == (rows, 60)
    assert logits.dtype == np.float32 and exemplars.flags.c_contiguous
    singles = [adaptor.project(raw[i : i + 1]) for i in (0, 100, rows - 1)]
    for (single_logits, single_exemplars), i in zip(singles, (0, 100, rows - 1), strict=True):
        np.testing.assert_allclose(single_exemplars[0], exemplars[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(single_logits[0], logits[i], rtol=1e-5, atol=1e-6)
    normalized = (raw.astype(np.float64) - 0.25) / 1.5
    truth = normalized @ weights.projection_weight.T.astype(np.float64) + weights.projection_bias
    np.testing.assert_allclose(exemplars, truth, rtol=1e-5, atol=1e-5)
    truth_logits = truth @ weights.classifier_weight.T.astype(np.float64) + weights.classifier_bias
    np.testing.assert_allclose(logits, truth_logits, rtol=1e-5, atol=1e-5)


def _numpy_blas_threads() -> list[int]:
    return [
        info["num_threads"]
        for info in threadpool_info()
        if info["user_api"] == "blas" and "numpy" in info["filepath"]
    ]


def test_single_threaded_blas_restores_the_thread_count() -> None:
    from threadpoolctl import threadpool_limits

    if not _numpy_blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library shipped with numpy")
    with threadpool_limits(limits=2, user_api="blas"):
        assert _numpy_blas_threads() == [2]
        with single_threaded_blas():
            assert _numpy_blas_threads() == [1]
        assert _numpy_blas_threads() == [2]


def test_overlapping_threads_keep_one_thread_until_the_last_leaves() -> None:
    from threadpoolctl import threadpool_limits

    if not _numpy_blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library shipped with numpy")
    second_inside, first_left = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def second() -> None:
        with single_threaded_blas():
            second_inside.set()
            first_left.wait(5)
            seen.append(_numpy_blas_threads())

    with threadpool_limits(limits=2, user_api="blas"):
        worker = threading.Thread(target=second)
        with single_threaded_blas():
            worker.start()
            assert second_inside.wait(5)
        first_left.set()  # the first scorer has left while the second is still inside
        worker.join(5)
        assert seen == [[1]]
        # The last one out (the worker) restores the count; OpenBLAS 0.3.31 ignores a raise
        # asked from a thread other than the main one, so that part is not asserted here.
