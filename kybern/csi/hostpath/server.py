"""The hostpath driver process: the Identity service (name, version, the plugin capabilities
CONTROLLER_SERVICE, VOLUME_ACCESSIBILITY_CONSTRAINTS and online expansion, `Probe`) and
`HostpathDriver`, which serves Identity, Controller and Node on one grpc.aio server on a unix
socket and, given a kubelet registration directory, registers itself there through a
`RegistrationServer` as node-driver-registrar would. `stats` holds the time spent in each
handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from kybern.csi import registration
from kybern.csi.client import CallStats, parse_endpoint
from kybern.csi.gen import csi_pb2 as csi
from kybern.csi.gen import csi_pb2_grpc as csi_grpc
from kybern.csi.hostpath.base import Config, Core, rpc
from kybern.csi.hostpath.controller import ControllerService
from kybern.csi.hostpath.node import NodeService

log = logging.getLogger("kybern.csi.hostpath")
Service = csi.PluginCapability.Service.Type
Expansion = csi.PluginCapability.VolumeExpansion.Type


class IdentityService(csi_grpc.IdentityServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    @rpc
    async def GetPluginInfo(self, request: csi.GetPluginInfoRequest, context: Any) -> Any:
        cfg = self.core.config
        return csi.GetPluginInfoResponse(name=cfg.name, vendor_version=cfg.vendor_version)

    @rpc
    async def GetPluginCapabilities(
        self, request: csi.GetPluginCapabilitiesRequest, context: Any
    ) -> Any:
        out = csi.GetPluginCapabilitiesResponse()
        out.capabilities.add().service.type = Service.CONTROLLER_SERVICE
        out.capabilities.add().service.type = Service.VOLUME_ACCESSIBILITY_CONSTRAINTS
        out.capabilities.add().volume_expansion.type = Expansion.ONLINE
        return out

    @rpc
    async def Probe(self, request: csi.ProbeRequest, context: Any) -> Any:
        return csi.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))


class HostpathDriver:
    """`await start()` serves the driver on `endpoint` (`unix:///path/csi.sock`); `stop()`
    stops serving and removes the sockets. Volumes and their mounts outlive the process."""

    def __init__(
        self, config: Config, endpoint: str, *, registration_dir: str | Path | None = None
    ) -> None:
        self.config = config
        self.endpoint = endpoint
        _, self.socket_path = parse_endpoint(endpoint)
        self.registration_dir = Path(registration_dir) if registration_dir else None
        self.registrar: registration.RegistrationServer | None = None
        self.core: Core | None = None
        self._server: Any = None

    @property
    def stats(self) -> CallStats:
        return self.core.stats if self.core is not None else CallStats()

    async def start(self) -> None:
        self.core = await Core.open(self.config)
        sock = Path(self.socket_path)
        await asyncio.to_thread(sock.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(sock.unlink, missing_ok=True)
        server = grpc.aio.server()
        csi_grpc.add_IdentityServicer_to_server(IdentityService(self.core), server)
        csi_grpc.add_ControllerServicer_to_server(ControllerService(self.core), server)
        csi_grpc.add_NodeServicer_to_server(NodeService(self.core), server)
        server.add_insecure_port(registration.listen_address(sock))
        await server.start()
        self._server = server
        log.info(
            "CSI driver %s serving on %s for node %s (block volumes: %s)",
            self.config.name,
            self.endpoint,
            self.config.node_id,
            "yes" if self.config.block else "no",
        )
        if self.registration_dir is not None:
            self.registrar = registration.RegistrationServer(
                self.registration_dir, self.config.name, str(sock)
            )
            await self.registrar.start()

    async def stop(self, grace: float = 1.0) -> None:
        if self.registrar is not None:
            await self.registrar.stop()
            self.registrar = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        with contextlib.suppress(OSError):
            await asyncio.to_thread(Path(self.socket_path).unlink, missing_ok=True)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
