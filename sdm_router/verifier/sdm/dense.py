"""Exact q, d₀ and nearest support rows for CPU batches (from two rows), by per-group reductions.

For a query predicted c, q is the number of *good* support rows (correctly predicted, predicted
c) closer than its nearest *other* row (the first bad neighbour), capped at K: a count, not a
neighbour list. So each tile of queries gets its whole squared-distance block from one matrix
product, and then only reductions over support rows grouped by (correct, prediction):

- the support is laid out group by group, each group padded to whole column chunks of
  ``CHUNK`` (padding columns read +inf), and one pass takes the minimum of every chunk;
- group minima give the break distance b (minimum over the groups that are bad for the
  query's prediction) and d₀; the chunks holding the row minimum give the nearest row;
- the query's good group is counted below b − t (certain) and up to b + t (near-tie window)
  inside the chunks whose minimum lies below b + t only (typically a handful: q is small).

One product per row replaces the widening searches of the adaptive path, and no top-k
selection runs at all. With the rounding tolerance t, a row is *ambiguous* exactly when the
adaptive path flags it (a good neighbour within t of the break while fewer than K are certain);
for those rows the support rows within t of the break come back as a :class:`NearTie`, and the
caller re-ranks just them in float64. The results are those of :func:`match_support`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from .errors import SDMConfigurationError
from .index import lexicographic_sort
from .similarity import Matches, SupportLabels

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# Largest distance block held at once (float32 entries): 8M entries = 32 MB.
BLOCK_ENTRIES = 8 * 1024 * 1024
MINIMUM_TILE_ROWS = 64
# Columns per chunk: one minimum per chunk, then only chunks below a threshold are read.
CHUNK = 32
# Original index recorded for padding columns (sorts after every real row).
PADDING = np.iinfo(np.int64).max


@dataclass(frozen=True)
class NearTie:
    """An ambiguous row: ``counted`` good rows lie certainly before its run break, and
    ``candidates`` (support indices) lie within the rounding tolerance of the break."""

    row: int
    counted: int
    candidates: IntArray


class GroupedSupport:
    """Support vectors laid out group by group, each group padded to whole chunks.

    Group c < C holds the rows correctly predicted as class c; group C the wrongly predicted
    rows. Within a group rows keep their original order, so a first minimum is the lowest index.
    ``order[column]`` is the original index of a column (``PADDING`` for padding columns).
    """

    def __init__(self, vectors: F32Array, labels: SupportLabels, classes: int) -> None:
        groups = np.where(labels.correct, labels.predictions, classes).astype(np.int64)
        ranked = np.argsort(groups, kind="stable")
        sizes = np.bincount(groups, minlength=classes + 1)
        starts = np.concatenate([[0], np.cumsum(-(-sizes // CHUNK) * CHUNK)])
        self.classes = classes
        self.count = int(vectors.shape[0])
        self.columns = int(starts[-1])
        self.bounds = [(int(starts[g]), int(starts[g] + sizes[g])) for g in range(classes + 1)]
        self.chunks = [
            (int(starts[g]) // CHUNK, int(starts[g + 1]) // CHUNK) for g in range(classes + 1)
        ]
        columns = np.concatenate([np.arange(low, high) for low, high in self.bounds])
        self.order = np.full(self.columns, PADDING, dtype=np.int64)
        self.order[columns] = ranked
        # Column of every original row (for identity exclusion).
        self.position = np.empty(self.count, dtype=np.int64)
        self.position[ranked] = columns
        self.padding = torch.from_numpy(np.flatnonzero(self.order == PADDING))
        ordered = np.asarray(vectors[ranked], dtype=np.float32)
        norms = np.einsum("ij,ij->i", ordered, ordered)
        # [s ‖ ‖s‖² ‖ 1]: one product with [−2q ‖ 1 ‖ ‖q‖²] gives ‖q‖² + ‖s‖² − 2q·s directly.
        augmented = np.zeros((self.columns, ordered.shape[1] + 2), dtype=np.float32)
        augmented[columns] = np.concatenate(
            [ordered, norms[:, None], np.ones((self.count, 1))], axis=1
        )
        self.augmented = torch.from_numpy(augmented)


def dense_match(
    support: GroupedSupport,
    queries: F32Array,
    predictions: IntArray,
    max_neighbors: int,
    tolerance: F32Array,
    exclude: IntArray | None = None,
    display: int = 0,
    locate_nearest: bool = True,
) -> tuple[Matches, list[NearTie]]:
    """q, d₀, nearest and ``display`` nearest rows for every query, plus the near-tie window
    of every ambiguous row (for float64 re-ranking); see the module docstring.

    ``queries`` must be in the same (centered) frame as the support vectors; ``tolerance`` is
    the per-row rounding bound on squared distances. ``locate_nearest=False`` skips the
    nearest support index (left at −1) when only q and d₀ are needed.
    """
    excluded = 0 if exclude is None else 1
    k_cap = min(max_neighbors, support.count) - excluded
    if k_cap < 1:
        raise SDMConfigurationError("no support neighbour remains after excluding the identity")
    display = max(0, min(display, support.count - excluded))
    rows = queries.shape[0]
    # Queries ordered by prediction: within a tile each class is a contiguous row range.
    order = np.argsort(predictions, kind="stable")
    queries, predictions = queries[order], predictions[order]
    tolerance = np.asarray(tolerance, dtype=np.float32)[order]
    exclude = None if exclude is None else exclude[order]
    largest_tile = max(MINIMUM_TILE_ROWS, BLOCK_ENTRIES // support.columns)
    tiles = max(1, -(-rows // largest_tile))
    tile = max(1, -(-rows // tiles))  # equal tiles: no small last product
    buffer = torch.empty(tile * support.columns)  # reused: fresh blocks cost page faults
    q = np.zeros(rows, dtype=np.int64)
    d0 = np.zeros(rows, dtype=np.float32)
    nearest = np.full(rows, -1, dtype=np.int64)
    ambiguous = np.zeros(rows, dtype=bool)
    shown = np.full((rows, display), -1, dtype=np.int64)
    shown_distances = np.zeros((rows, display), dtype=np.float32)
    ties: list[NearTie] = []
    with torch.inference_mode():
        for start in range(0, rows, tile):
            stop = min(rows, start + tile)
            block = buffer[: (stop - start) * support.columns].view(stop - start, -1)
            _distance_block(support, queries[start:stop], block)
            if exclude is not None:
                positions = torch.from_numpy(support.position[exclude[start:stop]])
                block[torch.arange(stop - start), positions] = float("inf")
            part = _reduce_block(
                support, block, predictions[start:stop], tolerance[start:stop], k_cap
            )
            q[start:stop], d0[start:stop], ambiguous[start:stop] = part.q, part.d0, part.ambiguous
            if locate_nearest:
                nearest[start:stop] = _locate(support, block, part)
            ties.extend(
                NearTie(int(order[start + t.row]), t.counted, t.candidates) for t in part.ties
            )
            if display:
                shown_distances[start:stop], shown[start:stop] = _nearest_rows(
                    support, block, display
                )
    restore = np.empty_like(order)
    restore[order] = np.arange(rows)
    matches = Matches(
        q[restore], d0[restore], nearest[restore], shown[restore], shown_distances[restore],
        ambiguous[restore],
    )  # fmt: skip
    return matches, ties


@dataclass(frozen=True)
class _BlockResult:
    q: IntArray
    d0: F32Array
    ambiguous: npt.NDArray[np.bool_]
    ties: list[NearTie]
    row_minimum: F32Array
    chunk_minima: F32Array


def _distance_block(support: GroupedSupport, queries: F32Array, out: torch.Tensor) -> None:
    """Squared distances [tile, columns] by ‖q‖² + ‖s‖² − 2 q·s in one product (not clamped:
    rounding can leave tiny negatives; d₀ is clamped), padding columns set to +inf."""
    values = np.asarray(queries, dtype=np.float32)
    norms = np.einsum("ij,ij->i", values, values)
    augmented = np.concatenate([-2.0 * values, np.ones((len(values), 1)), norms[:, None]], axis=1)
    torch.matmul(torch.from_numpy(augmented.astype(np.float32)), support.augmented.T, out=out)
    out.index_fill_(1, support.padding, float("inf"))


def _reduce_block(
    support: GroupedSupport,
    block: torch.Tensor,
    predictions: IntArray,
    tolerance: F32Array,
    k_cap: int,
) -> _BlockResult:
    """q, d₀, ambiguity and near-tie windows for one block of queries sorted by prediction."""
    rows = block.shape[0]
    chunk_minima = block.view(rows, -1, CHUNK).amin(dim=2).numpy()
    minima = np.full((rows, len(support.chunks)), np.inf, dtype=np.float32)
    for g, (first_chunk, last_chunk) in enumerate(support.chunks):
        if last_chunk > first_chunk:
            minima[:, g] = chunk_minima[:, first_chunk:last_chunk].min(axis=1)
    values = block.numpy()
    q = np.zeros(rows, dtype=np.int64)
    ambiguous = np.zeros(rows, dtype=bool)
    ties: list[NearTie] = []
    edges = np.searchsorted(predictions, np.arange(support.classes + 1))
    largest = np.finfo(np.float32).max
    for c in range(support.classes):
        first, last = int(edges[c]), int(edges[c + 1])
        low, high = support.bounds[c]
        if last == first or high == low:
            continue  # no query, or no good row for this class: q = 0, nothing can tie
        others = np.delete(minima[first:last], c, axis=1).min(axis=1)  # first bad distance
        t = tolerance[first:last]
        # No bad row at all (others = inf): the run covers the support, nothing can tie;
        # counting below the largest float leaves out only excluded (infinite) entries.
        bounded = np.isfinite(others)
        below = np.where(bounded, others - t, largest).astype(np.float32)
        # good ≤ b + t  ⇔  good < nextafter(b + t): both counts use strict comparisons.
        upto = np.nextafter((others + t).astype(np.float32), np.float32(np.inf))
        upto = np.where(bounded, upto, largest).astype(np.float32)
        first_chunk, last_chunk = support.chunks[c]
        certain, window = _count_in_chunks(
            values[first:last],
            chunk_minima[first:last, first_chunk:last_chunk],
            first_chunk,
            below,
            upto,
        )
        q[first:last] = np.minimum(certain, k_cap)
        tied = (window > certain) & (certain < k_cap) & bounded
        ambiguous[first:last] = tied
        ties.extend(_windows(support, values, first, np.flatnonzero(tied), others, t, certain))
    row_minimum = minima.min(axis=1)
    d0 = np.maximum(row_minimum, 0.0).astype(np.float32)
    return _BlockResult(q, d0, ambiguous, ties, row_minimum, chunk_minima)


def _windows(
    support: GroupedSupport,
    values: F32Array,
    first: int,
    tied: IntArray,
    others: F32Array,
    tolerance: F32Array,
    certain: IntArray,
) -> list[NearTie]:
    """The near-tie window (support rows within t of the break) of each tied row, in one
    comparison over the tied rows of the block."""
    if tied.size == 0:
        return []
    near = np.abs(values[first + tied] - others[tied, None]) <= tolerance[tied, None]
    rows, columns = np.nonzero(near)
    windows = np.split(
        support.order[columns], np.cumsum(np.bincount(rows, minlength=tied.size))[:-1]
    )
    return [
        NearTie(first + int(j), int(certain[j]), window)
        for j, window in zip(tied, windows, strict=True)
    ]


def _count_in_chunks(
    values: F32Array,
    chunk_minima: F32Array,
    first_chunk: int,
    below: F32Array,
    upto: F32Array,
) -> tuple[IntArray, IntArray]:
    """Per row, entries < ``below`` and entries < ``upto`` in one group's chunks, reading
    only the chunks whose minimum is below ``upto`` (the others hold neither)."""
    rows, chunks = np.nonzero(chunk_minima < upto[:, None])
    candidates = values.reshape(values.shape[0], -1, CHUNK)[rows, first_chunk + chunks]
    size = values.shape[0]
    certain = np.bincount(rows, (candidates < below[rows, None]).sum(axis=1), size)
    window = np.bincount(rows, (candidates < upto[rows, None]).sum(axis=1), size)
    return certain.astype(np.int64), window.astype(np.int64)


def _locate(support: GroupedSupport, block: torch.Tensor, part: _BlockResult) -> IntArray:
    """Original index of each row's nearest support row (ties: the lowest index), searching
    only the chunks that hold the row minimum (an indexed argmin is much slower on CPU)."""
    rows, chunks = np.nonzero(part.chunk_minima == part.row_minimum[:, None])
    columns = chunks[:, None] * CHUNK + np.arange(CHUNK)
    values = block.numpy().reshape(block.shape[0], -1, CHUNK)[rows, chunks]
    candidates = np.where(values == part.row_minimum[rows, None], support.order[columns], PADDING)
    nearest = np.full(block.shape[0], PADDING, dtype=np.int64)
    np.minimum.at(nearest, rows, candidates.min(axis=1))
    missing = np.flatnonzero(nearest == PADDING)  # a NaN distance (overflowed input)
    if missing.size:
        fallback = block[torch.from_numpy(missing)].nan_to_num(nan=np.inf)
        fallback.index_fill_(1, support.padding, float("inf"))
        nearest[missing] = support.order[fallback.argmin(dim=1).numpy()]
    return nearest


def _nearest_rows(
    support: GroupedSupport, block: torch.Tensor, display: int
) -> tuple[F32Array, IntArray]:
    """The ``display`` nearest rows per query, ordered by (distance, original index)."""
    # Fetch a few extra so that ties at the last displayed distance resolve by index.
    fetch = min(support.count, display + 8)
    values, where = torch.topk(block, fetch, dim=1, largest=False, sorted=True)
    distances = np.maximum(values.numpy(), 0.0).astype(np.float32)
    indices = support.order[where.numpy()]
    distances, indices = lexicographic_sort(distances, indices)
    return distances[:, :display], indices[:, :display]
