"""The thread that owns the model: it gathers rows into micro-batches and decodes them.

Rows are queued by the event loop; the worker waits for the first one, then up to
``max_wait_s`` for more, up to ``max_batch_size`` rows, and decodes that batch. While it
decodes, the decoder polls for rows queued since and lets them join, up to the same size.
Results travel back through each row's :class:`RowOwner`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from service.backends.local.rows import RowState
from service.core.errors import NoHealthyBackend

logger = logging.getLogger(__name__)

Poll = Callable[[int], list[RowState]]
DecodeFn = Callable[[Sequence[RowState], Poll], None]


class _Stop:
    """Queue sentinel that ends the worker."""


_STOP = _Stop()


class BatchingWorker:
    """A daemon thread running ``decode`` over micro-batches of queued rows."""

    def __init__(
        self, decode: DecodeFn, *, max_batch_size: int, max_wait_s: float, name: str
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._decode = decode
        self._max_batch_size = max_batch_size
        self._max_wait_s = max(0.0, max_wait_s)
        self._queue: queue.Queue[RowState | _Stop] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = threading.Event()
        self._in_flight: list[RowState] = []

    @property
    def queued(self) -> int:
        """Rows waiting for a batch."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, rows: Sequence[RowState]) -> None:
        """Queue rows; thread-safe."""
        for row in rows:
            self._queue.put(row)

    def stop(self, timeout: float | None = None) -> None:
        """Finish the current batch, fail the queued rows, end the thread."""
        self._stopping.set()
        self._queue.put(_STOP)  # wakes a worker waiting for its first row
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch, stopping = self._collect()
            if batch:
                self._decode_batch(batch)
            if stopping or self._stopping.is_set():
                self._fail_queued()
                return

    def _collect(self) -> tuple[list[RowState], bool]:
        first = self._queue.get()
        if isinstance(first, _Stop):
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                # Past the deadline, rows already queued still join; none is waited for.
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                return batch, True
            batch.append(item)
        return batch, False

    def _decode_batch(self, batch: list[RowState]) -> None:
        self._in_flight = list(batch)
        try:
            self._decode(batch, self._poll)
        except Exception as exc:  # one failed batch must not kill the worker
            logger.exception("decoding a batch of %d rows failed", len(self._in_flight))
            for row in self._in_flight:
                row.owner.on_error(exc)
        finally:
            self._in_flight = []

    def _poll(self, decoding: int) -> list[RowState]:
        """Queued rows that may join a batch of ``decoding`` rows now (never waits)."""
        joiners: list[RowState] = []
        while decoding + len(joiners) < self._max_batch_size and not self._stopping.is_set():
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                self._stopping.set()
                break
            joiners.append(item)
        self._in_flight.extend(joiners)
        return joiners

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, RowState):
                item.owner.on_error(NoHealthyBackend("the local model is shutting down"))
