"""CSI against a real `kybern server` (controllers, scheduler and two simulated nodes), with the
hostpath driver and the sidecars as `kybern csi-hostpath` and `kybern csi-sidecars` child
processes and the agent's plugin registration library (watcher, driver registry, CSINode
publisher) for node `sim-0` in the test's loop: registration publishes the driver in CSINode;
Immediate claims are provisioned and bound, WaitForFirstConsumer ones only once a pod is
scheduled (on the node whose CSINode lists the driver); a bound volume's topology pins its pods;
a resize grows the PV through ControllerExpandVolume; deleting a claim deletes the PV and the
volume's directory (Delete) or keeps them (Retain); static volumes bind; VolumeAttachments are
created and attached for attach-required drivers and not for others; PVC protection holds a
claim while a pod uses it; snapshots are cut, restored and deleted; clones copy data (those in
test_csi_attach.py, on a cluster of its own made by the fixtures here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from conftest import REPO, Server, running_server

from kybern.api import errors, registry
from kybern.client import rest
from kybern.csi import drivers, mount, registration
from kybern.csi_sidecars import crds

pytestmark = pytest.mark.asyncio(loop_scope="module")
Obj = dict[str, Any]
T = TypeVar("T")
DRIVER = "hostpath.csi.kybern.io"
TOPOLOGY_KEY = "topology.hostpath.csi.kybern.io/node"
NODE = "sim-0"
DEADLINE = 60.0
REG = registry.Registry()


def res(group: str, plural: str) -> registry.Resource:
    r = REG.lookup(group, "v1", plural)
    assert r is not None
    return r


NODES, PODS, PVS, PVCS, NAMESPACES = (
    res("", p)
    for p in ("nodes", "pods", "persistentvolumes", "persistentvolumeclaims", "namespaces")
)
CLASSES, CSINODES, CSIDRIVERS, VAS = (
    res("storage.k8s.io", p)
    for p in ("storageclasses", "csinodes", "csidrivers", "volumeattachments")
)
EVENTS = res("", "events")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], message: str, timeout: float = DEADLINE
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
        except errors.StatusError as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}; last: {last!r}")
        await asyncio.sleep(0.05)


class Child:
    """A `kybern` subcommand as a child process, stopped with SIGTERM."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kybern", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.proc.args} ignored SIGTERM") from None
        return self.proc.returncode

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


class Cluster:
    def __init__(self, server: Server, client: rest.Client, base: Path) -> None:
        self.server = server
        self.client = client
        self.base = base
        self.data = base / "hostpath"
        self.socket = base / "csi.sock"
        self.reg_dir = base / "registry"

    def volume_dir(self, handle: str) -> Path:
        return self.data / "volumes" / handle

    def state(self) -> Obj:
        doc: Obj = json.loads((self.data / "state.json").read_text())
        return doc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="kybern-csi-it-"))
    with running_server(args=("--sim-nodes", "2")) as srv:
        cfg = await asyncio.to_thread(rest.load_kubeconfig, srv.kubeconfig)
        async with rest.Client(cfg) as client:
            cl = Cluster(srv, client, base)
            await eventually(lambda: get(client, NODES, NODE), "the simulated node")
            await crds.install_snapshot_crds(client)
            await client.create(
                CSIDRIVERS,
                {
                    "metadata": {"name": DRIVER},
                    "spec": {"attachRequired": True, "podInfoOnMount": True},
                },
            )
            driver = Child(
                base / "driver.log",
                "csi-hostpath",
                "--endpoint",
                f"unix://{cl.socket}",
                "--data-dir",
                str(cl.data),
                "--node-id",
                NODE,
                "--kubelet-registration-dir",
                str(cl.reg_dir),
            )
            publisher = drivers.CSINodePublisher(client, NODE, nodes=NODES, csinodes=CSINODES)
            reg = drivers.DriverRegistry(publisher)
            watcher = registration.PluginWatcher(cl.reg_dir, reg, rescan=1.0)
            sidecars: Child | None = None
            try:
                await watcher.start()
                await watcher.wait_for(DRIVER, timeout=30.0)
                sidecars = Child(
                    base / "sidecars.log",
                    "csi-sidecars",
                    "--csi-address",
                    f"unix://{cl.socket}",
                    "--kubeconfig",
                    str(srv.kubeconfig),
                )
                yield cl
                assert driver.alive(), driver.tail()
                assert sidecars.alive(), sidecars.tail()
                for log in (driver.log, sidecars.log, srv.log_path):
                    text = log.read_text(errors="replace")
                    at = text.find("Traceback")
                    assert at < 0, f"{log.name}:\n{text[max(at - 2000, 0) : at + 3000]}"
            finally:  # everything is stopped and removed before any exit code is checked
                stopped = [] if sidecars is None else [(sidecars.stop(), sidecars.tail())]
                await watcher.stop()
                await reg.close()
                stopped.append((driver.stop(), driver.tail()))
                leaked = mount.mounts_below(base)
                mount.unmount_all(base)
                shutil.rmtree(base, ignore_errors=True)
                for rc, tail in stopped:
                    assert rc == 0, tail
                assert not leaked, leaked


