"""The micro-batching worker thread and the Job bridging it to asyncio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from sdm_router.backends.local.job import Job
from sdm_router.backends.local.rows import RowSpec, RowState
from sdm_router.backends.local.sampling import RowSampler
from sdm_router.backends.local.text import TextTracker
from sdm_router.backends.local.worker import BatchingWorker
from sdm_router.core.errors import NoHealthyBackend


def decode(ids: Sequence[int]) -> str:
    return "".join(chr(ord("a") + i) for i in ids)


def make_row(owner: Job, index: int = 0) -> RowState:
    spec = RowSpec((0,), 3, RowSampler(), index=index)
    return RowState(spec, owner, TextTracker(decode), frozenset({25}), str)


def finish_all(rows: Sequence[RowState], poll: object = None) -> None:
    """A stand-in decode: three tokens per row, reporting like the real loop."""
    for _ in range(3):
        for row in rows:
            if row.finished or row.owner.cancelled():
                continue
            row.accept(1, -0.25, [], [])
            row.owner.on_progress(row)
            if row.finished:
                row.owner.on_finished(row)


async def test_rows_queued_together_share_one_batch_up_to_the_limit() -> None:
    sizes: list[int] = []
    threads: set[int] = set()

    def decode_batch(rows: Sequence[RowState], poll: object) -> None:
        sizes.append(len(rows))
        threads.add(threading.get_ident())
        finish_all(rows)

    worker = BatchingWorker(decode_batch, max_batch_size=4, max_wait_s=0.05, name="test")
    worker.start()
    jobs = [Job(asyncio.get_running_loop(), 2, stream=False) for _ in range(3)]
    rows = [[make_row(job, i) for i in range(2)] for job in jobs]
    for job_rows in rows:
        worker.submit(job_rows)
    await asyncio.wait_for(asyncio.gather(*(job.done for job in jobs)), 5)
    worker.stop(5)
    assert sorted(sizes, reverse=True) == [4, 2]
    assert threading.get_ident() not in threads and len(threads) == 1
    assert all(row.text == "bbb" and row.finish_reason == "length" for r in rows for row in r)


async def test_a_failing_batch_fails_its_requests_and_the_worker_survives() -> None:
    calls = 0

    def decode_batch(rows: Sequence[RowState], poll: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("device lost")
        finish_all(rows)

    worker = BatchingWorker(decode_batch, max_batch_size=8, max_wait_s=0.0, name="test")
    worker.start()
    loop = asyncio.get_running_loop()
    failing = Job(loop, 1, stream=False)
    worker.submit([make_row(failing)])
    with pytest.raises(RuntimeError, match="device lost"):
        await asyncio.wait_for(failing.done, 5)
    healthy = Job(loop, 1, stream=False)
    worker.submit([make_row(healthy)])
    await asyncio.wait_for(healthy.done, 5)
    worker.stop(5)
    assert not worker.alive


async def test_stop_fails_rows_still_queued() -> None:
    release, decoding = threading.Event(), threading.Event()

    def decode_batch(rows: Sequence[RowState], poll: object) -> None:
        decoding.set()
        release.wait(5)
        finish_all(rows)

    worker = BatchingWorker(decode_batch, max_batch_size=1, max_wait_s=0.0, name="test")
    worker.start()
    loop = asyncio.get_running_loop()
    first, second = Job(loop, 1, stream=False), Job(loop, 1, stream=False)
    worker.submit([make_row(first)])
    worker.submit([make_row(second)])
    assert await asyncio.to_thread(decoding.wait, 5)  # the first batch is in progress
    stopper = asyncio.create_task(asyncio.to_thread(worker.stop, 5))
    await asyncio.sleep(0.05)
    release.set()
    await stopper
    await asyncio.wait_for(first.done, 5)
    with pytest.raises(NoHealthyBackend):
        await asyncio.wait_for(second.done, 5)


async def test_a_streaming_job_emits_deltas_then_a_final_one_with_usage() -> None:
    worker = BatchingWorker(finish_all, max_batch_size=2, max_wait_s=0.0, name="test")
    worker.start()
    job = Job(asyncio.get_running_loop(), 1, stream=True)
    job.prompt_tokens = 1
    worker.submit([make_row(job)])
    assert job.deltas is not None
    deltas = [await asyncio.wait_for(job.deltas.get(), 5) for _ in range(3)]
    worker.stop(5)
    texts = [getattr(delta, "text", None) for delta in deltas]
    assert texts == ["b", "b", "b"]
    last = deltas[-1]
    assert not isinstance(last, BaseException)
    assert last.finish_reason == "length"
    assert last.usage is not None and last.usage.completion_tokens == 3


async def test_cancelled_job_rows_are_not_decoded() -> None:
    seen: list[int] = []

    def decode_batch(rows: Sequence[RowState], poll: object) -> None:
        finish_all(rows)
        seen.extend(len(row.token_ids) for row in rows)

    worker = BatchingWorker(decode_batch, max_batch_size=2, max_wait_s=0.05, name="test")
    worker.start()
    loop = asyncio.get_running_loop()
    gone, live = Job(loop, 1, stream=False), Job(loop, 1, stream=False)
    gone.cancel()
    worker.submit([make_row(gone), make_row(live)])
    await asyncio.wait_for(live.done, 5)
    await asyncio.to_thread(worker.stop, 5)
    assert seen == [0, 3]
    assert not gone.done.done()


async def test_a_task_runs_on_the_worker_thread_and_returns_or_raises() -> None:
    worker = BatchingWorker(finish_all, max_batch_size=2, max_wait_s=0.0, name="test")
    worker.start()
    where = worker.run(threading.get_ident).result(5)
    assert where != threading.get_ident()
    assert worker.run(worker.owns_current_thread).result(5) is True
    assert not worker.owns_current_thread()

    def broken() -> None:
        raise ValueError("bad forward")

    with pytest.raises(ValueError, match="bad forward"):
        worker.run(broken).result(5)
    assert worker.run(lambda: 7).result(5) == 7  # the worker survived the failed task
    worker.stop(5)


async def test_tasks_run_between_decoding_steps_not_after_the_batch() -> None:
    """A task queued while a batch decodes runs at the next step, on the decoding thread."""
    events: list[str] = []
    step_started = threading.Event()

    def decode_batch(rows: Sequence[RowState], poll: object) -> None:
        assert callable(poll)
        for step in range(3):
            events.append(f"step {step}")
            step_started.set()
            if step == 0:
                # the test queues a task while step 0 runs
                assert task_queued.wait(5)
            poll(len(rows), True)
        finish_all(rows)

    task_queued = threading.Event()
    worker = BatchingWorker(decode_batch, max_batch_size=2, max_wait_s=0.0, name="test")
    worker.start()
    job = Job(asyncio.get_running_loop(), 1, stream=False)
    worker.submit([make_row(job)])
    assert await asyncio.to_thread(step_started.wait, 5)
    future = worker.run(lambda: events.append("task"))
    task_queued.set()
    await asyncio.wait_for(job.done, 5)
    future.result(5)
    worker.stop(5)
    assert events == ["step 0", "task", "step 1", "step 2"]


async def test_tasks_fail_once_the_worker_stops() -> None:
    release = threading.Event()

    def decode_batch(rows: Sequence[RowState], poll: object) -> None:
        release.wait(5)
        finish_all(rows)

    worker = BatchingWorker(decode_batch, max_batch_size=1, max_wait_s=0.0, name="test")
    worker.start()
    job = Job(asyncio.get_running_loop(), 1, stream=False)
    worker.submit([make_row(job)])
    await asyncio.sleep(0.05)
    queued = worker.run(lambda: "never")  # waits behind a batch that does not poll
    stopper = asyncio.create_task(asyncio.to_thread(worker.stop, 5))
    await asyncio.sleep(0.05)
    with pytest.raises(NoHealthyBackend):
        worker.run(lambda: "refused")
    release.set()
    await stopper
    with pytest.raises(NoHealthyBackend):
        queued.result(5)
