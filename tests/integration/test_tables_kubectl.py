"""Server-side Tables through the real `kubectl` against a real `kybern server`: `kubectl get`
of pods (statuses, restarts, `-o wide`), workloads, services, namespaces, config, nodes,
events, custom resources with `additionalPrinterColumns`, `get all`, `--show-labels`, `-L`,
`--sort-by` (includeObject=Object) and `get -w`, compared cell by cell with what a real cluster
prints for the same objects; plus the raw Table, watch-event and 406 responses over HTTP.

Objects are created and their status set over the REST API (nothing runs pods here), so every
cell is determined by the objects; only AGE cells are matched by pattern."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import Server, unique, wait_for

AGE = re.compile(r"^\d+s$")  # everything here is seconds old
Rows = list[list[str]]


# ---- helpers ---------------------------------------------------------------------------------


def rest(server: Server) -> requests.Session:
    s = server.http()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace the server's CA
    return s


def post(server: Server, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    r = rest(server).post(server.url + path, json=obj, timeout=10)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def set_status(server: Server, path: str, status: dict[str, Any]) -> None:
    r = rest(server).patch(
        server.url + path + "/status",
        data=json.dumps({"status": status}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def stamp(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> list[tuple[list[str], Rows]]:
    """kubectl's table output as (headers, rows) per section, cells cut at header columns."""
    sections: list[tuple[list[str], Rows]] = []
    lines: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            lines.append(line)
            continue
        if lines:
            header = lines[0]
            spans = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
            names = [m.group(0) for m in re.finditer(r"\S+(?: \S+)*", header)]
            rows = [
                [
                    row[a:b].strip()
                    for a, b in zip(spans, [*spans[1:], max(len(row), spans[-1]) + 1], strict=True)
                ]
                for row in lines[1:]
            ]
            sections.append((names, rows))
            lines = []
    return sections


def get(server: Server, *args: str) -> tuple[list[str], Rows]:
    out = server.kubectl("get", *args).stdout
    sections = parse(out)
    assert len(sections) == 1, out
    return sections[0]


def check_rows(rows: Rows, expected: list[list[str | re.Pattern[str]]]) -> None:
    assert len(rows) == len(expected), rows
    for row, want in zip(rows, expected, strict=True):
        assert len(row) == len(want), (row, want)
        for cell, w in zip(row, want, strict=True):
            if isinstance(w, re.Pattern):
                assert w.match(cell), (cell, w.pattern, row)
            else:
                assert cell == w, (cell, w, row)


