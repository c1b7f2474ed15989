"""The hostpath driver's Node service: staging bind-mounts a volume's directory on the staging
path (a block volume gets its loop device attached), publishing bind-mounts the staged directory
on the target path (read-only by a remount) or the loop device on a target file, and unpublishing
and unstaging undo exactly that and remove what they created. CSI ephemeral inline volumes
(`csi.storage.k8s.io/ephemeral: "true"`) are created on publish and deleted on unpublish. Also
volume statistics (bytes and inodes used, a volume condition), node expansion (a loop device
re-reads its grown file) and the node's identity with its topology segment
`topology.hostpath.csi.kybern.io/node`. Idempotent, with the spec's codes; mounts run in
threads."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import grpc

from kybern.csi import mount, spec
from kybern.csi.gen import csi_pb2 as csi
from kybern.csi.gen import csi_pb2_grpc as csi_grpc
from kybern.csi.hostpath.base import (
    Core,
    Mode,
    RPCError,
    check_capability,
    invalid,
    not_found,
    require,
    rpc,
    summary,
)
from kybern.csi.hostpath.controller import materialize, remove_data
from kybern.csi.hostpath.state import Volume

NRPC = csi.NodeServiceCapability.RPC.Type
NODE_CAPS = (
    NRPC.STAGE_UNSTAGE_VOLUME,
    NRPC.GET_VOLUME_STATS,
    NRPC.EXPAND_VOLUME,
    NRPC.VOLUME_CONDITION,
    NRPC.SINGLE_NODE_MULTI_WRITER,
)
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_UNITS |= {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def _exists(code: grpc.StatusCode, message: str) -> RPCError:
    return RPCError(code, message)


def size_attribute(text: str, default: int) -> int:
    """An inline volume's `size` attribute (`100Mi`, `1G`, `4096`) in bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kMGT]i?|)\s*", text or "")
    if not m:
        if text:
            raise invalid(f"size {text!r} is not a quantity")
        return default
    return int(m.group(1)) * _UNITS[m.group(2)]


def _bind_dir(source: str, target: str, read_only: bool) -> None:
    os.makedirs(target, exist_ok=True)
    have = mount.mount_at(target)
    if have is not None:
        want = mount.source_of(source)
        if want is not None and (have.device, have.root) == want and have.read_only == read_only:
            return
        raise _exists(grpc.StatusCode.ALREADY_EXISTS, f"{target} has another mount")
    mount.bind_mount(source, target, read_only=read_only)


def _bind_device(backing: str, target: str, read_only: bool) -> None:
    device = mount.loop_attach(backing)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
        Path(target).touch()
    if mount.mount_at(target) is None:
        mount.bind_mount(device, target, read_only=read_only)


def _remove_target(target: str) -> None:
    mount.unmount_all(target)
    if os.path.isdir(target) and not os.path.islink(target):
        os.rmdir(target)
    elif os.path.lexists(target):
        os.unlink(target)


def _usage(path: str) -> tuple[int, int]:
    """(bytes, inodes) used below `path`, as du counts them."""
    used, inodes = 0, 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            used += st.st_blocks * 512
            inodes += 1
    return used, inodes


