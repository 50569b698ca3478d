"""`SDMModel`: the loaded estimator (adaptor + exact exemplar index + calibration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .activation import rescaled_similarity, sdm_activation
from .adaptor import Adaptor
from .artifact import read_artifact, write_artifact
from .blas import single_threaded_blas
from .calibration import assign_alphas, effective_sample_sizes, lower_alphas
from .distance import distance_quantiles, near_tie_rows
from .errors import DatasetError
from .index import resolve_sdm_device
from .manifest import ModelConfiguration, ModelContents, to_manifest
from .matcher import ExemplarMatcher
from .scores import SDMScores
from .similarity import Matches, SupportLabels

F32Array = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def validate_inputs(values: Any, dimension: int, source: str = "input") -> F32Array:
    """A finite float32 [n, D] matrix, or DatasetError naming the first bad row."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise DatasetError(source, None, f"expected shape [n, {dimension}], got {array.shape}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise DatasetError(source, int(np.argmax(bad)), "contains a NaN or infinite value")
    return np.ascontiguousarray(array)


class SDMModel:
    """A calibrated SDM estimator ready to score; see :meth:`load` and :meth:`score`.

    When the exemplar dimension M exceeds the input dimension D enough, matching first runs on
    the D column-space coordinates and re-ranks by float64 exemplar-space distances only the
    neighbours where float rounding could change q (near-ties at the run break; see
    ``matcher.py``). ``use_subspace``: None chooses automatically, False never screens.
    """

    def __init__(
        self, contents: ModelContents, device: str = "auto", use_subspace: bool | None = None
    ) -> None:
        self.contents = contents
        self._device = resolve_sdm_device(device)
        self._adaptor = Adaptor(contents.weights, contents.normalization, self._device)
        self._support = SupportLabels(contents.support.labels, contents.support.predictions)
        self._matcher = ExemplarMatcher(
            contents.support.vectors, self._support, contents.weights, self._device,
            screen=use_subspace,
        )  # fmt: skip

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        verify_checksums: bool = True,
        use_subspace: bool | None = None,
    ) -> SDMModel:
        """Load a `.sdmkitmodel` package; ArtifactError names the file and the problem."""
        contents = read_artifact(path, verify_checksums=verify_checksums)
        return cls(contents, device=device, use_subspace=use_subspace)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Atomic package write with SHA-256 checksums."""
        return write_artifact(path, self.contents, overwrite=overwrite)

    @property
    def device(self) -> str:
        """Device of the adaptor (``cpu`` or ``cuda:N``)."""
        return self._device

    @property
    def index_device(self) -> str:
        """Device of the exemplar search."""
        return self._matcher.device

    @property
    def uses_subspace(self) -> bool:
        """Whether matching is screened on the D-dimensional column-space coordinates."""
        return self._matcher.screened

    @property
    def artifact_id(self) -> str:
        """The manifest's modelID."""
        return self.contents.model_id

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as written (without checksums)."""
        return to_manifest(self.contents)

    @property
    def configuration(self) -> ModelConfiguration:
        """The artifact configuration block."""
        return self.contents.configuration

    @property
    def embedding_dimension(self) -> int:
        """Input dimension D."""
        return self.contents.configuration.embedding_dimension

    @property
    def number_of_classes(self) -> int:
        """C."""
        return self.contents.configuration.number_of_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in label order."""
        return self.contents.configuration.class_names

    @property
    def representation(self) -> dict[str, str | None]:
        """provider / model / revision / inputTemplate / fingerprint."""
        return dict(self.contents.representation)

    @property
    def support_size(self) -> int:
        """Number of support rows."""
        return self._matcher.count

    def transform(self, values: Any) -> tuple[F32Array, F32Array]:
        """(logits z′, exemplars h′) for raw input rows."""
        return self._adaptor.project(validate_inputs(values, self.embedding_dimension))

    def match(
        self,
        exemplars: F32Array,
        predictions: IntArray,
        exclude: IntArray | None = None,
        display: int = 0,
    ) -> Matches:
        """Exact adaptive-k matching of exemplars against the support."""
        k = self.contents.configuration.max_neighbors
        return self._matcher.match(exemplars, predictions, k, exclude, display)

    def score(
        self,
        values: Any,
        nearest_exemplars: int = 0,
        identity_support_indices: IntArray | None = None,
    ) -> SDMScores:
        """Score raw rows [n, D]; identity exclusion only when indices are passed."""
        with single_threaded_blas():  # one switch per call instead of one per product
            return self._score(values, nearest_exemplars, identity_support_indices)

    def _score(
        self, values: Any, nearest_exemplars: int, identity_support_indices: IntArray | None
    ) -> SDMScores:
        logits, exemplars = self.transform(values)
        predictions = np.argmax(logits, axis=1).astype(np.int64)
        exclude = None
        if identity_support_indices is not None:
            exclude = np.asarray(identity_support_indices, dtype=np.int64).reshape(-1)
            outside = (exclude < 0) | (exclude >= self.support_size)
            if exclude.size != predictions.size or outside.any():
                raise DatasetError(
                    "identity_support_indices", None,
                    "need one support index in [0, support size) per row",
                )  # fmt: skip
        matches = self.match(exemplars, predictions, exclude, nearest_exemplars)
        d0 = np.maximum(matches.d0, np.float32(0.0))
        settled = self._settle_near_ties(values, exemplars, d0, exclude)
        return self._scores(logits, predictions, matches, settled)

    def _settle_near_ties(
        self, values: Any, exemplars: F32Array, d0: F32Array, exclude: IntArray | None
    ) -> tuple[F32Array | F64Array, IntArray]:
        """(d₀ for d, the settled rows): float64 for rows whose float32 d₀ lies within rounding
        of a calibration d₀ (see ``distance.py``), else the float32 d₀ itself."""
        tolerance = self._matcher.rounding_tolerance(exemplars)
        rows = near_tie_rows(d0, self.contents.distance_cdfs, tolerance)
        if rows.size == 0:
            return d0, rows
        raw = validate_inputs(values, self.embedding_dimension)[rows]
        exact = self._matcher.exact_nearest_distances(
            self._adaptor.exemplars_float64(raw), None if exclude is None else exclude[rows]
        )
        settled = d0.astype(np.float64)
        settled[rows] = np.maximum(exact, 0.0)
        return settled, rows

    def _scores(
        self,
        logits: F32Array,
        predictions: IntArray,
        matches: Matches,
        settled: tuple[F32Array | F64Array, IntArray],
    ) -> SDMScores:
        cfg, contents = self.contents.configuration, self.contents
        rows = np.arange(predictions.size)
        q = matches.q.astype(np.float32)
        d0 = np.maximum(matches.d0, np.float32(0.0))
        settled_d0, settled_rows = settled
        d = distance_quantiles(settled_d0, contents.distance_cdfs)
        d_settled = np.zeros(predictions.size, dtype=bool)
        d_settled[settled_rows] = True
        sdm = sdm_activation(logits, q, d, cfg.q_offset)
        q_prime = rescaled_similarity(q, sdm[rows, predictions], cfg.q_offset)
        sizes = effective_sample_sizes(q_prime, contents.q_prime_cdfs)
        centroid = assign_alphas(contents.regions, q_prime, sdm, predictions, cfg.ood_limit)
        lower = lower_alphas(
            contents.regions, logits, q, d, predictions, sizes, cfg.q_offset, cfg.ood_limit
        )
        shown = matches.neighbor_indices
        support = contents.support
        return SDMScores(
            prediction=predictions,
            q=matches.q,
            d0=d0,
            d=d,
            q_prime=q_prime,
            sdm=sdm,
            z_prime=logits,
            centroid_region_alpha=centroid,
            lower_region_alpha=lower.alpha,
            is_ood=np.floor(q_prime) <= cfg.ood_limit,
            effective_sample_sizes=sizes,
            q_prime_lower=lower.q_prime_lower,
            d_lower=lower.d_lower,
            sdm_lower=lower.sdm_lower,
            nearest_support_index=matches.nearest,
            nearest_support_labels=support.labels[shown],
            nearest_support_predictions=support.predictions[shown],
            nearest_squared_distances=matches.neighbor_distances,
            nearest_support_indices=shown,
            support_ids=support.ids,
            d_settled=d_settled,
        )
