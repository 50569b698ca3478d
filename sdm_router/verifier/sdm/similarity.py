"""Similarity q by adaptive-k exact matching, plus d₀ and the nearest exemplars.

q is the length of the leading run of *good* neighbours (support row correctly predicted and
predicted like the query), capped at K. Only that run matters, so the search starts with a
small k and widens (×4) only for rows whose fetched neighbours are all good so far. A fetched
neighbour is *certain* when its distance is strictly below the last fetched distance (faiss is
exact, so nothing unfetched can be closer, and ties at that distance may hide lower indices).
A row is resolved once its run breaks inside the certain prefix, the certain prefix reaches K
(and the requested display count), or the whole support was fetched. The result is identical
to a full top-K search ordered by (distance, support index).

With a per-row rounding ``tolerance`` (screening on column-space coordinates, whose distances
differ from the exemplar-space ones only by float rounding), a neighbour is certain only when
it is more than the tolerance below the last fetched distance, and a resolved row is flagged
*ambiguous* when a swap within the tolerance could change q: the run-breaking neighbour lies
within the tolerance of the good neighbour before it, or of a good neighbour after it. The
caller re-matches ambiguous rows in exemplar space, so q never depends on the screening.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import SDMConfigurationError
from .index import FaissExemplarIndex

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

INITIAL_K = 32
WIDENING_FACTOR = 4


@dataclass(frozen=True)
class Matches:
    """Per-row matching results: q, d₀, nearest support index, and displayed neighbours."""

    q: IntArray
    d0: F32Array
    nearest: IntArray
    neighbor_indices: IntArray
    neighbor_distances: F32Array
    ambiguous: BoolArray


@dataclass(frozen=True)
class SupportLabels:
    """Support-side facts needed for q: true labels and predicted labels."""

    labels: IntArray
    predictions: IntArray

    @property
    def correct(self) -> BoolArray:
        """Support rows whose prediction equals their true label."""
        return np.asarray(self.labels == self.predictions)


def _drop_identity(
    distances: F32Array, indices: IntArray, identity: IntArray | None
) -> tuple[F32Array, IntArray, BoolArray]:
    """Move each row's identity (if fetched) to the end with distance +inf."""
    if identity is None:
        return distances, indices, np.zeros(indices.shape, dtype=bool)
    is_identity = indices == identity[:, None]
    width = indices.shape[1]
    position = np.where(is_identity.any(axis=1), is_identity.argmax(axis=1), width)
    columns = np.arange(width)[None, :]
    source = columns + (columns >= position[:, None])  # skip the identity column
    source[:, -1] = np.where(position < width, position, width - 1)  # identity goes last
    moved = np.take_along_axis(is_identity, source, axis=1)
    distances = np.where(moved, np.float32(np.inf), np.take_along_axis(distances, source, axis=1))
    return (
        distances.astype(np.float32, copy=False),
        np.take_along_axis(indices, source, axis=1),
        moved,
    )


def _leading_run(good: BoolArray) -> IntArray:
    """Length of the leading run of True per row."""
    if good.shape[1] == 0:
        return np.zeros(good.shape[0], dtype=np.int64)
    first_bad = np.argmin(good, axis=1)
    run = np.where(good.all(axis=1), good.shape[1], first_bad)
    return np.asarray(run, dtype=np.int64)


def _near_tie_at_break(
    distances: F32Array, good: BoolArray, k_cap: int, tolerance: F32Array
) -> BoolArray:
    """Rows where a distance swap within ``tolerance`` could change q.

    ``good`` marks good neighbours regardless of certainty, in (distance, index) order. The
    first bad neighbour must stay more than the tolerance away from the good neighbour that
    ends the counted run and, when it breaks the run before K, from every good one after it.
    """
    width = good.shape[1]
    first_bad = _leading_run(good)
    present = first_bad < width
    at = np.minimum(first_bad, width - 1)
    last_counted = np.minimum(first_bad, k_cap) - 1
    rows = np.arange(distances.shape[0])
    with np.errstate(invalid="ignore"):
        bad_distance = distances[rows, at]
        counted = distances[rows, np.maximum(last_counted, 0)]
        close_before = (last_counted >= 0) & (bad_distance - counted <= tolerance)
        later_good = good & (np.arange(width)[None, :] > first_bad[:, None])
        close_after = later_good & (distances - bad_distance[:, None] <= tolerance[:, None])
        close_after &= (first_bad < k_cap)[:, None]
    return np.asarray(present & (close_before | close_after.any(axis=1)))


