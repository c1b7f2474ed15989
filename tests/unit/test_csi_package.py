"""The shape of the CSI work: `kybern.csi` exports, stays free of server code, keeps its
generated stubs in step with both protos; every hand-written CSI module (protocol package,
hostpath driver, sidecars, controllers, scheduler plugin, command) has a one-paragraph docstring
and fewer than 600 lines; every RPC sits under its service; and wire facts of `csi.v1` and
`pluginregistration` — field numbers, enum values, secret markers, method paths — are pinned so
an edit of a proto cannot change them unnoticed."""

from __future__ import annotations

import ast
import hashlib
import pkgutil
from pathlib import Path

import pytest

import kybern.csi
from kybern.csi import METHODS, csi
from kybern.csi.gen import PROTO_SHA256, pluginregistration_pb2

ROOT = Path(kybern.csi.__file__).parents[1]
CSI = ROOT / "csi"
FORBIDDEN = ("kybern.apiserver", "kybern.client", "kybern.storage", "kybern.controllers")
FORBIDDEN += ("kybern.cli", "kybern.api", "kybern.scheduler", "kybern.simnodes", "kybern.agent")
FORBIDDEN += ("kybern.csi_sidecars",)


def hand_written() -> list[Path]:
    files = [*CSI.glob("*.py"), *(CSI / "hostpath").glob("*.py")]
    files += [*(ROOT / "csi_sidecars").glob("*.py"), ROOT / "cli" / "csi.py"]
    files += [ROOT / "controllers" / n for n in ("persistentvolume.py", "persistentvolume_util.py")]
    files += [ROOT / "controllers" / n for n in ("attachdetach.py", "pvcprotection.py")]
    files += [ROOT / "scheduler" / "plugins" / "volumebinding.py"]
    return sorted(files)


def test_exported_members() -> None:
    exported = set(kybern.csi.__all__)
    public = {n for n in vars(kybern.csi) if not n.startswith("_")}
    modules = {m.name for m in pkgutil.iter_modules([str(CSI)])}
    assert exported == public - (modules - exported)
    assert all(getattr(kybern.csi, n) is not None for n in exported)


@pytest.mark.parametrize("path", hand_written(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_shape(path: Path) -> None:
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc and "\n\n" not in doc, "one-paragraph module docstring"
    assert len(path.read_text().splitlines()) < 600
    if CSI not in path.parents:
        return
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_generated_stubs_match_the_protos() -> None:
    for name, sha in PROTO_SHA256.items():
        proto = CSI / "proto" / name
        assert hashlib.sha256(proto.read_bytes()).hexdigest() == sha, (
            f"kybern/csi/proto/{name} changed: run .venv/bin/python scripts/gen_csi.py"
        )


IDENTITY = "GetPluginInfo GetPluginCapabilities Probe".split()
CONTROLLER = """CreateVolume DeleteVolume ControllerPublishVolume ControllerUnpublishVolume
ValidateVolumeCapabilities ListVolumes GetCapacity ControllerGetCapabilities CreateSnapshot
DeleteSnapshot ListSnapshots ControllerExpandVolume ControllerGetVolume
ControllerModifyVolume""".split()
GROUP = """GroupControllerGetCapabilities CreateVolumeGroupSnapshot DeleteVolumeGroupSnapshot
GetVolumeGroupSnapshot""".split()
NODE = """NodeStageVolume NodeUnstageVolume NodePublishVolume NodeUnpublishVolume
NodeGetVolumeStats NodeExpandVolume NodeGetCapabilities NodeGetInfo""".split()


def test_every_rpc_is_served_by_its_service() -> None:
    for service, names in (
        ("Identity", IDENTITY),
        ("Controller", CONTROLLER),
        ("GroupController", GROUP),
        ("Node", NODE),
    ):
        for name in names:
            assert METHODS[name].service == service, name
    assert set(METHODS) == {*IDENTITY, *CONTROLLER, *GROUP, *NODE}
    assert METHODS["NodeStageVolume"].path == "/csi.v1.Node/NodeStageVolume"
    reg = pluginregistration_pb2.DESCRIPTOR
    assert reg.package == "pluginregistration"
    methods = [m.full_name for m in reg.services_by_name["Registration"].methods]
    assert methods == [
        "pluginregistration.Registration.GetInfo",
        "pluginregistration.Registration.NotifyRegistrationStatus",
    ]


def _numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def test_field_numbers() -> None:
    assert csi.DESCRIPTOR.package == "csi.v1"
    assert _numbers(csi.CreateVolumeRequest) == {
        "name": 1,
        "capacity_range": 2,
        "volume_capabilities": 3,
        "parameters": 4,
        "secrets": 5,
        "volume_content_source": 6,
        "accessibility_requirements": 7,
        "mutable_parameters": 8,
    }
    assert _numbers(csi.NodePublishVolumeRequest) == {
        "volume_id": 1,
        "publish_context": 2,
        "staging_target_path": 3,
        "target_path": 4,
        "volume_capability": 5,
        "readonly": 6,
        "secrets": 7,
        "volume_context": 8,
    }
    assert _numbers(csi.NodeStageVolumeRequest)["volume_context"] == 6
    assert _numbers(csi.ControllerPublishVolumeRequest) == {
        "volume_id": 1,
        "node_id": 2,
        "volume_capability": 3,
        "readonly": 4,
        "secrets": 5,
        "volume_context": 6,
    }
    assert _numbers(csi.Volume)["accessible_topology"] == 5
    assert _numbers(csi.NodeExpandVolumeRequest)["staging_target_path"] == 4
    assert _numbers(csi.NodeGetInfoResponse) == {
        "node_id": 1,
        "max_volumes_per_node": 2,
        "accessible_topology": 3,
    }
    assert _numbers(csi.Snapshot)["group_snapshot_id"] == 6
    assert _numbers(csi.VolumeCapability.MountVolume)["volume_mount_group"] == 3
    assert _numbers(pluginregistration_pb2.PluginInfo) == {
        "type": 1,
        "name": 2,
        "endpoint": 3,
        "supported_versions": 4,
    }


def test_enum_values_and_markers() -> None:
    rpc = csi.ControllerServiceCapability.RPC.Type
    assert (rpc.EXPAND_VOLUME, rpc.SINGLE_NODE_MULTI_WRITER, rpc.MODIFY_VOLUME) == (9, 13, 14)
    node = csi.NodeServiceCapability.RPC.Type
    assert (node.STAGE_UNSTAGE_VOLUME, node.VOLUME_MOUNT_GROUP) == (1, 6)
    mode = csi.VolumeCapability.AccessMode.Mode
    assert (mode.SINGLE_NODE_SINGLE_WRITER, mode.SINGLE_NODE_MULTI_WRITER) == (6, 7)
    svc = csi.PluginCapability.Service.Type
    assert svc.GROUP_CONTROLLER_SERVICE == 3
    secret = csi.DESCRIPTOR.extensions_by_name["csi_secret"]
    assert secret.number == 1059
    for message in (csi.CreateVolumeRequest, csi.NodeStageVolumeRequest, csi.DeleteSnapshotRequest):
        opts = message.DESCRIPTOR.fields_by_name["secrets"].GetOptions()
        assert opts.Extensions[secret] is True
