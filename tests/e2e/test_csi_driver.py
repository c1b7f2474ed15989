"""The hostpath driver against the CSI spec, RPC by RPC, over its real unix socket with real
mounts (root only): the required behaviours csi-sanity checks — required fields answered with
INVALID_ARGUMENT, unknown objects with NOT_FOUND, incompatible repeats with ALREADY_EXISTS, sizes
out of range with OUT_OF_RANGE, volumes in use with FAILED_PRECONDITION, stale page tokens with
ABORTED — idempotency of every call, pagination, snapshots, clones, expansion, statistics,
ephemeral inline volumes, block volumes where loop devices work, the registration socket, and
state surviving a driver restart (the Node service's tests are in test_csi_driver_node.py, on
this module's fixture). Tests that need a capability skip when the driver lacks it. Every mount
made is undone; the fixture checks nothing is left mounted."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from kybern.csi import CSIClient, CSIError, csi, mount, registration, spec
from kybern.csi.hostpath import DRIVER_NAME, TOPOLOGY_KEY, Config, HostpathDriver

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the driver mounts: needs root"),
]
NODE = "node-a"
MiB = 1 << 20
RWO = spec.volume_capability("ReadWriteOnce")
BLOCK = spec.volume_capability("ReadWriteOnce", block=True)
Code = grpc.StatusCode


class Env:
    def __init__(self, base: Path, driver: HostpathDriver, client: CSIClient) -> None:
        self.base = base
        self.driver = driver
        self.client = client
        self.caps: spec.Capabilities | None = None

    def path(self, name: str) -> str:
        return str(self.base / "paths" / f"{name}-{uuid.uuid4().hex[:6]}")

    async def volume(
        self, size: int = 8 * MiB, cap: csi.VolumeCapability = RWO, **kw: Any
    ) -> csi.Volume:
        req = csi.CreateVolumeRequest(
            name=f"v-{uuid.uuid4().hex[:8]}",
            capacity_range=csi.CapacityRange(required_bytes=size),
            volume_capabilities=[cap],
            **kw,
        )
        return await self.client.create_volume(req)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="kybern-csi-driver-"))
    (base / "paths").mkdir()
    driver = HostpathDriver(
        Config(base / "data", NODE, max_volumes_per_node=0),
        f"unix://{base}/csi.sock",
        registration_dir=base / "registry",
    )
    await driver.start()
    client = CSIClient(driver.endpoint, timeout=30.0)
    e = Env(base, driver, client)
    try:
        await client.wait_ready(10.0)
        e.caps = await client.discover()
        yield e
    finally:
        await client.close()
        await driver.stop()
        leaked = mount.mounts_below(base)
        mount.unmount_all(base)
        for img in (base / "data" / "volumes").glob("*.img"):
            mount.loop_detach(img)
        shutil.rmtree(base, ignore_errors=True)
        assert not leaked, f"mounts left behind: {leaked}"


async def fails(code: grpc.StatusCode, aw: Awaitable[Any]) -> CSIError:
    with pytest.raises(CSIError) as info:
        await aw
    assert info.value.code == code, info.value.message
    return info.value


def need(env: Env, controller: str = "", node: str = "") -> None:
    assert env.caps is not None
    if controller and not env.caps.controller(controller):
        pytest.skip(f"the driver has no {controller}")
    if node and not env.caps.node(node):
        pytest.skip(f"the driver has no node {node}")


def stage_req(vol: str, path: str, cap: csi.VolumeCapability = RWO) -> csi.NodeStageVolumeRequest:
    return csi.NodeStageVolumeRequest(
        volume_id=vol, staging_target_path=path, volume_capability=cap
    )


def publish_req(
    vol: str, staging: str, target: str, cap: csi.VolumeCapability = RWO, readonly: bool = False
) -> csi.NodePublishVolumeRequest:
    return csi.NodePublishVolumeRequest(
        volume_id=vol,
        staging_target_path=staging,
        target_path=target,
        volume_capability=cap,
        readonly=readonly,
    )


def write(path: str, name: str, text: str) -> None:
    Path(path, name).write_text(text)


def exists(path: str, name: str = "") -> bool:
    return os.path.exists(os.path.join(path, name) if name else path)


def write_device(path: str, data: bytes) -> None:
    with open(path, "r+b") as dev:
        dev.write(data)


# ---- Identity ------------------------------------------------------------------------------


async def test_identity(env: Env) -> None:
    info = await env.client.get_plugin_info()
    assert info.name == DRIVER_NAME and info.vendor_version
    assert env.caps is not None
    assert env.caps.controller_service and env.caps.topology
    assert "ONLINE" in env.caps.expansion
    assert await env.client.probe()


async def test_registration_socket(env: Env) -> None:
    sock = env.base / "registry" / registration.socket_name(DRIVER_NAME)
    info = await registration.get_info(sock)
    assert (info.type, info.name) == ("CSIPlugin", DRIVER_NAME)
    assert info.endpoint == str(env.base / "csi.sock")
    assert list(info.supported_versions) == ["1.0.0"]
    assert registration.validate(info) == ""
    await registration.notify(sock, False, "no thanks")
    assert env.driver.registrar is not None and env.driver.registrar.status == (False, "no thanks")


# ---- Controller: volumes -------------------------------------------------------------------


async def test_create_volume_required_fields(env: Env) -> None:
    c = env.client
    await fails(
        Code.INVALID_ARGUMENT, c.create_volume(csi.CreateVolumeRequest(volume_capabilities=[RWO]))
    )
    await fails(Code.INVALID_ARGUMENT, c.create_volume(csi.CreateVolumeRequest(name="x")))
    no_type = csi.VolumeCapability(access_mode=RWO.access_mode)
    req = csi.CreateVolumeRequest(name="x", volume_capabilities=[no_type])
    await fails(Code.INVALID_ARGUMENT, c.create_volume(req))
    no_mode = csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume())
    req = csi.CreateVolumeRequest(name="x", volume_capabilities=[no_mode])
    await fails(Code.INVALID_ARGUMENT, c.create_volume(req))


async def test_create_volume_is_idempotent(env: Env) -> None:
    name = f"idem-{uuid.uuid4().hex[:6]}"
    req = csi.CreateVolumeRequest(
        name=name,
        capacity_range=csi.CapacityRange(required_bytes=4 * MiB),
        volume_capabilities=[RWO],
    )
    a = await env.client.create_volume(req)
    b = await env.client.create_volume(req)
    assert a.volume_id == b.volume_id and a.capacity_bytes == 4 * MiB
    assert dict(a.accessible_topology[0].segments) == {TOPOLOGY_KEY: NODE}
    other = csi.CreateVolumeRequest(
        name=name,
        capacity_range=csi.CapacityRange(required_bytes=8 * MiB),
        volume_capabilities=[RWO],
    )
    await fails(Code.ALREADY_EXISTS, env.client.create_volume(other))
    await env.client.delete_volume(a.volume_id)


async def test_create_volume_sizes_and_topology(env: Env) -> None:
    c = env.client
    huge = csi.CreateVolumeRequest(
        name="huge",
        capacity_range=csi.CapacityRange(required_bytes=1 << 62),
        volume_capabilities=[RWO],
    )
    await fails(Code.OUT_OF_RANGE, c.create_volume(huge))
    bad = csi.CreateVolumeRequest(
        name="bad",
        capacity_range=csi.CapacityRange(required_bytes=8 * MiB, limit_bytes=4 * MiB),
        volume_capabilities=[RWO],
    )
    await fails(Code.OUT_OF_RANGE, c.create_volume(bad))
    elsewhere = csi.TopologyRequirement(requisite=[csi.Topology(segments={TOPOLOGY_KEY: "other"})])
    req = csi.CreateVolumeRequest(
        name="far", volume_capabilities=[RWO], accessibility_requirements=elsewhere
    )
    await fails(Code.RESOURCE_EXHAUSTED, c.create_volume(req))
    default = await c.create_volume(
        csi.CreateVolumeRequest(name=f"d-{uuid.uuid4().hex[:6]}", volume_capabilities=[RWO])
    )
    assert default.capacity_bytes > 0
    await c.delete_volume(default.volume_id)


async def test_delete_volume(env: Env) -> None:
    await fails(Code.INVALID_ARGUMENT, env.client.delete_volume(""))
    await env.client.delete_volume("no-such-volume")
    v = await env.volume()
    assert (env.base / "data" / "volumes" / v.volume_id).is_dir()
    await env.client.delete_volume(v.volume_id)
    await env.client.delete_volume(v.volume_id)
    assert not (env.base / "data" / "volumes" / v.volume_id).exists()


async def test_validate_volume_capabilities(env: Env) -> None:
    c = env.client
    v = await env.volume()
    call = c.call
    req = csi.ValidateVolumeCapabilitiesRequest(volume_capabilities=[RWO])
    await fails(Code.INVALID_ARGUMENT, call("ValidateVolumeCapabilities", req))
    req = csi.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id)
    await fails(Code.INVALID_ARGUMENT, call("ValidateVolumeCapabilities", req))
    req = csi.ValidateVolumeCapabilitiesRequest(volume_id="nope", volume_capabilities=[RWO])
    await fails(Code.NOT_FOUND, call("ValidateVolumeCapabilities", req))
    req = csi.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id, volume_capabilities=[RWO])
    out = await call("ValidateVolumeCapabilities", req)
    assert isinstance(out, csi.ValidateVolumeCapabilitiesResponse)
    assert list(out.confirmed.volume_capabilities) == [RWO]
    req = csi.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id, volume_capabilities=[BLOCK])
    out = await call("ValidateVolumeCapabilities", req)
    assert isinstance(out, csi.ValidateVolumeCapabilitiesResponse)
    assert not out.HasField("confirmed") and out.message
    await c.delete_volume(v.volume_id)


async def test_list_volumes_paginates(env: Env) -> None:
    need(env, "LIST_VOLUMES")
    made = [await env.volume() for _ in range(5)]
    await fails(Code.INVALID_ARGUMENT, env.client.list_volumes(max_entries=-1))
    await fails(Code.ABORTED, env.client.list_volumes(starting_token="bogus"))
    seen, token, pages = [], "", 0
    while True:
        page = await env.client.list_volumes(max_entries=2, starting_token=token)
        assert len(page.entries) <= 2
        seen += [e.volume.volume_id for e in page.entries]
        pages += 1
        token = page.next_token
        if not token:
            break
    assert {v.volume_id for v in made} <= set(seen) and len(seen) == len(set(seen))
    assert pages >= 3
    for v in made:
        await env.client.delete_volume(v.volume_id)


async def test_get_capacity(env: Env) -> None:
    need(env, "GET_CAPACITY")
    out = await env.client.get_capacity(csi.GetCapacityRequest(volume_capabilities=[RWO]))
    assert out.available_capacity > 0 and out.maximum_volume_size.value > 0
    far = csi.GetCapacityRequest(accessible_topology=csi.Topology(segments={TOPOLOGY_KEY: "far"}))
    assert (await env.client.get_capacity(far)).available_capacity == 0


async def test_controller_publish_and_unpublish(env: Env) -> None:
    need(env, "PUBLISH_UNPUBLISH_VOLUME")
    c = env.client
    v = await env.volume()
    ok = csi.ControllerPublishVolumeRequest(
        volume_id=v.volume_id, node_id=NODE, volume_capability=RWO
    )
    for bad in (
        csi.ControllerPublishVolumeRequest(node_id=NODE, volume_capability=RWO),
        csi.ControllerPublishVolumeRequest(volume_id=v.volume_id, volume_capability=RWO),
        csi.ControllerPublishVolumeRequest(volume_id=v.volume_id, node_id=NODE),
    ):
        await fails(Code.INVALID_ARGUMENT, c.controller_publish_volume(bad))
    missing = csi.ControllerPublishVolumeRequest(
        volume_id="nope", node_id=NODE, volume_capability=RWO
    )
    await fails(Code.NOT_FOUND, c.controller_publish_volume(missing))
    stranger = csi.ControllerPublishVolumeRequest(
        volume_id=v.volume_id, node_id="x", volume_capability=RWO
    )
    await fails(Code.NOT_FOUND, c.controller_publish_volume(stranger))
    await c.controller_publish_volume(ok)
    await c.controller_publish_volume(ok)
    ro = csi.ControllerPublishVolumeRequest(
        volume_id=v.volume_id, node_id=NODE, volume_capability=RWO, readonly=True
    )
    await fails(Code.ALREADY_EXISTS, c.controller_publish_volume(ro))
    await fails(Code.FAILED_PRECONDITION, c.delete_volume(v.volume_id))
    listed = await c.list_volumes()
    entry = next(e for e in listed.entries if e.volume.volume_id == v.volume_id)
    assert list(entry.status.published_node_ids) == [NODE]
    await fails(Code.INVALID_ARGUMENT, c.controller_unpublish_volume("", NODE))
    await fails(Code.NOT_FOUND, c.controller_unpublish_volume("nope", NODE))
    await c.controller_unpublish_volume(v.volume_id, NODE)
    await c.controller_unpublish_volume(v.volume_id, NODE)
    await c.delete_volume(v.volume_id)


async def test_controller_get_and_modify_volume(env: Env) -> None:
    need(env, "GET_VOLUME")
    v = await env.volume()
    req = csi.ControllerGetVolumeRequest(volume_id="nope")
    await fails(Code.NOT_FOUND, env.client.call("ControllerGetVolume", req))
    out = await env.client.call(
        "ControllerGetVolume", csi.ControllerGetVolumeRequest(volume_id=v.volume_id)
    )
    assert isinstance(out, csi.ControllerGetVolumeResponse)
    assert out.volume.volume_id == v.volume_id and not out.status.volume_condition.abnormal
    assert env.caps is not None
    if not env.caps.controller("MODIFY_VOLUME"):
        req2 = csi.ControllerModifyVolumeRequest(volume_id=v.volume_id)
        await fails(Code.UNIMPLEMENTED, env.client.call("ControllerModifyVolume", req2))
    await env.client.delete_volume(v.volume_id)


async def test_controller_expand_volume(env: Env) -> None:
    need(env, "EXPAND_VOLUME")
    c = env.client
    v = await env.volume(4 * MiB)
    await fails(
        Code.INVALID_ARGUMENT,
        c.controller_expand_volume(csi.ControllerExpandVolumeRequest(volume_id=v.volume_id)),
    )
    rng = csi.CapacityRange(required_bytes=8 * MiB)
    await fails(
        Code.INVALID_ARGUMENT,
        c.controller_expand_volume(csi.ControllerExpandVolumeRequest(capacity_range=rng)),
    )
    await fails(
        Code.NOT_FOUND,
        c.controller_expand_volume(
            csi.ControllerExpandVolumeRequest(volume_id="nope", capacity_range=rng)
        ),
    )
    req = csi.ControllerExpandVolumeRequest(volume_id=v.volume_id, capacity_range=rng)
    out = await c.controller_expand_volume(req)
    assert out.capacity_bytes == 8 * MiB
    again = await c.controller_expand_volume(req)
    assert again.capacity_bytes == 8 * MiB
    smaller = csi.ControllerExpandVolumeRequest(
        volume_id=v.volume_id, capacity_range=csi.CapacityRange(required_bytes=2 * MiB)
    )
    assert (await c.controller_expand_volume(smaller)).capacity_bytes == 8 * MiB
    shrink = csi.ControllerExpandVolumeRequest(
        volume_id=v.volume_id,
        capacity_range=csi.CapacityRange(required_bytes=2 * MiB, limit_bytes=2 * MiB),
    )
    await fails(Code.OUT_OF_RANGE, c.controller_expand_volume(shrink))
    huge = csi.ControllerExpandVolumeRequest(
        volume_id=v.volume_id, capacity_range=csi.CapacityRange(required_bytes=1 << 62)
    )
    await fails(Code.OUT_OF_RANGE, c.controller_expand_volume(huge))
    await c.delete_volume(v.volume_id)


# ---- Controller: snapshots and content sources ---------------------------------------------


async def test_snapshots(env: Env) -> None:
    need(env, "CREATE_DELETE_SNAPSHOT")
    c = env.client
    v = await env.volume(4 * MiB)
    (env.base / "data" / "volumes" / v.volume_id / "f").write_text("data")
    await fails(Code.INVALID_ARGUMENT, c.create_snapshot(csi.CreateSnapshotRequest(name="s")))
    await fails(
        Code.INVALID_ARGUMENT,
        c.create_snapshot(csi.CreateSnapshotRequest(source_volume_id=v.volume_id)),
    )
    await fails(
        Code.NOT_FOUND,
        c.create_snapshot(csi.CreateSnapshotRequest(name="s", source_volume_id="nope")),
    )
    name = f"snap-{uuid.uuid4().hex[:6]}"
    req = csi.CreateSnapshotRequest(name=name, source_volume_id=v.volume_id)
    s1 = await c.create_snapshot(req)
    s2 = await c.create_snapshot(req)
    assert s1.snapshot_id == s2.snapshot_id and s1.ready_to_use and s1.size_bytes == 4 * MiB
    assert s1.source_volume_id == v.volume_id and s1.creation_time.seconds > 0
    w = await env.volume()
    other = csi.CreateSnapshotRequest(name=name, source_volume_id=w.volume_id)
    await fails(Code.ALREADY_EXISTS, c.create_snapshot(other))
    if env.caps is not None and env.caps.controller("LIST_SNAPSHOTS"):
        by_id = await c.list_snapshots(csi.ListSnapshotsRequest(snapshot_id=s1.snapshot_id))
        assert [e.snapshot.snapshot_id for e in by_id.entries] == [s1.snapshot_id]
        by_src = await c.list_snapshots(csi.ListSnapshotsRequest(source_volume_id=v.volume_id))
        assert [e.snapshot.snapshot_id for e in by_src.entries] == [s1.snapshot_id]
        none = await c.list_snapshots(csi.ListSnapshotsRequest(snapshot_id="nope"))
        assert list(none.entries) == []
        await fails(Code.ABORTED, c.list_snapshots(csi.ListSnapshotsRequest(starting_token="x")))
        await fails(
            Code.INVALID_ARGUMENT, c.list_snapshots(csi.ListSnapshotsRequest(max_entries=-2))
        )
    # restore: same content, at least the snapshot's size
    src = csi.VolumeContentSource(
        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=s1.snapshot_id)
    )
    restored = await env.volume(2 * MiB, volume_content_source=src)
    assert restored.capacity_bytes == 4 * MiB
    assert restored.content_source.snapshot.snapshot_id == s1.snapshot_id
    assert (env.base / "data" / "volumes" / restored.volume_id / "f").read_text() == "data"
    tight = csi.CreateVolumeRequest(
        name="tight",
        capacity_range=csi.CapacityRange(required_bytes=MiB, limit_bytes=2 * MiB),
        volume_capabilities=[RWO],
        volume_content_source=src,
    )
    await fails(Code.OUT_OF_RANGE, c.create_volume(tight))
    gone = csi.VolumeContentSource(
        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id="nope")
    )
    await fails(Code.NOT_FOUND, env.volume(volume_content_source=gone))
    await fails(Code.INVALID_ARGUMENT, c.delete_snapshot(""))
    await c.delete_snapshot(s1.snapshot_id)
    await c.delete_snapshot(s1.snapshot_id)
    for vol in (v, w, restored):
        await c.delete_volume(vol.volume_id)


async def test_clone_volume(env: Env) -> None:
    need(env, "CLONE_VOLUME")
    v = await env.volume(4 * MiB)
    (env.base / "data" / "volumes" / v.volume_id / "sub").mkdir()
    (env.base / "data" / "volumes" / v.volume_id / "sub" / "f").write_text("x")
    src = csi.VolumeContentSource(
        volume=csi.VolumeContentSource.VolumeSource(volume_id=v.volume_id)
    )
    clone = await env.volume(4 * MiB, volume_content_source=src)
    assert (env.base / "data" / "volumes" / clone.volume_id / "sub" / "f").read_text() == "x"
    assert clone.content_source.volume.volume_id == v.volume_id
    gone = csi.VolumeContentSource(volume=csi.VolumeContentSource.VolumeSource(volume_id="nope"))
    await fails(Code.NOT_FOUND, env.volume(volume_content_source=gone))
    await env.client.delete_volume(clone.volume_id)
    await env.client.delete_volume(v.volume_id)
