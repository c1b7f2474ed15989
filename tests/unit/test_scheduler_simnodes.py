"""Unit tests of the simulated nodes' pure parts (`kybern.simnodes.objects`): Go durations, pod
CIDR and IP allocation, the Node and Lease objects, and the pod status reported for running,
completed, failed and crash-looping pods."""

from __future__ import annotations

from typing import Any

import pytest

from kybern.simnodes import objects as o


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3s", 3.0), ("1m30s", 90.0), ("250ms", 0.25), ("1.5h", 5400.0), ("0", 0.0), ("-2s", -2.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert o.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3", "s", "3x", "1m 2s", "abc"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        o.parse_duration(text)


def test_subnets_skip_used_ones_and_node_ips_follow() -> None:
    alloc = o.SubnetAllocator("10.128.0.0/9", "172.16.0.0/12", ["10.128.1.0/24"])
    assert [alloc.allocate() for _ in range(3)] == [
        "10.128.0.0/24",
        "10.128.2.0/24",
        "10.128.3.0/24",
    ]
    assert alloc.node_ip("10.128.0.0/24") == "172.16.0.1"
    assert alloc.node_ip("10.128.3.0/24") == "172.16.0.4"
    small = o.SubnetAllocator("10.0.0.0/23", "172.16.0.0/12")
    small.allocate()
    small.allocate()
    with pytest.raises(ValueError, match="exhausted"):
        small.allocate()


def test_pod_ips_are_reused_after_release() -> None:
    ips = o.PodIPs("10.128.5.0/24")
    a, b = ips.allocate(), ips.allocate()
    assert (a, b) == ("10.128.5.2", "10.128.5.3")
    ips.release(a)
    ips.reserve("10.128.5.4")
    seen = {ips.allocate() for _ in range(251)}  # .2 to .254 less .3 and .4
    assert a in seen and "10.128.5.4" not in seen and len(seen) == 251
    with pytest.raises(ValueError):
        ips.allocate()


def test_pod_ips_of_smaller_and_ipv6_ranges() -> None:
    assert [o.PodIPs("10.128.5.128/25").allocate() for _ in range(1)] == ["10.128.5.130"]
    ips = o.PodIPs("fd00:1::/120")
    assert (ips.allocate(), ips.allocate()) == ("fd00:1::2", "fd00:1::3")


def test_times_match_datetime_formatting() -> None:
    import datetime

    for t in (0.0, 1700000000.0, 1700000000.5, 1764367659.785403, 1764367659.9999996):
        when = datetime.datetime.fromtimestamp(t, datetime.UTC)
        assert o.rfc3339(t) == when.strftime("%Y-%m-%dT%H:%M:%SZ")
        micro = o.micro_time(t)
        assert micro.startswith(when.strftime("%Y-%m-%dT%H:%M:%S."))
        assert abs(o.parse_time(micro) - t) < 2e-6  # type: ignore[operator]


def test_node_and_lease_objects() -> None:
    n = o.node_object(
        "sim-0",
        cidr="10.128.0.0/24",
        ip="172.16.0.1",
        capacity={"cpu": "32", "memory": "256Gi", "pods": "110"},
        labels={"zone": "a"},
        taints=[],
        now="2024-01-01T00:00:00Z",
    )
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == "sim-0"
    assert n["metadata"]["labels"]["zone"] == "a"
    assert n["metadata"]["annotations"][o.SIMULATED] == "true"
    assert n["status"]["allocatable"]["pods"] == "110"
    assert n["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert {c["type"]: c["status"] for c in n["status"]["conditions"]} == {
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "Ready": "True",
    }
    assert o.node_ready(n)
    lease = o.lease_object("sim-0", "uid-1", 40, "2024-01-01T00:00:00.000000Z")
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "sim-0",
        "uid": "uid-1",
    }
    assert lease["spec"]["holderIdentity"] == "sim-0"


def pod(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": annotations},
        "spec": {
            "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx"}],
            "initContainers": [{"name": "init", "image": "busybox"}],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def sim(**kw: Any) -> o.PodSim:
    return o.PodSim("u1", "sim-0", "10.128.0.2", "172.16.0.1", 1000.0, 1000.0, **kw)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_running_pod_status() -> None:
    st = o.pod_status(pod(), sim())
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.128.0.2" and st["podIPs"] == [{"ip": "10.128.0.2"}]
    assert st["hostIP"] == "172.16.0.1"
    assert st["qosClass"] == "BestEffort"
    assert conditions(st) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert [c["name"] for c in st["containerStatuses"]] == ["a", "b"]
    a = st["containerStatuses"][0]
    assert a["ready"] and a["started"] and a["restartCount"] == 0
    assert a["state"] == {"running": {"startedAt": "1970-01-01T00:16:40Z"}}
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_completed_and_failed_pod_status() -> None:
    done = o.pod_status(pod(), sim(state=o.TERMINATED, final=True, finished=1003.0))
    assert done["phase"] == "Succeeded"
    assert conditions(done)["Ready"] == "False"
    ready = next(c for c in done["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"
    term = done["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    failed = o.pod_status(pod(), sim(state=o.TERMINATED, final=True, exit_code=3, finished=1003.0))
    assert failed["phase"] == "Failed"
    assert failed["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"
    assert failed["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_crash_loop_back_off_status() -> None:
    last = {"terminated": {"exitCode": 1, "reason": "Error"}}
    st = o.pod_status(pod(), sim(state=o.WAITING, restarts=1, last_state=last), backoff=10.0)
    assert st["phase"] == "Running"
    cs = st["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["state"]["waiting"]["message"].startswith(
        "back-off 10s restarting failed container=a"
    )
    assert cs["restartCount"] == 1 and cs["lastState"] == last and not cs["ready"]
    assert conditions(st)["Ready"] == "False"


def test_annotations() -> None:
    assert o.run_for(pod(**{o.RUN_FOR: "2s"})) == 2.0
    assert o.run_for(pod()) is None
    assert o.run_for(pod(**{o.RUN_FOR: "soon"})) is None
    assert o.exit_code(pod(**{o.EXIT_CODE: "7"})) == 7
    assert o.exit_code(pod()) == 0


def test_status_differs() -> None:
    desired = {"phase": "Running", "podIP": "1.2.3.4"}
    assert o.status_differs({"phase": "Pending"}, desired)
    assert not o.status_differs({**desired, "qosClass": "BestEffort"}, desired)
