"""`ExemplarMatcher`: exact matching against a support, screened in the adaptor's column space.

Every exemplar is h′ = W₁x̂ + b₁, so when M is well above D the squared distances can be
computed on D coordinates (``subspace.py``) at D/M of the cost. Those distances differ from the
exemplar-space ones only by float rounding, bounded by the index's rounding tolerance. For
rows where a swap within that bound could change q (a near-tie at the run break), the
neighbours within the tolerance of the break are re-ranked by float64 exemplar-space distances
(windows from the dense path or :func:`near_tie_windows`, all ordered in one pass), so q never
depends on rounding or on which rows share the batch.
Unscreened matching uses the same tolerance and re-ranking (any two float32 computations of a
distance differ by rounding). CPU batches from two rows take the dense path (``dense.py``: one
matrix product per row and per-group reductions instead of widening top-k searches); single
rows and GPU indexes the adaptive top-k search. Scoring and training share this class.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from .adaptor import AdaptorWeights
from .dense import GroupedSupport, NearTie, dense_match
from .index import FaissExemplarIndex
from .similarity import Matches, SupportLabels, match_support
from .subspace import Subspace, exemplar_subspace

F32Array = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# CPU batches from this many rows take the dense path (faster); one row keeps the adaptive search.
DENSE_MIN_ROWS = 2


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
        dense: bool = True,
    ) -> None:
        """``screen``: None screens when it pays off, False never. ``verify_subspace`` checks
        that the support really is W₁x̂ + b₁ (skip only for supports built by the adaptor).
        ``dense``: CPU batches from ``DENSE_MIN_ROWS`` rows use per-group reductions."""
        self._labels = labels
        self._subspace: Subspace | None = None
        if screen is not False:
            self._subspace = exemplar_subspace(weights, support, verify=verify_subspace)
        self._screen: FaissExemplarIndex | None = None
        # The support itself as queries (training's self-match) reuses its coordinates.
        self._source, self._source_coordinates = support, support
        if self._subspace is not None:
            self._source_coordinates = self._subspace.coordinates(support)
            self._screen = FaissExemplarIndex(self._source_coordinates, device)
        # Exemplar-space vectors: an index without screening, float64 near-tie re-ranking with it.
        self._support = np.ascontiguousarray(support, dtype=np.float32)
        self._exact: FaissExemplarIndex | None = None
        if self._screen is None:
            self._exact = FaissExemplarIndex(self._support, device)
        self._grouped: GroupedSupport | None = None
        searched = self._screen or self._exact
        assert searched is not None
        if dense and searched.device == "cpu":
            classes = weights.shape[2]
            self._grouped = GroupedSupport(searched.stored_vectors, labels, classes)

    @property
    def screened(self) -> bool:
        """Whether matching is screened on column-space coordinates."""
        return self._screen is not None

    @property
    def device(self) -> str:
        """Where the (first) search runs."""
        index = self._screen or self._exact
        return index.device if index is not None else "cpu"

    @property
    def count(self) -> int:
        """Number of support rows."""
        return int(self._support.shape[0])

    def rounding_tolerance(self, exemplars: F32Array) -> F32Array:
        """Per row, a bound on how far float rounding can move its squared distances."""
        index = self._screen or self._exact
        assert index is not None
        if self._subspace is None:
            return index.rounding_tolerance(exemplars)
        return index.rounding_tolerance(self._subspace.coordinates(exemplars))

    def exact_nearest_distances(
        self, exemplars: F64Array, exclude: IntArray | None = None
    ) -> F64Array:
        """Float64 squared distance from each (float64) exemplar to its nearest support row,
        skipping ``exclude[i]`` for row i; one full pass over the support per row."""
        support = self._support.astype(np.float64)
        result = np.empty(exemplars.shape[0], dtype=np.float64)
        for i, exemplar in enumerate(exemplars):
            difference = support - exemplar
            distances = np.einsum("ij,ij->i", difference, difference)
            if exclude is not None:
                distances[exclude[i]] = np.inf
            result[i] = distances.min() if distances.size else np.inf
        return result

    def match(
        self,
        exemplars: F32Array,
        predictions: IntArray,
        max_neighbors: int,
        exclude: IntArray | None = None,
        display: int = 0,
        hint: IntArray | None = None,
        locate_nearest: bool = True,
    ) -> Matches:
        """Exact matching; see the module docstring for screening and the dense path.
        ``locate_nearest=False``: the dense path may leave ``nearest`` at −1 (training needs
        only q and d₀)."""
        index = self._screen or self._exact
        assert index is not None  # one of them is always built
        if exemplars is self._source or self._subspace is None:
            queries = self._source_coordinates if exemplars is self._source else exemplars
        else:
            queries = self._subspace.coordinates(exemplars)
        if self._grouped is not None and exemplars.shape[0] >= DENSE_MIN_ROWS:
            centered, tolerance = index.centered_with_tolerance(queries)
            matches, ties = dense_match(
                self._grouped, centered, predictions, max_neighbors,
                tolerance, exclude, display, locate_nearest,
            )  # fmt: skip
            if not ties:
                return matches
            k_cap = min(max_neighbors, self.count) - (exclude is not None)
            q = matches.q.copy()
            rows = np.asarray([tie.row for tie in ties], dtype=np.int64)
            q[rows] = self._rerank(ties, exemplars[rows], predictions[rows], k_cap)
            return replace(matches, q=q)
        else:
            matches = match_support(
                index, queries, predictions, self._labels, max_neighbors, exclude, display,
                hint=hint, tolerance=index.rounding_tolerance(queries),
            )  # fmt: skip
        rows = np.flatnonzero(matches.ambiguous)
        if rows.size == 0:
            return matches
        windows = near_tie_windows(
            index, queries[rows], predictions[rows], self._labels, matches.q[rows],
            None if exclude is None else exclude[rows],
        )  # fmt: skip
        q = matches.q.copy()
        k_cap = min(max_neighbors, self.count) - (exclude is not None)
        q[rows] = self._rerank(windows, exemplars[rows], predictions[rows], k_cap)
        return replace(matches, q=q)

    def _rerank(
        self, ties: list[NearTie], exemplars: F32Array, predictions: IntArray, k_cap: int
    ) -> IntArray:
        """q of near-tie rows: each window ordered by (float64 distance, index), the count
        continued there up to its first bad row. All windows in one pass."""
        sizes = np.asarray([tie.candidates.size for tie in ties], dtype=np.int64)
        owner = np.repeat(np.arange(len(ties)), sizes)
        candidates = np.concatenate([tie.candidates for tie in ties])
        difference = self._support[candidates].astype(np.float64) - exemplars[owner].astype(
            np.float64
        )
        distances = np.einsum("ij,ij->i", difference, difference)
        ordered = np.lexsort((candidates, distances, owner))  # owner-major: windows stay apart
        candidates, owner = candidates[ordered], owner[ordered]
        good = self._labels.correct[candidates] & (
            self._labels.predictions[candidates] == predictions[owner]
        )
        offset = np.arange(candidates.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        run = sizes.copy()  # a window without a bad row is good throughout
        bad = np.flatnonzero(~good)
        np.minimum.at(run, owner[bad], offset[bad])
        counted = np.asarray([tie.counted for tie in ties], dtype=np.int64)
        result: IntArray = np.minimum(k_cap, counted + run)
        return result


def near_tie_windows(
    screen: FaissExemplarIndex,
    coordinates: F32Array,
    predictions: IntArray,
    labels: SupportLabels,
    screened_q: IntArray,
    exclude: IntArray | None,
) -> list[NearTie]:
    """For near-tie rows found by the adaptive search, the window around each run break.

    With screened distances within ``t/2`` of the true ones (t = the rounding tolerance), only
    neighbours within t of the first bad neighbour's distance d_b can change places with it:
    everything closer than d_b − t is good and counted, everything beyond d_b + t comes after
    the true first bad neighbour. The window (ordered later by float64 distance, then index)
    holds the neighbours within t of d_b; a row without any bad neighbour gets an empty window
    and its whole support counted. ``NearTie.row`` is the position in ``coordinates``.
    """
    tolerance = screen.rounding_tolerance(coordinates)
    correct = labels.correct
    windows: list[NearTie] = []
    # One batched search covers most rows (on CPU this path sees single rows only; GPU
    # indexes get whole batches); rows needing a wider k search again alone.
    first_k = int(min(int(np.max(screened_q)) + 34, screen.count))
    all_distances, all_indices = screen.search(coordinates, first_k)
    for i in range(coordinates.shape[0]):
        k = first_k
        while True:
            if k == first_k:
                distances, indices = all_distances[i], all_indices[i]
            else:
                found = screen.search(coordinates[i : i + 1], k)
                distances, indices = found[0][0], found[1][0]
            if exclude is not None:
                keep = indices != exclude[i]
                distances, indices = distances[keep], indices[keep]
            good = correct[indices] & (labels.predictions[indices] == predictions[i])
            bad = np.flatnonzero(~good)
            complete = k >= screen.count
            if bad.size and (complete or distances[-1] > distances[bad[0]] + tolerance[i]):
                break
            if complete:  # no bad neighbour at all: the run covers the support
                bad = np.asarray([distances.size])
                break
            k = min(screen.count, k * 4)
        if bad[0] >= distances.size:
            windows.append(NearTie(i, int(distances.size), np.empty(0, dtype=np.int64)))
            continue
        break_distance = distances[bad[0]]
        before = int(np.count_nonzero(distances < break_distance - tolerance[i]))
        window = np.abs(distances - break_distance) <= tolerance[i]
        windows.append(NearTie(i, before, np.asarray(indices[window], dtype=np.int64)))
    return windows
