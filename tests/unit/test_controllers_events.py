"""The event correlator behind the controllers' event recorder (sans I/O, fake clock): an
identical event becomes a count-bumping patch of the first, many different messages of one
kind are combined into one event, and a per-object token bucket drops floods."""

from __future__ import annotations

from typing import Any

from kybern.client import events

Obj = dict[str, Any]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


OBJ = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "metadata": {"name": "rs", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
}


def event(reason: str = "R", message: str = "m", obj: Obj = OBJ) -> Obj:
    return {
        "involvedObject": events.object_reference(obj),
        "reason": reason,
        "message": message,
        "type": "Normal",
        "source": {"component": "c"},
    }


def test_identical_events_patch_a_count() -> None:
    clock = FakeClock()
    c = events.Correlator(clock)
    first = c.correlate(event())
    assert first is not None and first.verb == "create"
    assert first.body["count"] == 1 and first.namespace == "ns"
    assert first.body["metadata"]["name"].startswith("rs.")
    clock.now += 5
    second = c.correlate(event())
    assert second is not None and second.verb == "patch"
    assert second.name == first.name and second.body["count"] == 2
    assert second.body["lastTimestamp"] != first.body["firstTimestamp"]
    assert second.event["firstTimestamp"] == first.body["firstTimestamp"]
    other = c.correlate(event(message="different"))
    assert other is not None and other.verb == "create"


def test_similar_events_are_combined() -> None:
    c = events.Correlator(FakeClock(), aggregate_max=10)
    actions = [c.correlate(event(message=f"msg {i}")) for i in range(12)]
    creates = [a for a in actions if a is not None and a.verb == "create"]
    assert len(creates) == 10
    combined = creates[-1]
    assert combined.body["message"] == events.COMBINED + "msg 9"
    last = actions[-1]
    assert last is not None and last.verb == "patch" and last.name == combined.name
    assert last.body["count"] == 3


def test_flood_is_rate_limited_per_object() -> None:
    clock = FakeClock()
    c = events.Correlator(clock, burst=3, qps=1.0)
    results = [c.correlate(event()) for _ in range(5)]
    assert [r is not None for r in results] == [True, True, True, False, False]
    other = {**OBJ, "metadata": {**OBJ["metadata"], "name": "other", "uid": "u2"}}
    assert c.correlate(event(obj=other)) is not None  # its own bucket
    clock.now += 1.0
    assert c.correlate(event()) is not None  # one token back per second
    assert c.correlate(event()) is None


def test_cluster_scoped_objects_report_in_default() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "x"}}
    action = events.Correlator(FakeClock()).correlate(event(obj=node))
    assert action is not None and action.namespace == "default"
    assert action.body["involvedObject"] == {
        "kind": "Node",
        "name": "n1",
        "uid": "x",
        "apiVersion": "v1",
    }


def test_forget_after_a_failed_write() -> None:
    c = events.Correlator(FakeClock())
    first = c.correlate(event())
    assert first is not None
    c.forget(first)
    again = c.correlate(event())
    assert again is not None and again.verb == "create"
