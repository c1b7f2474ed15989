"""Unit tests of the scheduling queue with a fake clock: activeQ order (priority, then time),
per-pod exponential backoff (1 s doubling to 10 s), parking unschedulable pods and moving them
back only on cluster events their rejecting plugins registered, the move-request race, the
periodic flushes, updates and deletes, and `pop` waking up on an add."""

from __future__ import annotations

import asyncio
from typing import Any

from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import PodInfo
from kybern.scheduler.plugins.basic import PrioritySort
from kybern.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, priority: int = 0, **spec: Any) -> PodInfo:
    return PodInfo(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"containers": [{"name": "c"}], "priority": priority, **spec},
        }
    )


NODE_EVENTS = [fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_ALLOCATABLE)]
POD_EVENTS = [fw.ClusterEvent(fw.ASSIGNED_POD, fw.ActionType.DELETE)]


def queue(clock: Clock) -> SchedulingQueue:
    return SchedulingQueue(
        PrioritySort().less,
        clock=clock,
        plugin_events={"NodeResourcesFit": NODE_EVENTS + POD_EVENTS, "NodeAffinity": NODE_EVENTS},
    )


def names(q: SchedulingQueue) -> list[str]:
    out = []
    while (qpi := q.pop_nowait()) is not None:
        out.append(qpi.pod_info.name)
    return out


def test_active_queue_orders_by_priority_then_time() -> None:
    clock = Clock()
    q = queue(clock)
    for name, prio in (("a", 0), ("b", 10), ("c", 0), ("d", 10)):
        q.add(pod(name, prio))
        clock.now += 1
    assert names(q) == ["b", "d", "a", "c"]
    assert q.scheduling_cycle == 4


def test_backoff_doubles_per_attempt_up_to_the_cap() -> None:
    clock = Clock()
    q = queue(clock)
    qpi = fw.QueuedPodInfo(pod("a"), clock())
    durations = []
    for attempts in range(1, 7):
        qpi.attempts = attempts
        durations.append(q.backoff_duration(qpi))
    assert durations == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_failed_pod_with_error_waits_out_its_backoff() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("a"))
    qpi = q.pop_nowait()
    assert qpi is not None
    q.add_unschedulable_if_not_present(qpi, q.scheduling_cycle, error=True)
    assert q.pending() == (0, 1, 0)
    clock.now += 0.5
    assert q.flush_backoff_completed() == 0
    assert q.next_backoff_expiry() == clock.now + 0.5
    clock.now += 0.5
    assert q.flush_backoff_completed() == 1
    assert names(q) == ["a"]


def test_unschedulable_pod_moves_only_on_events_its_plugins_registered() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("fit"))
    q.add(pod("affinity"))
    for plugin in ("NodeResourcesFit", "NodeAffinity"):
        qpi = q.pop_nowait()
        assert qpi is not None
        qpi.unschedulable_plugins = {plugin}
        q.add_unschedulable_if_not_present(qpi, q.scheduling_cycle)
    assert q.pending() == (0, 0, 2)
    # an assigned pod deleted frees resources: only the NodeResourcesFit reject may move
    assert q.move_all_to_active_or_backoff(fw.EVENT_ASSIGNED_POD_DELETE) == 1
    assert q.pending() == (0, 1, 1)  # still backing off (1 s after the failure)
    clock.now += 1.0
    q.flush_backoff_completed()
    assert names(q) == ["fit"]
    # a node label change does not help NodeResourcesFit, a new node helps both
    label = fw.ClusterEvent(fw.NODE, fw.ActionType.UPDATE_NODE_LABEL)
    assert q.move_all_to_active_or_backoff(label) == 0
    assert q.move_all_to_active_or_backoff(fw.EVENT_NODE_ADD) == 1
    assert names(q) == ["affinity"]  # its backoff had expired: straight to activeQ


def test_a_move_request_during_the_cycle_sends_the_failure_to_backoff() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("a"))
    qpi = q.pop_nowait()
    assert qpi is not None
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff(fw.EVENT_NODE_ADD)  # e.g. a node arrived meanwhile
    q.add_unschedulable_if_not_present(qpi, cycle)
    assert q.pending() == (0, 1, 0)


def test_pods_without_known_plugins_move_on_any_event_and_leftovers_flush() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("a"))
    q.add(pod("b"))
    a, b = q.pop_nowait(), q.pop_nowait()
    assert a is not None and b is not None
    b.unschedulable_plugins = {"NodeAffinity"}
    q.add_unschedulable_if_not_present(a, q.scheduling_cycle)
    q.add_unschedulable_if_not_present(b, q.scheduling_cycle)
    assert q.move_all_to_active_or_backoff(fw.EVENT_ASSIGNED_POD_DELETE) == 1  # a: no plugins
    clock.now += 301
    assert q.flush_unschedulable_left_over() == 1  # b, parked over 5 minutes
    assert q.flush_backoff_completed() == 1  # a, moved to backoffQ by the event
    assert sorted(names(q)) == ["a", "b"]


def test_update_of_a_parked_pod_retries_it_when_its_spec_changed() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("a"))
    qpi = q.pop_nowait()
    assert qpi is not None
    q.add_unschedulable_if_not_present(qpi, q.scheduling_cycle)
    q.update(pod("a"), spec_changed=False)  # e.g. our own status patch
    assert q.pending() == (0, 0, 1)
    clock.now += 2
    q.update(pod("a", nodeSelector={"x": "y"}))
    assert q.pending() == (1, 0, 0)
    popped = q.pop_nowait()
    assert popped is not None and popped.pod_info.spec["nodeSelector"] == {"x": "y"}
    assert popped.attempts == 2


def test_delete_removes_a_pod_from_every_sub_queue() -> None:
    clock = Clock()
    q = queue(clock)
    for name in "abc":
        q.add(pod(name))
    b = q.pop_nowait()
    c = q.pop_nowait()
    assert b is not None and c is not None
    q.add_unschedulable_if_not_present(b, q.scheduling_cycle)
    q.add_unschedulable_if_not_present(c, q.scheduling_cycle, error=True)
    for key in ("ns/a", "ns/b", "ns/c"):
        assert key in q
        q.delete(key)
    assert q.pending() == (0, 0, 0)
    clock.now += 20
    assert q.flush_backoff_completed() == 0
    assert q.pop_nowait() is None


def test_activate_moves_named_pods_to_active() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("a"))
    qpi = q.pop_nowait()
    assert qpi is not None
    q.add_unschedulable_if_not_present(qpi, q.scheduling_cycle, error=True)
    q.activate(["ns/a"])
    assert names(q) == ["a"]


async def test_pop_waits_for_an_add_and_close_ends_it() -> None:
    q = queue(Clock())
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add(pod("a"))
    qpi = await asyncio.wait_for(waiter, 5)
    assert qpi.pod_info.name == "a"
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    q.close()
    try:
        await asyncio.wait_for(waiter, 5)
    except asyncio.CancelledError:
        pass
    assert waiter.done()
