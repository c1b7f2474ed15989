"""`kubectl get componentstatuses` and the legacy `bindings` resource against a real `kybern
server`, with the real kubectl and the PyPI `kubernetes` client: kube's table, object, warning
and 405 for `cs`, the scheduler and controller manager healthy while their leader Lease is
held (written here for the API-only server; by the real scheduler in a server that runs it),
`kubectl explain cs`, and `create_namespaced_binding` binding a pod to a node."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
import yaml
from conftest import Server, running_server, unique, wait_for
from kubernetes import client as k8s

WARNING = "Warning: v1 ComponentStatus is deprecated in v1.19+"


def _rows(stdout: str) -> list[list[str]]:
    """kubectl's table, each row's cells (runs of 2+ spaces separate them)."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.strip().splitlines()]


def _renew_lease(server: Server, name: str) -> None:
    """Hold `kube-system/name` as a running leader does (created, or renewed now)."""
    coord = k8s.CoordinationV1Api(server.client())
    now = datetime.datetime.now(datetime.UTC)
    spec = k8s.V1LeaseSpec(
        holder_identity="it-holder", lease_duration_seconds=60, acquire_time=now, renew_time=now
    )
    try:
        lease = coord.read_namespaced_lease(name, "kube-system")
    except k8s.ApiException as e:
        assert e.status == 404
        body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=name), spec=spec)
        coord.create_namespaced_lease("kube-system", body)
        return
    lease.spec = spec
    coord.replace_namespaced_lease(name, "kube-system", lease)


def test_kubectl_get_cs(server: Server) -> None:
    out = server.kubectl("get", "cs")
    assert WARNING in out.stderr
    rows = _rows(out.stdout)
    assert rows[0] == ["NAME", "STATUS", "MESSAGE", "ERROR"]
    assert rows[1:] == [
        ["scheduler", "Unhealthy", "no leader: lease kube-system/kybern-scheduler not found"],
        [
            "controller-manager",
            "Unhealthy",
            "no leader: lease kube-system/kybern-controller-manager not found",
        ],
        ["etcd-0", "Healthy", "ok"],
    ]
    # a controller manager elsewhere that leads: healthy (the API server cannot tell)
    _renew_lease(server, "kybern-controller-manager")
    out = server.kubectl("get", "componentstatuses", "controller-manager")
    assert _rows(out.stdout)[1] == ["controller-manager", "Healthy", "ok"]


def test_kubectl_get_cs_yaml_and_explain(server: Server) -> None:
    out = server.kubectl("get", "cs", "etcd-0", "-o", "yaml")
    assert WARNING in out.stderr
    assert yaml.safe_load(out.stdout) == {
        "apiVersion": "v1",
        "kind": "ComponentStatus",
        "metadata": {"name": "etcd-0", "creationTimestamp": None},
        "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}],
    }
    listed = yaml.safe_load(server.kubectl("get", "cs", "-o", "yaml").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == [
        "scheduler",
        "controller-manager",
        "etcd-0",
    ]
    out = server.kubectl("get", "cs", "--field-selector", "metadata.name=etcd-0")
    assert [r[0] for r in _rows(out.stdout)] == ["NAME", "etcd-0"]
    explained = server.kubectl("explain", "cs").stdout
    assert "ComponentStatus" in explained and "conditions" in explained


def test_kubectl_cannot_write_cs(server: Server) -> None:
    out = server.kubectl("delete", "cs", "etcd-0", check=False)
    assert out.returncode != 0
    assert (
        "Error from server (MethodNotAllowed): the server does not allow this method on the "
        "requested resource" in out.stderr
    )
    out = server.kubectl("get", "cs", "nope", check=False)
    assert out.returncode != 0
    assert "Component not found: nope" in out.stderr


def test_python_client_reads_component_statuses(server: Server) -> None:
    core = k8s.CoreV1Api(server.client())
    listed = core.list_component_status()
    assert [i.metadata.name for i in listed.items] == ["scheduler", "controller-manager", "etcd-0"]
    etcd = core.read_component_status("etcd-0")
    cond = etcd.conditions[0]
    assert (cond.type, cond.status, cond.message, cond.error) == ("Healthy", "True", "ok", None)
    with pytest.raises(k8s.ApiException) as e:
        core.read_component_status("nope")
    assert e.value.status == 500


def _pod(core: k8s.CoreV1Api, ns: str) -> str:
    name = unique("p")
    body = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox")]),
    )
    core.create_namespaced_pod(ns, body)
    return name


def _binding(pod: str, node: str) -> k8s.V1Binding:
    return k8s.V1Binding(
        metadata=k8s.V1ObjectMeta(name=pod),
        target=k8s.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )


def test_python_client_creates_a_namespaced_binding(server: Server, ns: str) -> None:
    core = k8s.CoreV1Api(server.client())
    node = unique("n")
    core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(name=node)))
    pod = _pod(core, ns)
    resp: Any = core.create_namespaced_binding(ns, _binding(pod, node), _preload_content=False)
    assert resp.status == 201
    assert yaml.safe_load(resp.data)["status"] == "Success"
    bound = core.read_namespaced_pod(pod, ns)
    assert bound.spec.node_name == node
    assert [c.type for c in bound.status.conditions] == ["PodScheduled"]
    # the client reads the answer (a Status, as kube's) as a Binding: the same error as with kube
    other = _pod(core, ns)
    with pytest.raises(ValueError, match=r"V1Binding\s+target"):  # no target in a Status
        core.create_namespaced_binding(ns, _binding(other, node))
    assert core.read_namespaced_pod(other, ns).spec.node_name == node
    with pytest.raises(k8s.ApiException) as e:
        core.create_namespaced_binding(ns, _binding(pod, node), _preload_content=False)
    assert e.value.status == 409


def test_a_running_scheduler_is_healthy() -> None:
    with running_server(args=("--disable-controllers=*",)) as srv:

        def scheduler_row() -> list[str] | None:
            rows = _rows(srv.kubectl("get", "cs", "scheduler").stdout)
            return rows[1] if rows[1][1] == "Healthy" else None

        assert wait_for(scheduler_row, 30.0, 0.2, "a healthy scheduler") == [
            "scheduler",
            "Healthy",
            "ok",
        ]
        row = _rows(srv.kubectl("get", "cs", "controller-manager").stdout)[1]
        assert row[:2] == ["controller-manager", "Unhealthy"]
