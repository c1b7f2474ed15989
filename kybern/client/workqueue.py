"""A work queue with client-go's contract: fair (FIFO), stingy (an item is never processed by
two workers at once; one re-added while processing goes back in line on `done`), deduplicating,
delaying (`add_after`) and rate-limited (`add_rate_limited`: per-item exponential backoff,
capped, plus an overall token bucket). The clock is injectable for exact unit tests."""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers stop."""


class ExponentialBackoff:
    """base * 2^failures, capped (client-go: 5 ms .. 1000 s)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self.failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self.failures.get(item, 0)
        self.failures[item] = n + 1
        return min(self.base * (2**n), self.cap)

    def forget(self, item: Hashable) -> None:
        self.failures.pop(item, None)

    def retries(self, item: Hashable) -> int:
        return self.failures.get(item, 0)


class TokenBucket:
    """Overall limit: `qps` tokens per second, `burst` at most; `when()` is the delay until
    the next token is ours (tokens are reserved, so delays grow under a storm)."""

    def __init__(
        self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()

    def when(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.qps)
        self.last = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps


class WorkQueue(Generic[T]):
    def __init__(
        self,
        name: str = "",
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: ExponentialBackoff | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.backoff = backoff or ExponentialBackoff()
        self.bucket = bucket or TokenBucket(clock=clock)
        self._queue: collections.deque[T] = collections.deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiting: list[tuple[float, int, T]] = []  # (ready_at, seq, item)
        self._ready_at: dict[T, float] = {}  # each waiting item once, at its earliest time
        self._seq = itertools.count()
        self._shutting_down = False
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item not in self._processing:
            self._queue.append(item)
            self._notify()

    def add_after(self, item: T, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        at = self.clock() + delay
        if item in self._ready_at and self._ready_at[item] <= at:
            return  # already waiting to be added sooner
        self._ready_at[item] = at
        heapq.heappush(self._waiting, (at, next(self._seq), item))
        self._arm()

    def add_rate_limited(self, item: T) -> None:
        self.add_after(item, max(self.backoff.when(item), self.bucket.when()))

    def forget(self, item: T) -> None:
        self.backoff.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.backoff.retries(item)

    async def get(self) -> T:
        """The next item; the caller must call `done(item)` when finished with it."""
        while True:
            self.flush_waiting()
            if self._queue:
                item = self._queue.popleft()
                self._processing.add(item)
                self._dirty.discard(item)
                return item
            if self._shutting_down:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            finally:
                if fut in self._getters:
                    self._getters.remove(fut)

    def done(self, item: T) -> None:
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._notify()

    def shutdown(self) -> None:
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
        self._notify()

    def flush_waiting(self) -> None:
        """Move items whose delay has passed into the queue (a fake clock calls this)."""
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            at, _, item = heapq.heappop(self._waiting)
            if self._ready_at.get(item) != at:
                continue  # superseded by an earlier add_after
            del self._ready_at[item]
            self.add(item)

    def _notify(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not self._shutting_down:
                    return

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(self._waiting[0][0] - self.clock(), 0.0)
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.flush_waiting()
        if self._waiting:
            self._arm()
