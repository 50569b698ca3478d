"""Calibrating an adaptor against a support set: the last step of training, and all of an update.

Given fixed adaptor weights, a support set (exemplars with labels and predictions) and projected
calibration rows, this matches each calibration exemplar against the support (q, d₀), builds the
per-class distance CDFs, the SDM activation, q′ and the nested high-reliability regions.
``train_model`` calls it once with the support it trained; ``verifier update`` calls it with a
grown support and a grown calibration set, the adaptor unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .activation import rescaled_similarity, sdm_activation
from .adaptor import AdaptorWeights
from .calibration import fit_nested_regions
from .distance import distance_cdfs, distance_quantiles
from .manifest import ModelConfiguration, Support
from .matcher import ExemplarMatcher
from .run_metadata import calibration_rows
from .similarity import SupportLabels

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ProjectedRows:
    """Labelled rows after the adaptor: logits z′ [n, C], exemplars h′ [n, M], labels, ids."""

    logits: F32Array
    exemplars: F32Array
    labels: IntArray
    ids: tuple[str, ...]

    @property
    def predictions(self) -> IntArray:
        """The adaptor's predicted class per row."""
        predictions: IntArray = np.argmax(self.logits, axis=1).astype(np.int64)
        return predictions

    def __add__(self, other: ProjectedRows) -> ProjectedRows:
        return ProjectedRows(
            np.concatenate([self.logits, other.logits]).astype(np.float32),
            np.concatenate([self.exemplars, other.exemplars]).astype(np.float32),
            np.concatenate([self.labels, other.labels]).astype(np.int64),
            self.ids + other.ids,
        )


def calibrate(
    configuration: ModelConfiguration,
    weights: AdaptorWeights,
    support: Support,
    calibration: ProjectedRows,
    device: str,
) -> dict[str, Any]:
    """The ``ModelContents`` fields calibration decides: support, distance and q′ CDFs, regions,
    calibration rows and their exemplars."""
    cfg = configuration
    predictions = calibration.predictions
    # The same matching as scoring a loaded model, so calibration d₀ and later lookups agree.
    matcher = ExemplarMatcher(
        support.vectors, SupportLabels(support.labels, support.predictions), weights, device,
        verify_subspace=False,
    )  # fmt: skip
    matches = matcher.match(calibration.exemplars, predictions, cfg.max_neighbors)
    q = matches.q.astype(np.float32)
    d0 = np.maximum(matches.d0, np.float32(0.0))
    labels = calibration.labels
    cdfs = distance_cdfs(d0, labels, q, cfg.number_of_classes, cfg.ood_limit)
    d = distance_quantiles(d0, cdfs)
    sdm = sdm_activation(calibration.logits, q, d, cfg.q_offset)
    q_prime = rescaled_similarity(q, sdm[np.arange(q.size), predictions], cfg.q_offset)
    regions = fit_nested_regions(
        sdm, q_prime, labels, predictions, cfg.alpha_resolution, cfg.ood_limit
    )
    rows = calibration_rows(
        list(calibration.ids), labels, predictions, sdm, q_prime, matches.q, d0, d,
        calibration.logits,
    )  # fmt: skip
    return {
        "support": support,
        "distance_cdfs": cdfs,
        "q_prime_cdfs": [np.sort(q_prime[labels == c]) for c in range(cfg.number_of_classes)],
        "regions": regions,
        "calibration_rows": rows,
        "calibration_vectors": np.ascontiguousarray(calibration.exemplars, dtype=np.float32),
    }
