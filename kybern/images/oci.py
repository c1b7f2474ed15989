"""OCI images built from files, byte for byte reproducible: a layer is a tar archive with fixed
owners and modification times, gzip-compressed without a name or timestamp; the image config and
manifest are canonical JSON (sorted keys, no spaces). `Image` holds the blobs and renders an OCI
image layout tarball (`oci-layout`, `index.json`, `blobs/sha256/...`) that `ctr images import`
loads, or hands its blobs to the Distribution v2 push client (`kybern.images.registry`). Pure
computation: callers on an event loop run `build_*`/`layout_tar` in a thread."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_VERSION = "1.0.0"
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def digest(data: bytes) -> str:
    """The OCI content digest of `data` (`sha256:<hex>`)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One member of a layer: a regular file (`data`), a directory (`data` None, no `target`) or a
    symbolic link (`target`)."""

    path: str
    mode: int = 0o755
    data: bytes | None = None
    target: str | None = None
    uid: int = 0
    gid: int = 0

    @staticmethod
    def file(path: str, data: bytes, mode: int = 0o644) -> Entry:
        return Entry(path, mode, data=data)

    @staticmethod
    def dir(path: str, mode: int = 0o755) -> Entry:
        return Entry(path, mode)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, 0o777, target=target)


@dataclasses.dataclass(frozen=True)
class Blob:
    """Content-addressed bytes with the media type a descriptor of them carries."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if annotations:
            out["annotations"] = dict(annotations)
        return out


@dataclasses.dataclass(frozen=True)
class Layer:
    """A gzip layer blob and the digest of its uncompressed tar (the config's `diff_id`)."""

    blob: Blob
    diff_id: str


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    """A deterministic tar archive (PAX format) of `entries`: sorted by path, parents first, every
    mtime 0, numeric owners only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path.strip("/").split("/")):
            info = tarfile.TarInfo(entry.path.strip("/"))
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            info.mtime = 0
            if entry.target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                tar.addfile(info)
            elif entry.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buf.getvalue()


def build_layer(entries: Iterable[Entry]) -> Layer:
    """Tar and gzip `entries` (gzip header without name and with mtime 0, level 9)."""
    raw = tar_bytes(entries)
    compressed = gzip.compress(raw, compresslevel=9, mtime=0)
    return Layer(Blob(MEDIA_TYPE_LAYER_GZIP, compressed), digest(raw))


@dataclasses.dataclass(frozen=True)
class Image:
    """A single-platform OCI image: its manifest, config and layer blobs. `name` is the full
    reference it is known by (e.g. `kybern.local/busybox:1`)."""

    name: str
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        """The manifest digest: the image's identity in registries and `repo_digests`."""
        return self.manifest.digest

    @property
    def config_digest(self) -> str:
        """The config digest: the image id containerd reports in CRI (`Image.id`)."""
        return self.config.digest

    def blobs(self) -> list[Blob]:
        """Every blob, layers first and the manifest last (the order a registry push needs)."""
        return [*self.layers, self.config, self.manifest]

    def index(self) -> Blob:
        """The `index.json` of an OCI layout holding just this image under its name."""
        tag = self.name.rsplit(":", 1)[1] if ":" in self.name.rsplit("/", 1)[-1] else "latest"
        annotations = {ANNOTATION_CONTAINERD_NAME: self.name, ANNOTATION_REF_NAME: tag}
        body = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [self.manifest.descriptor(annotations)],
        }
        return Blob(MEDIA_TYPE_INDEX, canonical_json(body))

    def layout_tar(self) -> bytes:
        """The OCI image layout of this image as a tar archive (what `ctr images import` reads)."""
        return layout_tar([self])


def layout_tar(images: Sequence[Image]) -> bytes:
    """One OCI layout tarball holding several images (blobs shared between them stored once)."""
    entries: dict[str, Entry] = {
        "oci-layout": Entry.file(
            "oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
        ),
        "blobs": Entry.dir("blobs"),
        "blobs/sha256": Entry.dir("blobs/sha256"),
    }
    manifests: list[dict[str, Any]] = []
    for image in images:
        for blob in image.blobs():
            path = "blobs/sha256/" + blob.digest.split(":", 1)[1]
            entries[path] = Entry.file(path, blob.data)
        manifests.extend(json.loads(image.index().data)["manifests"])
    index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": manifests}
    entries["index.json"] = Entry.file("index.json", canonical_json(index))
    return tar_bytes(entries.values())


def build_image(
    name: str,
    layers: Sequence[Layer],
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] = (f"PATH={DEFAULT_PATH}",),
    working_dir: str = "/",
    user: str = "",
    labels: Mapping[str, str] | None = None,
    stop_signal: str = "",
    architecture: str = "amd64",
    os: str = "linux",
) -> Image:
    """Assemble the config and manifest of an image made of `layers` (bottom first)."""
    run_config: dict[str, Any] = {"Env": list(env), "WorkingDir": working_dir}
    if entrypoint is not None:
        run_config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        run_config["Cmd"] = list(cmd)
    if user:
        run_config["User"] = user
    if labels:
        run_config["Labels"] = dict(labels)
    if stop_signal:
        run_config["StopSignal"] = stop_signal
    config = {
        "created": EPOCH,
        "architecture": architecture,
        "os": os,
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": EPOCH, "created_by": "kybern.images"} for _ in layers],
    }
    config_blob = Blob(MEDIA_TYPE_CONFIG, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.blob.descriptor() for layer in layers],
    }
    return Image(
        name=name,
        manifest=Blob(MEDIA_TYPE_MANIFEST, canonical_json(manifest)),
        config=config_blob,
        layers=tuple(layer.blob for layer in layers),
    )


def go_arch(machine: str) -> str:
    """The OCI `architecture` for a `platform.machine()`/`uname -m` value."""
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
        "i686": "386",
        "i386": "386",
    }.get(machine, machine)
