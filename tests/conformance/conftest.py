"""Shared fixtures: a small reference-trained model and synthetic data sets.

Data sets exercise OOD rows (q = 0), exact duplicate support rows (ties), identity
exclusion, saturation at a small K, an empty-class CDF and skipped ladder rungs.
"""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

reference = pytest.importorskip("reexpress_sdm")

D, M, K = 16, 24, 48


def clustered(
    rng: np.random.Generator, n: int, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Two classes as 3 tight clusters each, so q has long runs (and some saturate at K)."""
    centers = np.random.default_rng(99).standard_normal((2, 3, D)).astype(np.float32) * 2.0
    labels = rng.integers(0, 2, n)
    cluster = rng.integers(0, 3, n)
    x = centers[labels, cluster] + rng.standard_normal((n, D)).astype(np.float32) * 0.9
    return (x + shift).astype(np.float32), labels.astype(np.int64)


@pytest.fixture(scope="session")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    xt, yt = clustered(rng, 400)
    unique = xt.copy()
    xt[200:210] = xt[190:200]  # exact duplicates in the support: distance ties
    xc, yc = clustered(rng, 400)
    xe, ye = clustered(rng, 300)
    xo, _ = clustered(rng, 40, shift=6.0)
    return {
        "train": (xt, yt),
        "train_unique": (unique, yt),
        "calibration": (xc, yc),
        "eval": (xe, ye),
        "ood": xo,
    }


@pytest.fixture(scope="session")
def reference_model_path(data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reexpress_sdm.torch_backend import TorchTrainer
    from reexpress_sdm.training import TrainingConfig

    (xt, yt), (xc, yc) = data["train"], data["calibration"]
    config = TrainingConfig(
        number_of_classes=2, exemplar_dimension=M, epochs=3, max_neighbors=K, seed=11,
        learning_rate=1e-3, alpha_resolution=0.05,
    )  # fmt: skip
    result = TorchTrainer(config, device="cpu").fit(xt, yt, xc, yc)
    path = tmp_path_factory.mktemp("ref") / "reference.sdmkitmodel"
    reference.write_artifact(path, result.artifact)
    return path


def columns(scores: Any, name: str) -> np.ndarray:
    """One reference SDMScore attribute as an array."""
    return np.asarray([getattr(s, name) for s in scores])
