"""CrashLoopBackOff as kubelet computes it (its `flowcontrol.Backoff` keyed by pod and
container): a container that exited is restarted at once the first time; each later restart
waits, counted from the moment it finished, 10 s doubling up to 5 min; a container that ran
longer than twice the cap since the previous finish starts over at the base. The base and cap
are parameters so tests can use short ones. Pure, with an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BASE = 10.0
DEFAULT_CAP = 300.0


@dataclass
class _Entry:
    delay: float
    last: float  # the finish time of the container this delay was computed for


class CrashLoopBackOff:
    def __init__(
        self,
        base: float = DEFAULT_BASE,
        cap: float = DEFAULT_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, finished: float) -> bool:
        return finished - entry.last > 2 * self.cap

    def in_backoff(self, key: str, finished: float) -> float:
        """Seconds still to wait before restarting the container of `key` that finished at
        `finished` (0: restart now)."""
        e = self._entries.get(key)
        if e is None or self._expired(e, finished):
            return 0.0
        return max(finished + e.delay - self.clock(), 0.0)

    def restarted(self, key: str, finished: float) -> float:
        """Record a restart of the container that finished at `finished`; returns the delay
        the next restart will wait."""
        e = self._entries.get(key)
        if e is None or self._expired(e, finished):
            e = _Entry(self.base, finished)
        else:
            e = _Entry(min(e.delay * 2, self.cap), finished)
        self._entries[key] = e
        return e.delay

    def current(self, key: str) -> float:
        """The delay now in force for `key` (the base when there is none)."""
        e = self._entries.get(key)
        return e.delay if e is not None else self.base

    def forget_prefix(self, prefix: str) -> None:
        for k in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[k]

    def gc(self, max_age: float | None = None) -> None:
        """Drop entries whose last finish is older than `max_age` (2 × cap by default)."""
        now = self.clock()
        limit = 2 * self.cap if max_age is None else max_age
        for k in [k for k, e in self._entries.items() if now - e.last > limit]:
            del self._entries[k]