@pytest_asyncio.fixture(loop_scope="module")
async def ns(cluster: Cluster) -> AsyncIterator[str]:
    name = f"csi-{uuid.uuid4().hex[:8]}"
    await cluster.client.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    client = cluster.client
    for pod in (await client.list(PODS, name))["items"]:
        await ignore(client.delete(PODS, pod["metadata"]["name"], name, grace_period=0))
    for pvc in (await client.list(PVCS, name))["items"]:
        await ignore(client.delete(PVCS, pvc["metadata"]["name"], name))


async def ignore(aw: Awaitable[Any]) -> Any:
    with contextlib.suppress(errors.StatusError):
        return await aw
    return None


async def get(client: rest.Client, r: registry.Resource, name: str, ns: str = "") -> Obj | None:
    try:
        return await client.get(r, name, ns)
    except errors.StatusError as e:
        if e.code == 404:
            return None
        raise


def storage_class(name: str, **kw: Any) -> Obj:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": DRIVER,
        **kw,
    }


def claim(name: str, size: str = "10Mi", cls: str | None = None, **spec: Any) -> Obj:
    body: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        **spec,
    }
    if cls is not None:
        body["storageClassName"] = cls
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": body,
    }


def pod(name: str, *claims: str, node: str = "") -> Obj:
    spec: Obj = {
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [
            {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
            for i, c in enumerate(claims)
        ],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def bound(client: rest.Client, ns: str, name: str) -> Obj:
    async def probe() -> tuple[Obj, Obj] | None:
        pvc = await client.get(PVCS, name, ns)
        if (pvc.get("status") or {}).get("phase") != "Bound":
            return None
        return pvc, await client.get(PVS, pvc["spec"]["volumeName"])

    _, pv = await eventually(probe, f"claim {ns}/{name} bound")
    return pv


async def event_reasons(client: rest.Client, ns: str, name: str) -> set[str]:
    items = (await client.list(EVENTS, ns, field_selector=f"involvedObject.name={name}"))["items"]
    return {e.get("reason", "") for e in items}


async def new_class(cluster: Cluster, **kw: Any) -> str:
    name = f"sc-{uuid.uuid4().hex[:8]}"
    await cluster.client.create(CLASSES, storage_class(name, **kw))
    return name


# ---- registration --------------------------------------------------------------------------


async def test_registration_publishes_the_driver_in_csinode(cluster: Cluster) -> None:
    client = cluster.client
    csinode = await eventually(lambda: get(client, CSINODES, NODE), "CSINode sim-0")
    entry = next(d for d in csinode["spec"]["drivers"] if d["name"] == DRIVER)
    assert entry["nodeID"] == NODE
    assert entry["topologyKeys"] == [TOPOLOGY_KEY]
    assert csinode["metadata"]["ownerReferences"][0]["kind"] == "Node"
    node = await client.get(NODES, NODE)
    assert node["metadata"]["labels"][TOPOLOGY_KEY] == NODE
    ids = json.loads(node["metadata"]["annotations"][drivers.NODE_ID_ANNOTATION])
    assert ids == {DRIVER: NODE}
    assert await get(client, CSINODES, "sim-1") is None


# ---- provisioning and deletion -------------------------------------------------------------


async def test_immediate_claim_is_provisioned_bound_and_deleted(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, reclaimPolicy="Delete", volumeBindingMode="Immediate")
    await client.create(PVCS, claim("data", "16Mi", cls), ns)
    pv = await bound(client, ns, "data")
    src = pv["spec"]["csi"]
    assert src["driver"] == DRIVER
    assert pv["spec"]["claimRef"]["name"] == "data"
    assert pv["spec"]["capacity"]["storage"] == "16Mi"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == DRIVER
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": TOPOLOGY_KEY, "operator": "In", "values": [NODE]}]}
    ]
    pvc = await client.get(PVCS, "data", ns)
    assert pvc["status"]["capacity"]["storage"] == "16Mi"
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert "kubernetes.io/pvc-protection" in pvc["metadata"]["finalizers"]
    assert cluster.volume_dir(src["volumeHandle"]).is_dir()
    reasons = await eventually(
        lambda: _has(event_reasons(client, ns, "data"), "ProvisioningSucceeded"), "events"
    )
    assert "ExternalProvisioning" in reasons
    out = cluster.server.kubectl("get", "pvc", "data", "-n", ns, "--no-headers").stdout
    assert "Bound" in out and pv["metadata"]["name"] in out

    await client.delete(PVCS, "data", ns)
    await eventually(
        lambda: _none(get(client, PVS, pv["metadata"]["name"])), "the PV to be deleted"
    )
    assert not cluster.volume_dir(src["volumeHandle"]).exists()
    assert src["volumeHandle"] not in cluster.state()["volumes"]


async def _has(aw: Awaitable[set[str]], reason: str) -> set[str] | None:
    got = await aw
    return got if reason in got else None


async def _none(aw: Awaitable[Any]) -> bool:
    return await aw is None


async def test_retain_keeps_the_volume(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, reclaimPolicy="Retain", volumeBindingMode="Immediate")
    await client.create(PVCS, claim("keep", "8Mi", cls), ns)
    pv = await bound(client, ns, "keep")
    name, handle = pv["metadata"]["name"], pv["spec"]["csi"]["volumeHandle"]
    await client.delete(PVCS, "keep", ns)

    async def released() -> bool:
        got = await get(client, PVS, name)
        return got is not None and got["status"].get("phase") == "Released"

    await eventually(released, "the PV to be Released")
    assert cluster.volume_dir(handle).is_dir()
    await client.delete(PVS, name)  # the provisioner lets a retained PV go, data stays
    await eventually(lambda: _none(get(client, PVS, name)), "the PV to be removed")
    assert cluster.volume_dir(handle).is_dir()


async def test_default_storage_class(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    name = f"default-{uuid.uuid4().hex[:6]}"
    notes = {"storageclass.kubernetes.io/is-default-class": "true"}
    body = storage_class(name, volumeBindingMode="Immediate")
    body["metadata"]["annotations"] = notes
    await client.create(CLASSES, body)
    try:
        await client.create(PVCS, claim("nocls", "4Mi"), ns)
        pv = await bound(client, ns, "nocls")
        assert pv["spec"]["storageClassName"] == name
    finally:
        await client.delete(CLASSES, name)


# ---- WaitForFirstConsumer and topology -----------------------------------------------------


async def test_wait_for_first_consumer(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, volumeBindingMode="WaitForFirstConsumer")
    await client.create(PVCS, claim("late", "8Mi", cls), ns)
    await eventually(
        lambda: _has(event_reasons(client, ns, "late"), "WaitForFirstConsumer"),
        "the binder to wait for a consumer",
    )
    pvc = await client.get(PVCS, "late", ns)
    assert pvc["status"]["phase"] == "Pending"
    assert "volume.kubernetes.io/selected-node" not in (pvc["metadata"].get("annotations") or {})
    mine = [
        p
        for p in (await client.list(PVS))["items"]
        if p["spec"].get("claimRef", {}).get("namespace") == ns
    ]
    assert mine == []
    await client.create(PODS, pod("user", "late"), ns)
    pv = await bound(client, ns, "late")
    pvc = await client.get(PVCS, "late", ns)
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == NODE

    async def scheduled() -> str:
        p = await client.get(PODS, "user", ns)
        return str(p["spec"].get("nodeName") or "")

    assert await eventually(scheduled, "the pod to be bound") == NODE
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0][
        "values"
    ] == [NODE]


async def test_bound_volume_topology_pins_the_pod(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    name = f"pv-{uuid.uuid4().hex[:8]}"
    affinity = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["sim-1"]}
    await client.create(
        PVS,
        {
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "pinned",
                "csi": {"driver": "other.example.com", "volumeHandle": name},
                "nodeAffinity": {
                    "required": {"nodeSelectorTerms": [{"matchExpressions": [affinity]}]}
                },
            },
        },
    )
    try:
        await client.create(PVCS, claim("pinned", "1Gi", "pinned"), ns)
        assert (await bound(client, ns, "pinned"))["metadata"]["name"] == name
        for i in range(3):
            await client.create(PODS, pod(f"p{i}", "pinned"), ns)

        async def nodes() -> set[str] | None:
            got = {(await client.get(PODS, f"p{i}", ns))["spec"].get("nodeName") for i in range(3)}
            return None if None in got else got

        assert await eventually(nodes, "the pods to be scheduled") == {"sim-1"}
    finally:
        for i in range(3):
            await ignore(client.delete(PODS, f"p{i}", ns, grace_period=0))
        await ignore(client.delete(PVCS, "pinned", ns))
        await ignore(client.delete(PVS, name))


