"""CSI attachment, protection and snapshots against a real `kybern server` with two simulated
nodes, `kybern csi-hostpath` and `kybern csi-sidecars` (the cluster fixture of
test_csi_cluster.py): VolumeAttachments are created and attached (and the node reports the
volume) for an attach-required driver, and none for a driver whose CSIDriver says
`attachRequired: false`; PVC protection holds a claim while a pod uses it; a snapshot is cut,
restored into a new claim, a claim is cloned, and deleting the snapshot removes its content
and data."""

from __future__ import annotations

import uuid

import pytest
from test_csi_cluster import (
    CSIDRIVERS,
    DRIVER,
    NODE,
    NODES,
    PODS,
    PVCS,
    VAS,
    Cluster,
    Obj,
    _none,
    bound,
    claim,
    cluster,
    eventually,
    get,
    new_class,
    ns,
    pod,
)

from kybern.csi_sidecars import common as sc_common

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["cluster", "ns"]  # the fixtures, for pytest to find here


# ---- attachment and protection -------------------------------------------------------------


async def _scheduled_pod_with_claim(cluster: Cluster, ns: str, cls: str) -> tuple[Obj, Obj]:
    client = cluster.client
    await client.create(PVCS, claim("att", "8Mi", cls), ns)
    pv = await bound(client, ns, "att")
    await client.create(PODS, pod("att", "att"), ns)

    async def running() -> Obj | None:
        p = await client.get(PODS, "att", ns)
        return p if (p.get("status") or {}).get("phase") == "Running" else None

    return await eventually(running, "the pod to run"), pv


async def test_volume_attachment_for_attach_required_driver(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, volumeBindingMode="Immediate")
    p, pv = await _scheduled_pod_with_claim(cluster, ns, cls)
    assert p["spec"]["nodeName"] == NODE
    handle = pv["spec"]["csi"]["volumeHandle"]

    async def attached() -> Obj | None:
        for va in (await client.list(VAS))["items"]:
            if va["spec"]["source"].get("persistentVolumeName") == pv["metadata"]["name"]:
                return va if (va.get("status") or {}).get("attached") else None
        return None

    va = await eventually(attached, "the VolumeAttachment to be attached")
    assert va["spec"]["attacher"] == DRIVER and va["spec"]["nodeName"] == NODE
    assert va["metadata"]["name"].startswith("csi-") and len(va["metadata"]["name"]) == 68
    assert f"external-attacher/{DRIVER}" in va["metadata"]["finalizers"]
    assert cluster.state()["volumes"][handle]["published"] == {NODE: False}

    async def node_reports() -> bool:
        node = await client.get(NODES, NODE)
        names = [v["name"] for v in node["status"].get("volumesAttached") or ()]
        return f"kubernetes.io/csi/{DRIVER}^{handle}" in names

    await eventually(node_reports, "node.status.volumesAttached")
    await client.delete(PODS, "att", ns, grace_period=0)
    await eventually(lambda: _none(get(client, VAS, va["metadata"]["name"])), "the detach")
    assert cluster.state()["volumes"][handle]["published"] == {}


async def test_no_volume_attachment_when_not_required(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    await client.delete(CSIDRIVERS, DRIVER)
    body = {"metadata": {"name": DRIVER}, "spec": {"attachRequired": False}}
    await eventually(lambda: _none(get(client, CSIDRIVERS, DRIVER)), "the old CSIDriver gone")
    await client.create(CSIDRIVERS, body)
    try:
        cls = await new_class(cluster, volumeBindingMode="Immediate")
        _, pv = await _scheduled_pod_with_claim(cluster, ns, cls)
        # the pod runs, so the attach-detach controller saw it on its node
        vas = [
            va
            for va in (await client.list(VAS))["items"]
            if va["spec"]["source"].get("persistentVolumeName") == pv["metadata"]["name"]
        ]
        assert vas == []
    finally:
        await client.delete(PODS, "att", ns, grace_period=0)
        await client.delete(CSIDRIVERS, DRIVER)
        await eventually(lambda: _none(get(client, CSIDRIVERS, DRIVER)), "the CSIDriver gone")
        body["spec"] = {"attachRequired": True, "podInfoOnMount": True}
        await client.create(CSIDRIVERS, body)


async def test_pvc_protection_holds_a_claim_in_use(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, volumeBindingMode="Immediate")
    await _scheduled_pod_with_claim(cluster, ns, cls)
    await client.delete(PVCS, "att", ns)
    pvc = await client.get(PVCS, "att", ns)
    assert pvc["metadata"].get("deletionTimestamp")
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    await client.create(PODS, pod("marker", node="sim-1"), ns)  # a later change, seen after
    await eventually(lambda: get(client, PODS, "marker", ns), "the marker pod")
    assert await get(client, PVCS, "att", ns) is not None
    await client.delete(PODS, "att", ns, grace_period=0)
    await eventually(lambda: _none(get(client, PVCS, "att", ns)), "the claim to go")


# ---- snapshots and clones ------------------------------------------------------------------


async def test_snapshot_restore_and_clone(cluster: Cluster, ns: str) -> None:
    client = cluster.client
    cls = await new_class(cluster, volumeBindingMode="Immediate")
    snapclass = f"snap-{uuid.uuid4().hex[:6]}"
    await client.create(
        sc_common.SNAPSHOT_CLASSES,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": snapclass},
            "driver": DRIVER,
            "deletionPolicy": "Delete",
        },
    )
    await client.create(PVCS, claim("src", "8Mi", cls), ns)
    src = await bound(client, ns, "src")
    (cluster.volume_dir(src["spec"]["csi"]["volumeHandle"]) / "hello.txt").write_text("hi\n")
    snap = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap"},
        "spec": {
            "volumeSnapshotClassName": snapclass,
            "source": {"persistentVolumeClaimName": "src"},
        },
    }
    await client.create(sc_common.SNAPSHOTS, snap, ns)

    async def ready() -> Obj | None:
        vs = await client.get(sc_common.SNAPSHOTS, "snap", ns)
        return vs if (vs.get("status") or {}).get("readyToUse") else None

    vs = await eventually(ready, "the snapshot to be ready")
    assert vs["status"]["restoreSize"] == "8Mi"
    content = await client.get(sc_common.CONTENTS, vs["status"]["boundVolumeSnapshotContentName"])
    handle = content["status"]["snapshotHandle"]
    assert (cluster.data / "snapshots" / f"{handle}.tgz").exists()

    group = "snapshot.storage.k8s.io"
    source = {"apiGroup": group, "kind": "VolumeSnapshot", "name": "snap"}
    await client.create(PVCS, claim("restored", "8Mi", cls, dataSource=source), ns)
    clone_src = {"kind": "PersistentVolumeClaim", "name": "src"}
    await client.create(PVCS, claim("clone", "8Mi", cls, dataSource=clone_src), ns)
    for name in ("restored", "clone"):
        pv = await bound(client, ns, name)
        copy = cluster.volume_dir(pv["spec"]["csi"]["volumeHandle"]) / "hello.txt"
        assert copy.read_text() == "hi\n", name

    await client.delete(sc_common.SNAPSHOTS, "snap", ns)
    await eventually(
        lambda: _none(get(client, sc_common.SNAPSHOTS, "snap", ns)), "the snapshot to go"
    )
    await eventually(
        lambda: _none(get(client, sc_common.CONTENTS, content["metadata"]["name"])),
        "the content to go",
    )
    assert not (cluster.data / "snapshots" / f"{handle}.tgz").exists()
    await client.delete(sc_common.SNAPSHOT_CLASSES, snapclass)
