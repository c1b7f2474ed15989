"""The hostpath driver's Node service against the CSI spec, over its real socket with real
mounts (root only; the driver fixture of test_csi_driver.py): node info and capabilities, the
stage/publish/unpublish/unstage lifecycle with every required field, NOT_FOUND, ALREADY_EXISTS
and FAILED_PRECONDITION case and idempotent repeats, read-only publishing, volume statistics,
the single-writer access mode, node expansion, ephemeral inline volumes, block volumes through
loop devices where the machine allows them, and state surviving a driver restart."""

from __future__ import annotations

import os
import stat
import uuid

import pytest
from test_csi_driver import (
    BLOCK,
    NODE,
    RWO,
    TOPOLOGY_KEY,
    Code,
    Env,
    MiB,
    env,
    exists,
    fails,
    need,
    publish_req,
    stage_req,
    write,
    write_device,
)

from kybern.csi import csi, mount, spec

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the driver mounts: needs root"),
]
__all__ = ["env"]  # the fixture, for pytest to find here


# ---- Node ----------------------------------------------------------------------------------


async def test_node_info_and_capabilities(env: Env) -> None:
    info = await env.client.node_get_info()
    assert info.node_id == NODE and dict(info.accessible_topology.segments) == {TOPOLOGY_KEY: NODE}
    assert env.caps is not None and env.caps.node("STAGE_UNSTAGE_VOLUME")


async def test_stage_publish_lifecycle(env: Env) -> None:
    need(env, node="STAGE_UNSTAGE_VOLUME")
    c = env.client
    v = await env.volume()
    vid = v.volume_id
    staging, target, ro_target = env.path("stage"), env.path("target"), env.path("ro")
    await fails(Code.INVALID_ARGUMENT, c.node_stage_volume(stage_req("", staging)))
    await fails(Code.INVALID_ARGUMENT, c.node_stage_volume(stage_req(vid, "")))
    no_cap = csi.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging)
    await fails(Code.INVALID_ARGUMENT, c.node_stage_volume(no_cap))
    await fails(Code.NOT_FOUND, c.node_stage_volume(stage_req("nope", staging)))
    os.makedirs(staging)
    await fails(Code.FAILED_PRECONDITION, c.node_publish_volume(publish_req(vid, staging, target)))
    await c.node_stage_volume(stage_req(vid, staging))
    await c.node_stage_volume(stage_req(vid, staging))
    assert mount.is_mount(staging)
    rox = spec.volume_capability("ReadOnlyMany")
    await fails(Code.ALREADY_EXISTS, c.node_stage_volume(stage_req(vid, staging, rox)))

    await fails(Code.INVALID_ARGUMENT, c.node_publish_volume(publish_req("", staging, target)))
    await fails(Code.INVALID_ARGUMENT, c.node_publish_volume(publish_req(vid, staging, "")))
    await fails(Code.NOT_FOUND, c.node_publish_volume(publish_req("nope", staging, target)))
    await c.node_publish_volume(publish_req(vid, staging, target))
    await c.node_publish_volume(publish_req(vid, staging, target))
    await fails(
        Code.ALREADY_EXISTS, c.node_publish_volume(publish_req(vid, staging, target, readonly=True))
    )
    write(target, "written", "through the mount")
    assert (env.base / "data" / "volumes" / vid / "written").read_text() == "through the mount"
    await c.node_publish_volume(publish_req(vid, staging, ro_target, readonly=True))
    assert exists(ro_target, "written")
    with pytest.raises(OSError):
        write(ro_target, "nope", "x")

    need_stats = env.caps is not None and env.caps.node("GET_VOLUME_STATS")
    if need_stats:
        await fails(Code.INVALID_ARGUMENT, c.node_get_volume_stats(vid, ""))
        await fails(Code.NOT_FOUND, c.node_get_volume_stats("nope", target))
        await fails(Code.NOT_FOUND, c.node_get_volume_stats(vid, env.path("absent")))
        stats = await c.node_get_volume_stats(vid, target)
        units = {u.unit: u for u in stats.usage}
        assert units[csi.VolumeUsage.BYTES].total == v.capacity_bytes
        assert units[csi.VolumeUsage.BYTES].used > 0 and units[csi.VolumeUsage.INODES].used >= 1
        assert not stats.volume_condition.abnormal

    await fails(Code.INVALID_ARGUMENT, c.node_unpublish_volume("", target))
    await fails(Code.INVALID_ARGUMENT, c.node_unpublish_volume(vid, ""))
    for t in (target, ro_target):
        await c.node_unpublish_volume(vid, t)
        await c.node_unpublish_volume(vid, t)
        assert not exists(t)
    await fails(Code.NOT_FOUND, c.node_unpublish_volume("nope", target))
    await fails(Code.INVALID_ARGUMENT, c.node_unstage_volume(vid, ""))
    await c.node_unstage_volume(vid, staging)
    await c.node_unstage_volume(vid, staging)
    assert not mount.is_mount(staging)
    await c.delete_volume(vid)


