"""The work queue's contract (client-go `util/workqueue`), with a fake clock: deduplication,
fairness (FIFO), stinginess (an item is never handed to two workers at once, and one added while
it is processed goes back in line on `done`), delayed adds, per-item exponential backoff with
`forget`, the overall token bucket, and shutdown."""

from __future__ import annotations

import asyncio

import pytest

from kybern.client import workqueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue(clock: FakeClock | None = None, **kw: object) -> workqueue.WorkQueue[str]:
    c = clock or FakeClock()
    return workqueue.WorkQueue("t", clock=c, **kw)  # type: ignore[arg-type]


async def test_dedupes_and_is_fifo() -> None:
    q = queue()
    for item in ("a", "b", "a", "c", "b"):
        q.add(item)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


async def test_stingy_item_never_processed_twice_at_once() -> None:
    q = queue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # changed while being processed: held back, not handed out
    assert len(q) == 0
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.done("a")  # dirty: back in line, and the waiting worker gets it now
    assert await asyncio.wait_for(waiter, 1.0) == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_readd_drops_the_item() -> None:
    q = queue()
    q.add("a")
    await q.get()
    q.done("a")
    q.add("b")
    assert await q.get() == "b"


async def test_fair_across_items_while_one_is_processing() -> None:
    q = queue()
    q.add("a")
    q.add("b")
    assert await q.get() == "a"
    q.add("a")  # re-added while processing: goes behind b once done
    q.add("c")
    q.done("a")
    assert [await q.get() for _ in range(3)] == ["b", "c", "a"]


async def test_two_workers_get_different_items() -> None:
    q = queue()
    seen: list[str] = []

    async def worker() -> None:
        item = await q.get()
        seen.append(item)
        await asyncio.sleep(0)
        q.done(item)

    workers = [asyncio.create_task(worker()) for _ in range(2)]
    q.add("x")
    q.add("y")
    await asyncio.wait_for(asyncio.gather(*workers), 1.0)
    assert sorted(seen) == ["x", "y"]


async def test_add_after_with_a_fake_clock() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("a", 5.0)
    q.add_after("b", 2.0)
    q.add_after("a", 10.0)  # later than the pending add: the earlier one stands
    clock.now += 1.9
    q.flush_waiting()
    assert len(q) == 0
    clock.now += 0.1
    q.flush_waiting()
    assert len(q) == 1 and await q.get() == "b"
    clock.now += 3.0
    q.flush_waiting()
    assert await q.get() == "a"
    clock.now += 10.0
    q.flush_waiting()
    assert len(q) == 0  # the superseded later add does not fire again


async def test_add_after_sooner_replaces_a_later_one() -> None:
    clock = FakeClock()
    q = queue(clock)
    q.add_after("a", 30.0)
    q.add_after("a", 1.0)
    clock.now += 1.0
    q.flush_waiting()
    assert await q.get() == "a"
    q.done("a")
    clock.now += 30.0
    q.flush_waiting()
    assert len(q) == 0


async def test_add_after_zero_adds_now() -> None:
    q = queue()
    q.add_after("a", 0)
    assert await q.get() == "a"


async def test_add_after_fires_on_the_real_loop() -> None:
    q: workqueue.WorkQueue[str] = workqueue.WorkQueue("t")
    q.add_after("a", 0.01)
    assert await asyncio.wait_for(q.get(), 5.0) == "a"


def test_exponential_backoff_per_item_and_forget() -> None:
    b = workqueue.ExponentialBackoff(base=0.005, cap=0.04)
    assert [b.when("a") for _ in range(5)] == [0.005, 0.01, 0.02, 0.04, 0.04]
    assert b.when("b") == 0.005  # per item
    assert b.retries("a") == 5
    b.forget("a")
    assert b.retries("a") == 0 and b.when("a") == 0.005


def test_token_bucket_limits_overall_rate() -> None:
    clock = FakeClock()
    bucket = workqueue.TokenBucket(qps=10.0, burst=2, clock=clock)
    assert [round(bucket.when(), 6) for _ in range(4)] == [0.0, 0.0, 0.1, 0.2]
    clock.now += 10.0  # refilled up to the burst
    assert [round(bucket.when(), 6) for _ in range(3)] == [0.0, 0.0, 0.1]


async def test_add_rate_limited_uses_the_larger_delay() -> None:
    clock = FakeClock()
    bucket = workqueue.TokenBucket(qps=1.0, burst=1, clock=clock)
    q = queue(clock, backoff=workqueue.ExponentialBackoff(base=0.5), bucket=bucket)
    q.add_rate_limited("a")  # backoff 0.5, bucket 0
    assert q.num_requeues("a") == 1
    clock.now += 0.5
    q.flush_waiting()
    assert await q.get() == "a"
    q.done("a")
    q.add_rate_limited("a")  # backoff 1.0, bucket: one token owed -> 0.5
    clock.now += 0.9
    q.flush_waiting()
    assert len(q) == 0
    clock.now += 0.1
    q.flush_waiting()
    assert await q.get() == "a"
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_shutdown_wakes_workers() -> None:
    q = queue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(workqueue.ShutDown):
        await asyncio.wait_for(waiter, 1.0)
    q.add("late")  # ignored after shutdown
    assert len(q) == 0


async def test_items_queued_before_shutdown_are_still_handed_out() -> None:
    q = queue()
    q.add("a")
    q.shutdown()
    assert await q.get() == "a"
    with pytest.raises(workqueue.ShutDown):
        await q.get()
