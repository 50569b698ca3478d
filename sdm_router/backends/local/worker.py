"""The thread that owns the model: every forward pass on it runs here, one at a time.

It gathers queued rows into micro-batches and decodes them: it waits for the first row, then up
to ``max_wait_s`` for more, up to ``max_batch_size`` rows. While it decodes, the decoder polls
between steps: rows queued since may join, up to the same size, and queued *tasks* (other
forward passes on the same model, such as the verifier's encoder) run there, between two steps.
No other thread ever runs the model, so nothing that transformers patches onto the model
instance during a call (the hidden-state recording of 4.56+) can see another caller's pass.
Row results travel back through each row's :class:`RowOwner`; task results through a
:class:`concurrent.futures.Future`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sdm_router.backends.local.decoding import Poll
from sdm_router.backends.local.rows import RowState
from sdm_router.core.errors import NoHealthyBackend

logger = logging.getLogger(__name__)

T = TypeVar("T")
DecodeFn = Callable[[Sequence[RowState], Poll], None]


@dataclass(slots=True)
class _Task:
    """A forward pass another component asked to run on the model."""

    function: Callable[[], Any]
    future: Future[Any]

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.function())
        except BaseException as error:  # delivered to the caller, never kills the worker
            self.future.set_exception(error)


class BatchingWorker:
    """A daemon thread running ``decode`` over micro-batches of queued rows, and tasks between."""

    def __init__(
        self, decode: DecodeFn, *, max_batch_size: int, max_wait_s: float, name: str
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._decode = decode
        self._max_batch_size = max_batch_size
        self._max_wait_s = max(0.0, max_wait_s)
        self._wakeup = threading.Condition()
        self._rows: deque[RowState] = deque()
        self._tasks: deque[_Task] = deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._in_flight: list[RowState] = []

    @property
    def queued(self) -> int:
        """Rows waiting for a batch."""
        return len(self._rows)

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def owns_current_thread(self) -> bool:
        """Whether the caller is this worker's thread (a task calling back in)."""
        return threading.current_thread() is self._thread

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, rows: Sequence[RowState]) -> None:
        """Queue rows; thread-safe."""
        with self._wakeup:
            self._rows.extend(rows)
            self._wakeup.notify()

    def run(self, function: Callable[[], T]) -> Future[T]:
        """Run ``function`` on the worker thread, between two decoding steps; thread-safe.

        Raises ``NoHealthyBackend`` once the worker is stopping.
        """
        future: Future[T] = Future()
        with self._wakeup:
            if self._stopping or not self._thread.is_alive():
                raise NoHealthyBackend("the local model is not running")
            self._tasks.append(_Task(function, future))
            self._wakeup.notify()
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Finish the current batch, fail the queued rows and tasks, end the thread."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                self._fail_queued()
                return
            if batch:
                self._decode_batch(batch)

    def _run_tasks(self) -> None:
        while True:
            with self._wakeup:
                if not self._tasks:
                    return
                task = self._tasks.popleft()
            task.run()

    def _collect(self) -> list[RowState] | None:
        """The next batch (maybe empty after running tasks); None when stopping."""
        with self._wakeup:
            while not (self._rows or self._tasks or self._stopping):
                self._wakeup.wait()
        with self._wakeup:
            if self._stopping:
                return None
        self._run_tasks()
        with self._wakeup:
            if not self._rows:
                return []
            batch = [self._rows.popleft()]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch_size:
            with self._wakeup:
                remaining = deadline - time.monotonic()
                if remaining > 0 and not (self._rows or self._tasks or self._stopping):
                    self._wakeup.wait(remaining)
                # Past the deadline, rows already queued still join; none is waited for.
                while self._rows and len(batch) < self._max_batch_size:
                    batch.append(self._rows.popleft())
                done = self._stopping or time.monotonic() >= deadline
            self._run_tasks()
            if done:
                break
        return batch

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

    def _poll(self, decoding: int, may_join: bool) -> list[RowState]:
        """Run queued tasks; hand out rows that may join a batch of ``decoding`` (never waits)."""
        self._run_tasks()
        joiners: list[RowState] = []
        with self._wakeup:
            if not may_join or self._stopping:
                return joiners
            while self._rows and decoding + len(joiners) < self._max_batch_size:
                joiners.append(self._rows.popleft())
        self._in_flight.extend(joiners)
        return joiners

    def _fail_queued(self) -> None:
        with self._wakeup:
            rows, self._rows = list(self._rows), deque()
            tasks, self._tasks = list(self._tasks), deque()
        error = NoHealthyBackend("the local model is shutting down")
        for row in rows:
            row.owner.on_error(error)
        for task in tasks:
            if task.future.set_running_or_notify_cancel():
                task.future.set_exception(error)
