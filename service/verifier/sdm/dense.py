"""Exact q, d₀ and nearest support rows for large CPU batches, by per-group reductions.

For a query predicted c, q is the number of *good* support rows (correctly predicted, predicted
c) closer than its nearest *other* row (the first bad neighbour), capped at K: a count, not a
neighbour list. So each tile of queries gets its whole squared-distance block from one matrix
product, and then only reductions over support rows grouped by (correct, prediction):

- the minimum per group gives the break distance b (minimum over the groups that are bad for
  the query's prediction), d₀ and the nearest row (ties: lowest support index);
- the query's good group is counted below b − t (certain) and up to b + t (near-tie window).

One product per row replaces the widening searches of the adaptive path, and no top-k
selection runs at all. With the rounding tolerance t, a row is *ambiguous* exactly when the
adaptive path flags it (a good neighbour within t of the break while fewer than K are certain);
for those rows the support rows within t of the break come back as a :class:`NearTie`, and the
caller re-ranks just them in float64. The results are those of :func:`match_support`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from .errors import ConfigurationError
from .index import lexicographic_sort
from .similarity import Matches, SupportLabels

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# Largest distance block held at once (float32 entries): 8M entries = 32 MB.
BLOCK_ENTRIES = 8 * 1024 * 1024
MINIMUM_TILE_ROWS = 64


@dataclass(frozen=True)
class NearTie:
    """An ambiguous row: ``counted`` good rows lie certainly before its run break, and
    ``candidates`` (support indices) lie within the rounding tolerance of the break."""

    row: int
    counted: int
    candidates: IntArray


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (training holds one elsewhere)."""
    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if previous != count:
            torch.set_num_threads(previous)


class GroupedSupport:
    """Support vectors reordered so that each (correct, prediction) group is contiguous.

    Group c < C holds the rows correctly predicted as class c; group C the wrongly predicted
    rows. Within a group rows keep their original order, so a first minimum is the lowest index.
    """

    def __init__(self, vectors: F32Array, labels: SupportLabels, classes: int) -> None:
        groups = np.where(labels.correct, labels.predictions, classes).astype(np.int64)
        self.order = np.argsort(groups, kind="stable")
        sorted_groups = groups[self.order]
        edges = np.searchsorted(sorted_groups, np.arange(classes + 2))
        self.bounds = [(int(edges[g]), int(edges[g + 1])) for g in range(classes + 1)]
        self.classes = classes
        self.count = int(vectors.shape[0])
        ordered = np.asarray(vectors[self.order], dtype=np.float32)
        norms = np.einsum("ij,ij->i", ordered, ordered)
        # [s ‖ ‖s‖² ‖ 1]: one product with [−2q ‖ 1 ‖ ‖q‖²] gives ‖q‖² + ‖s‖² − 2q·s directly.
        augmented = np.concatenate([ordered, norms[:, None], np.ones((self.count, 1))], axis=1)
        self.augmented = torch.from_numpy(np.ascontiguousarray(augmented, dtype=np.float32))
        # Position in the reordered support of every original row (for identity exclusion).
        self.position = np.empty(self.count, dtype=np.int64)
        self.position[self.order] = np.arange(self.count)


