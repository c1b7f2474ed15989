"""The async CSI client: `CSIClient` calls a driver's `csi.v1` Identity, Controller,
GroupController and Node services over gRPC (grpc.aio) on a unix socket, as the kubelet and the
external sidecars do. `discover()` asks the driver who it is and what it can do
(`GetPluginInfo`, `GetPluginCapabilities`, then `ControllerGetCapabilities` and
`NodeGetCapabilities`) and returns `spec.Capabilities`, which drives what the orchestrator calls.
Every call has a deadline (the client default, or per call) and every gRPC failure becomes a
`kybern.csi.errors` exception; `stats` counts calls and the time they took per method (the
benchmark's "CSI calls per volume"). Methods are the RPC names in snake_case over the generated
messages of `kybern.csi.csi`; any RPC is reachable through `call`."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from kybern.csi import errors, spec
from kybern.csi.gen import csi_pb2 as csi

DEFAULT_TIMEOUT = 60.0  # seconds; the sidecars' --timeout is shorter, the kubelet's longer
R = TypeVar("R", bound=Message)


@dataclasses.dataclass(frozen=True)
class Method:
    """One RPC of CSI: its service, full gRPC path and message classes."""

    service: str
    name: str
    request: type[Message]
    response: type[Message]

    @property
    def path(self) -> str:
        return f"/csi.v1.{self.service}/{self.name}"


def _methods() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for service in csi.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            out[m.name] = Method(
                service.name,
                m.name,
                getattr(csi, m.input_type.name),
                getattr(csi, m.output_type.name),
            )
    return out


METHODS: Mapping[str, Method] = _methods()


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """`(grpc target, socket path)` for `unix:///path` or a bare absolute path (CSI endpoints
    are unix sockets); anything else is a ValueError."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif endpoint.startswith("/"):
        path = endpoint
    else:
        raise ValueError(f"CSI endpoint {endpoint!r} is not a unix socket: use unix:///path")
    if not path.startswith("/"):
        raise ValueError(f"CSI endpoint {endpoint!r} needs an absolute path (unix:///...)")
    return "unix://" + path, path


@dataclasses.dataclass
class CallStats:
    """Calls per method, failures per method and seconds spent waiting per method."""

    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def record(self, method: str, seconds: float, ok: bool) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.seconds[method] = self.seconds.get(method, 0.0) + seconds
        if not ok:
            self.failures[method] = self.failures.get(method, 0) + 1

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def merge(self, other: CallStats) -> None:
        for m, n in other.calls.items():
            self.calls[m] = self.calls.get(m, 0) + n
        for m, n in other.failures.items():
            self.failures[m] = self.failures.get(m, 0) + n
        for m, s in other.seconds.items():
            self.seconds[m] = self.seconds.get(m, 0.0) + s


