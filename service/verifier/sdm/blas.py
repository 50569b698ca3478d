"""numpy's BLAS kept to the calling thread.

OpenBLAS worker threads busy-wait for a while after every multi-threaded call (about 2²⁸
cycles by default, ~0.1 s). On a 2-core machine a spinning worker takes a core from the torch
(MKL) products that follow: one 1667 × 386 × 5024 distance product measured 43 ms right after
a numpy matrix product against 23 ms alone. So numpy products in this package run
single-threaded, and large products go through torch instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import Any

# CPU batches from this many rows take their products through torch (MKL, 2 threads);
# smaller ones through single-threaded numpy, which has less per-call overhead.
TORCH_MIN_ROWS = 64


@cache
def _numpy_blas() -> Any:
    """numpy's OpenBLAS thread controller, or None when threadpoolctl finds none."""
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    for library in ThreadpoolController().lib_controllers:
        if library.user_api == "blas" and "numpy" in library.filepath:
            return library
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one numpy BLAS thread (no worker is woken, none is left spinning)."""
    library = _numpy_blas()
    previous = library.num_threads if library is not None else 1
    if library is not None and previous != 1:
        library.set_num_threads(1)
    try:
        yield
    finally:
        if library is not None and previous != 1:
            library.set_num_threads(previous)
