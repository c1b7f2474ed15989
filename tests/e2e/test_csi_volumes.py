"""The node's CSI volume manager (`kybern.csi.volumes`, the library the agent calls) against the
hostpath driver found through its registration socket, with real mounts (root only): a volume is
staged once per node and published per pod, data written through one pod's mount is there for
the next pod; staging is reference-counted; read-only and fsGroup are honoured; expansion and
statistics go through the node service; ephemeral inline and block volumes work; an unknown
driver is an error; and after a simulated agent restart (a new manager over the same directory)
`reconstruct` finds what was mounted — including a volume staged but never published — and
`cleanup` unpublishes and unstages everything no live pod uses, leaving no mount behind."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kybern.csi import csi, mount, registration, spec
from kybern.csi.drivers import DriverNotRegistered, DriverRegistry
from kybern.csi.hostpath import DRIVER_NAME, Config, HostpathDriver
from kybern.csi.volumes import VolumeManager, source_from_inline, source_from_pv

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the driver mounts: needs root"),
]
NODE = "node-v"
MiB = 1 << 20
Obj = dict[str, Any]


class Env:
    def __init__(self, base: Path, driver: HostpathDriver, registry: DriverRegistry) -> None:
        self.base = base
        self.driver = driver
        self.registry = registry

    @property
    def client(self) -> Any:
        return self.registry.get(DRIVER_NAME).client

    def manager(self) -> VolumeManager:
        return VolumeManager(self.base / "agent", self.registry)

    async def pv(self, size: int = 8 * MiB, block: bool = False, **extra: Any) -> Obj:
        cap = spec.volume_capability("ReadWriteOnce", block=block)
        vol = await self.client.create_volume(
            csi.CreateVolumeRequest(
                name=f"pvc-{uuid.uuid4()}",
                capacity_range=csi.CapacityRange(required_bytes=size),
                volume_capabilities=[cap],
            )
        )
        return {
            "metadata": {"name": f"pv-{vol.volume_id[:8]}"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Block" if block else "Filesystem",
                "csi": {"driver": DRIVER_NAME, "volumeHandle": vol.volume_id, **extra},
            },
        }

    def data(self, pv: Obj) -> Path:
        return self.base / "data" / "volumes" / pv["spec"]["csi"]["volumeHandle"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="kybern-csi-vm-"))
    driver = HostpathDriver(
        Config(base / "data", NODE), f"unix://{base}/csi.sock", registration_dir=base / "reg"
    )
    await driver.start()
    reg = DriverRegistry(timeout=30.0)
    watcher = registration.PluginWatcher(base / "reg", reg)
    try:
        await watcher.start()
        await reg.wait_for(DRIVER_NAME, timeout=10.0)
        yield Env(base, driver, reg)
    finally:
        await watcher.stop()
        await reg.close()
        await driver.stop()
        leaked = mount.mounts_below(base)
        mount.unmount_all(base)
        for img in (base / "data" / "volumes").glob("*.img"):
            mount.loop_detach(img)
        shutil.rmtree(base, ignore_errors=True)
        assert not leaked, f"mounts left behind: {leaked}"


def write(path: Path, text: str) -> None:
    path.write_text(text)


def read(path: Path) -> str:
    return path.read_text()


def stages(env: Env) -> int:
    return env.driver.stats.calls.get("NodeStageVolume", 0)


async def test_publish_write_unpublish_and_publish_again(env: Env) -> None:
    vm = env.manager()
    pv = await env.pv()
    first = await vm.mount("pod-1", "data", source_from_pv(pv))
    assert first.path == env.base / "agent/pods/pod-1/volumes/kubernetes.io~csi/data/mount"
    assert first.staging is not None and mount.is_mount(first.staging)
    assert mount.is_mount(first.path)
    again = await vm.mount("pod-1", "data", source_from_pv(pv))
    assert again is first
    write(first.path / "note.txt", "kept")
    await vm.unmount("pod-1", "data")
    assert not mount.mounts_below(env.base / "agent")
    assert not (env.base / "agent/pods/pod-1/volumes/kubernetes.io~csi/data").exists()
    second = await vm.mount("pod-2", "data", source_from_pv(pv))
    assert read(second.path / "note.txt") == "kept"
    await vm.unmount_pod("pod-2")
    assert not mount.mounts_below(env.base / "agent")


async def test_staging_is_shared_and_counted(env: Env) -> None:
    vm = env.manager()
    pv = await env.pv()
    before = stages(env)
    a = await vm.mount("pod-a", "v", source_from_pv(pv))
    b = await vm.mount("pod-b", "v", source_from_pv(pv))
    assert stages(env) == before + 1 and a.staging == b.staging
    await vm.unmount("pod-a", "v")
    assert b.staging is not None and mount.is_mount(b.staging) and mount.is_mount(b.path)
    await vm.unmount("pod-b", "v")
    assert not mount.mounts_below(env.base / "agent")


async def test_read_only_and_fs_group(env: Env) -> None:
    vm = env.manager()
    pv = await env.pv()
    rw = await vm.mount("pod-g", "v", source_from_pv(pv, fs_group=4321, fs_group_policy="File"))
    st = os.stat(rw.path)
    assert st.st_gid == 4321 and st.st_mode & stat.S_ISGID
    ro = await vm.mount("pod-r", "v", source_from_pv(pv, read_only=True))
    with pytest.raises(OSError):
        write(ro.path / "x", "no")
    await vm.unmount_pod("pod-g")
    await vm.unmount_pod("pod-r")
    assert not mount.mounts_below(env.base / "agent")


async def test_expand_and_stats(env: Env) -> None:
    vm = env.manager()
    pv = await env.pv(4 * MiB)
    mv = await vm.mount("pod-e", "v", source_from_pv(pv))
    write(mv.path / "blob", "x" * 10000)
    stats = await vm.stats("pod-e", "v")
    assert stats is not None and stats.capacity == 4 * MiB and stats.used >= 10000
    assert not stats.abnormal
    req = csi.ControllerExpandVolumeRequest(
        volume_id=pv["spec"]["csi"]["volumeHandle"],
        capacity_range=csi.CapacityRange(required_bytes=16 * MiB),
    )
    await env.client.controller_expand_volume(req)
    assert await vm.expand("pod-e", "v", 16 * MiB) == 16 * MiB
    await vm.unmount_pod("pod-e")


async def test_inline_ephemeral_volume(env: Env) -> None:
    vm = env.manager()
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "pod-i"}, "spec": {}}
    vol = {"name": "scratch", "csi": {"driver": DRIVER_NAME, "volumeAttributes": {"size": "1Mi"}}}
    src = source_from_inline(pod, vol)
    mv = await vm.mount("pod-i", "scratch", src)
    assert mv.staging is None
    write(mv.path / "tmp", "t")
    data = env.base / "data" / "volumes" / src.volume_handle
    assert data.is_dir()
    await vm.unmount_pod("pod-i")
    assert not data.exists()
    assert not mount.mounts_below(env.base / "agent")


async def test_block_volume(env: Env) -> None:
    if not env.driver.config.block:
        pytest.skip("no loop devices here")
    vm = env.manager()
    pv = await env.pv(4 * MiB, block=True)
    mv = await vm.mount("pod-b", "dev", source_from_pv(pv))
    assert mv.path == env.base / "agent/pods/pod-b/volumeDevices/kubernetes.io~csi/dev/dev"
    assert stat.S_ISBLK(os.stat(mv.path).st_mode)
    await vm.unmount_pod("pod-b")
    assert not mount.mounts_below(env.base / "agent")


async def test_unknown_driver(env: Env) -> None:
    vm = env.manager()
    pv = await env.pv()
    pv["spec"]["csi"]["driver"] = "nobody.example.com"
    with pytest.raises(DriverNotRegistered):
        await vm.mount("pod-x", "v", source_from_pv(pv))


async def test_reconstruction_after_a_restart(env: Env) -> None:
    vm = env.manager()
    shared, half = await env.pv(), await env.pv()
    await vm.mount("pod-1", "v", source_from_pv(shared))
    await vm.mount("pod-2", "v", source_from_pv(shared))
    # the agent dies between staging `half` and publishing it
    driver = env.registry.get(DRIVER_NAME)
    src = source_from_pv(half)
    await vm._stage(driver, src, vm._capability(driver, src), ("pod-3", "v"))
    del vm  # a restart: nothing in memory survives, the directory does

    fresh = env.manager()
    found = await fresh.reconstruct()
    assert {(m.pod_uid, m.name) for m in found} == {("pod-1", "v"), ("pod-2", "v")}
    assert len(fresh.staged) == 2
    left = await fresh.cleanup({"pod-2"})
    assert left == []
    assert [(m.pod_uid, m.name) for m in fresh.mounted()] == [("pod-2", "v")]
    assert mount.is_mount(fresh.mounted()[0].path)
    staged_half = fresh.staging_path(DRIVER_NAME, half["spec"]["csi"]["volumeHandle"])
    assert not mount.is_mount(staged_half)
    await fresh.cleanup(set())
    assert fresh.mounted() == [] and fresh.staged == {}
    assert not mount.mounts_below(env.base / "agent")
    listed = await env.client.list_volumes()
    for e in listed.entries:
        assert not env.driver.core or not env.driver.core.state.volumes[e.volume.volume_id].targets