def pod(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {"app": "web"})
    containers = spec.pop("containers", [{"name": "c", "image": "busybox:1"}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": containers, **spec},
    }


RUNNING_C = {
    "name": "c",
    "ready": True,
    "restartCount": 0,
    "image": "busybox:1",
    "imageID": "",
    "started": True,
    "state": {"running": {"startedAt": stamp()}},
}


def make_pods(server: Server, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    for p in (
        pod("web-pending", ns),
        pod("web-running", ns, nodeName="node-a"),
        pod("web-crash", ns, nodeName="node-a", labels={"app": "web", "tier": "fe"}),
        pod("web-done", ns, nodeName="node-a", labels={"app": "batch"}),
        pod(
            "web-init",
            ns,
            nodeName="node-a",
            initContainers=[{"name": "i0", "image": "a"}, {"name": "i1", "image": "b"}],
        ),
    ):
        post(server, base, p)
    set_status(
        server,
        f"{base}/web-running",
        {
            "phase": "Running",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [RUNNING_C],
        },
    )
    crash = {
        **RUNNING_C,
        "ready": False,
        "restartCount": 3,
        "started": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": stamp(timedelta(hours=4))}},
    }
    set_status(server, f"{base}/web-crash", {"phase": "Running", "containerStatuses": [crash]})
    done = {
        **RUNNING_C,
        "ready": False,
        "started": False,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": stamp()}},
    }
    set_status(server, f"{base}/web-done", {"phase": "Succeeded", "containerStatuses": [done]})
    init_status = [
        {
            **RUNNING_C,
            "name": "i0",
            "ready": False,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        },
        {**RUNNING_C, "name": "i1", "ready": False},
    ]
    set_status(
        server,
        f"{base}/web-init",
        {"phase": "Pending", "initContainerStatuses": init_status},
    )


# ---- pods --------------------------------------------------------------------------------------


def test_get_pods(server: Server, ns: str) -> None:
    make_pods(server, ns)
    headers, rows = get(server, "pods", "-n", ns)
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    check_rows(
        rows,
        [
            ["web-crash", "0/1", "CrashLoopBackOff", re.compile(r"^3 \(4h ago\)$"), AGE],
            ["web-done", "0/1", "Completed", "0", AGE],
            ["web-init", "0/1", "Init:1/2", "0", AGE],
            ["web-pending", "0/1", "Pending", "0", AGE],
            ["web-running", "1/1", "Running", "0", AGE],
        ],
    )

    headers, rows = get(server, "pods", "-n", ns, "-o", "wide")
    assert headers == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert rows[3][5:] == ["<none>", "<none>", "<none>", "<none>"]
    assert rows[4][5:] == ["10.244.0.5", "node-a", "<none>", "<none>"]

    headers, rows = get(server, "pod", "web-running", "-n", ns)
    check_rows(rows, [["web-running", "1/1", "Running", "0", AGE]])

    # a pod being deleted (held by a finalizer) is Terminating
    post(
        server,
        f"/api/v1/namespaces/{ns}/pods",
        {
            **pod("web-held", ns, nodeName="node-a"),
            "metadata": {"name": "web-held", "finalizers": ["example.com/hold"]},
        },
    )
    server.kubectl("delete", "pod", "web-held", "-n", ns, "--wait=false")
    _, rows = get(server, "pod", "web-held", "-n", ns)
    check_rows(rows, [["web-held", "0/1", "Terminating", "0", AGE]])
    server.kubectl(
        "patch",
        "pod",
        "web-held",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )


def test_labels_columns_and_sorting(server: Server, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    post(
        server,
        base,
        pod(
            "b",
            ns,
            labels={"app": "web", "tier": "fe"},
            containers=[{"name": "c", "image": "img-2"}],
        ),
    )
    post(
        server,
        base,
        pod("a", ns, labels={"app": "db"}, containers=[{"name": "c", "image": "img-3"}]),
    )
    post(server, base, pod("c", ns, labels={}, containers=[{"name": "c", "image": "img-1"}]))

    headers, rows = get(server, "pods", "-n", ns, "--show-labels")
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]
    assert [(r[0], r[5]) for r in rows] == [
        ("a", "app=db"),
        ("b", "app=web,tier=fe"),
        ("c", "<none>"),
    ]

    headers, rows = get(server, "pods", "-n", ns, "-L", "app", "-L", "tier")
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "TIER"]
    assert [(r[0], r[5], r[6]) for r in rows] == [
        ("a", "db", ""),
        ("b", "web", "fe"),
        ("c", "", ""),
    ]

    _, rows = get(server, "pods", "-n", ns, "-l", "app=web")
    assert [r[0] for r in rows] == ["b"]

    # --sort-by makes kubectl ask for includeObject=Object and sort on the full objects
    _, rows = get(server, "pods", "-n", ns, "--sort-by=.spec.containers[0].image")
    assert [r[0] for r in rows] == ["c", "b", "a"]


# ---- workloads ---------------------------------------------------------------------------------

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {
        "containers": [
            {"name": "web", "image": "nginx:1.25"},
            {"name": "side", "image": "busybox:1"},
        ]
    },
}