# ---- resize, static binding ----------------------------------------------------------------


async def test_resize_grows_the_pv(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, volumeBindingMode="Immediate", allowVolumeExpansion=True)
    await client.create(PVCS, claim("grow", "10Mi", cls), ns)
    pv = await bound(client, ns, "grow")
    patch = {"spec": {"resources": {"requests": {"storage": "24Mi"}}}}
    await client.patch(PVCS, "grow", patch, ns)

    async def grown() -> Obj | None:
        got = await client.get(PVS, pv["metadata"]["name"])
        return got if got["spec"]["capacity"]["storage"] == "24Mi" else None

    await eventually(grown, "the PV to grow")
    handle = pv["spec"]["csi"]["volumeHandle"]
    assert cluster.state()["volumes"][handle]["capacity"] == 24 << 20

    async def pending() -> bool:
        conds = (await client.get(PVCS, "grow", ns))["status"].get("conditions") or []
        return any(c["type"] == "FileSystemResizePending" for c in conds)

    await eventually(pending, "the node part of the resize to be requested")
    pvc = await client.get(PVCS, "grow", ns)
    assert pvc["status"]["capacity"]["storage"] == "10Mi"  # until the node expands it


async def test_static_binding(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    small, big, pre = (f"static-{uuid.uuid4().hex[:6]}" for _ in range(3))
    for name, size, ref in ((small, "1Gi", None), (big, "5Gi", None), (pre, "5Gi", "pre")):
        spec: Obj = {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual",
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": DRIVER, "volumeHandle": name},
        }
        if ref:
            spec["claimRef"] = {"namespace": ns, "name": ref}
        await client.create(PVS, {"metadata": {"name": name}, "spec": spec})
    try:
        await client.create(PVCS, claim("want", "2Gi", "manual"), ns)
        assert (await bound(client, ns, "want"))["metadata"]["name"] == big
        await client.create(PVCS, claim("pre", "1Gi", "manual"), ns)
        assert (await bound(client, ns, "pre"))["metadata"]["name"] == pre
        got = await client.get(PVS, small)
        assert got["status"]["phase"] == "Available" and not got["spec"].get("claimRef")
    finally:
        for name in (small, big, pre):
            await ignore(client.delete(PVS, name))