class _Accumulator:
    def __init__(self, rows: int, display: int) -> None:
        self.q = np.zeros(rows, dtype=np.int64)
        self.d0 = np.zeros(rows, dtype=np.float32)
        self.nearest = np.zeros(rows, dtype=np.int64)
        self.indices = np.full((rows, display), -1, dtype=np.int64)
        self.distances = np.zeros((rows, display), dtype=np.float32)
        self.ambiguous = np.zeros(rows, dtype=bool)

    def store(
        self,
        rows: IntArray,
        run: IntArray,
        distances: F32Array,
        indices: IntArray,
        ambiguous: BoolArray,
    ) -> None:
        display = self.indices.shape[1]
        self.q[rows] = run
        self.ambiguous[rows] = ambiguous
        self.d0[rows] = distances[:, 0]
        self.nearest[rows] = indices[:, 0]
        if display:
            self.indices[rows] = indices[:, :display]
            self.distances[rows] = distances[:, :display]

    def result(self) -> Matches:
        return Matches(self.q, self.d0, self.nearest, self.indices, self.distances, self.ambiguous)


def _first_k(rows: int, base: int, total: int, hint: IntArray | None) -> npt.NDArray[np.int64]:
    """Per-row first k: ``base``, or a power of two above a hinted run length."""
    k = np.full(rows, base, dtype=np.int64)
    if hint is not None:
        wanted = np.asarray(hint, dtype=np.int64) * 5 // 4 + base
        k = np.maximum(k, 2 ** np.ceil(np.log2(np.maximum(wanted, 1))).astype(np.int64))
    return np.minimum(k, total)


def match_support(
    index: FaissExemplarIndex,
    queries: F32Array,
    predictions: IntArray,
    support: SupportLabels,
    max_neighbors: int,
    exclude: IntArray | None = None,
    display: int = 0,
    initial_k: int = INITIAL_K,
    hint: IntArray | None = None,
    tolerance: F32Array | None = None,
) -> Matches:
    """Exact q, d₀ and nearest neighbours with identity exclusion and adaptive k.

    ``hint`` (e.g. last epoch's q per row) only chooses each row's first k; results are the
    same with or without it. ``tolerance`` (per row) marks rows whose q could change under
    distance perturbations of that size as ``ambiguous``.
    """
    total = index.count
    excluded = 0 if exclude is None else 1
    k_cap = min(max_neighbors, total) - excluded
    if k_cap < 1:
        raise SDMConfigurationError("no support neighbour remains after excluding the identity")
    display = max(0, min(display, total - excluded))
    if tolerance is None:
        tolerance = np.zeros(queries.shape[0], dtype=np.float32)
    matcher = _Matcher(index, queries, predictions, support, exclude, k_cap, display, tolerance)
    k_rows = _first_k(queries.shape[0], max(initial_k, display, 1) + excluded + 1, total, hint)
    pending = np.arange(queries.shape[0], dtype=np.int64)
    while pending.size:
        unresolved = []
        for k in np.unique(k_rows[pending]):
            rows = pending[k_rows[pending] == k]
            left = matcher.resolve(rows, int(k))
            k_rows[left] = min(total, int(k) * WIDENING_FACTOR)
            unresolved.append(left)
        pending = np.concatenate(unresolved)
    return matcher.out.result()


class _Matcher:
    """One adaptive-k matching job; :meth:`resolve` handles one group of rows at one k."""

    def __init__(
        self,
        index: FaissExemplarIndex,
        queries: F32Array,
        predictions: IntArray,
        support: SupportLabels,
        exclude: IntArray | None,
        k_cap: int,
        display: int,
        tolerance: F32Array,
    ) -> None:
        self.index, self.predictions = index, predictions
        self.search = index.prepare(queries)  # small batches: distances computed once
        self.tolerance = np.asarray(tolerance, dtype=np.float32)
        self.support, self.correct, self.exclude = support, support.correct, exclude
        self.k_cap, self.need = k_cap, max(display, 1)
        self.out = _Accumulator(queries.shape[0], display)

    def resolve(self, rows: IntArray, k: int) -> IntArray:
        """Search ``rows`` at ``k``; store resolved rows and return the unresolved ones."""
        raw_distances, raw_indices = self.search(rows, k)
        full = k >= self.index.count
        last = raw_distances[:, -1]
        identity = None if self.exclude is None else self.exclude[rows]
        distances, indices, is_identity = _drop_identity(raw_distances, raw_indices, identity)
        tolerance = self.tolerance[rows]
        certain = ~is_identity & ((distances < (last - tolerance)[:, None]) | full)
        prefix = certain.sum(axis=1)
        neighbor_predictions = self.support.predictions[indices]
        good_any = self.correct[indices] & (neighbor_predictions == self.predictions[rows][:, None])
        good_any &= ~is_identity
        good = good_any & certain
        good[:, self.k_cap :] = False
        run = _leading_run(good)
        resolved = full | (((run < prefix) | (prefix >= self.k_cap)) & (prefix >= self.need))
        ambiguous = np.zeros(rows.size, dtype=bool)
        if tolerance.any():
            ambiguous = _near_tie_at_break(distances, good_any, self.k_cap, tolerance)
        self.out.store(
            rows[resolved], run[resolved], distances[resolved], indices[resolved],
            ambiguous[resolved],
        )  # fmt: skip
        return np.asarray(rows[~resolved], dtype=np.int64)
