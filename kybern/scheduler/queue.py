"""The scheduling queue (kube-scheduler's `PriorityQueue`): `activeQ`, a heap in queue-sort order
(priority, then time queued) that the scheduling loop pops; `backoffQ`, pods waiting out their
per-pod exponential backoff (1 s doubling to 10 s by attempts) after a failure; and the
`unschedulable` pods, parked until a cluster event that one of the plugins which rejected them
registered for (node added, pod deleted, ...) moves them back, or until they have waited
`max_in_unschedulable` seconds. A failure that races with such an event (the event came after
the pod was popped) goes to backoffQ instead of being parked. The clock is injectable and the
flushes are plain methods, so tests drive it without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Mapping

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import PodInfo

Less = Callable[[fw.QueuedPodInfo, fw.QueuedPodInfo], bool]


class _Entry:
    """A heap entry ordered by the queue-sort plugin's `less`."""

    __slots__ = ("less", "qpi", "removed")

    def __init__(self, qpi: fw.QueuedPodInfo, less: Less) -> None:
        self.qpi = qpi
        self.less = less
        self.removed = False

    def __lt__(self, other: _Entry) -> bool:
        return self.less(self.qpi, other.qpi)


class SchedulingQueue:
    def __init__(
        self,
        less: Less,
        *,
        clock: Callable[[], float] = time.monotonic,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_in_unschedulable: float = 300.0,
        plugin_events: Mapping[str, list[fw.ClusterEvent]] | None = None,
    ) -> None:
        self.less = less
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_in_unschedulable = max_in_unschedulable
        self.plugin_events = dict(plugin_events or {})
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._active: list[_Entry] = []
        self._active_by_key: dict[str, _Entry] = {}
        self._backoff: list[tuple[float, int, str]] = []  # (expiry, seq, key); lazy deletion
        self._backoff_by_key: dict[str, fw.QueuedPodInfo] = {}
        self._unschedulable: dict[str, fw.QueuedPodInfo] = {}
        self._seq = itertools.count()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    # ---- sizes ------------------------------------------------------------------------------

    def pending(self) -> tuple[int, int, int]:
        """(active, backoff, unschedulable) counts."""
        return len(self._active_by_key), len(self._backoff_by_key), len(self._unschedulable)

    def __contains__(self, key: object) -> bool:
        return (
            key in self._active_by_key
            or key in self._backoff_by_key
            or (key in self._unschedulable)
        )

    # ---- backoff ----------------------------------------------------------------------------

    def backoff_duration(self, qpi: fw.QueuedPodInfo) -> float:
        d = self.initial_backoff
        for _ in range(1, qpi.attempts):
            d *= 2
            if d > self.max_backoff:
                return self.max_backoff
        return d

    def backoff_expiry(self, qpi: fw.QueuedPodInfo) -> float:
        return qpi.timestamp + self.backoff_duration(qpi)

    def is_backing_off(self, qpi: fw.QueuedPodInfo) -> bool:
        return qpi.attempts > 0 and self.backoff_expiry(qpi) > self.clock()

    # ---- internal moves ---------------------------------------------------------------------

    def _push_active(self, qpi: fw.QueuedPodInfo) -> None:
        e = _Entry(qpi, self.less)
        self._active_by_key[qpi.key] = e
        heapq.heappush(self._active, e)
        self._wake()

    def _push_backoff(self, qpi: fw.QueuedPodInfo) -> None:
        self._backoff_by_key[qpi.key] = qpi
        heapq.heappush(self._backoff, (self.backoff_expiry(qpi), next(self._seq), qpi.key))

    def _remove(self, key: str) -> fw.QueuedPodInfo | None:
        e = self._active_by_key.pop(key, None)
        if e is not None:
            e.removed = True
            return e.qpi
        qpi = self._backoff_by_key.pop(key, None)
        if qpi is not None:
            return qpi
        return self._unschedulable.pop(key, None)

    def _requeue(self, qpi: fw.QueuedPodInfo) -> None:
        if self.is_backing_off(qpi):
            self._push_backoff(qpi)
        else:
            self._push_active(qpi)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- informer events --------------------------------------------------------------------

    def add(self, pod: PodInfo) -> None:
        """A new pending pod: straight to activeQ (or refresh it where it is)."""
        if pod.key in self:
            self.update(pod, spec_changed=False)
            return
        self._push_active(fw.QueuedPodInfo(pod, self.clock()))

    def update(self, pod: PodInfo, *, spec_changed: bool = True) -> None:
        """A pending pod changed. Where it waits, its object is replaced; a parked pod whose
        spec or labels changed is given another try (after its backoff)."""
        key = pod.key
        e = self._active_by_key.get(key)
        if e is not None:
            e.qpi.pod_info = pod
            return
        qpi = self._backoff_by_key.get(key)
        if qpi is not None:
            qpi.pod_info = pod
            return
        qpi = self._unschedulable.get(key)
        if qpi is not None:
            qpi.pod_info = pod
            if spec_changed:
                del self._unschedulable[key]
                self._requeue(qpi)
            return
        self._push_active(fw.QueuedPodInfo(pod, self.clock()))

    def delete(self, key: str) -> None:
        self._remove(key)

    # ---- the scheduling loop ----------------------------------------------------------------

    def pop_nowait(self) -> fw.QueuedPodInfo | None:
        while self._active:
            e = heapq.heappop(self._active)
            if e.removed:
                continue
            del self._active_by_key[e.qpi.key]
            e.qpi.attempts += 1
            self.scheduling_cycle += 1
            return e.qpi
        return None

    async def pop(self) -> fw.QueuedPodInfo:
        """The next pod to schedule (waits while activeQ is empty); raises CancelledError when
        the queue is closed."""
        while True:
            qpi = self.pop_nowait()
            if qpi is not None:
                return qpi
            if self._closed:
                raise asyncio.CancelledError()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        self._closed = True
        self._wake()

    def add_unschedulable_if_not_present(
        self, qpi: fw.QueuedPodInfo, cycle: int, *, error: bool = False
    ) -> None:
        """A pod failed in scheduling cycle `cycle`: park it, or back it off if it failed with
        an error or a move request came in since it was popped."""
        if qpi.key in self:
            return
        qpi.timestamp = self.clock()
        if error or self.move_request_cycle >= cycle:
            self._push_backoff(qpi)
        else:
            self._unschedulable[qpi.key] = qpi

    def activate(self, keys: list[str]) -> None:
        """Move the named pods from backoff or unschedulable straight to activeQ."""
        for key in keys:
            qpi = self._backoff_by_key.pop(key, None) or self._unschedulable.pop(key, None)
            if qpi is not None:
                self._push_active(qpi)

    # ---- cluster events ---------------------------------------------------------------------

    def _interested(self, qpi: fw.QueuedPodInfo, event: fw.ClusterEvent) -> bool:
        if event.resource == fw.WILDCARD or not qpi.unschedulable_plugins:
            return True
        for plugin in qpi.unschedulable_plugins:
            for registered in self.plugin_events.get(plugin, ()):
                if registered.matches(event):
                    return True
        return False

    def move_all_to_active_or_backoff(
        self,
        event: fw.ClusterEvent,
        pre_check: Callable[[fw.QueuedPodInfo], bool] | None = None,
    ) -> int:
        """Move the parked pods `event` may help (by their rejecting plugins' registered
        events, and `pre_check`); returns how many moved."""
        moved = 0
        if not self._unschedulable:  # nothing parked (the usual case on every bound pod)
            self.move_request_cycle = self.scheduling_cycle
            return 0
        for key, qpi in list(self._unschedulable.items()):
            if not self._interested(qpi, event):
                continue
            if pre_check is not None and not pre_check(qpi):
                continue
            del self._unschedulable[key]
            self._requeue(qpi)
            moved += 1
        self.move_request_cycle = self.scheduling_cycle
        return moved

    # ---- periodic flushes -------------------------------------------------------------------

    def flush_backoff_completed(self) -> int:
        now = self.clock()
        moved = 0
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            qpi = self._backoff_by_key.get(key)
            if qpi is None:
                continue
            if self.backoff_expiry(qpi) > now:  # re-pushed with a later expiry
                continue
            del self._backoff_by_key[key]
            self._push_active(qpi)
            moved += 1
        return moved

    def flush_unschedulable_left_over(self) -> int:
        now = self.clock()
        stale = [
            qpi
            for qpi in self._unschedulable.values()
            if now - qpi.timestamp > self.max_in_unschedulable
        ]
        for qpi in stale:
            del self._unschedulable[qpi.key]
            self._requeue(qpi)
        return len(stale)

    def next_backoff_expiry(self) -> float | None:
        while self._backoff and self._backoff[0][2] not in self._backoff_by_key:
            heapq.heappop(self._backoff)
        return self._backoff[0][0] if self._backoff else None
