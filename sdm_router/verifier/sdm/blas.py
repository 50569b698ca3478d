"""numpy's BLAS kept to the calling thread.

OpenBLAS worker threads busy-wait for a while after every multi-threaded call (about 2²⁸
cycles by default, ~0.1 s). On a machine with few cores a spinning worker takes a core from the
torch (MKL) products that follow and slows them. So numpy products in this package run
single-threaded, and large products go through torch instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

# CPU batches from this many rows take their products through torch (MKL, 2 threads);
# smaller ones through single-threaded numpy, which has less per-call overhead.
TORCH_MIN_ROWS = 64


class _SharedLimit:
    """The BLAS thread count is process-wide: the first thread to enter sets it to one and
    the last to leave restores it, so concurrent scorers never restore it under each other.
    (OpenBLAS 0.3.31 ignores a raise asked from a thread other than the main one: a scorer in
    a worker thread leaves numpy's BLAS on one thread, which only spares the spinning.)"""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.restore_to = 1


_shared = _SharedLimit()


@cache
def _numpy_blas() -> Any:
    """numpy's OpenBLAS thread controller (the copy in numpy's wheel), or None."""
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        controllers = ThreadpoolController().lib_controllers
    except Exception:  # no control only costs speed
        return None
    for library in controllers:
        path = library.filepath.replace("\\", "/")
        if library.user_api == "blas" and ("numpy.libs" in path or "numpy/.dylibs" in path):
            return library
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one numpy BLAS thread (no worker is woken, none is left spinning)."""
    library = _numpy_blas()
    if library is None:
        yield
        return
    with _shared.lock:
        if _shared.depth == 0:
            _shared.restore_to = library.num_threads
            if _shared.restore_to != 1:
                library.set_num_threads(1)
        _shared.depth += 1
    try:
        yield
    finally:
        with _shared.lock:
            _shared.depth -= 1
            if _shared.depth == 0 and _shared.restore_to != 1:
                library.set_num_threads(_shared.restore_to)
