"""CSI spec types an orchestrator reasons with, free of I/O: `Capabilities` (what
`GetPluginInfo`, `GetPluginCapabilities`, `ControllerGetCapabilities` and `NodeGetCapabilities`
reported, asked by name: `caps.controller("EXPAND_VOLUME")`), the mapping of Kubernetes access
modes and volume modes to a `VolumeCapability` (as the external provisioner and the kubelet build
it, honouring `SINGLE_NODE_MULTI_WRITER`), topology segments to and from Kubernetes node
selector terms, and the well-known volume-context keys the kubelet passes to drivers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kybern.csi.gen import csi_pb2 as csi

SUPPORTED_VERSIONS = ("1.0.0",)  # what the kubelet's CSI plugin accepts at registration
EPHEMERAL_CONTEXT = "csi.storage.k8s.io/ephemeral"
POD_NAME = "csi.storage.k8s.io/pod.name"
POD_NAMESPACE = "csi.storage.k8s.io/pod.namespace"
POD_UID = "csi.storage.k8s.io/pod.uid"
SERVICE_ACCOUNT = "csi.storage.k8s.io/serviceAccount.name"
Mode = csi.VolumeCapability.AccessMode


def _names(enum: Any, values: Iterable[int]) -> frozenset[str]:
    return frozenset(enum.Name(v) for v in values if v in enum.values())


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """A driver's identity and capabilities. Capability sets hold enum names
    (`"STAGE_UNSTAGE_VOLUME"`)."""

    name: str
    vendor_version: str = ""
    plugin: frozenset[str] = frozenset()  # PluginCapability.Service types
    expansion: frozenset[str] = frozenset()  # PluginCapability.VolumeExpansion types
    controller_rpcs: frozenset[str] = frozenset()
    node_rpcs: frozenset[str] = frozenset()

    @classmethod
    def from_responses(
        cls,
        info: csi.GetPluginInfoResponse,
        plugin: csi.GetPluginCapabilitiesResponse,
        controller: csi.ControllerGetCapabilitiesResponse | None = None,
        node: csi.NodeGetCapabilitiesResponse | None = None,
    ) -> Capabilities:
        services = [c.service.type for c in plugin.capabilities if c.HasField("service")]
        expansion = [
            c.volume_expansion.type for c in plugin.capabilities if c.HasField("volume_expansion")
        ]
        ctrl = [c.rpc.type for c in (controller.capabilities if controller else ())]
        nd = [c.rpc.type for c in (node.capabilities if node else ())]
        return cls(
            name=info.name,
            vendor_version=info.vendor_version,
            plugin=_names(csi.PluginCapability.Service.Type, services),
            expansion=_names(csi.PluginCapability.VolumeExpansion.Type, expansion),
            controller_rpcs=_names(csi.ControllerServiceCapability.RPC.Type, ctrl),
            node_rpcs=_names(csi.NodeServiceCapability.RPC.Type, nd),
        )

    @property
    def controller_service(self) -> bool:
        return "CONTROLLER_SERVICE" in self.plugin

    @property
    def topology(self) -> bool:
        return "VOLUME_ACCESSIBILITY_CONSTRAINTS" in self.plugin

    def controller(self, rpc: str) -> bool:
        return self.controller_service and rpc in self.controller_rpcs

    def node(self, rpc: str) -> bool:
        return rpc in self.node_rpcs


def access_mode(k8s_mode: str, *, multi_writer: bool = False) -> int:
    """The CSI access mode of a Kubernetes access mode (`ReadWriteOnce`, `ReadOnlyMany`,
    `ReadWriteMany`, `ReadWriteOncePod`); `multi_writer`: the driver has SINGLE_NODE_MULTI_WRITER.
    Raises ValueError for anything else."""
    modes = {
        "ReadWriteOnce": Mode.SINGLE_NODE_MULTI_WRITER if multi_writer else Mode.SINGLE_NODE_WRITER,
        "ReadOnlyMany": Mode.MULTI_NODE_READER_ONLY,
        "ReadWriteMany": Mode.MULTI_NODE_MULTI_WRITER,
        "ReadWriteOncePod": (
            Mode.SINGLE_NODE_SINGLE_WRITER if multi_writer else Mode.SINGLE_NODE_WRITER
        ),
    }
    if k8s_mode not in modes:
        raise ValueError(f"unknown access mode {k8s_mode!r}")
    return int(modes[k8s_mode])


def volume_capability(
    k8s_mode: str,
    *,
    block: bool = False,
    fs_type: str = "",
    mount_flags: Sequence[str] = (),
    mount_group: str = "",
    multi_writer: bool = False,
) -> csi.VolumeCapability:
    """One VolumeCapability: block access, or a mount with filesystem type and flags."""
    cap = csi.VolumeCapability()
    mode: Any = cap.access_mode
    mode.mode = access_mode(k8s_mode, multi_writer=multi_writer)
    if block:
        cap.block.SetInParent()
    else:
        cap.mount.fs_type = fs_type
        cap.mount.mount_flags.extend(mount_flags)
        cap.mount.volume_mount_group = mount_group
    return cap


def capability_summary(cap: csi.VolumeCapability) -> tuple[str, str, tuple[str, ...], int]:
    """(access type, fs type, mount flags, mode): what makes two capabilities compatible."""
    if cap.HasField("block"):
        return ("block", "", (), cap.access_mode.mode)
    return ("mount", cap.mount.fs_type, tuple(cap.mount.mount_flags), cap.access_mode.mode)


def topology_terms(topologies: Iterable[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Kubernetes `nodeSelectorTerms` for a volume's accessible topologies: one term per
    topology (ORed), one `In` expression per segment (ANDed)."""
    terms = []
    for segments in topologies:
        exprs = [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(segments.items())]
        if exprs:
            terms.append({"matchExpressions": exprs})
    return terms


def node_topology(labels: Mapping[str, str], keys: Iterable[str]) -> dict[str, str] | None:
    """A node's topology segment for a driver's topology keys (None: a key is missing)."""
    out = {}
    for k in keys:
        if k not in labels:
            return None
        out[k] = labels[k]
    return out
