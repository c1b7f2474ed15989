"""Pure parts of `kybern.csi`: capability discovery results, access-mode mapping and capability
building, topology terms, error mapping (codes, classes, finality), endpoints, mountinfo parsing,
the CSINode and Node edits the publisher makes, volume sources from PVs and inline volumes, the
plugin registration checks, and the hostpath driver's size, paging and quantity rules."""

from __future__ import annotations

import grpc
import pytest

from kybern.csi import csi, drivers, errors, mount, registration, spec
from kybern.csi.client import parse_endpoint
from kybern.csi.gen import pluginregistration_pb2 as reg
from kybern.csi.hostpath.base import Config, RPCError
from kybern.csi.hostpath.controller import fits, page, requested_size
from kybern.csi.hostpath.node import size_attribute
from kybern.csi.volumes import VolumeSource, inline_handle, source_from_inline, source_from_pv

Mode = csi.VolumeCapability.AccessMode.Mode


def test_capabilities_from_responses() -> None:
    plugin = csi.GetPluginCapabilitiesResponse()
    plugin.capabilities.add().service.type = csi.PluginCapability.Service.CONTROLLER_SERVICE
    plugin.capabilities.add().volume_expansion.type = csi.PluginCapability.VolumeExpansion.ONLINE
    ctrl = csi.ControllerGetCapabilitiesResponse()
    ctrl.capabilities.add().rpc.type = csi.ControllerServiceCapability.RPC.EXPAND_VOLUME
    node = csi.NodeGetCapabilitiesResponse()
    node.capabilities.add().rpc.type = csi.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME
    info = csi.GetPluginInfoResponse(name="d.example.com", vendor_version="1")
    caps = spec.Capabilities.from_responses(info, plugin, ctrl, node)
    assert caps.name == "d.example.com" and caps.controller_service and not caps.topology
    assert caps.controller("EXPAND_VOLUME") and not caps.controller("CREATE_DELETE_VOLUME")
    assert caps.node("STAGE_UNSTAGE_VOLUME") and caps.expansion == {"ONLINE"}
    bare = spec.Capabilities.from_responses(info, csi.GetPluginCapabilitiesResponse(), ctrl)
    assert not bare.controller("EXPAND_VOLUME")  # no CONTROLLER_SERVICE: no controller RPCs


def test_access_modes() -> None:
    assert spec.access_mode("ReadWriteOnce") == Mode.SINGLE_NODE_WRITER
    assert spec.access_mode("ReadWriteOnce", multi_writer=True) == Mode.SINGLE_NODE_MULTI_WRITER
    assert spec.access_mode("ReadWriteOncePod") == Mode.SINGLE_NODE_WRITER
    assert spec.access_mode("ReadWriteOncePod", multi_writer=True) == Mode.SINGLE_NODE_SINGLE_WRITER
    assert spec.access_mode("ReadOnlyMany") == Mode.MULTI_NODE_READER_ONLY
    assert spec.access_mode("ReadWriteMany") == Mode.MULTI_NODE_MULTI_WRITER
    with pytest.raises(ValueError):
        spec.access_mode("Sometimes")


def test_volume_capability() -> None:
    cap = spec.volume_capability("ReadWriteMany", fs_type="ext4", mount_flags=["noatime"])
    assert cap.WhichOneof("access_type") == "mount"
    assert (cap.mount.fs_type, list(cap.mount.mount_flags)) == ("ext4", ["noatime"])
    assert spec.capability_summary(cap) == (
        "mount",
        "ext4",
        ("noatime",),
        Mode.MULTI_NODE_MULTI_WRITER,
    )
    block = spec.volume_capability("ReadWriteOnce", block=True)
    assert block.HasField("block") and spec.capability_summary(block)[0] == "block"


def test_topology() -> None:
    terms = spec.topology_terms([{"zone": "a", "rack": "1"}, {"zone": "b"}])
    assert terms == [
        {
            "matchExpressions": [
                {"key": "rack", "operator": "In", "values": ["1"]},
                {"key": "zone", "operator": "In", "values": ["a"]},
            ]
        },
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
    ]
    assert spec.node_topology({"zone": "a", "x": "y"}, ["zone"]) == {"zone": "a"}
    assert spec.node_topology({"x": "y"}, ["zone"]) is None


def test_errors() -> None:
    e = errors.from_status(
        grpc.StatusCode.NOT_FOUND,
        "gone",
        endpoint="unix:///s",
        method="/csi.v1.Node/NodeStageVolume",
    )
    assert isinstance(e, errors.NotFoundError) and e.final and "NodeStageVolume" in e.message
    absent = errors.from_status(
        grpc.StatusCode.UNAVAILABLE, "", endpoint="unix:///s", method="/x/Y", socket_exists=False
    )
    assert isinstance(absent, errors.DriverUnavailableError) and not absent.final
    assert "no CSI driver at unix:///s" in absent.message
    for code in ("DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"):
        assert not errors.from_status(grpc.StatusCode[code], "", endpoint="", method="").final
    odd = errors.from_status(grpc.StatusCode.INTERNAL, "boom", endpoint="", method="/a/B")
    assert type(odd) is errors.CSIError and odd.final