class NodeService(csi_grpc.NodeServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    def _volume(self, volume_id: str) -> Volume:
        v = self.core.state.volumes.get(volume_id)
        if v is None:
            raise not_found(f"volume {volume_id} does not exist")
        return v

    @rpc
    async def NodeStageVolume(self, request: csi.NodeStageVolumeRequest, context: Any) -> Any:
        require(request.volume_id, "volume_id")
        require(request.staging_target_path, "staging_target_path")
        if not request.HasField("volume_capability"):
            raise invalid("volume_capability is required")
        cap = request.volume_capability
        check_capability(cap, self.core.config)
        path = request.staging_target_path
        async with self.core.volume_lock(request.volume_id):
            v = self._volume(request.volume_id)
            if v.block != cap.HasField("block"):
                raise RPCError(grpc.StatusCode.FAILED_PRECONDITION, "access type mismatch")
            want = summary(cap)
            old = v.staged.get(path)
            if old is not None and old != want:
                raise _exists(grpc.StatusCode.ALREADY_EXISTS, "staged with another capability")
            data = str(self.core.state.volume_path(v))
            if v.block:
                await asyncio.to_thread(mount.loop_attach, data)
            else:
                await asyncio.to_thread(_bind_dir, data, path, False)
            if old is None:
                v.staged[path] = want
                await self.core.save()
        return csi.NodeStageVolumeResponse()

    @rpc
    async def NodeUnstageVolume(self, request: csi.NodeUnstageVolumeRequest, context: Any) -> Any:
        require(request.volume_id, "volume_id")
        require(request.staging_target_path, "staging_target_path")
        path = request.staging_target_path
        async with self.core.volume_lock(request.volume_id):
            v = self.core.state.volumes.get(request.volume_id)
            if v is None:
                if not await asyncio.to_thread(mount.unmount_all, path):
                    raise not_found(f"volume {request.volume_id} does not exist")
                return csi.NodeUnstageVolumeResponse()
            if v.block:
                if not v.targets:
                    backing = self.core.state.volume_path(v)
                    await asyncio.to_thread(mount.loop_detach, backing)
            else:
                await asyncio.to_thread(mount.unmount_all, path)
            if v.staged.pop(path, None) is not None:
                await self.core.save()
        return csi.NodeUnstageVolumeResponse()

    async def _ephemeral(self, request: csi.NodePublishVolumeRequest) -> Volume:
        st, cfg = self.core.state, self.core.config
        v = Volume(
            id=request.volume_id,
            name=request.volume_id,
            capacity=size_attribute(request.volume_context.get("size", ""), cfg.default_size),
            block=request.volume_capability.HasField("block"),
            ephemeral=True,
        )
        if v.block:
            raise invalid("ephemeral inline volumes are filesystem volumes")
        await asyncio.to_thread(materialize, st, v)
        st.volumes[v.id] = v
        return v

    @rpc
    async def NodePublishVolume(self, request: csi.NodePublishVolumeRequest, context: Any) -> Any:
        require(request.volume_id, "volume_id")
        require(request.target_path, "target_path")
        if not request.HasField("volume_capability"):
            raise invalid("volume_capability is required")
        cap = request.volume_capability
        check_capability(cap, self.core.config)
        ephemeral = request.volume_context.get(spec.EPHEMERAL_CONTEXT) == "true"
        staging, target, ro = request.staging_target_path, request.target_path, request.readonly
        async with self.core.volume_lock(request.volume_id):
            v = self.core.state.volumes.get(request.volume_id)
            if v is None and ephemeral:
                v = await self._ephemeral(request)
            if v is None:
                raise not_found(f"volume {request.volume_id} does not exist")
            if v.block != cap.HasField("block"):
                raise RPCError(grpc.StatusCode.FAILED_PRECONDITION, "access type mismatch")
            if not v.ephemeral:
                require(staging, "staging_target_path")
                if staging not in v.staged:
                    raise RPCError(
                        grpc.StatusCode.FAILED_PRECONDITION, f"volume is not staged at {staging}"
                    )
            want = {"readonly": ro, "cap": summary(cap), "staging": staging}
            old = v.targets.get(target)
            if old is not None and (old["readonly"], old["cap"]) != (ro, want["cap"]):
                raise _exists(grpc.StatusCode.ALREADY_EXISTS, "published there differently")
            others = [t for t in v.targets if t != target]
            if others and cap.access_mode.mode == Mode.SINGLE_NODE_SINGLE_WRITER:
                raise RPCError(
                    grpc.StatusCode.FAILED_PRECONDITION, "volume is published at another target"
                )
            data = str(self.core.state.volume_path(v))
            if v.block:
                await asyncio.to_thread(_bind_device, data, target, ro)
            else:
                await asyncio.to_thread(_bind_dir, staging or data, target, ro)
            v.targets[target] = want
            await self.core.save()
        return csi.NodePublishVolumeResponse()

    @rpc
    async def NodeUnpublishVolume(
        self, request: csi.NodeUnpublishVolumeRequest, context: Any
    ) -> Any:
        require(request.volume_id, "volume_id")
        require(request.target_path, "target_path")
        target = request.target_path
        st = self.core.state
        async with self.core.volume_lock(request.volume_id):
            v = st.volumes.get(request.volume_id)
            if v is None:
                if not await asyncio.to_thread(mount.is_mount, target):
                    raise not_found(f"volume {request.volume_id} does not exist")
                await asyncio.to_thread(_remove_target, target)
                return csi.NodeUnpublishVolumeResponse()
            await asyncio.to_thread(_remove_target, target)
            v.targets.pop(target, None)
            if v.block and not v.targets and not v.staged:
                await asyncio.to_thread(mount.loop_detach, st.volume_path(v))
            if v.ephemeral and not v.targets:
                await asyncio.to_thread(remove_data, st, v)
                del st.volumes[v.id]
            await self.core.save()
        return csi.NodeUnpublishVolumeResponse()

    @rpc
    async def NodeGetVolumeStats(self, request: csi.NodeGetVolumeStatsRequest, context: Any) -> Any:
        require(request.volume_id, "volume_id")
        require(request.volume_path, "volume_path")
        v = self._volume(request.volume_id)
        path = request.volume_path
        if not await asyncio.to_thread(os.path.exists, path):
            raise not_found(f"volume path {path} does not exist")
        Usage = csi.VolumeUsage
        out = csi.NodeGetVolumeStatsResponse()
        data = self.core.state.volume_path(v)
        healthy = await asyncio.to_thread(data.exists)
        if v.block:
            out.usage.add(unit=Usage.BYTES, total=v.capacity, available=v.capacity, used=0)
        else:
            used, inodes = await asyncio.to_thread(_usage, path)
            vfs = await asyncio.to_thread(os.statvfs, path)
            out.usage.add(
                unit=Usage.BYTES, total=v.capacity, used=used, available=max(v.capacity - used, 0)
            )
            out.usage.add(unit=Usage.INODES, total=vfs.f_files, used=inodes, available=vfs.f_ffree)
            healthy = healthy and await asyncio.to_thread(mount.is_mount, path)
        message = "volume is healthy" if healthy else "volume data is missing or not mounted"
        out.volume_condition.CopyFrom(csi.VolumeCondition(abnormal=not healthy, message=message))
        return out

    @rpc
    async def NodeExpandVolume(self, request: csi.NodeExpandVolumeRequest, context: Any) -> Any:
        require(request.volume_id, "volume_id")
        require(request.volume_path, "volume_path")
        if request.HasField("volume_capability"):
            check_capability(request.volume_capability, self.core.config)
        v = self._volume(request.volume_id)
        if not await asyncio.to_thread(os.path.exists, request.volume_path):
            raise not_found(f"volume path {request.volume_path} does not exist")
        if request.capacity_range.required_bytes > v.capacity:
            raise RPCError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"{request.capacity_range.required_bytes} bytes is more than the volume has; "
                "expand it on the controller first",
            )
        if v.block:
            await asyncio.to_thread(mount.loop_refresh, self.core.state.volume_path(v))
        return csi.NodeExpandVolumeResponse(capacity_bytes=v.capacity)

    @rpc
    async def NodeGetCapabilities(
        self, request: csi.NodeGetCapabilitiesRequest, context: Any
    ) -> Any:
        out = csi.NodeGetCapabilitiesResponse()
        for c in NODE_CAPS:
            out.capabilities.add().rpc.type = c
        return out

    @rpc
    async def NodeGetInfo(self, request: csi.NodeGetInfoRequest, context: Any) -> Any:
        cfg = self.core.config
        return csi.NodeGetInfoResponse(
            node_id=cfg.node_id,
            max_volumes_per_node=cfg.max_volumes_per_node,
            accessible_topology=csi.Topology(segments=self.core.topology),
        )
