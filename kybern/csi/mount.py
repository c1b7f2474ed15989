"""Mount and loop-device primitives shared by the hostpath driver and the volume manager:
`/proc/self/mountinfo` parsing (a bind mount of a directory on the same filesystem is invisible
to `os.path.ismount`, so mount points are always looked up there), bind mounts (read-only by a
second remount, as mount(8) does), unmounting (lazily when busy) and loop devices through
`losetup` for block volumes. Every function blocks: callers run them in a thread."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import os
import shutil
import subprocess
from pathlib import Path

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2


@dataclasses.dataclass(frozen=True)
class MountInfo:
    """One line of mountinfo: where, what part of which device, how."""

    mount_point: str
    root: str
    device: str  # major:minor
    fstype: str
    source: str
    options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(field: str) -> str:
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def parse_mountinfo(text: str) -> list[MountInfo]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if "-" not in parts:
            continue
        sep = parts.index("-")
        out.append(
            MountInfo(
                mount_point=_unescape(parts[4]),
                root=_unescape(parts[3]),
                device=parts[2],
                fstype=parts[sep + 1],
                source=_unescape(parts[sep + 2]) if len(parts) > sep + 2 else "",
                options=tuple(parts[5].split(",")),
            )
        )
    return out


def mounts() -> list[MountInfo]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def mount_at(path: str | Path) -> MountInfo | None:
    """The topmost mount whose mount point is exactly `path`, or None."""
    p = os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)
    found = None
    for m in mounts():
        if m.mount_point == p:
            found = m
    return found


def is_mount(path: str | Path) -> bool:
    return mount_at(path) is not None


def mounts_below(path: str | Path) -> list[str]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    base = os.path.abspath(path).rstrip("/")
    found = {
        m.mount_point
        for m in mounts()
        if m.mount_point == base or m.mount_point.startswith(base + "/")
    }
    return sorted(found, key=lambda p: (-p.count("/"), p))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def bind_mount(source: str | Path, target: str | Path, *, read_only: bool = False) -> None:
    """Bind `source` (a directory or a file, e.g. a block device) onto `target`."""
    libc = _libc()
    src, dst = str(source).encode(), str(target).encode()
    _check(libc.mount(src, dst, None, MS_BIND, None), f"bind mount {source} on {target}")
    if read_only:
        rc = libc.mount(b"none", dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        if rc != 0:
            err = ctypes.get_errno()
            libc.umount2(dst, MNT_DETACH)
            raise OSError(err, f"remount {target} read-only: {os.strerror(err)}")


def unmount(path: str | Path) -> bool:
    """Unmount `path` (lazily if busy); False if nothing was mounted there."""
    libc = _libc()
    p = str(path).encode()
    if libc.umount2(p, 0) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    _check(libc.umount2(p, MNT_DETACH), f"unmount {path}")
    return True


def unmount_all(path: str | Path) -> int:
    """Unmount every mount at or below `path` (stacked mounts too); how many went."""
    n = 0
    for _ in range(64):
        below = mounts_below(path)
        if not below:
            return n
        for p in below:
            if unmount(p):
                n += 1
    return n


def same_source(a: MountInfo, b: MountInfo) -> bool:
    return a.device == b.device and a.root == b.root


def source_of(path: str | Path) -> tuple[str, str] | None:
    """(device, root within it) that a bind mount of `path` would show in mountinfo."""
    real = os.path.realpath(path)
    best: MountInfo | None = None
    for m in mounts():
        mp = m.mount_point.rstrip("/") or "/"
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    if best is None:
        return None
    rel = os.path.relpath(real, best.mount_point)
    root = best.root.rstrip("/") + ("" if rel == "." else "/" + rel)
    return best.device, root or "/"


# ---- loop devices ---------------------------------------------------------------------------


def loop_supported() -> bool:
    """Whether block volumes can be backed by loop devices here (losetup and /dev/loop-control
    present and usable by this process)."""
    if shutil.which("losetup") is None or not os.path.exists("/dev/loop-control"):
        return False
    return os.access("/dev/loop-control", os.R_OK | os.W_OK)


def _losetup(*args: str) -> str:
    proc = subprocess.run(
        ["losetup", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise OSError(errno.EIO, f"losetup {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def loop_find(backing: str | Path) -> str | None:
    out = _losetup("-j", str(backing))
    for line in out.splitlines():
        dev = line.split(":", 1)[0].strip()
        if dev:
            return dev
    return None


def loop_attach(backing: str | Path) -> str:
    """The loop device of `backing`, attaching one if none is."""
    return loop_find(backing) or _losetup("-f", "--show", str(backing))


def loop_detach(backing: str | Path) -> None:
    for _ in range(8):
        dev = loop_find(backing)
        if dev is None:
            return
        _losetup("-d", dev)


def loop_refresh(backing: str | Path) -> None:
    """Make an attached loop device see its backing file's new size."""
    dev = loop_find(backing)
    if dev is not None:
        _losetup("-c", dev)
