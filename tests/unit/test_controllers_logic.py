"""Pure logic shared by the controllers, with a fake clock: expectations, pod deletion
ranking, slow-start batches, conditions, taint toleration and eviction times, node condition
taints, endpoint subsets, daemon pod placement, Job arithmetic and StatefulSet identities."""

from __future__ import annotations

from typing import Any

from kybern.controllers import (
    common,
    daemonset,
    endpoints,
    endpointslice,
    job,
    nodelifecycle,
    placement,
    statefulset,
)

Obj = dict[str, Any]
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def pod(
    name: str,
    *,
    node: str = "",
    phase: str = "Running",
    ready: bool | None = True,
    ready_since: float = T0,
    created: float = T0,
    restarts: int = 0,
    **extra: Any,
) -> Obj:
    status: Obj = {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": common.format_time(ready_since),
            }
        ]
    status.update(extra.pop("status", {}))
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": common.format_time(created),
            **extra.pop("metadata", {}),
        },
        "spec": {"nodeName": node, **extra.pop("spec", {})}
        if node
        else dict(extra.pop("spec", {})),
        "status": status,
    }


# ---- expectations ---------------------------------------------------------------------------


def test_expectations_block_until_observed() -> None:
    clock = FakeClock()
    e = common.Expectations(clock)
    assert e.satisfied("k")  # nothing recorded
    e.expect("k", adds=2)
    assert not e.satisfied("k")
    e.creation_observed("k")
    assert not e.satisfied("k") and e.pending("k") == (1, 0)
    e.creation_observed("k")
    assert e.satisfied("k")
    e.expect("k", deletes=["u1", "u2"])
    e.deletion_observed("k", "u1")
    e.deletion_observed("k", "u1")  # the same pod seen twice counts once
    assert not e.satisfied("k")
    e.lower("k", deletes=["u2"])  # that delete failed: it will never be observed
    assert e.satisfied("k")


def test_expectations_expire() -> None:
    clock = FakeClock()
    e = common.Expectations(clock, ttl=300)
    e.expect("k", adds=5)
    clock.now += 299
    assert not e.satisfied("k")
    clock.now += 2
    assert e.satisfied("k")
    e.forget("k")
    assert e.pending("k") == (0, 0)


# ---- pods -----------------------------------------------------------------------------------


def test_deletion_ranking() -> None:
    pods = [
        pod("ready-old", node="n1", ready_since=T0 - 100),
        pod("unassigned", ready=None, phase="Pending"),
        pod("pending", node="n1", phase="Pending", ready=None),
        pod("not-ready", node="n1", ready=False),
        pod("ready-new", node="n1", ready_since=T0),
        pod("restarts", node="n1", ready_since=T0 - 100, restarts=3),
    ]
    order = [p["metadata"]["name"] for p in common.rank_for_deletion(pods)]
    assert order == ["unassigned", "pending", "not-ready", "ready-new", "restarts", "ready-old"]


def test_ranking_prefers_doubled_up_nodes_and_newer_pods() -> None:
    a = pod("alone", node="n1")
    b1 = pod("crowded-1", node="n2", created=T0)
    b2 = pod("crowded-2", node="n2", created=T0 + 5)
    order = [p["metadata"]["name"] for p in common.rank_for_deletion([a, b1, b2], [a, b1, b2])]
    assert order == ["crowded-2", "crowded-1", "alone"]


def test_availability_and_activity() -> None:
    p = pod("p", ready_since=T0)
    assert common.is_pod_available(p, 0, T0)
    assert not common.is_pod_available(p, 10, T0 + 9)
    assert common.is_pod_available(p, 10, T0 + 10)
    assert not common.is_pod_active(pod("done", phase="Succeeded"))
    assert not common.is_pod_active(pod("going", metadata={"deletionTimestamp": "x"}))


def test_slow_start_and_templates() -> None:
    assert common.slow_start_batches(10) == [1, 2, 4, 3]
    assert common.slow_start_batches(0) == []
    owner = {"metadata": {"name": "rs", "namespace": "ns", "uid": "u"}}
    tpl = {
        "metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}},
        "spec": {"containers": []},
    }
    p = common.pod_from_template(tpl, owner, common.REPLICASETS)
    assert p["metadata"]["generateName"] == "rs-" and p["metadata"]["namespace"] == "ns"
    ref = p["metadata"]["ownerReferences"][0]
    assert ref == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": "u",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert common.controller_ref(p) == ref