def dense_match(
    support: GroupedSupport,
    queries: F32Array,
    predictions: IntArray,
    max_neighbors: int,
    tolerance: F32Array,
    exclude: IntArray | None = None,
    display: int = 0,
) -> tuple[Matches, list[NearTie]]:
    """q, d₀, nearest and ``display`` nearest rows for every query, plus the near-tie window
    of every ambiguous row (for float64 re-ranking); see the module docstring.

    ``queries`` must be in the same (centered) frame as the support vectors; ``tolerance`` is
    the per-row rounding bound on squared distances.
    """
    excluded = 0 if exclude is None else 1
    k_cap = min(max_neighbors, support.count) - excluded
    if k_cap < 1:
        raise ConfigurationError("no support neighbour remains after excluding the identity")
    display = max(0, min(display, support.count - excluded))
    rows = queries.shape[0]
    tile = max(MINIMUM_TILE_ROWS, BLOCK_ENTRIES // max(support.count, 1))
    q = np.zeros(rows, dtype=np.int64)
    d0 = np.zeros(rows, dtype=np.float32)
    nearest = np.zeros(rows, dtype=np.int64)
    ambiguous = np.zeros(rows, dtype=bool)
    shown = np.full((rows, display), -1, dtype=np.int64)
    shown_distances = np.zeros((rows, display), dtype=np.float32)
    ties: list[NearTie] = []
    with torch.inference_mode():
        for start in range(0, rows, tile):
            stop = min(rows, start + tile)
            block = _distance_block(support, queries[start:stop])
            if exclude is not None:
                positions = torch.from_numpy(support.position[exclude[start:stop]])
                block[torch.arange(stop - start), positions] = float("inf")
            part = _reduce_block(
                support, block, predictions[start:stop], tolerance[start:stop], k_cap
            )
            q[start:stop], d0[start:stop], nearest[start:stop], ambiguous[start:stop] = part[:4]
            ties.extend(NearTie(start + tie.row, tie.counted, tie.candidates) for tie in part[4])
            if display:
                shown_distances[start:stop], shown[start:stop] = _nearest_rows(
                    support, block, display
                )
    return Matches(q, d0, nearest, shown, shown_distances, ambiguous), ties


def _distance_block(support: GroupedSupport, queries: F32Array) -> torch.Tensor:
    """Squared distances [tile, N] by ‖q‖² + ‖s‖² − 2 q·s in one product (not clamped:
    rounding can leave tiny negatives; d₀ is clamped by the caller)."""
    values = np.asarray(queries, dtype=np.float32)
    norms = np.einsum("ij,ij->i", values, values)
    augmented = np.concatenate([-2.0 * values, np.ones((len(values), 1)), norms[:, None]], axis=1)
    return torch.from_numpy(augmented.astype(np.float32)) @ support.augmented.T


def _reduce_block(
    support: GroupedSupport,
    block: torch.Tensor,
    predictions: IntArray,
    tolerance: F32Array,
    k_cap: int,
) -> tuple[IntArray, F32Array, IntArray, npt.NDArray[np.bool_], list[NearTie]]:
    """(q, d₀, nearest original index, ambiguous, near-tie windows) for one block."""
    groups = len(support.bounds)
    minima = torch.full((block.shape[0], groups), float("inf"))
    arg = torch.zeros((block.shape[0], groups), dtype=torch.long)
    for g, (low, high) in enumerate(support.bounds):
        if high > low:
            values, where = block[:, low:high].min(dim=1)
            minima[:, g], arg[:, g] = values, where + low
    minima_np = minima.numpy()
    original = support.order[arg.numpy()]
    # Nearest row: smallest distance, ties to the lowest original index.
    pick = np.lexsort((original, minima_np), axis=1)[:, 0]
    take = np.arange(block.shape[0])
    d0 = np.maximum(minima_np[take, pick], 0.0).astype(np.float32)
    nearest = original[take, pick]
    q = np.zeros(block.shape[0], dtype=np.int64)
    ambiguous = np.zeros(block.shape[0], dtype=bool)
    ties: list[NearTie] = []
    t = torch.from_numpy(np.asarray(tolerance, dtype=np.float32))
    for c in range(support.classes):
        members = np.flatnonzero(predictions == c)
        if members.size == 0:
            continue
        low, high = support.bounds[c]
        if high == low:
            continue  # no good row for this class: q = 0, nothing can tie
        others = np.delete(minima_np[members], c, axis=1).min(axis=1)  # first bad distance
        index = torch.from_numpy(members)
        good = block[index, low:high]
        limit = torch.from_numpy(others)
        certain = (good < (limit - t[index])[:, None]).sum(dim=1).numpy()
        window = (good <= (limit + t[index])[:, None]).sum(dim=1).numpy()
        q[members] = np.minimum(certain, k_cap)
        # No bad row at all (others = inf): the run covers the support, nothing can tie.
        tied = (window > certain) & (certain < k_cap) & np.isfinite(others)
        ambiguous[members] = tied
        for j in np.flatnonzero(tied):
            row = int(members[j])
            near = torch.nonzero((block[row] - float(others[j])).abs() <= float(tolerance[row]))
            candidates = support.order[near[:, 0].numpy()]
            ties.append(NearTie(row, int(certain[j]), candidates))
    return q, d0, nearest, ambiguous, ties


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
