"""Server-side Tables without a server: the printers' cells for the built-in kinds (pod status
strings in their many states, service ports and IPs, workloads, nodes, events, ...), ages as
`HumanDuration` prints them, CRD `additionalPrinterColumns` through the JSONPath subset, the
default NAME/CREATED AT table, `includeObject`, and `Accept` negotiation (406 included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from kybern.api import errors, registry
from kybern.apiserver import cache, printers, tables

NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC).timestamp()
Obj = dict[str, Any]


def ago(seconds: float) -> str:
    return datetime.fromtimestamp(NOW - seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def res(kind: str, group: str = "") -> registry.Resource:
    return next(r for r in registry.BUILTIN if r.kind == kind and r.group == group)


def cells(kind: str, obj: Obj, group: str = "") -> list[Any]:
    t = tables.table(res(kind, group), [obj], list_meta={}, now=NOW)
    names = [c["name"] for c in t["columnDefinitions"]]
    row = t["rows"][0]["cells"]
    assert len(row) == len(names), (names, row)
    return list(row)


def named(kind: str, obj: Obj, group: str = "") -> dict[str, Any]:
    t = tables.table(res(kind, group), [obj], list_meta={}, now=NOW)
    return {
        c["name"]: v for c, v in zip(t["columnDefinitions"], t["rows"][0]["cells"], strict=True)
    }


def meta(name: str = "x", created: float = 30, **extra: Any) -> Obj:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(created), **extra}


# ---- ages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1.5, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60, "3h25m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        (400 * 86400, "400d"),
        (2 * 365 * 86400, "2y"),
        (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert printers.human_duration(seconds) == text


def test_age_of_unset_or_bad_timestamps() -> None:
    assert printers.since(None, NOW) == "<unknown>"
    assert printers.since("not a time", NOW) == "<unknown>"
    assert printers.since(ago(65), NOW) == "65s"
    assert printers.since("2026-01-10T11:59:30.123456Z", NOW) == "29s"  # MicroTime


# ---- pods ------------------------------------------------------------------------------------


def pod(
    status: Obj | None = None,
    containers: int = 1,
    init: int = 0,
    sidecars: int = 0,
    **meta_extra: Any,
) -> Obj:
    spec: Obj = {"containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)]}
    if init or sidecars:
        spec["initContainers"] = [{"name": f"i{i}", "image": "busybox"} for i in range(init)] + [
            {"name": f"s{i}", "image": "busybox", "restartPolicy": "Always"}
            for i in range(sidecars)
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta("p", **meta_extra),
        "spec": spec,
        "status": status or {},
    }


def running(name: str = "c0", ready: bool = True, restarts: int = 0, **extra: Any) -> Obj:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "started": True,
        "state": {"running": {"startedAt": ago(20)}},
        **extra,
    }


def waiting(reason: str, name: str = "c0", restarts: int = 0, **extra: Any) -> Obj:
    return {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason}},
        **extra,
    }


def terminated(name: str = "c0", code: int = 0, reason: str = "", signal: int = 0) -> Obj:
    term: Obj = {"exitCode": code, "finishedAt": ago(10)}
    if reason:
        term["reason"] = reason
    if signal:
        term["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": term}}


READY = [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]


@pytest.mark.parametrize(
    ("status", "kw", "ready", "text"),
    [
        ({}, {}, "0/1", ""),
        ({"phase": "Pending"}, {}, "0/1", "Pending"),
        ({"phase": "Running", "containerStatuses": [running()]}, {}, "1/1", "Running"),
        (
            {"phase": "Running", "containerStatuses": [running("c1"), running(ready=False)]},
            {"containers": 2},
            "1/2",
            "Running",
        ),
        (
            {"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]},
            {},
            "0/1",
            "ContainerCreating",
        ),
        (
            {"phase": "Pending", "containerStatuses": [waiting("ImagePullBackOff")]},
            {},
            "0/1",
            "ImagePullBackOff",
        ),
        (
            {"phase": "Running", "containerStatuses": [waiting("CrashLoopBackOff", restarts=4)]},
            {},
            "0/1",
            "CrashLoopBackOff",
        ),
        (
            {"phase": "Succeeded", "containerStatuses": [terminated(reason="Completed")]},
            {},
            "0/1",
            "Completed",
        ),
        (
            {"phase": "Failed", "containerStatuses": [terminated(code=1, reason="Error")]},
            {},
            "0/1",
            "Error",
        ),
        ({"phase": "Failed", "containerStatuses": [terminated(code=3)]}, {}, "0/1", "ExitCode:3"),
        (
            {"phase": "Failed", "containerStatuses": [terminated(code=137, signal=9)]},
            {},
            "0/1",
            "Signal:9",
        ),
        ({"phase": "Failed", "reason": "Evicted"}, {}, "0/1", "Evicted"),
        (
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                ],
            },
            {},
            "0/1",
            "SchedulingGated",
        ),
        # one container done, one still running: Running when the pod is Ready, else NotReady
        (
            {
                "phase": "Running",
                "conditions": READY,
                "containerStatuses": [terminated("c1", reason="Completed"), running()],
            },
            {"containers": 2},
            "1/2",
            "Running",
        ),
        (
            {
                "phase": "Running",
                "containerStatuses": [terminated("c1", reason="Completed"), running()],
            },
            {"containers": 2},
            "1/2",
            "NotReady",
        ),
        # init containers
        (
            {"phase": "Pending", "initContainerStatuses": [waiting("PodInitializing", "i0")]},
            {"init": 2},
            "0/1",
            "Init:0/2",
        ),
        (
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    terminated("i0", reason="Completed"),
                    {"name": "i1", "state": {"running": {}}},
                ],
            },
            {"init": 2},
            "0/1",
            "Init:1/2",
        ),
        (
            {
                "phase": "Pending",
                "initContainerStatuses": [waiting("CrashLoopBackOff", "i0", restarts=2)],
            },
            {"init": 1},
            "0/1",
            "Init:CrashLoopBackOff",
        ),
        (
            {"phase": "Pending", "initContainerStatuses": [terminated("i0", 1, "Error")]},
            {"init": 1},
            "0/1",
            "Init:Error",
        ),
        (
            {"phase": "Pending", "initContainerStatuses": [terminated("i0", 2)]},
            {"init": 1},
            "0/1",
            "Init:ExitCode:2",
        ),
        (
            {"phase": "Pending", "initContainerStatuses": [terminated("i0", 1, signal=15)]},
            {"init": 1},
            "0/1",
            "Init:Signal:15",
        ),
        # a started sidecar (restartable init container) counts towards READY
        (
            {
                "phase": "Running",
                "conditions": READY,
                "initContainerStatuses": [running("s0")],
                "containerStatuses": [running()],
            },
            {"sidecars": 1},
            "2/2",
            "Running",
        ),
    ],
)
def test_pod_status(status: Obj, kw: dict[str, Any], ready: str, text: str) -> None:
    row = named("Pod", pod(status, **kw))
    assert (row["Ready"], row["Status"]) == (ready, text)


def test_pod_terminating_and_node_lost() -> None:
    deleting: dict[str, Any] = {"deletionTimestamp": ago(1)}
    st = {"phase": "Running", "containerStatuses": [running()]}
    assert named("Pod", pod(st, **deleting))["Status"] == "Terminating"
    done = {"phase": "Succeeded", "containerStatuses": [terminated(reason="Completed")]}
    assert named("Pod", pod(done, **deleting))["Status"] == "Completed"
    lost = {"phase": "Running", "reason": "NodeLost"}
    assert named("Pod", pod(lost, **deleting))["Status"] == "Unknown"


def test_pod_restarts_and_wide_columns() -> None:
    crashed = waiting(
        "CrashLoopBackOff",
        restarts=3,
        lastState={"terminated": {"exitCode": 1, "finishedAt": ago(4 * 3600 + 5)}},
    )
    p = pod({"phase": "Running", "podIP": "10.1.2.3", "containerStatuses": [crashed]})
    p["spec"]["nodeName"] = "n1"
    assert cells("Pod", p) == [
        "p",
        "0/1",
        "CrashLoopBackOff",
        "3 (4h ago)",
        "30s",
        "10.1.2.3",
        "n1",
        "<none>",
        "<none>",
    ]
    # restarts with no termination time are just a number; podIPs when podIP is unset
    st = {"podIPs": [{"ip": "fd00::5"}], "containerStatuses": [running(restarts=2)]}
    assert named("Pod", pod(st))["Restarts"] == "2"
    assert named("Pod", pod(st))["IP"] == "fd00::5"
    gated = pod({"conditions": [{"type": "example.com/ready", "status": "True"}]})
    gated["spec"]["readinessGates"] = [
        {"conditionType": "example.com/ready"},
        {"conditionType": "example.com/other"},
    ]
    assert named("Pod", gated)["Readiness Gates"] == "1/2"


def test_pod_row_conditions() -> None:
    t = tables.table(
        res("Pod"), [pod({"phase": "Succeeded"}), pod({"phase": "Running"})], list_meta={}
    )
    assert t["rows"][0]["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert "conditions" not in t["rows"][1]


# ---- services ----------------------------------------------------------------------------------


def service(spec: Obj, status: Obj | None = None) -> Obj:
    return {"metadata": meta("svc"), "spec": spec, "status": status or {}}


@pytest.mark.parametrize(
    ("spec", "status", "expect"),
    [
        (
            {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": "web"},
            },
            None,
            ["ClusterIP", "10.96.0.10", "<none>", "80/TCP", "app=web"],
        ),
        (
            {
                "type": "NodePort",
                "clusterIPs": ["10.96.0.11"],
                "selector": {"b": "2", "a": "1"},
                "ports": [
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "nodePort": 30053, "protocol": "UDP"},
                ],
            },
            None,
            ["NodePort", "10.96.0.11", "<none>", "80:30080/TCP,53:30053/UDP", "a=1,b=2"],
        ),
        (
            {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]},
            None,
            ["ClusterIP", "None", "<none>", "<none>", "<none>"],
        ),
        (
            {
                "type": "ClusterIP",
                "clusterIPs": ["10.96.0.12"],
                "externalIPs": ["1.2.3.4"],
                "ports": [{"port": 443}],
            },
            None,
            ["ClusterIP", "10.96.0.12", "1.2.3.4", "443/TCP", "<none>"],
        ),
        (
            {
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.0.13"],
                "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}],
            },
            None,
            ["LoadBalancer", "10.96.0.13", "<pending>", "80:31000/TCP", "<none>"],
        ),
        (
            {"type": "LoadBalancer", "clusterIPs": ["10.96.0.13"], "externalIPs": ["9.9.9.9"]},
            {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}},
            ["LoadBalancer", "10.96.0.13", "5.6.7.8,lb.example.com,9.9.9.9", "<none>", "<none>"],
        ),
        (
            {"type": "ExternalName", "externalName": "db.example.com"},
            None,
            ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"],
        ),
    ],
)
def test_service_cells(spec: Obj, status: Obj | None, expect: list[str]) -> None:
    row = named("Service", service(spec, status))
    got = [row[k] for k in ("Type", "Cluster-IP", "External-IP", "Port(s)", "Selector")]
    assert got == expect


# ---- workloads -----------------------------------------------------------------------------------


def template(*containers: tuple[str, str]) -> Obj:
    return {"spec": {"containers": [{"name": n, "image": i} for n, i in containers]}}


def test_deployment_replicaset_statefulset_daemonset() -> None:
    spec = {
        "replicas": 3,
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        },
        "template": template(("web", "nginx:1.25"), ("log", "busybox")),
    }
    dep = {
        "metadata": meta("web"),
        "spec": spec,
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("Deployment", dep, "apps") == [
        "web",
        "2/3",
        3,
        2,
        "30s",
        "web,log",
        "nginx:1.25,busybox",
        "app=web,!canary,tier in (be,fe)",
    ]
    rs = {"metadata": meta("web-1"), "spec": spec, "status": {"replicas": 3, "readyReplicas": 1}}
    assert cells("ReplicaSet", rs, "apps")[:5] == ["web-1", 3, 3, 1, "30s"]
    sts = {"metadata": meta("db"), "spec": {"template": template(("db", "pg"))}, "status": {}}
    assert cells("StatefulSet", sts, "apps") == ["db", "0/1", "30s", "db", "pg"]
    ds = {
        "metadata": meta("agent"),
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "a", "image": "agent:1"}],
                }
            },
        },
        "status": {
            "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2,
            "numberReady": 1,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
        },
    }
    assert cells("DaemonSet", ds, "apps") == [
        "agent",
        2,
        2,
        1,
        2,
        1,
        "kubernetes.io/os=linux",
        "30s",
        "a",
        "agent:1",
        "app=agent",
    ]


def test_replication_controller_and_controller_revision() -> None:
    rc = {
        "metadata": meta("rc"),
        "spec": {"replicas": 2, "selector": {"app": "x"}, "template": template(("c", "img"))},
        "status": {"replicas": 2, "readyReplicas": 2},
    }
    assert cells("ReplicationController", rc) == ["rc", 2, 2, 2, "30s", "c", "img", "app=x"]
    owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": True}
    cr = {"metadata": meta("db-5d4", ownerReferences=[owner]), "revision": 2}
    assert cells("ControllerRevision", cr, "apps") == ["db-5d4", "statefulset.apps/db", 2, "30s"]
    orphan = {"metadata": meta("lone"), "revision": 1}
    assert cells("ControllerRevision", orphan, "apps")[1] == "<none>"


@pytest.mark.parametrize(
    ("spec", "status", "meta_extra", "expect"),
    [
        ({"completions": 1, "parallelism": 1}, {}, {}, ["Running", "0/1", ""]),
        (
            {"completions": 3},
            {
                "succeeded": 3,
                "startTime": ago(600),
                "completionTime": ago(300),
                "conditions": [{"type": "Complete", "status": "True"}],
            },
            {},
            ["Complete", "3/3", "5m"],
        ),
        ({"parallelism": 2}, {"startTime": ago(90)}, {}, ["Running", "0/1 of 2", "90s"]),
        (
            {"completions": 1},
            {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]},
            {},
            ["Failed", "0/1", ""],
        ),
        (
            {"completions": 1},
            {"conditions": [{"type": "Suspended", "status": "True"}]},
            {},
            ["Suspended", "0/1", ""],
        ),
        (
            {"completions": 1},
            {"conditions": [{"type": "FailureTarget", "status": "True"}]},
            {},
            ["FailureTarget", "0/1", ""],
        ),
        ({"completions": 1}, {}, {"deletionTimestamp": ago(1)}, ["Terminating", "0/1", ""]),
    ],
)
def test_job_cells(spec: Obj, status: Obj, meta_extra: Obj, expect: list[str]) -> None:
    job = {
        "metadata": meta("j", **meta_extra),
        "spec": {**spec, "template": template(("c", "busybox"))},
        "status": status,
    }
    row = named("Job", job, "batch")
    assert [row["Status"], row["Completions"], row["Duration"]] == expect
    assert row["Selector"] == "<none>"


def test_cronjob_cells() -> None:
    cj = {
        "metadata": meta("cj"),
        "spec": {
            "schedule": "*/5 * * * *",
            "suspend": False,
            "jobTemplate": {"spec": {"template": template(("c", "busybox"))}},
        },
        "status": {"active": [{"name": "cj-1"}], "lastScheduleTime": ago(125)},
    }
    assert cells("CronJob", cj, "batch") == [
        "cj",
        "*/5 * * * *",
        "<none>",
        "False",
        1,
        "2m5s",
        "30s",
        "c",
        "busybox",
        "<none>",
    ]
    cj["spec"].pop("suspend")
    cj["spec"]["timeZone"] = "Etc/UTC"
    cj["status"] = {}
    row = named("CronJob", cj, "batch")
    assert [row["Timezone"], row["Suspend"], row["Last Schedule"]] == [
        "Etc/UTC",
        "<unset>",
        "<none>",
    ]


# ---- nodes, namespaces, config -----------------------------------------------------------------


def test_node_cells() -> None:
    node = {
        "metadata": meta(
            "n1",
            labels={
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "",
                "kubernetes.io/role": "infra",
            },
        ),
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "192.168.1.10"},
                {"type": "InternalIP", "address": "192.168.1.11"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "containerd://1.7",
            },
        },
    }
    assert cells("Node", node) == [
        "n1",
        "Ready,SchedulingDisabled",
        "control-plane,infra,worker",
        "30s",
        "v1.32.0",
        "192.168.1.10",
        "<none>",
        "Debian GNU/Linux 12",
        "6.1.0",
        "containerd://1.7",
    ]
    bare = {
        "metadata": meta("n2"),
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
    }
    assert cells("Node", bare) == [
        "n2",
        "NotReady",
        "<none>",
        "30s",
        "",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]
    assert named("Node", {"metadata": meta("n3")})["Status"] == "Unknown"


def test_namespace_configmap_secret_serviceaccount() -> None:
    ns = {"metadata": meta("team"), "status": {"phase": "Terminating"}}
    assert cells("Namespace", ns) == ["team", "Terminating", "30s"]
    cm = {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells("ConfigMap", cm) == ["cfg", 3, "30s"]
    assert cells("ConfigMap", {"metadata": meta("empty")}) == ["empty", 0, "30s"]
    sec = {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "k": ""}}
    assert cells("Secret", sec) == ["tls", "kubernetes.io/tls", 2, "30s"]
    sa = {"metadata": meta("default"), "secrets": [{"name": "tok"}]}
    assert cells("ServiceAccount", sa) == ["default", 1, "30s"]


def test_endpoints_and_endpoint_slices() -> None:
    ep = {
        "metadata": meta("web"),
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                "ports": [{"port": 80}, {"port": 443}],
            },
        ],
    }
    assert cells("Endpoints", ep)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
    headless = {"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "fd00::1"}]}]}
    assert cells("Endpoints", headless)[1] == "fd00::1"
    v6 = {
        "metadata": meta("v6"),
        "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}],
    }
    assert cells("Endpoints", v6)[1] == "[fd00::1]:53"
    assert cells("Endpoints", {"metadata": meta("none")})[1] == "<none>"
    eps = {
        "metadata": meta("web-abc"),
        "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "dns"}, {}],
        "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(5)],
    }
    assert cells("EndpointSlice", eps, "discovery.k8s.io") == [
        "web-abc",
        "IPv4",
        "80,dns,*",
        "10.0.0.0,10.0.0.1,10.0.0.2 + 2 more...",
        "30s",
    ]
    empty = {"metadata": meta("e"), "addressType": "IPv4"}
    assert cells("EndpointSlice", empty, "discovery.k8s.io")[2:4] == ["<unset>", "<unset>"]


def test_events_core_and_events_api() -> None:
    ev = {
        "metadata": meta("web.1"),
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
        "reason": "Pulled",
        "message": "  Container image pulled \n",
        "type": "Normal",
        "firstTimestamp": ago(300),
        "lastTimestamp": ago(60),
        "count": 4,
        "source": {"component": "kubelet", "host": "n1"},
    }
    assert cells("Event", ev) == [
        "60s",
        "Normal",
        "Pulled",
        "pod/web",
        "spec.containers{c}",
        "kubelet, n1",
        "Container image pulled",
        "5m",
        4,
        "web.1",
    ]
    new = {
        "metadata": meta("e2"),
        "regarding": {"kind": "Node"},
        "reason": "Starting",
        "note": "starting",
        "type": "Warning",
        "eventTime": "2026-01-10T11:59:00.000000Z",
        "reportingController": "kubelet",
        "reportingInstance": "n1",
    }
    assert cells("Event", new, "events.k8s.io") == [
        "60s",
        "Warning",
        "Starting",
        "node",
        "",
        "kubelet, n1",
        "starting",
        "60s",
        1,
        "e2",
    ]
    new["series"] = {"count": 7, "lastObservedTime": "2026-01-10T11:59:50.000000Z"}
    assert named("Event", new, "events.k8s.io")["Count"] == 7
    assert named("Event", new, "events.k8s.io")["Last Seen"] == "10s"


def test_storage_kinds() -> None:
    pv = {
        "metadata": meta("pv1"),
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "fast",
            "claimRef": {"namespace": "default", "name": "data"},
            "volumeMode": "Filesystem",
        },
        "status": {"phase": "Bound"},
    }
    assert cells("PersistentVolume", pv) == [
        "pv1",
        "10Gi",
        "RWO,RWX",
        "Retain",
        "Bound",
        "default/data",
        "fast",
        "<unset>",
        "",
        "30s",
        "Filesystem",
    ]
    pvc = {
        "metadata": meta("data"),
        "spec": {"storageClassName": "fast"},
        "status": {"phase": "Pending"},
    }
    assert cells("PersistentVolumeClaim", pvc) == [
        "data",
        "Pending",
        "",
        "",
        "",
        "fast",
        "<unset>",
        "30s",
        "<unset>",
    ]
    pvc["spec"]["volumeName"] = "pv1"
    pvc["status"] = {
        "phase": "Bound",
        "capacity": {"storage": "10Gi"},
        "accessModes": ["ReadWriteOnce"],
    }
    assert cells("PersistentVolumeClaim", pvc)[1:5] == ["Bound", "pv1", "10Gi", "RWO"]
    sc = {
        "metadata": meta(
            "fast", annotations={"storageclass.kubernetes.io/is-default-class": "true"}
        ),
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    assert cells("StorageClass", sc, "storage.k8s.io") == [
        "fast (default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
        False,
        "30s",
    ]
    drv = {"metadata": meta("csi.example.com"), "spec": {"volumeLifecycleModes": ["Persistent"]}}
    assert cells("CSIDriver", drv, "storage.k8s.io") == [
        "csi.example.com",
        True,
        False,
        False,
        "<unset>",
        False,
        "Persistent",
        "30s",
    ]
    csinode = {"metadata": meta("n1"), "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}}
    assert cells("CSINode", csinode, "storage.k8s.io") == ["n1", 2, "30s"]
    va = {
        "metadata": meta("va"),
        "spec": {
            "attacher": "csi.example.com",
            "nodeName": "n1",
            "source": {"persistentVolumeName": "pv1"},
        },
        "status": {"attached": True},
    }
    assert cells("VolumeAttachment", va, "storage.k8s.io") == [
        "va",
        "csi.example.com",
        "pv1",
        "n1",
        True,
        "30s",
    ]


def test_policy_coordination_rbac_admission_apiservice() -> None:
    pdb = {
        "metadata": meta("pdb"),
        "spec": {"minAvailable": "50%"},
        "status": {"disruptionsAllowed": 1},
    }
    assert cells("PodDisruptionBudget", pdb, "policy") == ["pdb", "50%", "N/A", 1, "30s"]
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "n1_abc"}}
    assert cells("Lease", lease, "coordination.k8s.io") == ["kube-scheduler", "n1_abc", "30s"]
    rb = {
        "metadata": meta("rb"),
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"},
            {"kind": "User", "name": "bob"},
        ],
    }
    group = "rbac.authorization.k8s.io"
    assert cells("RoleBinding", rb, group) == [
        "rb",
        "ClusterRole/view",
        "30s",
        "alice, bob",
        "devs",
        "ci/bot",
    ]
    assert cells("ClusterRoleBinding", rb, group)[1] == "ClusterRole/view"
    hook = {"metadata": meta("hooks"), "webhooks": [{"name": "a"}, {"name": "b"}]}
    group = "admissionregistration.k8s.io"
    assert cells("ValidatingWebhookConfiguration", hook, group) == ["hooks", 2, "30s"]
    assert cells("MutatingWebhookConfiguration", {"metadata": meta("m")}, group) == ["m", 0, "30s"]
    api = {"metadata": meta("v1.apps")}
    assert cells("APIService", api, "apiregistration.k8s.io") == [
        "v1.apps",
        "Local",
        "Unknown",
        "30s",
    ]
    api = {
        "metadata": meta("v1beta1.metrics.k8s.io"),
        "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
        "status": {
            "conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]
        },
    }
    assert cells("APIService", api, "apiregistration.k8s.io")[1:3] == [
        "kube-system/metrics-server",
        "False (MissingEndpoints)",
    ]


def test_resource_quota_and_pod_template() -> None:
    quota = {
        "metadata": meta("q"),
        "status": {
            "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"},
            "used": {"pods": "3", "requests.cpu": "500m"},
        },
    }
    assert cells("ResourceQuota", quota) == [
        "q",
        "pods: 3/10, requests.cpu: 500m/1",
        "limits.memory: 0/2Gi",
        "30s",
    ]
    pt = {
        "metadata": meta("pt"),
        "template": {"metadata": {"labels": {"a": "b"}}, **template(("c", "img"))},
    }
    assert cells("PodTemplate", pt) == ["pt", "c", "img", "a=b"]


def test_default_table_is_name_and_created_at() -> None:
    role = {"metadata": {"name": "reader", "creationTimestamp": "2026-01-10T11:00:00Z"}}
    t = tables.table(res("Role", "rbac.authorization.k8s.io"), [role], list_meta={}, now=NOW)
    assert [(c["name"], c["type"]) for c in t["columnDefinitions"]] == [
        ("Name", "string"),
        ("Created At", "date"),
    ]
    assert t["rows"][0]["cells"] == ["reader", "2026-01-10T11:00:00Z"]
    crd = tables.table(
        res("CustomResourceDefinition", "apiextensions.k8s.io"), [role], list_meta={}, now=NOW
    )
    assert [c["name"] for c in crd["columnDefinitions"]] == ["Name", "Created At"]


def test_malformed_object_gets_empty_cells_not_an_error() -> None:
    bad = {"metadata": meta("bad"), "spec": {"containers": 5}, "status": {}}
    t = tables.table(res("Pod"), [bad], list_meta={}, now=NOW)
    assert t["rows"][0]["cells"] == ["bad"] + [None] * 8


# ---- custom resources --------------------------------------------------------------------------


def crd(columns: list[Obj] | None) -> Obj:
    version: Obj = {"name": "v1", "served": True, "storage": True}
    if columns is not None:
        version["additionalPrinterColumns"] = columns
    return {
        "metadata": {"name": "widgets.example.com", "resourceVersion": str(id(columns))},
        "spec": {"group": "example.com", "versions": [version]},
    }


WIDGETS = registry.Resource(
    group="example.com", version="v1", kind="Widget", plural="widgets", namespaced=True, crd=True
)


def test_crd_additional_printer_columns() -> None:
    columns: list[Obj] = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
        {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "First", "type": "string", "jsonPath": ".spec.items[0].name"},
        {"name": "Last", "type": "string", "jsonPath": ".spec.items[-1].name"},
        {
            "name": "Dotted",
            "type": "string",
            "jsonPath": ".metadata.labels['app.kubernetes.io/name']",
        },
        {"name": "Map", "type": "string", "jsonPath": ".spec.map"},
        {"name": "Num", "type": "string", "jsonPath": ".spec.size"},
        {"name": "Missing", "type": "string", "jsonPath": ".spec.nope"},
        {"name": "Wrong", "type": "integer", "jsonPath": ".spec.name"},
        {"name": "When", "type": "date", "jsonPath": ".status.lastSeen", "format": "date-time"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": meta("w1", labels={"app.kubernetes.io/name": "gizmo"}),
        "spec": {
            "size": 3.0,
            "ratio": 2,
            "on": True,
            "name": "x",
            "map": {"b": 1, "a": [1, 2]},
            "items": [{"name": "first"}, {"name": "mid"}, {"name": "last"}],
        },
        "status": {
            "lastSeen": ago(3 * 86400),
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
        },
    }
    t = tables.table(WIDGETS, [obj], list_meta={}, crd=crd(columns), now=NOW)
    defs = t["columnDefinitions"]
    assert [c["name"] for c in defs] == ["Name"] + [c["name"] for c in columns]
    assert defs[2]["priority"] == 1 and defs[2]["type"] == "number"
    assert defs[12]["format"] == "date-time"
    assert (
        defs[1]["description"]
        == "Custom resource definition column (in JSONPath format): .spec.size"
    )
    assert t["rows"][0]["cells"] == [
        "w1",
        3,
        2.0,
        True,
        "True",
        "first",
        "last",
        "gizmo",
        '{"a":[1,2],"b":1}',
        "3",
        None,
        None,
        "3d",
        "30s",
    ]
    encoded = orjson.loads(orjson.dumps(t))
    assert encoded["rows"][0]["cells"][2] == 2.0


def test_crd_without_columns_prints_age_and_bad_paths_stay_empty() -> None:
    obj = {"metadata": meta("w2"), "spec": {}}
    t = tables.table(WIDGETS, [obj], list_meta={}, crd=crd(None), now=NOW)
    assert [(c["name"], c["type"]) for c in t["columnDefinitions"]] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert t["rows"][0]["cells"] == ["w2", "30s"]
    broken = crd([{"name": "X", "type": "string", "jsonPath": ".spec..x"}])
    t = tables.table(WIDGETS, [obj], list_meta={}, crd=broken, now=NOW)
    assert t["rows"][0]["cells"] == ["w2", None]
    t = tables.table(WIDGETS, [obj], list_meta={}, crd=None, now=NOW)  # CRD not cached yet
    assert t["rows"][0]["cells"] == ["w2", "30s"]


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (".", [{"a": {"b": [1, 2, 3]}, "c": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]}]),
        (".a.b", [[1, 2, 3]]),
        (".a.b[1]", [2]),
        (".a.b[*]", [1, 2, 3]),
        (".a.b[5]", []),
        ("{.a.b[0]}", [1]),
        ("$.a['b'][2]", [3]),
        (".c[?(@.k=='y')].v", [2]),
        (".c[?(@.v > 1)].k", ["y"]),
        (".c[?(@.v != 1)].k", ["y"]),
        (".c[?(@.k)].v", [1, 2]),
        (".c[*].k", ["x", "y"]),
        (".x.y", []),
    ],
)
def test_jsonpath(path: str, found: list[Any]) -> None:
    doc = {"a": {"b": [1, 2, 3]}, "c": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]}
    assert tables.evaluate(tables.compile_path(path), doc) == found


def test_jsonpath_rejects_recursive_descent() -> None:
    with pytest.raises(ValueError):
        tables.compile_path("..x")


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (1.0, "1"), (1.5, "1.5"), (1e21, "1e+21"), (False, "false"), ([1, "a"], '[1,"a"]')],
)
def test_string_cells_of_non_strings(value: Any, text: str) -> None:
    assert tables.go_text(value) == text


# ---- Table structure ---------------------------------------------------------------------------


def test_include_object_and_list_metadata() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c", uid="u1")}
    co = cache.CachedObject("/registry/configmaps/default/c", cm, 7)
    lm = {"resourceVersion": "9", "continue": "tok", "remainingItemCount": 4}
    t = tables.table(res("ConfigMap"), [co], list_meta=lm, now=NOW)
    assert (t["kind"], t["apiVersion"], t["metadata"]) == ("Table", "meta.k8s.io/v1", lm)
    assert t["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": cm["metadata"],
    }
    t = tables.table(
        res("ConfigMap"), [co], include_object="Object", list_meta={}, version="v1beta1"
    )
    assert t["apiVersion"] == "meta.k8s.io/v1beta1" and t["rows"][0]["object"] == cm
    raw = orjson.loads(
        orjson.dumps(
            tables.table(res("ConfigMap"), [co], include_object="Object", list_meta={}, raw=True)
        )
    )
    assert raw["rows"][0]["object"] == cm
    t = tables.table(res("ConfigMap"), [co], include_object="None", list_meta={}, headers=False)
    assert t["rows"][0]["object"] is None and t["columnDefinitions"] is None
    assert tables.table(res("Pod"), [], list_meta={})["rows"] == []


def test_columns_are_json_table_column_definitions() -> None:
    t = tables.table(res("Pod"), [], list_meta={})
    for c in t["columnDefinitions"]:
        assert list(c) == ["name", "type", "format", "description", "priority"]
    wide = [c["name"] for c in t["columnDefinitions"] if c["priority"] == 1]
    assert wide == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    assert t["columnDefinitions"][0]["format"] == "name"


# ---- negotiation ---------------------------------------------------------------------------------

KUBECTL = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


@pytest.mark.parametrize(
    ("accept", "crd", "want"),
    [
        ("", False, ""),
        (KUBECTL, False, "v1"),
        (KUBECTL, True, "v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", False, "v1beta1"),
        ("application/json", False, ""),
        ("*/*", False, ""),
        ("application/*", False, ""),
        ("application/vnd.kubernetes.protobuf", False, ""),
        ("application/vnd.kubernetes.protobuf, application/json", True, ""),
        ("application/yaml", True, ""),
        ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", False, ""),
        ("application/json;as=Table;v=v1;g=example.com,application/json", False, ""),
        ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io, */*", False, ""),
        ("application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io", False, "v1"),
        ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io;q=0.9", False, ""),
        ("*/*;as=Table;v=v1;g=meta.k8s.io", False, "v1"),
        ("application/json; as=Table; v=v1; g=meta.k8s.io", False, "v1"),
        ("text/plain, application/json;stream=watch", False, ""),
    ],
)
def test_negotiate(accept: str, crd: bool, want: str) -> None:
    assert tables.negotiate(accept, crd=crd) == want


@pytest.mark.parametrize(
    ("accept", "crd"),
    [
        ("text/html", False),
        ("application/vnd.kubernetes.protobuf", True),
        ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io", False),
        ("application/json;as=Table;v=v2;g=meta.k8s.io", False),
        ("application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", False),
        ("application/json;q=0", False),
    ],
)
def test_negotiate_not_acceptable(accept: str, crd: bool) -> None:
    with pytest.raises(errors.StatusError) as e:
        tables.negotiate(accept, crd=crd)
    st = e.value.status()
    assert (st["code"], st["reason"]) == (406, "NotAcceptable")
    assert st["message"] == (
        "only the following media types are accepted: application/json, application/yaml, "
        "application/vnd.kubernetes.protobuf"
    )


def test_include_object_parameter() -> None:
    def request(query: str, accept: str = KUBECTL) -> Any:
        return make_mocked_request("GET", "/api/v1/pods" + query, headers={"Accept": accept})

    assert tables.include_object(request("")) == "Metadata"
    assert tables.include_object(request("?includeObject=Object")) == "Object"
    assert tables.include_object(request("?includeObject=None")) == "None"
    assert tables.wanted(request(""), res("Pod")) == "v1"
    with pytest.raises(errors.StatusError) as e:
        tables.wanted(request("?includeObject=All"), res("Pod"))
    assert e.value.code == 400
    assert e.value.message == (
        'Unable to convert to Table as requested: includeObject: Invalid value: "All": '
        "must be 'Metadata', 'Object', 'None', or empty"
    )
    # only Table requests look at includeObject
    assert tables.wanted(request("?includeObject=All", "application/json"), res("Pod")) == ""


def test_watch_frames_carry_columns_once() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c", resourceVersion="5")}
    co = cache.CachedObject("/registry/configmaps/default/c", cm, 5)
    tw = tables.TableWatch(res("ConfigMap"), None, "v1", "None")  # type: ignore[arg-type]
    first, second = (orjson.loads(tw.frame(t, co)) for t in ("ADDED", "DELETED"))
    assert first["type"] == "ADDED" and second["type"] == "DELETED"
    assert [c["name"] for c in first["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert second["object"]["columnDefinitions"] is None
    assert second["object"]["metadata"] == {"resourceVersion": "5"}
    assert second["object"]["rows"][0]["cells"][:2] == ["c", 0]
