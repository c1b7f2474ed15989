"""The volumes the agent provides itself, below `<root>/pods/<uid>/volumes/kubernetes.io~<type>/
<name>` as kubelet lays them out: emptyDir (a directory; `medium: Memory` a tmpfs, with
`sizeLimit`), hostPath (the host's path, after the `type` check, creating it for
DirectoryOrCreate/FileOrCreate), and the atomically written configMap, secret, downwardAPI and
projected volumes (secrets and projections on a tmpfs, as kubelet keeps them off the disk),
including service account tokens from the TokenRequest API, renewed at 80 % of their life
(claims and CSI inline volumes are `csivolumes`' part).
`refresh` rewrites the projected contents when their sources change; `teardown` unmounts
everything below the pod's directory and removes it. File work and mounts run in threads."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kybern.agent import atomic, common, env, payload
from kybern.api import errors
from kybern.client import rest

log = logging.getLogger("kybern.agent")
Obj = common.Obj
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
_PLUGINS = {
    "emptyDir": "empty-dir",
    "hostPath": "host-path",
    "configMap": "configmap",
    "secret": "secret",
    "downwardAPI": "downward-api",
    "projected": "projected",
}
_TMPFS_TYPES = ("secret", "projected")
_ELSEWHERE = ("persistentVolumeClaim", "csi")  # provided by csivolumes
VolumeError = payload.VolumeError


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount_tmpfs(path: Path, size: int = 0) -> None:
    """Mount a tmpfs at `path` (mode 0755, nosuid, nodev). Blocking."""
    opts = "mode=0755" + (f",size={size}" if size else "")
    if _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()):
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def unmount(path: str) -> None:
    """Unmount `path` (lazily if it is busy). Blocking."""
    libc = _libc()
    if libc.umount2(path.encode(), 0) and libc.umount2(path.encode(), MNT_DETACH):
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first. Blocking."""
    prefix = str(path).rstrip("/")
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                point = fields[4].encode().decode("unicode_escape")
                if point == prefix or point.startswith(prefix + "/"):
                    found.add(point)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def is_mount(path: Path) -> bool:
    return str(path) in mounts_below(path)


def check_host_path(path: str, typ: str) -> None:
    """kubelet's hostPath type check (creating the path for the *OrCreate types). Blocking."""
    p = Path(path)
    if typ == "DirectoryOrCreate":
        if not p.exists():
            p.mkdir(mode=0o755, parents=True)
        typ = "Directory"
    elif typ == "FileOrCreate":
        if not p.exists():
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
            os.close(fd)
        typ = "File"
    if not typ:
        return
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise VolumeError(f"hostPath type check failed: {path} does not exist") from None
    checks = {
        "Directory": (stat.S_ISDIR, "a directory"),
        "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"),
        "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    check = checks.get(typ)
    if check is None:
        raise VolumeError(f"hostPath type check failed: unknown type {typ!r}")
    if not check[0](mode):
        raise VolumeError(f"hostPath type check failed: {path} is not {check[1]}")


@dataclass
class _Token:
    token: str
    expires: float
    refresh_at: float


@dataclass
class PodVolumes:
    """What was set up for one pod: volume name -> host path."""

    paths: dict[str, str] = field(default_factory=dict)
    refresh_at: float = 0.0  # when a token in a projected volume must be renewed


