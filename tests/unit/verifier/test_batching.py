"""MicroBatcher: batching, one worker thread, error propagation, lifecycle."""

import asyncio
import threading

import pytest

from sdm_router.verifier.batching import BatcherClosedError, MicroBatcher


async def test_concurrent_submits_are_batched_on_one_thread() -> None:
    threads: set[int] = set()
    seen: list[int] = []

    def double(items: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        return [2 * i for i in items]

    batcher = MicroBatcher(double, max_batch_size=8, max_wait_ms=50, on_batch=seen.append)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    await batcher.close()
    assert results == [2 * i for i in range(20)]
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert max(seen) == 8 and sum(seen) == 20 and len(seen) < 20
    stats = batcher.stats()
    assert stats.items == 20 and stats.recent_sizes == tuple(seen)


async def test_exception_reaches_every_caller_of_the_batch() -> None:
    def fail(items: list[int]) -> list[int]:
        raise ValueError(f"bad batch of {len(items)}")

    batcher = MicroBatcher(fail, max_batch_size=4, max_wait_ms=50)
    batcher.start()
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    await batcher.close()
    assert all(isinstance(o, ValueError) and "bad batch of 4" in str(o) for o in outcomes)


async def test_event_loop_stays_responsive_while_batch_runs() -> None:
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        release.wait(2)
        return items

    batcher = MicroBatcher(slow, max_batch_size=1, max_wait_ms=0)
    batcher.start()
    task = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    assert not task.done()  # the loop keeps running while the worker is blocked
    release.set()
    assert await task == 1
    await batcher.close()


async def test_submit_after_close_is_refused() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items)
    with pytest.raises(BatcherClosedError):
        await batcher.submit(1)
    batcher.start()
    await batcher.close()
    with pytest.raises(BatcherClosedError):
        await batcher.submit(1)