def test_conditions_keep_transition_time() -> None:
    status: Obj = {}
    common.set_condition(status, "Ready", "True", "A", "first", "t1")
    common.set_condition(status, "Ready", "True", "A", "changed", "t2")  # same status+reason
    assert status["conditions"][0]["message"] == "first"
    common.set_condition(status, "Ready", "True", "B", "second", "t3")
    assert status["conditions"][0]["lastTransitionTime"] == "t1"
    common.set_condition(status, "Ready", "False", "C", "third", "t4")
    assert status["conditions"][0]["lastTransitionTime"] == "t4"
    common.remove_condition(status, "Ready")
    assert "conditions" not in status


# ---- taints and tolerations --------------------------------------------------------------------


def test_tolerates() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert placement.tolerates({"key": "k", "operator": "Equal", "value": "v"}, taint)
    assert not placement.tolerates({"key": "k", "value": "w"}, taint)
    assert placement.tolerates({"key": "k", "operator": "Exists"}, taint)
    assert placement.tolerates({"operator": "Exists"}, taint)  # tolerates everything
    assert not placement.tolerates({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint)


def test_eviction_time() -> None:
    added = common.format_time(T0)
    unreachable = {"key": placement.UNREACHABLE, "effect": "NoExecute", "timeAdded": added}
    plain = pod("p")
    assert placement.eviction_time(plain, [unreachable], 300, T0 + 1) == T0 + 300
    forever = pod(
        "f",
        spec={
            "tolerations": [
                {"key": placement.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
            ]
        },
    )
    assert placement.eviction_time(forever, [unreachable], 300, T0) is None
    brief = pod(
        "b",
        spec={
            "tolerations": [
                {
                    "key": placement.UNREACHABLE,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                }
            ]
        },
    )
    assert placement.eviction_time(brief, [unreachable], 300, T0) == T0 + 30
    custom = {"key": "dedicated", "effect": "NoExecute", "timeAdded": added}
    assert placement.eviction_time(plain, [custom], 300, T0 + 7) == T0 + 7  # not tolerated
    assert placement.eviction_time(plain, [{"key": "x", "effect": "NoSchedule"}], 300, T0) is None


def test_node_condition_taints() -> None:
    def node(ready: str, **spec: Any) -> Obj:
        return {
            "metadata": {"name": "n"},
            "spec": spec,
            "status": {
                "conditions": [
                    {"type": "Ready", "status": ready},
                    {"type": "MemoryPressure", "status": "True"},
                ]
            },
        }

    keep = {"key": "mine", "effect": "NoSchedule"}
    out = nodelifecycle.desired_taints(node("Unknown"), "now", [keep])
    assert {(t["key"], t["effect"]) for t in out} == {
        ("mine", "NoSchedule"),
        (placement.UNREACHABLE, "NoSchedule"),
        (placement.UNREACHABLE, "NoExecute"),
        (placement.MEMORY_PRESSURE, "NoSchedule"),
    }
    assert [t.get("timeAdded") for t in out if t["effect"] == "NoExecute"] == ["now"]
    again = nodelifecycle.desired_taints(node("Unknown"), "later", out)
    assert again == out  # timeAdded kept
    ready = nodelifecycle.desired_taints(node("True", unschedulable=True), "t", out)
    assert {(t["key"], t["effect"]) for t in ready} == {
        ("mine", "NoSchedule"),
        (placement.MEMORY_PRESSURE, "NoSchedule"),
        (placement.UNSCHEDULABLE, "NoSchedule"),
    }
    not_ready = nodelifecycle.desired_taints(node("False"), "t", [])
    assert (placement.NOT_READY, "NoExecute") in {(t["key"], t["effect"]) for t in not_ready}


# ---- endpoints -----------------------------------------------------------------------------------


def test_endpoint_subsets_and_port_resolution() -> None:
    svc = {
        "metadata": {"name": "s"},
        "spec": {
            "selector": {"a": "b"},
            "ports": [
                {"name": "web", "port": 80, "targetPort": "http"},
                {"name": "raw", "port": 81, "targetPort": 9000},
            ],
        },
    }
    named = {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}
    other = {"containers": [{"ports": [{"name": "http", "containerPort": 8081}]}]}
    pods = [
        pod("a", spec=named, status={"podIP": "10.0.0.2"}),
        pod("b", spec=named, status={"podIP": "10.0.0.1"}, ready=False),
        pod("c", spec=other, status={"podIP": "10.0.0.3"}),
        pod("no-ip", spec=named),
        pod("done", spec=named, phase="Succeeded", status={"podIP": "10.0.0.9"}),
        pod("going", spec=named, status={"podIP": "10.0.0.8"}, metadata={"deletionTimestamp": "x"}),
    ]
    subsets = endpoints.compute_subsets(svc, pods)
    assert len(subsets) == 2
    by_port = {
        s["ports"][0]["port"] if s["ports"][0]["name"] == "web" else s["ports"][1]["port"]: s
        for s in subsets
    }
    s8080 = by_port[8080]
    assert [a["ip"] for a in s8080["addresses"]] == ["10.0.0.2"]
    assert [a["ip"] for a in s8080["notReadyAddresses"]] == ["10.0.0.1"]
    assert [a["ip"] for a in by_port[8081]["addresses"]] == ["10.0.0.3"]
    assert endpoints.resolve_port(pods[0], {"port": 80, "targetPort": "nope"}) is None
    groups = endpointslice.desired_groups(svc, pods)
    eps = [e for _, group in groups.values() for e in group]
    going = [e for e in eps if e["targetRef"]["name"] == "going"]
    assert going and going[0]["conditions"] == {
        "ready": False,
        "serving": True,
        "terminating": True,
    }


# ---- daemon sets, jobs, stateful sets -----------------------------------------------------------


def test_daemon_pod_placement() -> None:
    ds = {"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": []}}}}
    ssd = {"metadata": {"name": "a", "labels": {"disk": "ssd"}}, "spec": {}}
    hdd = {"metadata": {"name": "b", "labels": {"disk": "hdd"}}, "spec": {}}
    assert daemonset.should_run(ds, ssd) == (True, True)
    assert daemonset.should_run(ds, hdd) == (False, False)
    no_sched = {**ssd, "spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]}}
    assert daemonset.should_run(ds, no_sched) == (False, True)
    no_exec = {**ssd, "spec": {"taints": [{"key": "x", "effect": "NoExecute"}]}}
    assert daemonset.should_run(ds, no_exec) == (False, False)
    unreachable = {
        **ssd,
        "spec": {"taints": [{"key": placement.UNREACHABLE, "effect": "NoExecute"}]},
    }
    assert daemonset.should_run(ds, unreachable) == (True, True)  # daemon pods tolerate it
    spec = daemonset.with_node_affinity(daemonset.daemon_pod_spec(ds), "a")
    assert daemonset.pod_node({"spec": spec}) == "a"
    assert daemonset.pod_node({"spec": {"nodeName": "z"}}) == "z"


def test_job_arithmetic() -> None:
    j = {"spec": {"completions": 5, "parallelism": 2}}
    assert job.want_active(j, succeeded=0, active=0) == 2
    assert job.want_active(j, succeeded=4, active=1) == 1
    assert job.is_complete(j, 5, 0) and not job.is_complete(j, 5, 1)
    queue = {"spec": {"parallelism": 3}}
    assert job.want_active(queue, 0, 0) == 3
    assert job.want_active(queue, 1, 2) == 2  # after a success, no new pods
    assert job.is_complete(queue, 1, 0)
    assert [job.backoff_delay(n, 10, 360) for n in range(7)] == [0, 10, 20, 40, 80, 160, 320]
    assert job.backoff_delay(8, 10, 360) == 360
    sel, labels = job.job_selector({"metadata": {"uid": "u", "name": "j"}, "spec": {}})
    assert sel.matches(labels) and labels[job.UID_LABEL] == "u"


def test_statefulset_identity() -> None:
    sts = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
        "spec": {"serviceName": "svc", "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
    }
    p = statefulset.new_pod(
        sts, {"metadata": {"labels": {"app": "w"}}, "spec": {"volumes": [{"name": "data"}]}}, 2, "h"
    )
    assert p["metadata"]["name"] == "web-2" and p["spec"]["hostname"] == "web-2"
    assert p["spec"]["subdomain"] == "svc"
    assert p["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}}
    ]
    assert p["metadata"]["labels"][statefulset.POD_INDEX] == "2"
    assert statefulset.ordinal("web", p) == 2
    assert statefulset.ordinal("web", {"metadata": {"name": "web-x"}}) is None
    assert statefulset.ordinal("we", p) is None
