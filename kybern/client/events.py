"""The event recorder controllers and the scheduler use to write core/v1 Events, shaped like
client-go's: `EventBroadcaster.new_recorder(component)` hands out recorders whose `event()`
never blocks; a sans-I/O `Correlator` turns each event into a create, a count-bumping patch of
an identical earlier event, or a drop (a per-object token bucket, so a hot loop cannot flood
the store), aggregating many similar messages into one "(combined from similar events)" event;
one writer task sends the results to the API server."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kybern.api import errors, registry
from kybern.client import rest

log = logging.getLogger("kybern.events")
Obj = dict[str, Any]
EVENTS = registry.Resource(
    group="", version="v1", kind="Event", plural="events", namespaced=True, has_spec=False
)
LRU_SIZE = 4096
AGGREGATE_MAX = 10  # distinct messages of one kind of event before they are combined
AGGREGATE_INTERVAL = 600.0  # seconds
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0  # one more event per object every 5 minutes once the burst is used
COMBINED = "(combined from similar events): "


def _format_rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# the last second formatted (most events come within the same second) and its text; a time
# `t` with `sec <= t < sec + 0.999999` shows `sec` (its microseconds do not round up into the
# next second), anything else (another second, negative, NaN) is formatted
_last_second: tuple[float, str] = (math.nan, "")


def _rfc3339(t: float) -> str:
    global _last_second
    sec, text = _last_second
    if sec <= t < sec + 0.999999:
        return text
    text = _format_rfc3339(t)
    whole = int(t)
    if 0.0 <= t - whole < 0.999999:
        _last_second = (float(whole), text)
    return text


def object_reference(obj: Obj) -> Obj:
    """The `involvedObject` of an event about `obj`: its non-empty kind, namespace, name, uid,
    apiVersion and resourceVersion, in that order."""
    m = obj.get("metadata") or {}
    ref: Obj = {}
    if v := obj.get("kind"):
        ref["kind"] = v
    if v := m.get("namespace"):
        ref["namespace"] = v
    if v := m.get("name"):
        ref["name"] = v
    if v := m.get("uid"):
        ref["uid"] = v
    if v := obj.get("apiVersion"):
        ref["apiVersion"] = v
    if v := m.get("resourceVersion"):
        ref["resourceVersion"] = v
    return ref


class _LRU(collections.OrderedDict[str, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def lookup(self, key: str) -> Any:
        v = self.get(key)
        if v is not None:
            self.move_to_end(key)
        return v

    def store(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass
class _Seen:
    name: str
    namespace: str
    event: Obj  # as last written, so a vanished event can be created again


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    since: float = 0.0


@dataclass(frozen=True)
class Action:
    """What the writer does with one event: `create` it, `patch` an earlier one, or nothing."""

    verb: str  # create | patch
    namespace: str
    name: str
    body: Obj  # the event (create) or the patch
    event: Obj = field(default_factory=dict)  # patch: the whole event, to re-create it
    key: str = ""  # the correlator's dedup key, so `forget` needs no scan


class Correlator:
    """Sans-I/O: decides per event whether to create, patch (count++) or drop it."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        burst: int = SPAM_BURST,
        qps: float = SPAM_QPS,
        aggregate_max: int = AGGREGATE_MAX,
        aggregate_interval: float = AGGREGATE_INTERVAL,
    ) -> None:
        self.clock = clock
        self.burst = burst
        self.qps = qps
        self.aggregate_max = aggregate_max
        self.aggregate_interval = aggregate_interval
        self._buckets = _LRU(LRU_SIZE)
        self._similar = _LRU(LRU_SIZE)
        self._seen = _LRU(LRU_SIZE)
        self._seq = itertools.count()

    def _allow(self, key: str, now: float) -> bool:
        b: _Bucket | None = self._buckets.lookup(key)
        if b is None:
            b = _Bucket(float(self.burst), now)
            self._buckets.store(key, b)
        b.tokens = min(float(self.burst), b.tokens + (now - b.last) * self.qps)
        b.last = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def correlate(self, event: Obj) -> Action | None:
        now = self.clock()
        ref = event["involvedObject"]
        src = event.get("source") or {}
        obj_key = (  # the fields joined by NUL (f-strings format JSON values as str() does)
            f"{src.get('component', '')}\x00{src.get('host', '')}\x00{ref.get('kind', '')}"
            f"\x00{ref.get('namespace', '')}\x00{ref.get('name', '')}\x00{ref.get('uid', '')}"
            f"\x00{ref.get('apiVersion', '')}"
        )
        if not self._allow(obj_key, now):
            return None
        agg_key = "\x00".join((obj_key, event.get("type", ""), event.get("reason", "")))
        similar: _Similar | None = self._similar.lookup(agg_key)
        if similar is None or now - similar.since > self.aggregate_interval:
            similar = _Similar(since=now)
            self._similar.store(agg_key, similar)
        message = event.get("message", "")
        dedup_key = agg_key + "\x00" + message
        if message not in similar.messages:
            if len(similar.messages) >= self.aggregate_max - 1:
                event["message"] = COMBINED + message
                dedup_key = agg_key + "\x00" + COMBINED
            else:
                similar.messages.add(message)
        ts = _rfc3339(now)
        seen: _Seen | None = self._seen.lookup(dedup_key)
        if seen is not None:
            patch = {"count": seen.event["count"] + 1, "lastTimestamp": ts}
            patch["message"] = event["message"]
            seen.event.update(patch)
            return Action("patch", seen.namespace, seen.name, patch, dict(seen.event), dedup_key)
        ns = ref.get("namespace") or "default"
        name = "%s.%x" % (ref.get("name", "event"), time.time_ns() + next(self._seq))
        event["metadata"] = {"name": name, "namespace": ns}
        event.update(count=1, firstTimestamp=ts, lastTimestamp=ts)
        self._seen.store(dedup_key, _Seen(name, ns, dict(event)))
        return Action("create", ns, name, event, key=dedup_key)

    def forget(self, action: Action) -> None:
        """The write of `action` failed for good: the next identical event creates anew."""
        if action.key:  # O(1): a full queue drops events at the rate they come in
            seen = self._seen.get(action.key)
            if seen is not None and (seen.name, seen.namespace) == (action.name, action.namespace):
                del self._seen[action.key]
            return
        for key, seen in list(self._seen.items()):
            if seen.name == action.name and seen.namespace == action.namespace:
                del self._seen[key]


