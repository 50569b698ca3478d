"""`ExemplarMatcher`: exact matching against a support, screened in the adaptor's column space.

Every exemplar is h′ = W₁x̂ + b₁, so when M is well above D the squared distances can be
computed on D coordinates (``subspace.py``) at D/M of the cost. Those distances differ from the
exemplar-space ones only by float rounding, bounded by the index's rounding tolerance. Rows
where a swap within that bound could change q (a near-tie at the run break) are re-matched in
exemplar space one query at a time, so q equals single-query exemplar-space matching for
every row whatever the batch. Scoring and training share this class.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .adaptor import AdaptorWeights
from .index import FaissExemplarIndex
from .similarity import Matches, SupportLabels, match_support
from .subspace import Subspace, exemplar_subspace

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class ExemplarMatcher:
    """q, d₀ and nearest neighbours of exemplars against one support."""

    def __init__(
        self,
        support: F32Array,
        labels: SupportLabels,
        weights: AdaptorWeights,
        device: str = "cpu",
        screen: bool | None = None,
        verify_subspace: bool = True,
    ) -> None:
        """``screen``: None screens when it pays off, False never. ``verify_subspace`` checks
        that the support really is W₁x̂ + b₁ (skip only for supports built by the adaptor)."""
        self._labels = labels
        self._subspace: Subspace | None = None
        if screen is not False:
            self._subspace = exemplar_subspace(weights, support, verify=verify_subspace)
        self._screen: FaissExemplarIndex | None = None
        if self._subspace is not None:
            self._screen = FaissExemplarIndex(self._subspace.coordinates(support), device)
        # With screening, the exemplar-space index only re-matches near-tie rows: keep it on CPU.
        self._exact = FaissExemplarIndex(support, "cpu" if self._screen else device)

    @property
    def screened(self) -> bool:
        """Whether matching is screened on column-space coordinates."""
        return self._screen is not None

    @property
    def device(self) -> str:
        """Where the (first) search runs."""
        return (self._screen or self._exact).device

    @property
    def count(self) -> int:
        """Number of support rows."""
        return self._exact.count

    def match(
        self,
        exemplars: F32Array,
        predictions: IntArray,
        max_neighbors: int,
        exclude: IntArray | None = None,
        display: int = 0,
        hint: IntArray | None = None,
    ) -> Matches:
        """Exact adaptive-k matching; see the module docstring for screening."""
        if self._subspace is None or self._screen is None:
            return match_support(
                self._exact, exemplars, predictions, self._labels, max_neighbors, exclude,
                display, hint=hint,
            )  # fmt: skip
        coordinates = self._subspace.coordinates(exemplars)
        matches = match_support(
            self._screen, coordinates, predictions, self._labels, max_neighbors, exclude,
            display, hint=hint, tolerance=self._screen.rounding_tolerance(coordinates),
        )  # fmt: skip
        # A lone query's distances do not depend on which other rows share its batch.
        for row in np.flatnonzero(matches.ambiguous):
            rows = np.asarray([row], dtype=np.int64)
            exact = match_support(
                self._exact, exemplars[rows], predictions[rows], self._labels, max_neighbors,
                None if exclude is None else exclude[rows], display,
            )  # fmt: skip
            matches = matches.replaced(rows, exact)
        return matches
