"""The on-disk result cache: one JSON file per attachment (network, container id, interface)
under `<cache dir>/results/<network>-<container id>-<ifname>`, in libcni's `cniCacheV1` format, so
that DEL and CHECK get what ADD returned even after a restart (and cnitool, containerd and kybern
can read each other's entries). An entry without a result records an ADD that failed half-way:
DEL still finds its netns and arguments, and GC still sees the attachment. Writes are atomic
(temporary file, fsync unless turned off, rename). All methods are blocking; `Runtime` calls
them in a thread."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

KIND = "cniCacheV1"
DEFAULT_CACHE_DIR = "/var/lib/cni"


@dataclasses.dataclass(frozen=True)
class CachedAttachment:
    network: str
    container_id: str
    ifname: str
    netns: str = ""
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config: bytes = b""  # the network configuration list the attachment was made with
    result: Mapping[str, Any] | None = None  # the ADD result as JSON; None if ADD failed


def encode(entry: CachedAttachment) -> bytes:
    obj: dict[str, Any] = {
        "kind": KIND,
        "containerId": entry.container_id,
        "config": base64.b64encode(entry.config).decode(),
        "ifName": entry.ifname,
        "networkName": entry.network,
    }
    if entry.netns:
        obj["netns"] = entry.netns
    if entry.cni_args:
        obj["cniArgs"] = [list(p) for p in entry.cni_args]
    if entry.capability_args:
        obj["capabilityArgs"] = dict(entry.capability_args)
    if entry.result is not None:
        obj["result"] = dict(entry.result)
    return orjson.dumps(obj)


def decode(
    data: bytes, *, network: str = "", container_id: str = "", ifname: str = ""
) -> CachedAttachment:
    """A cache file's content. Files written before `cniCacheV1` hold just the result; the
    identifying fields then come from the arguments. Raises ValueError on garbage."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"cache entry is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError("cache entry is not a JSON object")
    if obj.get("kind") != KIND:
        if "cniVersion" in obj:  # legacy: the bare result
            return CachedAttachment(network, container_id, ifname, result=obj)
        raise ValueError(f"unknown cache entry kind {obj.get('kind')!r}")
    args = obj.get("cniArgs") or []
    if not isinstance(args, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in args
    ):
        raise ValueError("cache entry cniArgs must be a list of [key, value] pairs")
    caps = obj.get("capabilityArgs") or {}
    result = obj.get("result")
    if not isinstance(caps, dict) or not (result is None or isinstance(result, dict)):
        raise ValueError("cache entry capabilityArgs/result must be objects")
    raw_config = obj.get("config") or ""
    try:
        config = base64.b64decode(raw_config) if isinstance(raw_config, str) else b""
    except ValueError:
        config = b""
    fields = {k: obj.get(k) for k in ("networkName", "containerId", "ifName", "netns")}
    if not all(isinstance(v, str | None) for v in fields.values()):
        raise ValueError("cache entry names must be strings")
    return CachedAttachment(
        network=fields["networkName"] or network,
        container_id=fields["containerId"] or container_id,
        ifname=fields["ifName"] or ifname,
        netns=fields["netns"] or "",
        cni_args=tuple((p[0], p[1]) for p in args),
        capability_args=caps,
        config=config,
        result=result,
    )


class ResultCache:
    """The cache directory of one runtime (libcni's default is /var/lib/cni)."""

    def __init__(
        self, cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR, *, fsync: bool = True
    ) -> None:
        self.dir = Path(cache_dir)
        self.fsync = fsync

    @property
    def results_dir(self) -> Path:
        return self.dir / "results"

    def path(self, network: str, container_id: str, ifname: str) -> Path:
        if not network or not container_id or not ifname:
            raise ValueError("a cache entry needs a network name, a container id and an ifname")
        for part in (network, container_id, ifname):
            if "/" in part or part in (".", ".."):
                raise ValueError(f"invalid cache key part {part!r}")
        return self.results_dir / f"{network}-{container_id}-{ifname}"

    def load(self, network: str, container_id: str, ifname: str) -> CachedAttachment | None:
        """The entry, or None when there is none. A corrupt entry raises ValueError."""
        try:
            data = self.path(network, container_id, ifname).read_bytes()
        except FileNotFoundError:
            return None
        entry = decode(data, network=network, container_id=container_id, ifname=ifname)
        if (entry.network, entry.container_id, entry.ifname) != (network, container_id, ifname):
            return None  # a file whose name collides (hyphens) but belongs to someone else
        return entry

    def store(self, entry: CachedAttachment) -> None:
        target = self.path(entry.network, entry.container_id, entry.ifname)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(encode(entry))
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def remove(self, network: str, container_id: str, ifname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(network, container_id, ifname).unlink()

    def list(self, *, network: str = "", container_id: str = "") -> list[CachedAttachment]:
        """Every readable `cniCacheV1` entry (optionally of one network or container), in
        file-name order; unreadable or foreign files are skipped."""
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith(".tmp-"):
                continue
            if network and not name.startswith(network + "-"):
                continue
            if container_id and f"-{container_id}-" not in name:
                continue
            try:
                entry = decode((self.results_dir / name).read_bytes())
            except (OSError, ValueError):
                continue
            if not entry.network or not entry.container_id or not entry.ifname:
                continue
            if network and entry.network != network:
                continue
            if container_id and entry.container_id != container_id:
                continue
            out.append(entry)
        return out
