"""The hostpath driver's Controller service: volumes are directories (or sparse image files for
block access) under the data dir, created empty, restored from a snapshot (a tarball of the
directory, or a copy of the image) or cloned from another volume; publishing records which node
may use a volume (the node must be this driver's node); snapshots, capacity, expansion, listing
with pagination and volume conditions. Every RPC is idempotent and answers with the spec's
codes: INVALID_ARGUMENT for a missing or malformed field, NOT_FOUND, ALREADY_EXISTS for an
incompatible request under an existing name, OUT_OF_RANGE for a size the driver refuses,
FAILED_PRECONDITION for a volume in use, RESOURCE_EXHAUSTED when space or topology runs out,
ABORTED for a stale page token. File work runs in threads."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2, wrappers_pb2

from kybern.csi import mount
from kybern.csi.gen import csi_pb2 as csi
from kybern.csi.gen import csi_pb2_grpc as csi_grpc
from kybern.csi.hostpath.base import (
    SINGLE_NODE_MODES,
    TOPOLOGY_KEY,
    Config,
    Core,
    RPCError,
    check_capabilities,
    check_capability,
    invalid,
    not_found,
    require,
    rpc,
)
from kybern.csi.hostpath.state import Snapshot, State, Volume

RPC = csi.ControllerServiceCapability.RPC.Type
CONTROLLER_CAPS = (
    RPC.CREATE_DELETE_VOLUME,
    RPC.LIST_VOLUMES,
    RPC.GET_CAPACITY,
    RPC.CREATE_DELETE_SNAPSHOT,
    RPC.LIST_SNAPSHOTS,
    RPC.CLONE_VOLUME,
    RPC.EXPAND_VOLUME,
    RPC.LIST_VOLUMES_PUBLISHED_NODES,
    RPC.VOLUME_CONDITION,
    RPC.GET_VOLUME,
    RPC.SINGLE_NODE_MULTI_WRITER,
)
ATTACH_CAPS = (RPC.PUBLISH_UNPUBLISH_VOLUME, RPC.PUBLISH_READONLY)


def _out_of_range(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.OUT_OF_RANGE, message)


def requested_size(cr: csi.CapacityRange, config: Config) -> tuple[int, int]:
    """(size to create, limit or 0) for a capacity range; OUT_OF_RANGE if impossible."""
    required, limit = cr.required_bytes, cr.limit_bytes
    if required < 0 or limit < 0:
        raise invalid("capacity_range values must not be negative")
    if limit and required > limit:
        raise _out_of_range(f"required_bytes {required} exceeds limit_bytes {limit}")
    size = required or (min(config.default_size, limit) if limit else config.default_size)
    if size > config.max_volume_size:
        raise _out_of_range(
            f"{size} bytes exceeds the maximum volume size {config.max_volume_size}"
        )
    return size, limit


def fits(capacity: int, cr: csi.CapacityRange) -> bool:
    return capacity >= cr.required_bytes and (not cr.limit_bytes or capacity <= cr.limit_bytes)


def _cp_sparse(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True, timeout=600)


def materialize(st: State, v: Volume) -> None:
    """Create the volume's data: empty, from its snapshot, or copied from its source volume."""
    path = st.volume_path(v)
    if v.source_snapshot:
        snap = st.snapshots[v.source_snapshot]
        if v.block:
            _cp_sparse(st.snapshot_path(snap), path)
        else:
            path.mkdir()
            with tarfile.open(st.snapshot_path(snap)) as tar:
                tar.extractall(path, filter="tar")
    elif v.source_volume:
        src = st.volume_path(st.volumes[v.source_volume])
        if v.block:
            _cp_sparse(src, path)
        else:
            shutil.copytree(src, path, symlinks=True)
    elif v.block:
        path.touch()
    else:
        path.mkdir()
    if v.block:
        os.truncate(path, max(v.capacity, path.stat().st_size))
    else:
        os.chmod(path, 0o777)


def remove_data(st: State, v: Volume) -> None:
    path = st.volume_path(v)
    if v.block:
        mount.loop_detach(path)
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def take_snapshot(st: State, v: Volume, snap: Snapshot) -> None:
    src, dst = st.volume_path(v), st.snapshot_path(snap)
    tmp = dst.with_name(dst.name + ".tmp")
    if v.block:
        _cp_sparse(src, tmp)
    else:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(src, arcname=".")
    os.replace(tmp, dst)


def volume_message(core: Core, v: Volume) -> csi.Volume:
    out = csi.Volume(
        volume_id=v.id,
        capacity_bytes=v.capacity,
        accessible_topology=[csi.Topology(segments=core.topology)],
    )
    if v.source_snapshot:
        out.content_source.snapshot.snapshot_id = v.source_snapshot
    elif v.source_volume:
        out.content_source.volume.volume_id = v.source_volume
    return out