def test_get_workloads(server: Server, ns: str) -> None:
    apps = f"/apis/apps/v1/namespaces/{ns}"
    sel = {"matchLabels": {"app": "web"}}
    post(
        server,
        f"{apps}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": sel, "template": TEMPLATE},
        },
    )
    set_status(
        server,
        f"{apps}/deployments/web",
        {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
    )
    post(
        server,
        f"{apps}/statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {"replicas": 3, "selector": sel, "serviceName": "db", "template": TEMPLATE},
        },
    )
    set_status(server, f"{apps}/statefulsets/db", {"replicas": 3, "readyReplicas": 3})
    post(
        server,
        f"{apps}/daemonsets",
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": sel,
                "template": {
                    **TEMPLATE,
                    "spec": {**TEMPLATE["spec"], "nodeSelector": {"kubernetes.io/os": "linux"}},
                },
            },
        },
    )
    post(
        server,
        f"{apps}/replicasets",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-5d8"},
            "spec": {"replicas": 2, "selector": sel, "template": TEMPLATE},
        },
    )
    batch = f"/apis/batch/v1/namespaces/{ns}"
    job_template = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}
    }
    post(
        server,
        f"{batch}/jobs",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {"completions": 2, "template": job_template},
        },
    )
    set_status(
        server,
        f"{batch}/jobs/once",
        {"startTime": stamp(timedelta(minutes=7)), "succeeded": 1, "active": 1},
    )
    post(
        server,
        f"{batch}/cronjobs",
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": job_template}},
            },
        },
    )

    headers, rows = get(server, "deployments", "-n", ns)
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    check_rows(rows, [["web", "1/2", "2", "1", AGE]])
    headers, rows = get(server, "deploy", "-n", ns, "-o", "wide")
    assert headers == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    check_rows(rows, [["web", "1/2", "2", "1", AGE, "web,side", "nginx:1.25,busybox:1", "app=web"]])

    headers, rows = get(server, "statefulsets", "-n", ns)
    assert headers == ["NAME", "READY", "AGE"]
    check_rows(rows, [["db", "3/3", AGE]])

    headers, rows = get(server, "daemonsets", "-n", ns)
    assert headers == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    ]
    check_rows(rows, [["agent", "0", "0", "0", "0", "0", "kubernetes.io/os=linux", AGE]])

    headers, rows = get(server, "replicasets", "-n", ns, "-o", "wide")
    assert headers == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    check_rows(
        rows, [["web-5d8", "2", "0", "0", AGE, "web,side", "nginx:1.25,busybox:1", "app=web"]]
    )

    headers, rows = get(server, "jobs", "-n", ns)
    assert headers == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    check_rows(rows, [["once", "Running", "1/2", re.compile(r"^7m\d*s?$"), AGE]])

    headers, rows = get(server, "cronjobs", "-n", ns)
    assert headers == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST SCHEDULE",
        "AGE",
    ]
    check_rows(rows, [["tick", "*/5 * * * *", "<none>", "False", "0", "<none>", AGE]])


def test_get_all(server: Server, ns: str) -> None:
    post(server, f"/api/v1/namespaces/{ns}/pods", pod("solo", ns))
    post(
        server,
        f"/api/v1/namespaces/{ns}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "front"},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}},
        },
    )
    post(
        server,
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": TEMPLATE,
            },
        },
    )
    out = server.kubectl("get", "all", "-n", ns).stdout
    sections = {tuple(h): rows for h, rows in parse(out)}
    pods = sections[("NAME", "READY", "STATUS", "RESTARTS", "AGE")]
    check_rows(pods, [["pod/solo", "0/1", "Pending", "0", AGE]])
    svcs = sections[("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")]
    check_rows(
        svcs,
        [
            [
                "service/front",
                "ClusterIP",
                re.compile(r"^10\.\d+\.\d+\.\d+$"),
                "<none>",
                "80/TCP",
                AGE,
            ]
        ],
    )
    deps = sections[("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")]
    check_rows(deps, [["deployment.apps/web", "0/1", "0", "0", AGE]])


# ---- services, namespaces, config, nodes, events ------------------------------------------------


