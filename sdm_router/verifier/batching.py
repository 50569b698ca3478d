"""A generic async micro-batcher whose batch function runs on one dedicated worker thread.

Callers ``await submit(item)``; items queue until ``max_batch_size`` are waiting or the
oldest has waited ``max_wait_ms``, then the worker thread (which owns the device) runs the
synchronous batch function once and resolves each caller's future on its event loop. An
exception from the batch function is delivered to every caller of that batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class BatchStats:
    """Counters and the recent batch sizes."""

    batches: int
    items: int
    recent_sizes: tuple[int, ...]
    max_batch_size: int
    max_wait_ms: float


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]
    loop: asyncio.AbstractEventLoop


class BatcherClosedError(RuntimeError):
    """Raised by ``submit`` after ``close`` (or before ``start``)."""


def _resolve(future: asyncio.Future[Out], value: Out | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


class MicroBatcher(Generic[In, Out]):
    """Batches concurrent ``submit`` calls into calls of a synchronous batch function."""

    def __init__(
        self,
        function: Callable[[list[In]], list[Out]],
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "micro-batcher",
        history: int = 256,
    ) -> None:
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self._function = function
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self._on_batch = on_batch
        self._name = name
        self._queue: queue.Queue[_Pending[In, Out] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._batches = 0
        self._items = 0
        self._recent: deque[int] = deque(maxlen=history)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._closed = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Finish queued work, then stop the worker thread."""
        if self._thread is None:
            return
        self._closed = True
        self._queue.put(None)
        thread, self._thread = self._thread, None
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    async def submit(self, item: In) -> Out:
        """Queue ``item`` and await its result without blocking the event loop."""
        if self._thread is None or self._closed:
            raise BatcherClosedError("the micro-batcher is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.put(_Pending(item, future, loop))
        return await future

    def stats(self) -> BatchStats:
        """A snapshot of the batch counters."""
        with self._lock:
            return BatchStats(
                self._batches, self._items, tuple(self._recent),
                self.max_batch_size, self.max_wait_ms,
            )  # fmt: skip

    def _collect(self, first: _Pending[In, Out]) -> tuple[list[_Pending[In, Out]], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.max_wait_ms / 1000.0
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                nxt = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            batch.append(nxt)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._collect(first)
            self._execute(batch)
        self._drain()

    def _drain(self) -> None:
        leftovers = []
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if pending is not None:
                leftovers.append(pending)
        if leftovers:
            self._execute(leftovers)

    def _execute(self, batch: list[_Pending[In, Out]]) -> None:
        with self._lock:
            self._batches += 1
            self._items += len(batch)
            self._recent.append(len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            results = self._function([p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"batch function returned {len(results)} results for {len(batch)}"
                )
        except BaseException as error:  # delivered to every caller of this batch
            for p in batch:
                p.loop.call_soon_threadsafe(_resolve, p.future, None, error)
            return
        for p, result in zip(batch, results, strict=True):
            p.loop.call_soon_threadsafe(_resolve, p.future, result, None)