async def test_single_writer_pod_mode(env: Env) -> None:
    need(env, node="SINGLE_NODE_MULTI_WRITER")
    v = await env.volume()
    cap = spec.volume_capability("ReadWriteOncePod", multi_writer=True)
    staging, a, b = env.path("stage"), env.path("a"), env.path("b")
    await env.client.node_stage_volume(stage_req(v.volume_id, staging, cap))
    await env.client.node_publish_volume(publish_req(v.volume_id, staging, a, cap))
    await fails(
        Code.FAILED_PRECONDITION,
        env.client.node_publish_volume(publish_req(v.volume_id, staging, b, cap)),
    )
    await env.client.node_unpublish_volume(v.volume_id, a)
    await env.client.node_unstage_volume(v.volume_id, staging)
    await env.client.delete_volume(v.volume_id)


async def test_node_expand_volume(env: Env) -> None:
    need(env, "EXPAND_VOLUME", "EXPAND_VOLUME")
    c = env.client
    v = await env.volume(4 * MiB)
    staging, target = env.path("stage"), env.path("t")
    await c.node_stage_volume(stage_req(v.volume_id, staging))
    await c.node_publish_volume(publish_req(v.volume_id, staging, target))
    grow = csi.CapacityRange(required_bytes=12 * MiB)
    await c.controller_expand_volume(
        csi.ControllerExpandVolumeRequest(volume_id=v.volume_id, capacity_range=grow)
    )
    await fails(
        Code.INVALID_ARGUMENT,
        c.node_expand_volume(csi.NodeExpandVolumeRequest(volume_id=v.volume_id)),
    )
    missing = csi.NodeExpandVolumeRequest(volume_id="nope", volume_path=target)
    await fails(Code.NOT_FOUND, c.node_expand_volume(missing))
    nowhere = csi.NodeExpandVolumeRequest(volume_id=v.volume_id, volume_path=env.path("gone"))
    await fails(Code.NOT_FOUND, c.node_expand_volume(nowhere))
    req = csi.NodeExpandVolumeRequest(
        volume_id=v.volume_id, volume_path=target, staging_target_path=staging, capacity_range=grow
    )
    assert await c.node_expand_volume(req) == 12 * MiB
    assert await c.node_expand_volume(req) == 12 * MiB
    await c.node_unpublish_volume(v.volume_id, target)
    await c.node_unstage_volume(v.volume_id, staging)
    await c.delete_volume(v.volume_id)


async def test_ephemeral_inline_volume(env: Env) -> None:
    handle = f"csi-{uuid.uuid4().hex}"
    target = env.path("inline")
    ctx = {spec.EPHEMERAL_CONTEXT: "true", "size": "2Mi", spec.POD_NAME: "p"}
    req = csi.NodePublishVolumeRequest(
        volume_id=handle, target_path=target, volume_capability=RWO, volume_context=ctx
    )
    await env.client.node_publish_volume(req)
    await env.client.node_publish_volume(req)
    write(target, "f", "x")
    assert (env.base / "data" / "volumes" / handle / "f").exists()
    await env.client.node_unpublish_volume(handle, target)
    assert not (env.base / "data" / "volumes" / handle).exists()
    assert not exists(target)


async def test_block_volume(env: Env) -> None:
    if not env.driver.config.block:
        big = csi.CreateVolumeRequest(name="blk", volume_capabilities=[BLOCK])
        await fails(Code.INVALID_ARGUMENT, env.client.create_volume(big))
        pytest.skip("no loop devices here: block volumes are refused with INVALID_ARGUMENT")
    c = env.client
    v = await env.volume(4 * MiB, BLOCK)
    mixed = csi.CreateVolumeRequest(name="mixed", volume_capabilities=[RWO, BLOCK])
    await fails(Code.INVALID_ARGUMENT, c.create_volume(mixed))
    img = env.base / "data" / "volumes" / f"{v.volume_id}.img"
    assert img.stat().st_size == 4 * MiB
    staging, target = env.path("bstage"), env.path("bdev")
    os.makedirs(staging)
    await fails(Code.FAILED_PRECONDITION, c.node_stage_volume(stage_req(v.volume_id, staging)))
    await c.node_stage_volume(stage_req(v.volume_id, staging, BLOCK))
    await c.node_publish_volume(publish_req(v.volume_id, staging, target, BLOCK))
    await c.node_publish_volume(publish_req(v.volume_id, staging, target, BLOCK))
    assert stat.S_ISBLK(os.stat(target).st_mode)
    write_device(target, b"kybern")
    await c.node_unpublish_volume(v.volume_id, target)
    await c.node_unstage_volume(v.volume_id, staging)
    assert mount.loop_find(img) is None
    assert img.read_bytes()[:6] == b"kybern"
    await c.delete_volume(v.volume_id)
    assert not img.exists()


async def test_state_survives_a_restart(env: Env) -> None:
    c = env.client
    v = await env.volume()
    staging, target = env.path("stage"), env.path("t")
    await c.node_stage_volume(stage_req(v.volume_id, staging))
    await c.node_publish_volume(publish_req(v.volume_id, staging, target))
    await env.driver.stop()
    await env.driver.start()
    await c.wait_ready(10.0)
    listed = await c.list_volumes()
    assert v.volume_id in {e.volume.volume_id for e in listed.entries}
    await c.node_publish_volume(publish_req(v.volume_id, staging, target))
    await fails(Code.FAILED_PRECONDITION, c.delete_volume(v.volume_id))
    await c.node_unpublish_volume(v.volume_id, target)
    await c.node_unstage_volume(v.volume_id, staging)
    await c.delete_volume(v.volume_id)
