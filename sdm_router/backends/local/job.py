"""A request's bridge between the worker thread and the awaiting coroutine."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from sdm_router.backends.local.rows import RowState
from sdm_router.core.generation import StreamDelta, Usage


class Job:
    """Owner of a request's rows: resolves a future when all are done, or feeds a stream.

    Worker-side callbacks hand results to the event loop with ``call_soon_threadsafe``; a job
    whose loop has closed drops them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, rows: int, *, stream: bool) -> None:
        self._loop = loop
        self._cancelled = threading.Event()
        self._remaining = rows
        self.prompt_tokens = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.deltas: asyncio.Queue[StreamDelta | BaseException] | None = (
            asyncio.Queue() if stream else None
        )

    def cancel(self) -> None:
        """Mark the request abandoned; its rows leave the batch at the next step."""
        self._cancelled.set()

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def on_progress(self, row: RowState) -> None:
        """Stream whatever text became safe to show (streams only). A finished row that stays
        one more step to record its last token's states sends its last piece when done."""
        if self.deltas is None or row.feeding_last:
            return
        self._send(row)

    def _send(self, row: RowState) -> None:
        assert self.deltas is not None
        delta = row.take_delta()
        if not (delta.text or delta.token_logprobs or row.finished):
            return
        usage = None
        if row.finished:
            usage = Usage(self.prompt_tokens, len(row.token_ids))
        item = StreamDelta(
            index=row.spec.index,
            text=delta.text,
            finish_reason=row.finish_reason,
            token_logprobs=delta.token_logprobs,
            usage=usage,
            recorded=row.recorded_states() if row.finished else None,
        )
        self._call(self.deltas.put_nowait, item)

    def on_finished(self, row: RowState) -> None:
        """Count the row done; resolve :attr:`done` after the last one."""
        if self.deltas is not None and row.recorder is not None and row.finish_reason == "length":
            self._send(row)  # held back by on_progress while its last token was fed
        self._remaining -= 1
        if self._remaining == 0:
            self._call(self._resolve, None)

    def on_error(self, error: BaseException) -> None:
        """Fail the request (idempotent: several rows may report the same failure)."""
        self._call(self._resolve, error)
        if self.deltas is not None:
            self._call(self.deltas.put_nowait, error)

    def _resolve(self, error: BaseException | None) -> None:
        if self.done.done() or self.cancelled():
            return
        if error is None or self.deltas is not None:
            # A stream reports its error through the queue; nobody awaits ``done``'s exception.
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def _call(self, callback: Callable[[Any], None], argument: Any) -> None:
        # RuntimeError: the loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, argument)
