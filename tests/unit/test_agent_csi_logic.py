"""The agent's CSI volume logic without a driver or an API server: the VolumeAttachment name
(the attach-detach controller's), which volumes are claims or inline CSI volumes, the CSIDriver
defaults, secrets, when a claim needs the node's expansion and the status written after it, the
back-off; read-only and block volumes in the container config; and `CSIVolumes.setup` over
in-memory caches and a fake volume manager: the reasons a pod waits (no claim, unbound, not
attached, driver not registered), what is passed to the volume manager when it can mount, the
wake-ups when what a pod waits for changes, teardown, expansion and statistics."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from kybern.agent import containers, csivolumes
from kybern.controllers import attachdetach
from kybern.csi import drivers
from kybern.csi import volumes as csivol

Obj = dict[str, Any]
NODE = "n1"
DRIVER = "hostpath.csi.kybern.io"


def pod(volumes: list[Obj], **spec: Any) -> Obj:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"containers": [{"name": "c"}], "volumes": volumes, **spec},
    }


def claim_volume(name: str = "data", claim: str = "c1", read_only: bool = False) -> Obj:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


def pvc(name: str = "c1", phase: str = "Bound", volume: str = "pv1", **status: Any) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"volumeName": volume},
        "status": {"phase": phase, **status},
    }


def pv(name: str = "pv1", size: str = "16Mi", **csi: Any) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": DRIVER, "volumeHandle": "h1", **csi},
        },
    }


def test_attachment_name_is_the_controllers() -> None:
    assert csivolumes.attachment_name("h", "d", "n") == attachdetach.attachment_name("h", "d", "n")
    assert csivolumes.attachment_name("h", "d", "n").startswith("csi-")


def test_claim_volumes_and_fs_group() -> None:
    p = pod(
        [claim_volume(), {"name": "i", "csi": {"driver": DRIVER}}, {"name": "e", "emptyDir": {}}],
        securityContext={"fsGroup": 7},
    )
    assert [v["name"] for v in csivolumes.claim_volumes(p)] == ["data", "i"]
    assert csivolumes.has_csi_volumes(p) and not csivolumes.has_csi_volumes(pod([]))
    assert csivolumes.fs_group(p) == 7 and csivolumes.fs_group(pod([])) is None


def test_driver_policy_defaults() -> None:
    d = csivolumes.driver_policy(None)
    assert d.attach_required and not d.pod_info_on_mount
    assert d.fs_group_policy == "ReadWriteOnceWithFSType" and d.modes == ("Persistent",)
    d = csivolumes.driver_policy(
        {
            "spec": {
                "attachRequired": False,
                "podInfoOnMount": True,
                "fsGroupPolicy": "File",
                "volumeLifecycleModes": ["Ephemeral"],
            }
        }
    )
    assert (d.attach_required, d.pod_info_on_mount, d.fs_group_policy, d.modes) == (
        False,
        True,
        "File",
        ("Ephemeral",),
    )
    assert csivolumes.driver_policy({"spec": {}}).attach_required


def test_decode_secret() -> None:
    s = {"data": {"a": base64.b64encode(b"x").decode()}, "stringData": {"b": "y"}}
    assert csivolumes.decode_secret(s) == {"a": "x", "b": "y"}


def test_expansion_target_and_status() -> None:
    pending = {"type": "FileSystemResizePending", "status": "True"}
    other = {"type": "Other", "status": "True"}
    claim = pvc(capacity={"storage": "16Mi"}, conditions=[pending, other])
    volume = pv(size="32Mi")
    assert csivolumes.expansion_target(claim, volume) == 32 << 20
    assert csivolumes.resized_status(claim, volume) == {
        "capacity": {"storage": "32Mi"},
        "conditions": [other],
    }
    only = pvc(capacity={"storage": "16Mi"}, conditions=[pending])
    assert csivolumes.resized_status(only, volume)["conditions"] is None
    # nothing to do: not pending, or the controller is still resizing
    assert csivolumes.expansion_target(pvc(capacity={"storage": "16Mi"}), volume) is None
    resizing = pvc(
        capacity={"storage": "16Mi"},
        allocatedResources={"storage": "32Mi"},
        conditions=[{"type": "Resizing", "status": "True"}],
    )
    assert csivolumes.expansion_target(resizing, volume) is None
    # allocated beyond capacity, the PV already grown, no controller resize: the node's turn
    grown = pvc(capacity={"storage": "16Mi"}, allocatedResources={"storage": "32Mi"})
    assert csivolumes.expansion_target(grown, volume) == 32 << 20
    assert csivolumes.expansion_target(grown, pv(size="16Mi")) is None


def test_backoff_doubles_to_a_cap() -> None:
    assert [csivolumes.backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert csivolumes.backoff(50) == csivolumes.BACKOFF_CAP


def test_read_only_claims_and_block_devices_in_the_container() -> None:
    p = pod([claim_volume("ro", read_only=True), claim_volume("rw"), claim_volume("forced")])
    c = {
        "name": "c",
        "volumeMounts": [{"name": n, "mountPath": f"/{n}"} for n in ("ro", "rw", "forced")],
        "volumeDevices": [{"name": "blk", "devicePath": "/dev/xvda"}],
    }
    paths = {"ro": "/h/ro", "rw": "/h/rw", "forced": "/h/f"}
    mounts = containers.mounts(p, c, paths, containers.PodFiles(), read_only={"forced"})
    assert {m.container_path: m.readonly for m in mounts} == {
        "/ro": True,
        "/rw": False,
        "/forced": True,
    }
    devs = containers.devices(c, {"blk": "/h/dev"})
    assert [(d.host_path, d.container_path, d.permissions) for d in devs] == [
        ("/h/dev", "/dev/xvda", "rwm")
    ]
    with pytest.raises(containers.MountError):
        containers.devices(c, {})
    cfg = containers.container_config(p, c, containers.Inputs(devices=devs))
    assert [d.container_path for d in cfg.devices] == ["/dev/xvda"]


# ---- CSIVolumes over in-memory caches -------------------------------------------------------


class FakeInformer:
    def __init__(self, objs: list[Obj] | None = None) -> None:
        self.objs = {self.key(o): o for o in objs or []}

    @staticmethod
    def key(o: Obj) -> str:
        m = o["metadata"]
        return f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]

    def get(self, name: str, namespace: str = "") -> Obj | None:
        return self.objs.get(f"{namespace}/{name}" if namespace else name)

    def put(self, o: Obj) -> None:
        self.objs[self.key(o)] = o

    async def stop(self) -> None:
        pass


class FakeVM:
    def __init__(self) -> None:
        self.mounted: dict[tuple[str, str], csivol.VolumeSource] = {}
        self.volumes: dict[tuple[str, str], Any] = {}
        self.fail: Exception | None = None
        self.expanded: list[tuple[str, str, int]] = []

    async def mount(self, uid: str, name: str, src: csivol.VolumeSource) -> csivol.MountedVolume:
        if self.fail is not None:
            raise self.fail
        self.mounted[(uid, name)] = src
        mv = csivol.MountedVolume(uid, name, src, Path(f"/pods/{uid}/{name}"), None)
        self.volumes[(uid, name)] = mv
        return mv

    async def unmount_pod(self, uid: str) -> None:
        for k in [k for k in self.mounted if k[0] == uid]:
            del self.mounted[k]
            self.volumes.pop(k, None)

    async def expand(self, uid: str, name: str, size: int) -> int:
        self.expanded.append((uid, name, size))
        return size

    async def stats(self, uid: str, name: str) -> csivol.VolumeStats:
        return csivol.VolumeStats(capacity=100, used=10, available=90)


class FakeClient:
    def __init__(self, secrets: dict[str, Obj] | None = None) -> None:
        self.secrets = secrets or {}
        self.patches: list[tuple[str, Obj, str, str]] = []

    async def get(self, res: Any, name: str, namespace: str = "") -> Obj:
        return self.secrets[f"{namespace}/{name}"]

    async def patch(
        self, res: Any, name: str, body: Obj, namespace: str = "", *, subresource: str = ""
    ) -> Obj:
        self.patches.append((name, body, namespace, subresource))
        return {}


def make(client: FakeClient | None = None) -> tuple[csivolumes.CSIVolumes, FakeVM, list[Any]]:
    woken: list[Any] = []
    cv = csivolumes.CSIVolumes(
        client or FakeClient(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Path("/nonexistent"),
        NODE,
        Path("/nonexistent/reg"),
        wake=woken.append,
        event=lambda *a: woken.append(a),
    )
    vm = FakeVM()
    cv.vm = vm  # type: ignore[assignment]
    for prefix in ("pvc", "pv", "va", "csidriver"):
        cv._informers[prefix] = FakeInformer()  # type: ignore[assignment]
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    cv._informers_ready = done  # type: ignore[assignment]
    return cv, vm, woken


def inf(cv: csivolumes.CSIVolumes, prefix: str) -> FakeInformer:
    found = cv._informers[prefix]
    assert isinstance(found, FakeInformer)
    return found


def attached_va(metadata: Obj | None = None) -> Obj:
    return {
        "metadata": {"name": csivolumes.attachment_name("h1", DRIVER, NODE)},
        "status": {"attached": True, "attachmentMetadata": metadata or {}},
    }


async def test_setup_waits_for_claim_binding_and_attachment() -> None:
    cv, vm, woken = make()
    p = pod([claim_volume()], securityContext={"fsGroup": 5})
    with pytest.raises(csivolumes.MountPending, match='persistentvolumeclaim "c1" not found'):
        await cv.setup(p)
    inf(cv, "pvc").put(pvc(phase="Pending"))
    cv._changed("pvc:ns/c1")
    assert woken[-1] == {"u1"}, "a change of the claim wakes the pod"
    with pytest.raises(csivolumes.MountPending, match="PVC is not bound") as e1:
        await cv.setup(p)
    inf(cv, "pvc").put(pvc())
    inf(cv, "pv").put(pv())
    with pytest.raises(csivolumes.MountPending, match="is not attached") as e2:
        await cv.setup(p)
    assert e2.value.retry_after > e1.value.retry_after, "the back-off grows"
    assert "unmounted volumes=[data]" in e2.value.message
    inf(cv, "va").put(attached_va({"dev": "/dev/x"}))
    got = await cv.setup(p)
    assert got["data"].claim == "c1" and cv.paths("u1") == {"data": "/pods/u1/data"}
    src = vm.mounted[("u1", "data")]
    assert src.publish_context == {"dev": "/dev/x"} and src.fs_group == 5
    assert src.fs_group_policy == "ReadWriteOnceWithFSType" and src.volume_handle == "h1"
    assert cv._failures == {}, "success resets the back-off"


async def test_setup_without_attachment_with_pod_info_and_secrets() -> None:
    secret = {"data": {"k": base64.b64encode(b"v").decode()}}
    cv, vm, _ = make(FakeClient({"sec/s1": secret}))
    inf(cv, "csidriver").put(
        {
            "metadata": {"name": DRIVER},
            "spec": {"attachRequired": False, "podInfoOnMount": True, "fsGroupPolicy": "File"},
        }
    )
    inf(cv, "pvc").put(pvc())
    inf(cv, "pv").put(pv(nodePublishSecretRef={"name": "s1", "namespace": "sec"}))
    await cv.setup(pod([claim_volume(read_only=True)]))
    src = vm.mounted[("u1", "data")]
    assert src.publish_secrets == {"k": "v"} and src.read_only
    assert src.volume_context["csi.storage.k8s.io/pod.name"] == "p"
    assert src.fs_group_policy == "File"
    assert cv.read_only("u1") == {"data"}


async def test_setup_driver_not_registered_and_inline_modes() -> None:
    cv, vm, woken = make()
    inf(cv, "pvc").put(pvc())
    inf(cv, "pv").put(pv())
    inf(cv, "va").put(attached_va())
    vm.fail = drivers.DriverNotRegistered(f"driver name {DRIVER} not found")
    with pytest.raises(csivolumes.MountPending, match="not found"):
        await cv.setup(pod([claim_volume()]))
    cv._driver_registered(DRIVER)
    assert woken[-1] == {"u1"}, "the driver's registration wakes the pod"
    vm.fail = None
    inline = pod([{"name": "i", "csi": {"driver": DRIVER}}])
    with pytest.raises(csivolumes.MountPending, match="ephemeral inline"):
        await cv.setup(inline)
    inf(cv, "csidriver").put(
        {"metadata": {"name": DRIVER}, "spec": {"volumeLifecycleModes": ["Ephemeral"]}}
    )
    await cv.setup(inline)
    assert vm.mounted[("u1", "i")].ephemeral


async def test_expand_teardown_and_stats() -> None:
    client = FakeClient()
    cv, vm, events = make(client)
    inf(cv, "pvc").put(pvc(capacity={"storage": "16Mi"}))
    inf(cv, "pv").put(pv())
    inf(cv, "va").put(attached_va())
    p = pod([claim_volume()])
    await cv.setup(p)
    assert await cv.expand(p) is None and not vm.expanded
    pending = [{"type": "FileSystemResizePending", "status": "True"}]
    inf(cv, "pvc").put(pvc(capacity={"storage": "16Mi"}, conditions=pending))
    inf(cv, "pv").put(pv(size="32Mi"))
    assert await cv.expand(p) is None
    assert vm.expanded == [("u1", "data", 32 << 20)]
    assert client.patches == [
        ("c1", {"status": {"capacity": {"storage": "32Mi"}, "conditions": None}}, "ns", "status")
    ]
    assert any(e[2] == "FileSystemResizeSuccessful" for e in events if isinstance(e, tuple))
    rows = await cv.stats()
    assert [r[:5] for r in rows] == [("u1", "ns", "p", "data", "c1")]
    assert rows[0][5].used == 10
    await cv.teardown("u1")
    assert not vm.mounted and cv.paths("u1") == {} and await cv.stats() == []