def test_endpoints() -> None:
    assert parse_endpoint("unix:///run/csi.sock") == ("unix:///run/csi.sock", "/run/csi.sock")
    assert parse_endpoint("/run/csi.sock") == ("unix:///run/csi.sock", "/run/csi.sock")
    for bad in ("tcp://x:1", "unix://relative"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_mountinfo() -> None:
    text = (
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n"
        "37 35 98:0 /vols/a /pods/p/mount ro,relatime - ext4 /dev/vda rw\n"
    )
    first, second = mount.parse_mountinfo(text)
    assert first.mount_point == "/mnt/with space" and first.fstype == "ext3"
    assert second.root == "/vols/a" and second.read_only and second.device == "98:0"


def test_csinode_edits() -> None:
    node = {"metadata": {"name": "n1", "uid": "u1", "labels": {"a": "b"}}}
    fresh = drivers.csinode_with_driver(None, node, "d1", "id-1", ["zone"], 10)
    assert fresh["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1"}
    ]
    assert fresh["spec"]["drivers"] == [
        {"name": "d1", "nodeID": "id-1", "topologyKeys": ["zone"], "allocatable": {"count": 10}}
    ]
    two = drivers.csinode_with_driver(fresh, node, "d2", "id-2", [], 0)
    assert [d["name"] for d in two["spec"]["drivers"]] == ["d1", "d2"]
    assert "allocatable" not in two["spec"]["drivers"][1]
    again = drivers.csinode_with_driver(two, node, "d1", "id-9", ["zone"], 10)
    assert [d["nodeID"] for d in again["spec"]["drivers"]] == ["id-2", "id-9"]
    assert drivers.csinode_without_driver(again, "d2")["spec"]["drivers"][0]["name"] == "d1"
    labelled = drivers.node_with_driver(node, "d1", "id-1", {"zone": "z"})
    assert labelled["metadata"]["labels"] == {"a": "b", "zone": "z"}
    assert labelled["metadata"]["annotations"][drivers.NODE_ID_ANNOTATION] == '{"d1":"id-1"}'
    assert node["metadata"].get("annotations") is None  # the input is not modified
    gone = drivers.node_without_driver(labelled, "d1")
    assert drivers.NODE_ID_ANNOTATION not in gone["metadata"]["annotations"]


def test_sources() -> None:
    pv = {
        "metadata": {"name": "pv1"},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "volumeMode": "Block",
            "mountOptions": ["ro"],
            "csi": {
                "driver": "d",
                "volumeHandle": "h",
                "fsType": "xfs",
                "readOnly": True,
                "volumeAttributes": {"k": "v"},
            },
        },
    }
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}
    src = source_from_pv(
        pv,
        publish_context={"dev": "/x"},
        pod=pod,
        pod_info_on_mount=True,
        secrets={"nodeStageSecretRef": {"user": "a"}},
    )
    assert (src.driver, src.volume_handle, src.name, src.block, src.read_only) == (
        "d",
        "h",
        "pv1",
        True,
        True,
    )
    assert src.access_mode == "ReadOnlyMany" and src.mount_flags == ("ro",)
    assert src.volume_context[spec.POD_NAME] == "p" and src.volume_context["k"] == "v"
    assert src.stage_secrets == {"user": "a"}
    back = VolumeSource.from_json(src.to_json())
    assert back.stage_secrets == {} and back.volume_handle == "h" and back.mount_flags == ("ro",)
    with pytest.raises(ValueError):
        source_from_pv({"metadata": {"name": "x"}, "spec": {"hostPath": {}}})
    inline = source_from_inline(pod, {"name": "scratch", "csi": {"driver": "d"}})
    assert inline.ephemeral and inline.volume_handle == inline_handle("u", "scratch")
    assert inline.volume_context[spec.EPHEMERAL_CONTEXT] == "true"
    assert inline.volume_handle.startswith("csi-") and len(inline.volume_handle) == 68


def test_registration_validation() -> None:
    ok = reg.PluginInfo(type="CSIPlugin", name="d", endpoint="/s", supported_versions=["1.0.0"])
    assert registration.validate(ok) == ""
    assert "type" in registration.validate(reg.PluginInfo(type="DevicePlugin", name="d"))
    old = reg.PluginInfo(type="CSIPlugin", name="d", supported_versions=["0.3.0"])
    assert "1.x" in registration.validate(old)
    assert registration.socket_name("d.example.com") == "d.example.com-reg.sock"


def test_hostpath_sizes_and_pages(tmp_path: object) -> None:
    cfg = Config(
        data_dir=tmp_path, node_id="n", block=False, default_size=100, max_volume_size=1000
    )  # type: ignore[arg-type]
    assert requested_size(csi.CapacityRange(), cfg) == (100, 0)
    assert requested_size(csi.CapacityRange(limit_bytes=50), cfg) == (50, 50)
    assert requested_size(csi.CapacityRange(required_bytes=300, limit_bytes=400), cfg) == (300, 400)
    for bad in (
        csi.CapacityRange(required_bytes=2000),
        csi.CapacityRange(required_bytes=5, limit_bytes=4),
    ):
        with pytest.raises(RPCError) as info:
            requested_size(bad, cfg)
        assert info.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert fits(100, csi.CapacityRange(required_bytes=50, limit_bytes=100))
    assert not fits(100, csi.CapacityRange(limit_bytes=90))
    keys = ["a", "b", "c"]
    assert page(keys, 2, "") == (["a", "b"], "2")
    assert page(keys, 2, "2") == (["c"], "")
    assert page(keys, 0, "") == (keys, "")
    for token in ("x", "9", "-1"):
        with pytest.raises(RPCError) as info:
            page(keys, 1, token)
        assert info.value.code == grpc.StatusCode.ABORTED
    assert size_attribute("2Mi", 1) == 2 << 20 and size_attribute("", 7) == 7
    assert size_attribute("1G", 0) == 10**9
    with pytest.raises(RPCError):
        size_attribute("lots", 0)