def channel_options() -> list[tuple[str, Any]]:
    return [
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


class CSIClient:
    """A CSI client for one driver endpoint. `timeout` is the default deadline of each call in
    seconds (`math.inf`: none); every method also takes `timeout=`. Use as
    `async with CSIClient(ep) as c: caps = await c.discover()`."""

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self._target, self.socket_path = parse_endpoint(endpoint)
        self.timeout = timeout
        self.stats = CallStats()
        self.capabilities: spec.Capabilities | None = None
        self._channel: Any = None

    def channel(self) -> Any:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=channel_options())
        return self._channel

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> CSIClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def call(
        self, method: str, request: Message | None = None, *, timeout: float | None = None
    ) -> Message:
        """Call any RPC by name (`"NodeStageVolume"`) with its request message (an empty one if
        omitted); returns the response message or raises a `CSIError`."""
        m = METHODS[method]
        req = request if request is not None else m.request()
        if not isinstance(req, m.request):
            raise TypeError(f"{method} takes {m.request.__name__}, not {type(req).__name__}")
        t = self.timeout if timeout is None else timeout
        deadline = None if math.isinf(t) else t
        fn = self.channel().unary_unary(
            m.path,
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.response.FromString,
        )
        start = time.perf_counter()
        try:
            response: Message = await fn(req, timeout=deadline)
        except grpc.aio.AioRpcError as e:
            self.stats.record(method, time.perf_counter() - start, False)
            exists = None
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                exists = await asyncio.to_thread(os.path.exists, self.socket_path)
            raise errors.from_status(
                e.code(),
                e.details() or "",
                endpoint=self.endpoint,
                method=m.path,
                socket_exists=exists,
            ) from e
        self.stats.record(method, time.perf_counter() - start, True)
        return response

    async def _call(
        self, method: str, request: Message, response: type[R], timeout: float | None
    ) -> R:
        out = await self.call(method, request, timeout=timeout)
        assert isinstance(out, response)
        return out

    # -- Identity -------------------------------------------------------------------------------

    async def get_plugin_info(self, *, timeout: float | None = None) -> csi.GetPluginInfoResponse:
        req = csi.GetPluginInfoRequest()
        return await self._call("GetPluginInfo", req, csi.GetPluginInfoResponse, timeout)

    async def get_plugin_capabilities(
        self, *, timeout: float | None = None
    ) -> csi.GetPluginCapabilitiesResponse:
        req = csi.GetPluginCapabilitiesRequest()
        r = csi.GetPluginCapabilitiesResponse
        return await self._call("GetPluginCapabilities", req, r, timeout)

    async def probe(self, *, timeout: float | None = None) -> bool:
        """True when the driver is ready (an unset `ready` means ready, per the spec)."""
        r = await self._call("Probe", csi.ProbeRequest(), csi.ProbeResponse, timeout)
        return not r.HasField("ready") or r.ready.value

    async def wait_ready(self, timeout: float, *, interval: float = 0.05) -> None:
        """`Probe` until the driver answers ready; raises the last error at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if await self.probe(timeout=max(min(left, 5.0), 0.05)):
                    return
            except (errors.DriverUnavailableError, errors.CSITimeoutError):
                if time.monotonic() + interval > deadline:
                    raise
            if time.monotonic() + interval > deadline:
                raise errors.CSITimeoutError(f"CSI driver at {self.endpoint} is not ready")
            await asyncio.sleep(interval)

    async def discover(self, *, timeout: float | None = None) -> spec.Capabilities:
        """Identity and capabilities of the driver (also kept in `self.capabilities`). The
        controller is asked only when the plugin offers CONTROLLER_SERVICE; a driver without a
        Node service (UNIMPLEMENTED) has no node capabilities."""
        info = await self.get_plugin_info(timeout=timeout)
        plugin = await self.get_plugin_capabilities(timeout=timeout)
        caps = spec.Capabilities.from_responses(info, plugin)
        controller = node = None
        if caps.controller_service:
            controller = await self._call(
                "ControllerGetCapabilities",
                csi.ControllerGetCapabilitiesRequest(),
                csi.ControllerGetCapabilitiesResponse,
                timeout,
            )
        try:
            node = await self._call(
                "NodeGetCapabilities",
                csi.NodeGetCapabilitiesRequest(),
                csi.NodeGetCapabilitiesResponse,
                timeout,
            )
        except errors.UnimplementedError:
            node = None
        self.capabilities = spec.Capabilities.from_responses(info, plugin, controller, node)
        return self.capabilities

    # -- Controller -----------------------------------------------------------------------------

    async def create_volume(
        self, req: csi.CreateVolumeRequest, *, timeout: float | None = None
    ) -> csi.Volume:
        r = await self._call("CreateVolume", req, csi.CreateVolumeResponse, timeout)
        return r.volume

    async def delete_volume(
        self,
        volume_id: str,
        secrets: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        req = csi.DeleteVolumeRequest(volume_id=volume_id, secrets=dict(secrets or {}))
        await self._call("DeleteVolume", req, csi.DeleteVolumeResponse, timeout)

    async def controller_publish_volume(
        self, req: csi.ControllerPublishVolumeRequest, *, timeout: float | None = None
    ) -> dict[str, str]:
        """Returns the publish context the node calls must carry."""
        r = csi.ControllerPublishVolumeResponse
        out = await self._call("ControllerPublishVolume", req, r, timeout)
        return dict(out.publish_context)

    async def controller_unpublish_volume(
        self,
        volume_id: str,
        node_id: str,
        secrets: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        req = csi.ControllerUnpublishVolumeRequest(
            volume_id=volume_id, node_id=node_id, secrets=dict(secrets or {})
        )
        r = csi.ControllerUnpublishVolumeResponse
        await self._call("ControllerUnpublishVolume", req, r, timeout)

    async def controller_expand_volume(
        self, req: csi.ControllerExpandVolumeRequest, *, timeout: float | None = None
    ) -> csi.ControllerExpandVolumeResponse:
        r = csi.ControllerExpandVolumeResponse
        return await self._call("ControllerExpandVolume", req, r, timeout)

    async def create_snapshot(
        self, req: csi.CreateSnapshotRequest, *, timeout: float | None = None
    ) -> csi.Snapshot:
        r = await self._call("CreateSnapshot", req, csi.CreateSnapshotResponse, timeout)
        return r.snapshot

    async def delete_snapshot(
        self,
        snapshot_id: str,
        secrets: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        req = csi.DeleteSnapshotRequest(snapshot_id=snapshot_id, secrets=dict(secrets or {}))
        await self._call("DeleteSnapshot", req, csi.DeleteSnapshotResponse, timeout)

    async def list_snapshots(
        self, req: csi.ListSnapshotsRequest, *, timeout: float | None = None
    ) -> csi.ListSnapshotsResponse:
        return await self._call("ListSnapshots", req, csi.ListSnapshotsResponse, timeout)

    async def list_volumes(
        self, max_entries: int = 0, starting_token: str = "", *, timeout: float | None = None
    ) -> csi.ListVolumesResponse:
        req = csi.ListVolumesRequest(max_entries=max_entries, starting_token=starting_token)
        return await self._call("ListVolumes", req, csi.ListVolumesResponse, timeout)

    async def get_capacity(
        self, req: csi.GetCapacityRequest, *, timeout: float | None = None
    ) -> csi.GetCapacityResponse:
        return await self._call("GetCapacity", req, csi.GetCapacityResponse, timeout)

    # -- Node -----------------------------------------------------------------------------------

    async def node_get_info(self, *, timeout: float | None = None) -> csi.NodeGetInfoResponse:
        req = csi.NodeGetInfoRequest()
        return await self._call("NodeGetInfo", req, csi.NodeGetInfoResponse, timeout)

    async def node_stage_volume(
        self, req: csi.NodeStageVolumeRequest, *, timeout: float | None = None
    ) -> None:
        await self._call("NodeStageVolume", req, csi.NodeStageVolumeResponse, timeout)

    async def node_unstage_volume(
        self, volume_id: str, staging_target_path: str, *, timeout: float | None = None
    ) -> None:
        req = csi.NodeUnstageVolumeRequest(
            volume_id=volume_id, staging_target_path=staging_target_path
        )
        await self._call("NodeUnstageVolume", req, csi.NodeUnstageVolumeResponse, timeout)

    async def node_publish_volume(
        self, req: csi.NodePublishVolumeRequest, *, timeout: float | None = None
    ) -> None:
        await self._call("NodePublishVolume", req, csi.NodePublishVolumeResponse, timeout)

    async def node_unpublish_volume(
        self, volume_id: str, target_path: str, *, timeout: float | None = None
    ) -> None:
        req = csi.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target_path)
        await self._call("NodeUnpublishVolume", req, csi.NodeUnpublishVolumeResponse, timeout)

    async def node_expand_volume(
        self, req: csi.NodeExpandVolumeRequest, *, timeout: float | None = None
    ) -> int:
        r = await self._call("NodeExpandVolume", req, csi.NodeExpandVolumeResponse, timeout)
        return r.capacity_bytes

    async def node_get_volume_stats(
        self,
        volume_id: str,
        volume_path: str,
        staging_target_path: str = "",
        *,
        timeout: float | None = None,
    ) -> csi.NodeGetVolumeStatsResponse:
        req = csi.NodeGetVolumeStatsRequest(
            volume_id=volume_id, volume_path=volume_path, staging_target_path=staging_target_path
        )
        return await self._call("NodeGetVolumeStats", req, csi.NodeGetVolumeStatsResponse, timeout)