def test_get_services(server: Server, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/services"

    def svc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return post(
            server,
            base,
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec},
        )

    svc(
        "a-cluster",
        {
            "selector": {"app": "web"},
            "ports": [
                {"port": 80, "targetPort": 8080, "name": "http"},
                {"port": 443, "name": "tls"},
            ],
        },
    )
    node_port = svc(
        "b-nodeport", {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}
    )["spec"]["ports"][0]["nodePort"]
    svc("c-headless", {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]})
    svc("d-external", {"type": "ExternalName", "externalName": "db.example.com"})
    svc(
        "e-lb",
        {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "externalIPs": []},
    )
    headers, rows = get(server, "svc", "-n", ns, "-o", "wide")
    assert headers == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    ip = re.compile(r"^10\.\d+\.\d+\.\d+$")
    check_rows(
        rows,
        [
            ["a-cluster", "ClusterIP", ip, "<none>", "80/TCP,443/TCP", AGE, "app=web"],
            ["b-nodeport", "NodePort", ip, "<none>", f"80:{node_port}/TCP", AGE, "app=web"],
            ["c-headless", "ClusterIP", "None", "<none>", "5432/TCP", AGE, "app=db"],
            ["d-external", "ExternalName", "<none>", "db.example.com", "<none>", AGE, "<none>"],
            [
                "e-lb",
                "LoadBalancer",
                ip,
                "<pending>",
                re.compile(r"^80:3\d{4}/TCP$"),
                AGE,
                "<none>",
            ],
        ],
    )


def test_get_namespaces_config_and_secrets(server: Server, ns: str) -> None:
    headers, rows = get(server, "ns", ns)
    assert headers == ["NAME", "STATUS", "AGE"]
    check_rows(rows, [[ns, "Active", AGE]])
    post(
        server,
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"a": "1", "b": "2"},
        },
    )
    post(
        server,
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pw"},
            "data": {"password": "eA=="},
        },
    )
    headers, rows = get(server, "cm", "cfg", "-n", ns)
    assert headers == ["NAME", "DATA", "AGE"]
    check_rows(rows, [["cfg", "2", AGE]])
    headers, rows = get(server, "secrets", "-n", ns)
    assert headers == ["NAME", "TYPE", "DATA", "AGE"]
    check_rows(rows, [["pw", "Opaque", "1", AGE]])


@pytest.fixture
def node(server: Server) -> Iterator[str]:
    name = unique("node")
    doc = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": True},
    }
    server.kubectl("create", "-f", "-", "--validate=false", input=json.dumps(doc))
    yield name
    server.kubectl("delete", "node", name, "--wait=false", check=False)


