"""kybern's image building and its containerd configuration, without processes: layers and
images are byte-for-byte reproducible (stable digests), manifests, configs and the layout index
are valid JSON with the OCI media types and consistent digests and sizes, the layout tarball has
the OCI layout shape, the static-binary check, and the containerd config, CNI and registry
hosts files parse as what containerd expects (TOML/JSON) with the facts these machines need."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
import tomllib
from pathlib import Path

import pytest

from kybern.cri import containerd
from kybern.images import busybox, oci, registry

# A minimal 64-bit little-endian ELF header with no program headers: "static".
FAKE_BUSYBOX = b"\x7fELF\x02\x01\x01" + bytes(57) + b"busybox" * 100


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_layers_and_images_are_reproducible() -> None:
    a_bb, a_pause = busybox.build_all(FAKE_BUSYBOX)
    b_bb, b_pause = busybox.build_all(FAKE_BUSYBOX)
    assert a_bb.digest == b_bb.digest and a_pause.digest == b_pause.digest
    assert a_bb.layers == b_bb.layers == a_pause.layers  # one shared layer
    assert oci.layout_tar([a_bb, a_pause]) == oci.layout_tar([b_bb, b_pause])
    other, _ = busybox.build_all(FAKE_BUSYBOX + b"!")
    assert other.digest != a_bb.digest


def test_manifest_and_config() -> None:
    bb, pause = busybox.build_all(FAKE_BUSYBOX, "example.test/bb:2", "example.test/pause:2")
    manifest = json.loads(bb.manifest.data)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == bb.manifest.media_type == oci.MEDIA_TYPE_MANIFEST
    assert manifest["config"] == {
        "mediaType": oci.MEDIA_TYPE_CONFIG,
        "digest": sha(bb.config.data),
        "size": len(bb.config.data),
    }
    [layer] = manifest["layers"]
    assert layer["mediaType"] == oci.MEDIA_TYPE_LAYER_GZIP
    assert layer["digest"] == sha(bb.layers[0].data) and layer["size"] == len(bb.layers[0].data)
    config = json.loads(bb.config.data)
    assert (config["os"], config["architecture"]) == ("linux", oci.go_arch(platform.machine()))
    raw = gzip.decompress(bb.layers[0].data)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha(raw)]}
    assert config["config"]["Cmd"] == ["sh"] and "Entrypoint" not in config["config"]
    assert config["config"]["Env"][0].startswith("PATH=")
    pause_config = json.loads(pause.config.data)["config"]
    assert pause_config["Entrypoint"][:2] == ["/bin/sh", "-c"]
    assert "trap" in pause_config["Entrypoint"][2] and pause_config["StopSignal"] == "SIGTERM"
    assert bb.config_digest == sha(bb.config.data) and bb.digest == sha(bb.manifest.data)


def test_layer_contents() -> None:
    bb, _ = busybox.build_all(FAKE_BUSYBOX)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bb.layers[0].data))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("bin/busybox").read() == FAKE_BUSYBOX  # type: ignore[union-attr]
        assert b"root:x:0:0" in tar.extractfile("etc/passwd").read()  # type: ignore[union-attr]
    for applet in ("sh", "httpd", "sleep", "echo", "cat", "ls", "wget", "nc", "true", "false"):
        assert members[f"bin/{applet}"].issym() and members[f"bin/{applet}"].linkname == "busybox"
    assert members["bin/busybox"].mode == 0o755 and members["tmp"].mode == 0o1777
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    names = list(members)
    assert names.index("bin") < names.index("bin/busybox")  # parents first


def test_layout_tarball() -> None:
    bb, pause = busybox.build_all(FAKE_BUSYBOX)
    with tarfile.open(fileobj=io.BytesIO(oci.layout_tar([bb, pause]))) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["mediaType"] == oci.MEDIA_TYPE_INDEX and index["schemaVersion"] == 2
    names = [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]
    assert names == [busybox.BUSYBOX_IMAGE, busybox.PAUSE_IMAGE]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "1",
        "1",
    ]
    blobs = {n.removeprefix("blobs/sha256/"): d for n, d in files.items() if n.startswith("blobs/")}
    for blob in bb.blobs() + pause.blobs():
        assert blobs[blob.digest.removeprefix("sha256:")] == blob.data
    assert len(blobs) == 5  # the shared layer is stored once
    for desc in index["manifests"]:
        assert sha(blobs[desc["digest"].removeprefix("sha256:")]) == desc["digest"]


def test_static_binary_check(tmp_path: Path) -> None:
    assert busybox.is_static_elf(FAKE_BUSYBOX)
    dynamic = bytearray(FAKE_BUSYBOX[:64] + bytes(56))
    dynamic[32:40] = (64).to_bytes(8, "little")  # e_phoff
    dynamic[54:56] = (56).to_bytes(2, "little")  # e_phentsize
    dynamic[56:58] = (1).to_bytes(2, "little")  # e_phnum
    dynamic[64:68] = (3).to_bytes(4, "little")  # PT_INTERP
    assert not busybox.is_static_elf(bytes(dynamic))
    assert not busybox.is_static_elf(b"#!/bin/sh\n")
    (tmp_path / "dyn").write_bytes(bytes(dynamic))
    with pytest.raises(busybox.BusyboxError, match="busybox-static"):
        busybox.read_busybox(tmp_path / "dyn")
    with pytest.raises(busybox.BusyboxError, match="apt-get install busybox-static"):
        busybox.read_busybox(tmp_path / "absent")


def test_go_arch() -> None:
    assert oci.go_arch("x86_64") == "amd64" and oci.go_arch("aarch64") == "arm64"


def test_containerd_config(tmp_path: Path) -> None:
    cfg = containerd.ContainerdConfig(tmp_path, sandbox_image="kybern.local/pause:1")
    doc = tomllib.loads(containerd.render_config(cfg))
    assert doc["version"] == 2
    assert doc["root"] == str(tmp_path / "root") and doc["state"] == str(tmp_path / "state")
    assert doc["grpc"]["address"] == str(tmp_path / "containerd.sock")
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "kybern.local/pause:1"
    assert cri["stream_server_address"] == "127.0.0.1"
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    assert cri["cni"]["conf_dir"] == str(tmp_path / "cni" / "net.d")
    assert cri["registry"]["config_path"] == str(tmp_path / "certs.d")
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["Root"].startswith(str(tmp_path))
    assert doc["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(tmp_path))
    assert cfg.endpoint == f"unix://{tmp_path}/containerd.sock"


def test_default_sandbox_image_is_kyberns_pause() -> None:
    assert containerd.DEFAULT_SANDBOX_IMAGE == busybox.PAUSE_IMAGE


def test_cni_and_registry_hosts_files() -> None:
    conf = json.loads(containerd.loopback_conflist())
    assert conf["cniVersion"] == "1.0.0" and conf["plugins"] == [{"type": "loopback"}]
    hosts = tomllib.loads(containerd.hosts_toml("http://127.0.0.1:5000"))
    assert hosts["server"] == "http://127.0.0.1:5000"
    assert hosts["host"]["http://127.0.0.1:5000"]["capabilities"] == ["pull", "resolve"]
    reg = registry.registry_config(Path("/tmp/r"))
    assert "addr: 127.0.0.1:0" in reg and "rootdirectory: /tmp/r" in reg


def test_shim_socket() -> None:
    sock = containerd.shim_socket(Path("/tmp/k/containerd.sock"), "k8s.io", "abc")
    digest = hashlib.sha256(b"/tmp/k/containerd.sock/k8s.io/abc").hexdigest()
    assert sock == Path("/run/containerd/s") / digest


def test_mounts_below() -> None:
    info = "\n".join(
        [
            "22 1 8:0 / / rw - ext4 /dev/vda rw",
            "90 22 0:50 / /tmp/k/root/snap/1/fs rw - overlay overlay rw",
            "91 22 0:51 / /tmp/k/state/sandboxes/x/shm rw - tmpfs shm rw",
            "92 91 0:52 / /tmp/k/state/sandboxes/x/shm/in\\040space rw - tmpfs t rw",
            "93 22 0:53 / /tmp/kother rw - tmpfs t rw",
        ]
    )
    assert containerd.mounts_below(Path("/tmp/k"), info) == [
        "/tmp/k/state/sandboxes/x/shm/in space",
        "/tmp/k/root/snap/1/fs",
        "/tmp/k/state/sandboxes/x/shm",
    ]
