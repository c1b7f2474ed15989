"""A real operator framework against custom resources: kopf runs a small operator (written here to
a file) as a user would — `kopf run --standalone op.py`, and `kopf run op.py` with peering
through its KopfPeering CRDs — with KUBECONFIG pointing at our server. The operator reacts to
create/update/delete of a custom resource: it patches the status, and kopf adds and removes its
finalizer around the delete handler. Every kopf process is stopped at the end."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, kubectl_env, unique, wait_for
from kubernetes import client as k8s
from test_crd_support import CRDS, create_crd, established

Obj = dict[str, Any]
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
STOP_TIMEOUT = 15.0

OPERATOR = """
import pathlib
import kopf

GROUP = {group!r}
MARK = pathlib.Path({mark!r})


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.watching.server_timeout = 30
    settings.posting.enabled = False


@kopf.on.create(GROUP, "v1", "tasks")
def created(spec, patch, **_):
    patch.status["phase"] = "Created"
    patch.status["seen"] = spec.get("replicas")


@kopf.on.update(GROUP, "v1", "tasks")
def updated(spec, patch, **_):
    patch.status["phase"] = "Updated-%s" % spec.get("replicas")


@kopf.on.delete(GROUP, "v1", "tasks")
def deleted(name, **_):
    MARK.write_text(name)
"""


def task_crd(group: str) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"tasks.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "tasks", "kind": "Task"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"replicas": {"type": "integer", "default": 1}},
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def peering_crd(scope: str) -> Obj:
    kind = "ClusterKopfPeering" if scope == "Cluster" else "KopfPeering"
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@contextlib.contextmanager
def kopf(server: Server, tmp: Path, ns: str, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    log = open(tmp / "kopf.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", *flags, "--namespace", ns, str(tmp / "op.py")],
        env=kubectl_env(server.kubeconfig),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def run_operator_cycle(server: Server, tmp: Path, ns: str, group: str, name: str) -> None:
    co = k8s.CustomObjectsApi(server.client())
    body = {"apiVersion": f"{group}/v1", "kind": "Task", "metadata": {"name": name}, "spec": {}}
    co.create_namespaced_custom_object(group, "v1", ns, "tasks", body)

    def status() -> Obj:
        got: Obj = co.get_namespaced_custom_object(group, "v1", ns, "tasks", name)
        return got

    def log() -> str:
        return (tmp / "kopf.log").read_text(errors="replace")[-3000:]

    got = wait_for(
        lambda: (s := status()).get("status", {}).get("phase") == "Created" and s,
        60,
        0.2,
        message="kopf to handle the creation",
    )
    assert got["status"]["seen"] == 1, log()
    assert KOPF_FINALIZER in got["metadata"]["finalizers"], log()
    co.patch_namespaced_custom_object(group, "v1", ns, "tasks", name, {"spec": {"replicas": 3}})
    wait_for(
        lambda: status().get("status", {}).get("phase") == "Updated-3",
        60,
        0.2,
        message="kopf to handle the update",
    )
    co.delete_namespaced_custom_object(group, "v1", ns, "tasks", name)

    def gone() -> bool:
        try:
            status()
        except k8s.ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 60, 0.2, message="kopf to run the delete handler and release the finalizer")
    assert (tmp / "mark").read_text() == name, log()


@pytest.fixture(scope="module")
def group(server: Server) -> Iterator[str]:
    g = f"{unique('op')}.example.com"
    create_crd(server, task_crd(g))
    yield g
    if server.running:
        server.http().delete(f"{server.url}{CRDS}/tasks.{g}")


def write_operator(tmp: Path, group: str) -> None:
    (tmp / "op.py").write_text(OPERATOR.format(group=group, mark=str(tmp / "mark")))


def test_kopf_standalone(server: Server, group: str, ns: str, tmp_path: Path) -> None:
    write_operator(tmp_path, group)
    with kopf(server, tmp_path, ns, "--standalone") as proc:
        run_operator_cycle(server, tmp_path, ns, group, "t1")
        assert proc.poll() is None, (tmp_path / "kopf.log").read_text()


def test_kopf_with_peering(server: Server, group: str, ns: str, tmp_path: Path) -> None:
    http = server.http()
    for scope in ("Cluster", "Namespaced"):
        body = peering_crd(scope)
        r = http.post(f"{server.url}{CRDS}", json=body)
        assert r.status_code in (201, 409), r.text
        established(server, body["metadata"]["name"])
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}}
    r = http.post(f"{server.url}/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings", json=peering)
    assert r.status_code == 201, r.text
    write_operator(tmp_path, group)
    with kopf(server, tmp_path, ns) as proc:
        url = f"{server.url}/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/default"
        wait_for(
            lambda: http.get(url).json().get("status"),
            60,
            0.2,
            message="kopf to announce itself in the KopfPeering",
        )
        run_operator_cycle(server, tmp_path, ns, group, "t2")
        assert proc.poll() is None, (tmp_path / "kopf.log").read_text()