def snapshot_message(s: Snapshot) -> csi.Snapshot:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(s.created * 1e9))
    return csi.Snapshot(
        snapshot_id=s.id,
        source_volume_id=s.source_volume_id,
        size_bytes=s.size,
        creation_time=ts,
        ready_to_use=s.ready,
    )


def page(keys: list[str], max_entries: int, token: str) -> tuple[list[str], str]:
    if max_entries < 0:
        raise invalid("max_entries must not be negative")
    try:
        start = int(token) if token else 0
    except ValueError:
        start = -1
    if start < 0 or start > len(keys):
        raise RPCError(grpc.StatusCode.ABORTED, f"invalid starting_token {token!r}")
    end = len(keys) if not max_entries else min(start + max_entries, len(keys))
    return keys[start:end], (str(end) if end < len(keys) else "")


class ControllerService(csi_grpc.ControllerServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    def _condition(self, v: Volume) -> csi.VolumeCondition:
        if self.core.state.volume_path(v).exists():
            return csi.VolumeCondition(abnormal=False, message="volume is healthy")
        return csi.VolumeCondition(abnormal=True, message="the volume's data is missing")

    def _check_topology(self, req: csi.TopologyRequirement) -> None:
        offered = [*req.requisite, *req.preferred]
        if not offered:
            return
        mine = self.core.config.node_id
        if not any(t.segments.get(TOPOLOGY_KEY) == mine for t in offered):
            raise RPCError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this driver provisions only on node {mine}, which the topology excludes",
            )

    @rpc
    async def CreateVolume(self, request: csi.CreateVolumeRequest, context: Any) -> Any:
        core, st = self.core, self.core.state
        require(request.name, "name")
        block = check_capabilities(request.volume_capabilities, core.config)
        size, limit = requested_size(request.capacity_range, core.config)
        self._check_topology(request.accessibility_requirements)
        src = request.volume_content_source
        snap_id = src.snapshot.snapshot_id if src.HasField("snapshot") else ""
        vol_id = src.volume.volume_id if src.HasField("volume") else ""
        if src.WhichOneof("type") and not (snap_id or vol_id):
            raise invalid("volume_content_source names no snapshot or volume")
        async with core.lock:
            old = st.volume_by_name(request.name)
            if old is not None:
                if (
                    old.block != block
                    or not fits(old.capacity, request.capacity_range)
                    or old.content_source() != (snap_id, vol_id)
                ):
                    raise RPCError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        f"volume {request.name!r} exists with another size, type or source",
                    )
                return csi.CreateVolumeResponse(volume=volume_message(core, old))
            source_size = 0
            if snap_id:
                snap = st.snapshots.get(snap_id)
                if snap is None:
                    raise not_found(f"snapshot {snap_id} does not exist")
                if snap.block != block:
                    raise invalid("the snapshot's access type (block/mount) differs")
                source_size = snap.size
            if vol_id:
                sv = st.volumes.get(vol_id)
                if sv is None:
                    raise not_found(f"source volume {vol_id} does not exist")
                if sv.block != block:
                    raise invalid("the source volume's access type (block/mount) differs")
                source_size = sv.capacity
            size = max(size, source_size)
            if limit and size > limit:
                raise _out_of_range(f"the source needs {source_size} bytes, above limit_bytes")
            cap = core.config.capacity
            if cap and st.allocated() + size > cap:
                raise RPCError(grpc.StatusCode.RESOURCE_EXHAUSTED, "not enough capacity left")
            v = Volume(
                id=str(uuid.uuid4()),
                name=request.name,
                capacity=size,
                block=block,
                source_snapshot=snap_id,
                source_volume=vol_id,
                parameters=dict(request.parameters),
            )
            await asyncio.to_thread(materialize, st, v)
            st.volumes[v.id] = v
            await core.save()
            return csi.CreateVolumeResponse(volume=volume_message(core, v))

    @rpc
    async def DeleteVolume(self, request: csi.DeleteVolumeRequest, context: Any) -> Any:
        require(request.volume_id, "volume_id")
        st = self.core.state
        async with self.core.lock, self.core.volume_lock(request.volume_id):
            v = st.volumes.get(request.volume_id)
            if v is None:
                return csi.DeleteVolumeResponse()
            if v.published or v.targets or v.staged:
                raise RPCError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"volume {v.id} is still published or staged",
                )
            await asyncio.to_thread(remove_data, st, v)
            del st.volumes[v.id]
            await self.core.save()
        return csi.DeleteVolumeResponse()

    @rpc
    async def ControllerPublishVolume(
        self, request: csi.ControllerPublishVolumeRequest, context: Any
    ) -> Any:
        require(request.volume_id, "volume_id")
        require(request.node_id, "node_id")
        if not request.HasField("volume_capability"):
            raise invalid("volume_capability is required")
        check_capability(request.volume_capability, self.core.config)
        st = self.core.state
        async with self.core.volume_lock(request.volume_id):
            v = st.volumes.get(request.volume_id)
            if v is None:
                raise not_found(f"volume {request.volume_id} does not exist")
            if request.node_id != self.core.config.node_id:
                raise not_found(f"node {request.node_id} does not exist")
            if v.block != request.volume_capability.HasField("block"):
                raise RPCError(grpc.StatusCode.FAILED_PRECONDITION, "access type mismatch")
            if request.node_id in v.published:
                if v.published[request.node_id] != request.readonly:
                    raise RPCError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        "volume is published to this node with another readonly flag",
                    )
                return csi.ControllerPublishVolumeResponse()
            mode = request.volume_capability.access_mode.mode
            if v.published and mode in SINGLE_NODE_MODES:
                raise RPCError(
                    grpc.StatusCode.FAILED_PRECONDITION, "volume is published to another node"
                )
            limit = self.core.config.max_volumes_per_node
            if limit and sum(request.node_id in x.published for x in st.volumes.values()) >= limit:
                raise RPCError(grpc.StatusCode.RESOURCE_EXHAUSTED, "node volume limit reached")
            v.published[request.node_id] = request.readonly
            await self.core.save()
        return csi.ControllerPublishVolumeResponse()

    @rpc
    async def ControllerUnpublishVolume(
        self, request: csi.ControllerUnpublishVolumeRequest, context: Any
    ) -> Any:
        require(request.volume_id, "volume_id")
        st = self.core.state
        async with self.core.volume_lock(request.volume_id):
            v = st.volumes.get(request.volume_id)
            if v is None:
                raise not_found(f"volume {request.volume_id} does not exist")
            if request.node_id and request.node_id != self.core.config.node_id:
                raise not_found(f"node {request.node_id} does not exist")
            nodes = [request.node_id] if request.node_id else list(v.published)
            if any(n in v.published for n in nodes):
                for n in nodes:
                    v.published.pop(n, None)
                await self.core.save()
        return csi.ControllerUnpublishVolumeResponse()

    @rpc
    async def ValidateVolumeCapabilities(
        self, request: csi.ValidateVolumeCapabilitiesRequest, context: Any
    ) -> Any:
        require(request.volume_id, "volume_id")
        if not request.volume_capabilities:
            raise invalid("volume_capabilities are required")
        for cap in request.volume_capabilities:
            if cap.WhichOneof("access_type") is None or not cap.access_mode.mode:
                raise invalid("each volume capability needs an access type and a mode")
        v = self.core.state.volumes.get(request.volume_id)
        if v is None:
            raise not_found(f"volume {request.volume_id} does not exist")
        for cap in request.volume_capabilities:
            if cap.HasField("block") != v.block:
                kind = "block" if v.block else "mount"
                return csi.ValidateVolumeCapabilitiesResponse(message=f"the volume is {kind} only")
        confirmed = csi.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context),
            volume_capabilities=list(request.volume_capabilities),
            parameters=dict(request.parameters),
        )
        return csi.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    @rpc
    async def ListVolumes(self, request: csi.ListVolumesRequest, context: Any) -> Any:
        st = self.core.state
        ids, token = page(sorted(st.volumes), request.max_entries, request.starting_token)
        out = csi.ListVolumesResponse(next_token=token)
        for i in ids:
            v = st.volumes[i]
            status = csi.ListVolumesResponse.VolumeStatus(
                published_node_ids=sorted(v.published), volume_condition=self._condition(v)
            )
            out.entries.add(volume=volume_message(self.core, v), status=status)
        return out

    @rpc
    async def ControllerGetVolume(
        self, request: csi.ControllerGetVolumeRequest, context: Any
    ) -> Any:
        require(request.volume_id, "volume_id")
        v = self.core.state.volumes.get(request.volume_id)
        if v is None:
            raise not_found(f"volume {request.volume_id} does not exist")
        status = csi.ControllerGetVolumeResponse.VolumeStatus(
            published_node_ids=sorted(v.published), volume_condition=self._condition(v)
        )
        return csi.ControllerGetVolumeResponse(volume=volume_message(self.core, v), status=status)

    @rpc
    async def GetCapacity(self, request: csi.GetCapacityRequest, context: Any) -> Any:
        cfg = self.core.config
        for cap in request.volume_capabilities:
            check_capability(cap, cfg)
        segs = request.accessible_topology.segments
        if request.HasField("accessible_topology") and segs.get(TOPOLOGY_KEY) != cfg.node_id:
            return csi.GetCapacityResponse(available_capacity=0)
        if cfg.capacity:
            available = max(cfg.capacity - self.core.state.allocated(), 0)
        else:
            vfs = await asyncio.to_thread(os.statvfs, cfg.data_dir)
            available = vfs.f_bavail * vfs.f_frsize
        return csi.GetCapacityResponse(
            available_capacity=available,
            maximum_volume_size=wrappers_pb2.Int64Value(value=cfg.max_volume_size),
        )

    @rpc
    async def ControllerGetCapabilities(
        self, request: csi.ControllerGetCapabilitiesRequest, context: Any
    ) -> Any:
        caps = CONTROLLER_CAPS + (ATTACH_CAPS if self.core.config.attach else ())
        out = csi.ControllerGetCapabilitiesResponse()
        for c in caps:
            out.capabilities.add().rpc.type = c
        return out

    @rpc
    async def CreateSnapshot(self, request: csi.CreateSnapshotRequest, context: Any) -> Any:
        require(request.source_volume_id, "source_volume_id")
        require(request.name, "name")
        st = self.core.state
        async with self.core.lock, self.core.volume_lock(request.source_volume_id):
            old = st.snapshot_by_name(request.name)
            if old is not None:
                if old.source_volume_id != request.source_volume_id:
                    raise RPCError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        f"snapshot {request.name!r} exists for another volume",
                    )
                return csi.CreateSnapshotResponse(snapshot=snapshot_message(old))
            v = st.volumes.get(request.source_volume_id)
            if v is None:
                raise not_found(f"volume {request.source_volume_id} does not exist")
            snap = Snapshot(
                id=str(uuid.uuid4()),
                name=request.name,
                source_volume_id=v.id,
                created=time.time(),
                size=v.capacity,
                block=v.block,
            )
            await asyncio.to_thread(take_snapshot, st, v, snap)
            st.snapshots[snap.id] = snap
            await self.core.save()
        return csi.CreateSnapshotResponse(snapshot=snapshot_message(snap))

    @rpc
    async def DeleteSnapshot(self, request: csi.DeleteSnapshotRequest, context: Any) -> Any:
        require(request.snapshot_id, "snapshot_id")
        st = self.core.state
        async with self.core.lock:
            snap = st.snapshots.pop(request.snapshot_id, None)
            if snap is not None:
                await asyncio.to_thread(st.snapshot_path(snap).unlink, missing_ok=True)
                await self.core.save()
        return csi.DeleteSnapshotResponse()

    @rpc
    async def ListSnapshots(self, request: csi.ListSnapshotsRequest, context: Any) -> Any:
        st = self.core.state
        snaps = sorted(st.snapshots.values(), key=lambda s: (s.created, s.id))
        if request.snapshot_id:
            snaps = [s for s in snaps if s.id == request.snapshot_id]
        if request.source_volume_id:
            snaps = [s for s in snaps if s.source_volume_id == request.source_volume_id]
        by_id = {s.id: s for s in snaps}
        ids, token = page([s.id for s in snaps], request.max_entries, request.starting_token)
        out = csi.ListSnapshotsResponse(next_token=token)
        for i in ids:
            out.entries.add(snapshot=snapshot_message(by_id[i]))
        return out

    @rpc
    async def ControllerExpandVolume(
        self, request: csi.ControllerExpandVolumeRequest, context: Any
    ) -> Any:
        require(request.volume_id, "volume_id")
        if not request.HasField("capacity_range"):
            raise invalid("capacity_range is required")
        cfg, st = self.core.config, self.core.state
        if request.HasField("volume_capability"):
            check_capability(request.volume_capability, cfg)
        cr = request.capacity_range
        async with self.core.volume_lock(request.volume_id):
            v = st.volumes.get(request.volume_id)
            if v is None:
                raise not_found(f"volume {request.volume_id} does not exist")
            if cr.required_bytes > cfg.max_volume_size:
                raise _out_of_range(f"{cr.required_bytes} exceeds the maximum volume size")
            if cr.limit_bytes and cr.limit_bytes < max(v.capacity, cr.required_bytes):
                raise _out_of_range("volumes cannot shrink below their current size")
            if cr.required_bytes > v.capacity:
                v.capacity = cr.required_bytes
                if v.block:
                    await asyncio.to_thread(os.truncate, st.volume_path(v), v.capacity)
                await self.core.save()
        return csi.ControllerExpandVolumeResponse(
            capacity_bytes=v.capacity, node_expansion_required=True
        )

    @rpc
    async def ControllerModifyVolume(
        self, request: csi.ControllerModifyVolumeRequest, context: Any
    ) -> Any:
        raise RPCError(grpc.StatusCode.UNIMPLEMENTED, "ControllerModifyVolume is not supported")