class Volumes:
    def __init__(self, client: rest.Client, root: Path, lookup: env.Lookup) -> None:
        self.client = client
        self.root = root
        self.lookup = lookup
        self._pods: dict[str, PodVolumes] = {}
        self._tokens: dict[tuple[str, str, str, int], _Token] = {}

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    def volume_dir(self, uid: str, plugin: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / f"kubernetes.io~{plugin}" / name

    def paths(self, uid: str) -> dict[str, str]:
        pv = self._pods.get(uid)
        return dict(pv.paths) if pv else {}

    def refresh_due(self, uid: str, now: float) -> float:
        """Seconds until a token of the pod's volumes must be renewed (inf: none)."""
        pv = self._pods.get(uid)
        if pv is None or not pv.refresh_at:
            return float("inf")
        return max(pv.refresh_at - now, 0.0)

    async def setup(self, pod: Obj, ctx: env.PodContext) -> dict[str, str]:
        """Set up (or bring up to date) every volume of `pod`; name -> host path."""
        uid = common.pod_uid(pod)
        pv = self._pods.setdefault(uid, PodVolumes())
        tokens = await self._fetch_tokens(pod)
        pv.refresh_at = min((t.refresh_at for t in tokens.values()), default=0.0)
        work = []
        for v in common.spec(pod).get("volumes") or []:
            if not isinstance(v, dict) or not v.get("name"):
                continue
            if any(isinstance(v.get(k), dict) for k in _ELSEWHERE):
                continue
            plugin = next((p for k, p in _PLUGINS.items() if isinstance(v.get(k), dict)), None)
            if plugin is None:
                kinds = [k for k in v if k != "name"]
                raise VolumeError(f"volume {v['name']!r}: unsupported volume type {kinds}")
            contents = payload.volume_payload(
                v, pod, ctx, self.lookup, lambda sat: self._token_for(pod, sat, tokens)
            )
            work.append((v, plugin, contents))
        pv.paths = await asyncio.to_thread(self._setup_all, uid, work)
        return dict(pv.paths)

    def _setup_all(
        self, uid: str, work: list[tuple[Obj, str, payload.Payload | None]]
    ) -> dict[str, str]:
        paths: dict[str, str] = {}
        for v, plugin, contents in work:
            name = str(v["name"])
            if plugin == "host-path":
                hp = v["hostPath"]
                check_host_path(str(hp.get("path", "")), str(hp.get("type") or ""))
                paths[name] = str(hp.get("path", ""))
                continue
            d = self.volume_dir(uid, plugin, name)
            d.mkdir(parents=True, exist_ok=True)
            if plugin == "empty-dir":
                ed = v["emptyDir"]
                if ed.get("medium") == "Memory" and not is_mount(d):
                    mount_tmpfs(d, common.int_bytes(ed.get("sizeLimit")))
                os.chmod(d, 0o777)
            elif plugin in _TMPFS_TYPES and not is_mount(d):
                mount_tmpfs(d)
            if contents is not None:
                atomic.write(d, contents)
            paths[name] = str(d)
        return paths

    async def refresh(self, pod: Obj, ctx: env.PodContext) -> bool:
        """Rewrite the atomically written volumes of an already set-up pod; True if any
        changed."""
        uid = common.pod_uid(pod)
        if uid not in self._pods:
            return False
        tokens = await self._fetch_tokens(pod)
        self._pods[uid].refresh_at = min((t.refresh_at for t in tokens.values()), default=0.0)
        work: list[tuple[Path, payload.Payload]] = []
        for v in common.spec(pod).get("volumes") or []:
            plugin = next((p for k, p in _PLUGINS.items() if isinstance(v.get(k), dict)), None)
            if plugin is None or plugin in ("empty-dir", "host-path"):
                continue
            try:
                contents = payload.volume_payload(
                    v, pod, ctx, self.lookup, lambda sat: self._token_for(pod, sat, tokens)
                )
            except VolumeError as e:
                log.warning("volume %s of pod %s: %s", v.get("name"), common.pod_key(pod), e)
                continue
            if contents is not None:
                work.append((self.volume_dir(uid, plugin, str(v["name"])), contents))

        def write_all() -> bool:
            changed = False
            for d, contents in work:
                if d.is_dir():
                    changed = atomic.write(d, contents) or changed
            return changed

        return await asyncio.to_thread(write_all)

    # ---- service account tokens ---------------------------------------------------------------

    def _token_key(self, pod: Obj, sat: Obj) -> tuple[str, str, str, int]:
        sa = str(common.spec(pod).get("serviceAccountName") or "default")
        return (
            common.pod_uid(pod),
            sa,
            str(sat.get("audience") or ""),
            int(sat.get("expirationSeconds") or 3600),
        )

    async def _fetch_tokens(self, pod: Obj) -> dict[tuple[str, str, str, int], _Token]:
        out = {}
        for v in common.spec(pod).get("volumes") or []:
            for src in (v.get("projected") or {}).get("sources") or []:
                sat = src.get("serviceAccountToken")
                if isinstance(sat, dict):
                    key = self._token_key(pod, sat)
                    out[key] = await self._token(pod, key)
        return out

    async def _token(self, pod: Obj, key: tuple[str, str, str, int]) -> _Token:
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.refresh_at:
            return cached
        uid, sa, audience, seconds = key
        m = common.meta(pod)
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": m.get("name", ""),
                    "uid": uid,
                },
            },
        }
        try:
            resp = await self.client.create(
                common.SERVICEACCOUNTS,
                body,
                str(m.get("namespace", "")),
                subresource="token",
                name=sa,
            )
        except errors.StatusError as e:
            msg = f"failed to fetch token for service account {sa}: {e.message}"
            raise VolumeError(msg) from None
        st = resp.get("status") or {}
        expires = common.parse_time(st.get("expirationTimestamp")) or now + seconds
        token = _Token(str(st.get("token", "")), expires, now + 0.8 * (expires - now))
        self._tokens[key] = token
        return token

    def _token_for(
        self, pod: Obj, sat: Obj, tokens: dict[tuple[str, str, str, int], _Token]
    ) -> str:
        found = tokens.get(self._token_key(pod, sat))
        return found.token if found else ""

    # ---- teardown -----------------------------------------------------------------------------

    async def teardown(self, uid: str) -> None:
        """Unmount everything below the pod's directory and remove it."""
        self._pods.pop(uid, None)
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
        await asyncio.to_thread(self._remove_pod_dir, self.pod_dir(uid))

    @staticmethod
    def _remove_pod_dir(d: Path) -> None:
        for point in mounts_below(d):
            unmount(point)
        left = mounts_below(d)
        if left:
            raise VolumeError(f"cannot remove {d}: still mounted: {left}")
        shutil.rmtree(d, ignore_errors=True)

    def known(self) -> Iterable[str]:
        return list(self._pods)

    async def orphaned_dirs(self, keep: set[str]) -> list[str]:
        """Pod directories of pods not in `keep` (left by an earlier run)."""

        def scan() -> list[str]:
            base = self.root / "pods"
            with contextlib.suppress(FileNotFoundError):
                return [p.name for p in base.iterdir() if p.is_dir() and p.name not in keep]
            return []

        return await asyncio.to_thread(scan)