def test_get_nodes(server: Server, node: str) -> None:
    headers, rows = get(server, "node", node)
    assert headers == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    check_rows(rows, [[node, "Unknown,SchedulingDisabled", "control-plane", AGE, ""]])
    set_status(
        server,
        f"/api/v1/nodes/{node}",
        {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [
                {"type": "InternalIP", "address": "192.168.5.10"},
                {"type": "Hostname", "address": node},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0-18-amd64",
                "containerRuntimeVersion": "containerd://1.7.13",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    )
    headers, rows = get(server, "nodes", node, "-o", "wide")
    assert headers == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    check_rows(
        rows,
        [
            [
                node,
                "Ready,SchedulingDisabled",
                "control-plane",
                AGE,
                "v1.32.0",
                "192.168.5.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "containerd://1.7.13",
            ]
        ],
    )


def test_get_events(server: Server, ns: str) -> None:
    post(
        server,
        f"/api/v1/namespaces/{ns}/events",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.17a"},
            "involvedObject": {
                "kind": "Pod",
                "namespace": ns,
                "name": "web",
                "fieldPath": "spec.containers{web}",
            },
            "reason": "Pulled",
            "message": 'Successfully pulled image "nginx:1.25"',
            "type": "Normal",
            "count": 2,
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": stamp(timedelta(hours=5)),
            "lastTimestamp": stamp(timedelta(hours=3, minutes=10)),
        },
    )
    headers, rows = get(server, "events", "-n", ns)
    assert headers == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    check_rows(
        rows,
        [
            [
                re.compile(r"^3h1\dm$"),
                "Normal",
                "Pulled",
                "pod/web",
                'Successfully pulled image "nginx:1.25"',
            ]
        ],
    )
    headers, rows = get(server, "events", "-n", ns, "-o", "wide")
    assert headers == [
        "LAST SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "SUBOBJECT",
        "SOURCE",
        "MESSAGE",
        "FIRST SEEN",
        "COUNT",
        "NAME",
    ]
    assert rows[0][4:6] == ["spec.containers{web}", "kubelet, node-a"]
    assert rows[0][7:] == ["5h", "2", "web.17a"]


# ---- custom resources ----------------------------------------------------------------------------


@pytest.fixture
def crd(server: Server) -> Iterator[str]:
    group = f"{unique('g')}.example.com"
    columns = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    for plural, kind, cols in (("widgets", "Widget", columns), ("gadgets", "Gadget", None)):
        version: dict[str, Any] = {
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": schema,
            "subresources": {"status": {}},
        }
        if cols:
            version["additionalPrinterColumns"] = cols
        post(
            server,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {
                    "group": group,
                    "scope": "Namespaced",
                    "versions": [version],
                    "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                },
            },
        )

    def established() -> bool:
        for plural in ("widgets", "gadgets"):
            got = server.kubectl_json("get", "crd", f"{plural}.{group}")
            conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
            if conds.get("Established") != "True":
                return False
        return True

    wait_for(established, message="the CRDs to be established")
    yield group
    for plural in ("widgets", "gadgets"):
        server.kubectl("delete", "crd", f"{plural}.{group}", "--wait=false", check=False)


def test_custom_resource_columns(server: Server, ns: str, crd: str) -> None:
    base = f"/apis/{crd}/v1/namespaces/{ns}"
    post(
        server,
        f"{base}/widgets",
        {
            "apiVersion": f"{crd}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3, "color": "blue"},
        },
    )
    set_status(
        server,
        f"{base}/widgets/w1",
        {
            "phase": "Running",
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
        },
    )
    post(
        server,
        f"{base}/widgets",
        {"apiVersion": f"{crd}/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {}},
    )
    post(
        server,
        f"{base}/gadgets",
        {"apiVersion": f"{crd}/v1", "kind": "Gadget", "metadata": {"name": "g1"}},
    )

    # kubectl's discovery cache may predate the CRD: it refreshes on a miss, retry until seen
    out = wait_for(
        lambda: server.kubectl("get", f"widgets.{crd}", "-n", ns, check=False).stdout,
        message="kubectl to know the new resource",
    )
    headers, rows = parse(out)[0]
    assert headers == ["NAME", "SIZE", "PHASE", "READY", "AGE"]
    check_rows(
        rows,
        [["w1", "3", "Running", "True", AGE], ["w2", "", "", "", AGE]],  # null cells: blank
    )
    headers, rows = get(server, f"widgets.{crd}", "-n", ns, "-o", "wide")
    assert headers == ["NAME", "SIZE", "PHASE", "READY", "COLOR", "AGE"]  # in the CRD's order
    assert [r[4] for r in rows] == ["blue", ""]

    headers, rows = get(server, f"gadgets.{crd}", "-n", ns)
    assert headers == ["NAME", "AGE"]
    check_rows(rows, [["g1", AGE]])

    headers, rows = get(server, "crd", f"widgets.{crd}")
    assert headers == ["NAME", "CREATED AT"]
    check_rows(rows, [[f"widgets.{crd}", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]])


# ---- watch ---------------------------------------------------------------------------------------


class Lines:
    """A kubectl child's stdout and stderr, line by line, read on threads (so that waits have
    deadlines); stderr lines are prefixed with `stderr: `."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        for stream, prefix in ((proc.stdout, ""), (proc.stderr, "stderr: ")):
            threading.Thread(target=self._pump, args=(stream, prefix), daemon=True).start()

    def _pump(self, stream: Any, prefix: str) -> None:
        for line in stream:
            self.lines.put(prefix + line.rstrip("\n"))

    def wait(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}; got {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if rx.search(line):
                return line


@pytest.fixture
def watch(server: Server) -> Iterator[list[Lines]]:
    started: list[Lines] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.terminate()
        try:
            w.proc.wait(10)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()


def test_get_pods_watch(server: Server, ns: str, watch: list[Lines]) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    post(server, base, pod("first", ns, nodeName="node-a"))
    w = Lines(server.kubectl_popen("get", "pods", "-n", ns, "-w"))
    watch.append(w)
    assert w.wait(r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$")
    assert re.match(r"^first\s+0/1\s+Pending\s+0\s+\d+s$", w.wait(r"^first"))
    # the list came first; the watch starts after it and shows every change as a row
    set_status(
        server,
        f"{base}/first",
        {
            "phase": "Running",
            "podIP": "10.244.1.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [RUNNING_C],
        },
    )
    assert re.match(r"^first\s+1/1\s+Running\s+0\s+\d+s$", w.wait(r"^first\s+1/1"))
    post(server, base, pod("second", ns))
    assert re.match(r"^second\s+0/1\s+Pending\s+0\s+\d+s$", w.wait(r"^second"))
    assert not any(line.startswith("NAME") for line in w.seen[1:]), w.seen  # header once


def test_watch_from_empty_prints_the_header_of_the_first_event(
    server: Server, ns: str, watch: list[Lines]
) -> None:
    w = Lines(server.kubectl_popen("get", "pods", "-n", ns, "-w", "--output-watch-events", "-v=6"))
    watch.append(w)
    # nothing to list: the columns arrive with the first watch event (-v=6 logs the requests)
    w.wait(r"^stderr: .*watch=true 200 OK")
    post(server, f"/api/v1/namespaces/{ns}/pods", pod("late", ns))
    assert w.wait(r"^EVENT\s+NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$")
    assert re.match(r"^ADDED\s+late\s+0/1\s+Pending\s+0\s+\d+s$", w.wait(r"late"))
    server.kubectl("delete", "pod", "late", "-n", ns, "--wait=false")
    assert re.match(r"^DELETED\s+late\s+", w.wait(r"^DELETED"))


# ---- raw HTTP ----------------------------------------------------------------------------------

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def test_table_http(server: Server, ns: str) -> None:
    s = rest(server)
    post(
        server,
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c1", "labels": {"a": "b"}},
            "data": {"k": "v"},
        },
    )
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps"

    t = s.get(url, headers={"Accept": TABLE}, timeout=10).json()
    assert (t["kind"], t["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert int(t["metadata"]["resourceVersion"]) > 0
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Data", "Age"]
    row = t["rows"][0]
    assert row["cells"][:2] == ["c1", 1] and AGE.match(row["cells"][2])
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["apiVersion"] == "meta.k8s.io/v1"
    assert row["object"]["metadata"]["labels"] == {"a": "b"}

    t = s.get(url + "?includeObject=Object", headers={"Accept": TABLE}, timeout=10).json()
    assert t["rows"][0]["object"]["data"] == {"k": "v"}
    t = s.get(url + "/c1?includeObject=None", headers={"Accept": TABLE}, timeout=10).json()
    assert t["rows"][0]["object"] is None and len(t["rows"]) == 1

    beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
    t = s.get(url, headers={"Accept": beta}, timeout=10).json()
    assert t["apiVersion"] == "meta.k8s.io/v1beta1"
    assert s.get(url, headers={"Accept": "application/json"}, timeout=10).json()["kind"] == (
        "ConfigMapList"
    )
    r = s.get(url, headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 406 and r.json()["reason"] == "NotAcceptable"
    r = s.get(url + "?includeObject=Everything", headers={"Accept": TABLE}, timeout=10)
    assert r.status_code == 400

    # a watch: every event is a one-row Table, the column definitions only in the first
    post(
        server,
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}},
    )
    with s.get(
        url + "?watch=true&timeoutSeconds=1", headers={"Accept": TABLE}, stream=True, timeout=10
    ) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    assert [(e["type"], e["object"]["rows"][0]["cells"][0]) for e in events] == [
        ("ADDED", "c1"),
        ("ADDED", "c2"),
    ]
    assert [c["name"] for c in events[0]["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert events[1]["object"]["columnDefinitions"] is None
