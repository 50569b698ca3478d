"""A tiny verifier build for unit tests: a deterministic toy encoder and a few epochs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sdm_router.core.verdict import VerificationInput
from sdm_router.training.records import ROWS_FILE, AnswerRecord, write_records
from sdm_router.training.verifier_build import (
    DEFAULT_TRAINING,
    VerifierBuildOptions,
    build_verifier,
)
from sdm_router.verifier.sdm import SDMModel


class ToyEncoder:
    """A deterministic 4-d vector per answer; label 1 answers sit near +1, label 0 near -1."""

    fingerprint = "toy-encoder-v1"
    identity: ClassVar[dict[str, str]] = {"model": "toy"}
    representation: ClassVar[dict[str, str]] = {"provider": "test", "fingerprint": fingerprint}

    def encode(self, items: Sequence[VerificationInput]) -> np.ndarray[Any, Any]:
        rows = []
        for item in items:
            rng = np.random.default_rng(sum(map(ord, item.response)))
            sign = 1.0 if item.response.startswith("right") else -1.0
            rows.append(sign + 0.8 * rng.standard_normal(4))
        return np.asarray(rows, dtype=np.float32)


TINY_TRAINING = replace(
    DEFAULT_TRAINING, exemplar_dimension=8, epochs=2, max_neighbors=64, shuffles=1, device="cpu"
)


def build_tiny(
    tmp_path: Path, records: list[AnswerRecord], **changes: Any
) -> tuple[SDMModel, Path]:
    """A verifier built with ``ToyEncoder`` over ``records`` (tiny training, no shift family,
    ``changes`` to ``VerifierBuildOptions``), and its data folder."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    write_records(data / ROWS_FILE, records)
    options = VerifierBuildOptions(
        data=data, out=tmp_path / "v.sdmkitmodel", training=TINY_TRAINING, holdout_family=None,
        show_progress=False,
    )  # fmt: skip
    encoder: Any = ToyEncoder()
    return build_verifier(replace(options, **changes), encoder), data
