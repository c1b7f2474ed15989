"""The reconcile loop runner (controller-runtime's shape): keys come from a work queue, a
level-based `reconcile(key)` returns `Result(requeue_after=...)` or raises; only the queue
decides retries (per-key exponential backoff plus the overall bucket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kybern.api import errors
from kybern.client import workqueue

log = logging.getLogger("kybern.controller")


@dataclass(frozen=True)
class Result:
    requeue_after: float = 0.0


Reconcile = Callable[[str], Awaitable[Result | None]]


class Controller:
    """Runs `workers` tasks that take keys from `queue` and call `reconcile`."""

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 1,
        queue: workqueue.WorkQueue[str] | None = None,
    ) -> None:
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue: workqueue.WorkQueue[str] = queue or workqueue.WorkQueue(name)
        self._tasks: list[asyncio.Task[None]] = []

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"{self.name}-{i}")
            for i in range(self.workers)
        ]

    async def stop(self) -> None:
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, workqueue.ShutDown):
                await t
        self._tasks = []

    async def process_one(self) -> None:
        key = await self.queue.get()
        try:
            result = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except errors.StatusError as e:
            level = logging.DEBUG if e.code == 409 else logging.WARNING
            log.log(level, "%s: reconcile %s: %s", self.name, key, e.message)
            self.queue.add_rate_limited(key)
        except Exception:
            log.exception("%s: reconcile %s failed", self.name, key)
            self.queue.add_rate_limited(key)
        else:
            self.queue.forget(key)
            if result is not None and result.requeue_after > 0:
                self.queue.add_after(key, result.requeue_after)
        finally:
            self.queue.done(key)

    async def _worker(self) -> None:
        with contextlib.suppress(workqueue.ShutDown):
            while True:
                await self.process_one()
