"""Namespace lifecycle through the `kubernetes` client, on a server that runs the namespace
controller (which finishes deletions): CRUD, and deletion removing what is inside."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import WITH_NAMESPACES, Server, running_server, unique, wait_for
from kubernetes import client as k8s
from test_api_client import _gone, cm, deployment, expect_error


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(args=WITH_NAMESPACES) as srv:
        yield srv


@pytest.fixture
def core(api: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api)


@pytest.fixture
def apps(api: k8s.ApiClient) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(api)


def test_namespace_crud(core: k8s.CoreV1Api) -> None:
    name = unique("nscrud")
    body = k8s.V1Namespace(
        api_version="v1",
        kind="Namespace",
        metadata=k8s.V1ObjectMeta(name=name, labels={"team": "a"}),
    )
    created = core.create_namespace(body)
    assert created.status.phase == "Active"
    assert created.metadata.labels == {"team": "a", "kubernetes.io/metadata.name": name}
    assert created.spec.finalizers == ["kubernetes"]
    patched = core.patch_namespace(name, {"metadata": {"labels": {"team": "b"}}})
    assert patched.metadata.labels["team"] == "b"
    names = [n.metadata.name for n in core.list_namespace(label_selector="team=b").items]
    assert names == [name]
    core.delete_namespace(name)
    wait_for(
        lambda: _gone(core.read_namespace, name),
        message=f"namespace {name} to be deleted",
    )
    bad = k8s.V1Namespace(
        api_version="v1", kind="Namespace", metadata=k8s.V1ObjectMeta(name="has.dot")
    )
    st = expect_error(422, "Invalid", core.create_namespace, bad)
    assert st["details"]["causes"][0]["field"] == "metadata.name"


def test_namespace_deletion_removes_contents(
    core: k8s.CoreV1Api, apps: k8s.AppsV1Api, server: Server
) -> None:
    name = unique("nsdel")
    core.create_namespace(
        k8s.V1Namespace(api_version="v1", kind="Namespace", metadata=k8s.V1ObjectMeta(name=name))
    )
    core.create_namespaced_config_map(name, cm("c1"))
    core.create_namespaced_config_map(name, cm("c2"))
    apps.create_namespaced_deployment(name, deployment("d1"))
    held = cm("held")
    held.metadata.finalizers = ["example.com/hold"]
    core.create_namespaced_config_map(name, held)
    deleted = core.delete_namespace(name)
    assert deleted["kind"] == "Namespace"
    assert deleted["status"]["phase"] == "Terminating"
    assert deleted["metadata"]["deletionTimestamp"]

    def contents_gone() -> bool:
        left = [i.metadata.name for i in core.list_namespaced_config_map(name).items]
        deps = apps.list_namespaced_deployment(name).items
        return left == ["held"] and not deps

    wait_for(contents_gone, message="the namespace's objects to be deleted")
    # the finalizer keeps the object, and the object keeps the namespace
    ns_obj = core.read_namespace(name)
    assert ns_obj.status.phase == "Terminating"
    assert core.read_namespaced_config_map("held", name).metadata.deletion_timestamp
    # a terminating namespace refuses new objects
    st = expect_error(403, "Forbidden", core.create_namespaced_config_map, name, cm("late"))
    assert "because it is being terminated" in st["message"]
    assert st["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    wait_for(lambda: _gone(core.read_namespace, name), message=f"namespace {name} to go")
    got = server.kubectl("get", "namespace", name, check=False)
    assert got.returncode == 1 and "NotFound" in got.stderr
