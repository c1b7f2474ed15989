"""The node agent's CSI volumes end to end: a real containerd, a `kybern server` (binder,
attach-detach, PVC protection, scheduler with VolumeBinding) and `kybern agent` as child
processes, `kybern csi-sidecars` as a child process and kybern's hostpath driver in the test's
loop (so its call counts can be read), registered through the agent's plugin registration
directory. A pod writes to a claim, is deleted, and another pod reads the data back through a
read-only mount (fsGroup applied); a pod whose claim does not exist yet waits in
ContainerCreating with FailedMount events without holding up other pods, and runs once the
claim is there; a block claim is resized while its pod runs and the pod sees the bigger device
(NodeExpandVolume called, claim capacity updated); the agent restarts under a running claim
pod (it keeps running), and a pod force-deleted while the agent is away has its volume
unpublished and unstaged when it returns; an ephemeral inline CSI volume lives and dies with its
pod; a WaitForFirstConsumer claim is provisioned only once its pod is scheduled (on the node the
scheduler selected, the PV's node affinity naming it); a claim's VolumeSnapshot is restored into
a new claim and the claim is cloned, pods reading the data back; a deleted claim takes its PV and
the driver's volume directory with it (DeleteVolume). Nothing stays mounted and every process is
stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agent_helpers import (
    Cluster,
    Process,
    agent_get,
    container_status,
    exec_in,
    in_namespace,
    is_running,
    pod_manifest,
    running_cluster,
    wait_until,
)

from kybern.agent import common
from kybern.api import registry
from kybern.csi import mount
from kybern.csi import volumes as csivol
from kybern.csi.hostpath import DRIVER_NAME, Config, HostpathDriver
from kybern.csi_sidecars import common as sidecar_res
from kybern.csi_sidecars import crds

pytestmark = pytest.mark.asyncio(loop_scope="module")
Obj = dict[str, Any]
REG = registry.Registry()
MiB = 1 << 20


def _res(group: str, plural: str) -> registry.Resource:
    r = REG.lookup(group, "v1", plural)
    assert r is not None
    return r


PVCS, PVS, EVENTS = (
    _res("", "persistentvolumeclaims"),
    _res("", "persistentvolumes"),
    _res("", "events"),
)
STORAGE = ("storageclasses", "csidrivers", "csinodes", "volumeattachments")
CLASSES, CSIDRIVERS, CSINODES, VAS = (_res("storage.k8s.io", p) for p in STORAGE)
SNAPSHOTS, CONTENTS = sidecar_res.SNAPSHOTS, sidecar_res.CONTENTS
WFFC, IMMEDIATE = "agent-csi-wffc", "agent-csi-now"
SNAPCLASS = "agent-csi-snap"
TOPOLOGY_KEY = "topology.hostpath.csi.kybern.io/node"


@dataclass
class Env:
    c: Cluster
    driver: HostpathDriver

    def calls(self, method: str) -> int:
        return self.driver.stats.calls.get(method, 0)

    async def mounts(self, below: Path | None = None) -> list[str]:
        return mount.mounts_below(below or self.c.data_dir)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    base = Path(tmp_path_factory.mktemp("agent-csi"))
    driver: HostpathDriver | None = None
    sidecars: Process | None = None
    try:
        async with running_cluster(base) as c:
            driver = HostpathDriver(
                Config(base / "hostpath", c.node),
                f"unix://{base}/csi.sock",
                registration_dir=c.data_dir / "plugins_registry",
            )
            await driver.start()
            await c.client.create(CSIDRIVERS, {
                "metadata": {"name": DRIVER_NAME},
                "spec": {"attachRequired": True, "podInfoOnMount": True, "fsGroupPolicy": "File",
                         "volumeLifecycleModes": ["Persistent", "Ephemeral"]},
            })  # fmt: skip
            for name, mode in ((WFFC, "WaitForFirstConsumer"), (IMMEDIATE, "Immediate")):
                await c.client.create(CLASSES, {
                    "metadata": {"name": name}, "provisioner": DRIVER_NAME,
                    "reclaimPolicy": "Delete", "volumeBindingMode": mode,
                    "allowVolumeExpansion": True,
                })  # fmt: skip
            # the snapshot API, as `kybern up --csi-hostpath` installs it, before the sidecars
            # start (so they run the snapshotter at once), and a class for the driver
            await crds.install_snapshot_crds(c.client)
            await c.client.create(sidecar_res.SNAPSHOT_CLASSES, {
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                "metadata": {"name": SNAPCLASS}, "driver": DRIVER_NAME,
                "deletionPolicy": "Delete",
            })  # fmt: skip
            sidecars = Process(
                ["csi-sidecars", "--csi-address", driver.endpoint, "--kubeconfig",
                 str(c.kubeconfig)],
                base / "sidecars.log",
            )  # fmt: skip
            await sidecars.start()

            async def registered() -> bool:  # the agent found the driver and published it
                csinode = await c.client.get(CSINODES, c.node)
                return DRIVER_NAME in [d["name"] for d in csinode["spec"].get("drivers") or []]

            await wait_until(registered, 60.0, "the driver in the node's CSINode")
            yield Env(c, driver)
            assert sidecars.running, sidecars.log_tail()
            for log in (base / "agent.log", base / "sidecars.log"):
                text = log.read_text(errors="replace")
                at = text.find("Traceback")
                assert at < 0, f"{log.name}:\n{text[max(at - 2000, 0) : at + 3000]}"
    finally:
        if sidecars is not None:
            assert await sidecars.stop() == 0, sidecars.log_tail()
        if driver is not None:
            await driver.stop()
        leaked = mount.mounts_below(base)
        mount.unmount_all(base)
        assert not leaked, f"left mounted: {leaked}"


def claim(name: str, size: str = "16Mi", cls: str = WFFC, block: bool = False) -> Obj:
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": cls,
        "resources": {"requests": {"storage": size}},
    }
    if block:
        spec["volumeMode"] = "Block"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def claim_pod(name: str, claim_name: str, command: list[str], **extra: Any) -> Obj:
    read_only = bool(extra.pop("read_only", False))
    return pod_manifest(
        name,
        command,
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim_name,
                                                             "readOnly": read_only}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        **extra,
    )  # fmt: skip


async def events_of(c: Cluster, ns: str, name: str, reason: str) -> list[Obj]:
    items = (await c.client.list(EVENTS, ns)).get("items") or []
    return [
        e for e in items if e["involvedObject"].get("name") == name and e.get("reason") == reason
    ]


async def pod_gone(c: Cluster, ns: str, name: str) -> bool:
    try:
        await c.pod(ns, name)
    except Exception as e:
        return getattr(e, "code", None) == 404
    return False


async def delete_pod(env: Env, ns: str, name: str) -> str:
    """Delete a pod, wait until it is gone and its directory removed; its uid."""
    c = env.c
    uid = str((await c.pod(ns, name))["metadata"]["uid"])
    await c.client.delete(common.PODS, name, ns)
    await wait_until(lambda: pod_gone(c, ns, name), 60.0, f"pod {name} to go")

    async def no_dir() -> bool:
        pod_dir = c.data_dir / "pods" / uid
        return not pod_dir.exists() and not await env.mounts(pod_dir)

    await wait_until(no_dir, 60.0, f"pod {name}'s volumes and directory to go")
    return uid


async def staging_mounts(env: Env) -> list[str]:
    return await env.mounts(env.c.data_dir / "plugins")


async def test_claim_outlives_its_pod_and_is_read_back_read_only(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    await c.apply(in_namespace(claim("data"), ns))
    writer = claim_pod("writer", "data", ["sh", "-c", "echo hello > /data/f && sleep 3600"],
                       securityContext={"fsGroup": 1234})  # fmt: skip
    await c.apply(in_namespace(writer, ns))
    pod = await c.wait_pod(ns, "writer", is_running, 120.0)
    code, out = await exec_in(c, pod, ["sh", "-c", "cat /data/f; stat -c %g /data"])
    assert (code, out.split()) == (0, ["hello", "1234"])  # fsGroupPolicy File: group set
    pvc = await c.client.get(PVCS, "data", ns)
    pv = await c.client.get(PVS, pvc["spec"]["volumeName"])
    uid = pod["metadata"]["uid"]
    target = c.data_dir / "pods" / uid / "volumes" / "kubernetes.io~csi" / "data" / "mount"
    assert str(target) in await env.mounts()
    assert await staging_mounts(env), "the volume is staged on the node"
    vas = [
        va for va in (await c.client.list(VAS)).get("items") or []
        if va["spec"]["source"].get("persistentVolumeName") == pv["metadata"]["name"]
    ]  # fmt: skip
    assert len(vas) == 1 and vas[0]["status"]["attached"]
    status, summary = await agent_get(c, "/stats/summary")  # the volume in the Summary API
    assert status == 200, summary
    [entry] = [p for p in summary["pods"] if p["podRef"]["uid"] == uid]
    [vol] = [v for v in entry.get("volume") or [] if v["name"] == "data"]
    assert vol["pvcRef"] == {"name": "data", "namespace": ns}
    assert vol["capacityBytes"] > 0 and vol["usedBytes"] >= 0
    await delete_pod(env, ns, "writer")
    assert not await staging_mounts(env), "unstaged once no pod uses it"
    reader = claim_pod("reader", "data", ["sleep", "3600"], read_only=True)
    await c.apply(in_namespace(reader, ns))
    pod = await c.wait_pod(ns, "reader", is_running, 120.0)
    code, out = await exec_in(c, pod, ["cat", "/data/f"])
    assert (code, out) == (0, "hello\n")
    code, _ = await exec_in(c, pod, ["touch", "/data/g"])
    assert code != 0, "a readOnly claim is mounted read-only"
    await delete_pod(env, ns, "reader")


async def test_missing_claim_waits_without_blocking_other_pods(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    # bound to the node directly: the scheduler would keep it pending without its claim
    waiting = claim_pod("waiting", "late", ["sh", "-c", "cat /data/* ; sleep 3600"],
                        nodeName=c.node)  # fmt: skip
    await c.apply(in_namespace(waiting, ns))

    def creating(p: Obj) -> bool:
        w = (container_status(p).get("state") or {}).get("waiting") or {}
        return w.get("reason") == "ContainerCreating"

    await c.wait_pod(ns, "waiting", creating, 60.0, "the pod waiting in ContainerCreating")

    async def failed_mount() -> list[Obj]:
        return await events_of(c, ns, "waiting", "FailedMount")

    evs = await wait_until(failed_mount, 60.0, "a FailedMount event")
    assert evs[0]["type"] == "Warning" and "late" in evs[0]["message"], evs[0]
    await c.apply(in_namespace(pod_manifest("other", ["sleep", "3600"]), ns))
    await c.wait_pod(ns, "other", is_running, 60.0, "a pod without claims, meanwhile")
    assert creating(await c.pod(ns, "waiting"))
    await c.apply(in_namespace(claim("late", cls=IMMEDIATE), ns))
    await c.wait_pod(ns, "waiting", is_running, 120.0, "the pod, once its claim is bound")
    await delete_pod(env, ns, "waiting")
    await delete_pod(env, ns, "other")


async def test_block_claim_resized_while_its_pod_runs(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    await c.apply(in_namespace(claim("disk", "8Mi", block=True), ns))
    pod_obj = pod_manifest(
        "blk",
        ["sleep", "3600"],
        volumes=[{"name": "disk", "persistentVolumeClaim": {"claimName": "disk"}}],
        container={"volumeDevices": [{"name": "disk", "devicePath": "/dev/xvda"}]},
    )
    await c.apply(in_namespace(pod_obj, ns))
    pod = await c.wait_pod(ns, "blk", is_running, 120.0)
    code, out = await exec_in(c, pod, ["sh", "-c", "wc -c < /dev/xvda"])
    assert (code, int(out)) == (0, 8 * MiB)
    code, _ = await exec_in(c, pod, ["sh", "-c", "echo hi | dd of=/dev/xvda bs=512 count=1"])
    assert code == 0
    expands = env.calls("NodeExpandVolume")
    await c.client.patch(
        PVCS, "disk", {"spec": {"resources": {"requests": {"storage": "24Mi"}}}}, ns
    )

    async def resized() -> Obj | None:
        st = (await c.client.get(PVCS, "disk", ns)).get("status") or {}
        conds = [x["type"] for x in st.get("conditions") or []]
        return st if st.get("capacity", {}).get("storage") == "24Mi" and not conds else None

    await wait_until(resized, 90.0, "the claim's capacity after the node expansion")
    assert env.calls("NodeExpandVolume") > expands
    code, out = await exec_in(c, pod, ["sh", "-c", "wc -c < /dev/xvda"])
    assert (code, int(out)) == (0, 24 * MiB), "the running pod sees the bigger device"
    code, out = await exec_in(c, pod, ["sh", "-c", "dd if=/dev/xvda bs=3 count=1 2>/dev/null"])
    assert out == "hi\n"
    evs = await events_of(c, ns, "blk", "FileSystemResizeSuccessful")
    assert evs, "the pod has a FileSystemResizeSuccessful event"
    await delete_pod(env, ns, "blk")


async def test_agent_restart_keeps_claim_pods_and_cleans_up_after_them(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    for name in ("one", "two"):
        await c.apply(in_namespace(claim(f"vol-{name}"), ns))
        await c.apply(in_namespace(claim_pod(name, f"vol-{name}", ["sleep", "3600"]), ns))
    one = await c.wait_pod(ns, "one", is_running, 120.0)
    two = await c.wait_pod(ns, "two", is_running, 120.0)
    before = container_status(one)
    stages = env.calls("NodeStageVolume")
    assert await c.agent.stop() == 0
    mounted = await env.mounts()
    assert any(one["metadata"]["uid"] in m for m in mounted), "mounts stay while it is away"
    # while the agent is away, "two" is force-deleted: nobody unpublishes it
    await c.client.delete(common.PODS, "two", ns, grace_period=0)
    await c.start_agent()
    await c.wait_node_ready()
    uid_two = two["metadata"]["uid"]

    async def two_cleaned() -> bool:  # reconstructed, then unpublished and unstaged
        left = [m for m in await env.mounts() if uid_two in m]
        return not left and not (c.data_dir / "pods" / uid_two).exists()

    await wait_until(two_cleaned, 90.0, "the force-deleted pod's volume to be cleaned up")
    one = await c.pod(ns, "one")
    after = container_status(one)
    assert is_running(one) and after["containerID"] == before["containerID"]
    code, _ = await exec_in(c, one, ["sh", "-c", "echo still > /data/f && cat /data/f"])
    assert code == 0
    assert env.calls("NodeStageVolume") == stages, "the running pod's volume was not restaged"
    assert len(await staging_mounts(env)) == 1, "only pod one's volume stays staged"
    await delete_pod(env, ns, "one")
    assert not await env.mounts(), "nothing left mounted below the agent's data dir"


async def test_ephemeral_inline_volume(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    pod_obj = pod_manifest(
        "inline",
        ["sh", "-c", "echo eph > /scratch/f && sleep 3600"],
        volumes=[{"name": "scratch", "csi": {"driver": DRIVER_NAME,
                                             "volumeAttributes": {"size": "4Mi"}}}],
        container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
    )  # fmt: skip
    publishes = env.calls("NodePublishVolume")
    await c.apply(in_namespace(pod_obj, ns))
    pod = await c.wait_pod(ns, "inline", is_running, 120.0)
    code, out = await exec_in(c, pod, ["cat", "/scratch/f"])
    assert (code, out) == (0, "eph\n")
    assert env.calls("NodePublishVolume") == publishes + 1
    handle = csivol.inline_handle(pod["metadata"]["uid"], "scratch")
    data = env.driver.config.data_dir / "volumes" / handle
    assert (data / "f").read_text() == "eph\n", "the driver made the volume on publish"
    unpublishes = env.calls("NodeUnpublishVolume")
    await delete_pod(env, ns, "inline")
    assert env.calls("NodeUnpublishVolume") == unpublishes + 1
    assert not data.exists(), "the ephemeral volume is deleted with its pod"


async def wait_bound(c: Cluster, ns: str, name: str, timeout: float = 90.0) -> Obj:
    async def bound() -> Obj | None:
        pvc = await c.client.get(PVCS, name, ns)
        return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None

    return await wait_until(bound, timeout, f"claim {ns}/{name} to be Bound")


async def pvs_of(c: Cluster, ns: str, name: str) -> list[Obj]:
    return [
        pv for pv in (await c.client.list(PVS)).get("items") or []
        if ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace") == ns
        and pv["spec"]["claimRef"].get("name") == name
    ]  # fmt: skip


def driver_volume_named(env: Env, name: str) -> bool:
    assert env.driver.core is not None
    return env.driver.core.state.volume_by_name(name) is not None


async def gone(c: Cluster, res: registry.Resource, name: str, ns: str = "") -> bool:
    try:
        await c.client.get(res, name, ns)
    except Exception as e:
        return getattr(e, "code", None) == 404
    return False


async def test_wait_for_first_consumer_provisions_once_the_pod_is_scheduled(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    await c.apply(in_namespace(claim("later"), ns))  # WaitForFirstConsumer
    await c.apply(in_namespace(claim("control", cls=IMMEDIATE), ns))
    # the Immediate claim bound: the provisioner has seen both claims and had its chance
    await wait_bound(c, ns, "control")
    pvc = await c.client.get(PVCS, "later", ns)
    assert (pvc.get("status") or {}).get("phase") == "Pending", pvc.get("status")
    assert not pvc["spec"].get("volumeName")
    assert "volume.kubernetes.io/selected-node" not in (pvc["metadata"].get("annotations") or {})
    assert not await pvs_of(c, ns, "later"), "no PV for an unconsumed WFFC claim"
    assert not driver_volume_named(env, f"pvc-{pvc['metadata']['uid']}"), "nor a CreateVolume"
    creates = env.calls("CreateVolume")
    await c.apply(in_namespace(claim_pod("consumer", "later", ["sleep", "3600"]), ns))
    pod = await c.wait_pod(ns, "consumer", is_running, 120.0)
    assert pod["spec"]["nodeName"] == c.node
    pvc = await wait_bound(c, ns, "later")
    assert env.calls("CreateVolume") > creates
    notes = pvc["metadata"].get("annotations") or {}
    assert notes.get("volume.kubernetes.io/selected-node") == c.node, notes
    pv = await c.client.get(PVS, pvc["spec"]["volumeName"])
    assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    assert pv["spec"]["storageClassName"] == WFFC
    # the hostpath driver reports topology: the PV may only be used on the selected node
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    exprs = [e for t in terms for e in t.get("matchExpressions") or []]
    assert {"key": TOPOLOGY_KEY, "operator": "In", "values": [c.node]} in exprs, terms
    await delete_pod(env, ns, "consumer")


async def test_snapshot_restored_and_claim_cloned(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    await c.apply(in_namespace(claim("origin"), ns))
    await c.apply(in_namespace(claim_pod("writer", "origin", ["sleep", "3600"]), ns))
    writer = await c.wait_pod(ns, "writer", is_running, 120.0)
    code, _ = await exec_in(c, writer, ["sh", "-c", "echo before > /data/f && sync"])
    assert code == 0
    snapshots = env.calls("CreateSnapshot")
    await c.apply({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "snap", "namespace": ns},
        "spec": {"volumeSnapshotClassName": SNAPCLASS,
                 "source": {"persistentVolumeClaimName": "origin"}},
    })  # fmt: skip

    async def ready() -> Obj | None:
        vs = await c.client.get(SNAPSHOTS, "snap", ns)
        return vs if (vs.get("status") or {}).get("readyToUse") is True else None

    vs = await wait_until(ready, 90.0, "the VolumeSnapshot to be readyToUse")
    assert env.calls("CreateSnapshot") > snapshots
    assert vs["status"]["restoreSize"] == "16Mi"
    content = await c.client.get(CONTENTS, vs["status"]["boundVolumeSnapshotContentName"])
    handle = content["status"]["snapshotHandle"]
    assert env.driver.core is not None and handle in env.driver.core.state.snapshots
    core = env.driver.core
    # changed after the snapshot: the restore has the old data, a clone made now the new
    code, _ = await exec_in(c, writer, ["sh", "-c", "echo after > /data/f && sync"])
    assert code == 0
    restored = claim("restored")
    restored["spec"]["dataSource"] = {
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap",
    }  # fmt: skip
    cloned = claim("cloned")
    cloned["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": "origin"}
    for obj in (restored, cloned):
        await c.apply(in_namespace(obj, ns))
        name = obj["metadata"]["name"]
        reader = claim_pod(f"read-{name}", name, ["sleep", "3600"])
        await c.apply(in_namespace(reader, ns))
    origin = await c.client.get(PVCS, "origin", ns)
    origin_handle = (await c.client.get(PVS, origin["spec"]["volumeName"]))["spec"]["csi"][
        "volumeHandle"
    ]
    sources = {"restored": (handle, ""), "cloned": ("", origin_handle)}
    for name, want in (("restored", "before\n"), ("cloned", "after\n")):
        pod = await c.wait_pod(ns, f"read-{name}", is_running, 120.0)
        code, out = await exec_in(c, pod, ["cat", "/data/f"])
        assert (code, out) == (0, want), name
        pvc = await c.client.get(PVCS, name, ns)
        pv = await c.client.get(PVS, pvc["spec"]["volumeName"])
        vol = core.state.volumes[pv["spec"]["csi"]["volumeHandle"]]
        assert vol.content_source() == sources[name], "CreateVolume had the content source"
        await delete_pod(env, ns, f"read-{name}")
    await delete_pod(env, ns, "writer")
    # deleting the snapshot (policy Delete) deletes its content and the driver's snapshot
    deletes = env.calls("DeleteSnapshot")
    await c.client.delete(SNAPSHOTS, "snap", ns)
    name = content["metadata"]["name"]
    await wait_until(lambda: gone(c, CONTENTS, name), 60.0, "the VolumeSnapshotContent to go")
    await wait_until(lambda: gone(c, SNAPSHOTS, "snap", ns), 60.0, "the VolumeSnapshot to go")
    assert env.calls("DeleteSnapshot") > deletes
    assert handle not in core.state.snapshots


async def test_deleted_claim_takes_its_volume_and_data_with_it(env: Env) -> None:
    c = env.c
    ns = await c.namespace()
    await c.apply(in_namespace(claim("doomed"), ns))
    pod_obj = claim_pod("user", "doomed", ["sh", "-c", "echo bye > /data/f && sleep 3600"])
    await c.apply(in_namespace(pod_obj, ns))
    await c.wait_pod(ns, "user", is_running, 120.0)
    pvc = await c.client.get(PVCS, "doomed", ns)
    pv = await c.client.get(PVS, pvc["spec"]["volumeName"])
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    handle = pv["spec"]["csi"]["volumeHandle"]
    data = env.driver.config.data_dir / "volumes" / handle

    async def written() -> bool:
        return await asyncio.to_thread((data / "f").exists)

    await wait_until(written, 30.0, "the pod's file in the driver's directory")
    await delete_pod(env, ns, "user")
    pv_name = pv["metadata"]["name"]

    async def detached() -> bool:  # the attach-detach controller let go of the volume
        vas = (await c.client.list(VAS)).get("items") or []
        return not [v for v in vas if v["spec"]["source"].get("persistentVolumeName") == pv_name]

    deletes = env.calls("DeleteVolume")
    await c.client.delete(PVCS, "doomed", ns)
    await wait_until(lambda: gone(c, PVCS, "doomed", ns), 60.0, "the claim to go")
    await wait_until(lambda: gone(c, PVS, pv_name), 90.0, "the PV to go")
    await wait_until(detached, 60.0, "the VolumeAttachment to go")
    assert env.calls("DeleteVolume") > deletes
    assert not data.exists(), "the driver's volume directory is removed"
    assert env.driver.core is not None and handle not in env.driver.core.state.volumes
