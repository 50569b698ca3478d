"""CUDA scoring agrees with CPU scoring (skipped without CUDA)."""

import numpy as np
import pytest
import torch

from sdm_router.verifier.sdm import SDMModel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_cuda_scores_match_cpu(tiny_contents) -> None:
    x = np.random.default_rng(3).standard_normal((64, 3)).astype(np.float32)
    cpu = SDMModel(tiny_contents, device="cpu").score(x)
    gpu_model = SDMModel(tiny_contents, device="cuda")
    assert gpu_model.device.startswith("cuda")
    gpu = gpu_model.score(x)
    np.testing.assert_array_equal(gpu.prediction, cpu.prediction)
    np.testing.assert_array_equal(gpu.q, cpu.q)
    np.testing.assert_allclose(gpu.sdm, cpu.sdm, atol=1e-5)