class EventRecorder:
    """Records events for one component (`source.component`, `reportingComponent`)."""

    def __init__(self, broadcaster: EventBroadcaster, component: str, host: str = "") -> None:
        self.broadcaster = broadcaster
        self.component = component
        self.host = host

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Never blocks; `type_` is `Normal` or `Warning`."""
        b = self.broadcaster
        ev: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "involvedObject": object_reference(obj),
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": (
                {"component": self.component, "host": self.host}
                if self.host
                else {"component": self.component}
            ),
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host or self.component,
        }
        action = b.correlator.correlate(ev)
        if action is None:
            b.dropped += 1
            return
        b.submit(action)


class EventBroadcaster:
    """Owns the correlator and the writer task that sends events to the API server."""

    def __init__(
        self,
        client: rest.Client,
        *,
        clock: Callable[[], float] = time.time,
        queue_size: int = 1000,
        correlator: Correlator | None = None,
    ) -> None:
        self.client = client
        self.correlator = correlator or Correlator(clock)
        self._queue: asyncio.Queue[Action] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def new_recorder(self, component: str, host: str = "") -> EventRecorder:
        return EventRecorder(self, component, host)

    def submit(self, action: Action) -> None:
        try:
            self._queue.put_nowait(action)
        except asyncio.QueueFull:
            self.dropped += 1
            self.correlator.forget(action)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-writer")

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every submitted event was written (or given up)."""
        await asyncio.wait_for(self._queue.join(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            action = await self._queue.get()
            try:
                await self._write(action)
            finally:
                self._queue.task_done()

    async def _write(self, action: Action) -> None:
        for attempt in range(3):
            try:
                if action.verb == "patch":
                    try:
                        await self.client.patch(EVENTS, action.name, action.body, action.namespace)
                    except errors.StatusError as e:
                        if e.code != 404:
                            raise
                        await self._create_again(action)
                else:
                    await self.client.create(EVENTS, action.body, action.namespace)
                self.written += 1
                return
            except errors.StatusError as e:
                # 403: the namespace is terminating; 409/422: nothing a retry would fix
                log.debug("event %s/%s not written: %s", action.namespace, action.name, e)
                break
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                log.debug("event %s: %s (attempt %d)", action.name, e, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        self.correlator.forget(action)

    async def _create_again(self, action: Action) -> None:
        """The patched event is gone (TTL, namespace churn): create it under its name."""
        ev = dict(action.event)
        ev["metadata"] = {"name": action.name, "namespace": action.namespace}
        with contextlib.suppress(errors.StatusError):
            await self.client.create(EVENTS, ev, action.namespace)


__all__ = ["Action", "Correlator", "EventBroadcaster", "EventRecorder", "object_reference"]
