"""The atomic writer of configMap, secret, downwardAPI and projected volumes (kubelet's
AtomicWriter): the files live in a hidden timestamped directory, `..data` is a symlink to the
current one, and every top-level name a container sees is a symlink through `..data`. An update
writes a new timestamped directory, points `..data_tmp` at it and renames it over `..data` (one
atomic step: a reader sees the old set of files or the new one, never a mix), then fixes the
user-visible links and removes the old directory. Writing the same payload again changes nothing.
Blocking (run it in a thread)."""

from __future__ import annotations

import datetime
import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644


class PayloadError(ValueError):
    """A payload path is absolute, contains `..` or starts with `..`."""


def validate_path(path: str) -> str:
    if not path or path.startswith("/"):
        raise PayloadError(f"invalid path {path!r}: must be a relative path")
    parts = path.split("/")
    if ".." in parts:
        raise PayloadError(f"invalid path {path!r}: must not contain '..'")
    if parts[0].startswith(".."):
        raise PayloadError(f"invalid path {path!r}: must not start with '..'")
    if len(path) > 4096:
        raise PayloadError(f"invalid path {path!r}: too long")
    return posixpath.normpath(path)


def _current(target: Path) -> Path | None:
    try:
        name = os.readlink(target / DATA)
    except OSError:
        return None
    return target / name


def _read_dir(d: Path) -> dict[str, File]:
    out: dict[str, File] = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = Path(root) / f
            st = p.lstat()
            out[str(p.relative_to(d))] = File(p.read_bytes(), st.st_mode & 0o7777)
    return out


def _top_level(payload: Mapping[str, File]) -> set[str]:
    return {p.split("/", 1)[0] for p in payload}


def write(target: str | Path, payload: Mapping[str, File]) -> bool:
    """Make `target` hold exactly `payload`; True if anything changed. Blocking."""
    target = Path(target)
    clean = {validate_path(p): f for p, f in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    old_dir = _current(target)
    if old_dir is not None and old_dir.is_dir() and _read_dir(old_dir) == clean:
        _fix_links(target, clean, set())
        return False
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    try:
        for rel, f in clean.items():
            p = new_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(p.parent, 0o755)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.data)
            os.chmod(p, f.mode)
        os.chmod(new_dir, 0o755)
        tmp = target / DATA_TMP
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(new_dir.name, tmp)
        os.rename(tmp, target / DATA)
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    old_names = set(_read_dir(old_dir)) if old_dir is not None and old_dir.is_dir() else set()
    _fix_links(target, clean, _top_level(dict.fromkeys(old_names, File(b""))))
    if old_dir is not None and old_dir != new_dir:
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


def _fix_links(target: Path, payload: Mapping[str, File], old_top: set[str]) -> None:
    new_top = _top_level(payload)
    for name in sorted(new_top):
        link = target / name
        want = posixpath.join(DATA, name)
        if link.is_symlink() and os.readlink(link) == want:
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        os.symlink(want, link)
    for name in sorted(old_top - new_top):
        link = target / name
        if link.is_symlink():
            link.unlink()


def read(target: str | Path) -> dict[str, bytes]:
    """What a container sees below `target`: path -> contents (through the links). Blocking."""
    target = Path(target)
    d = _current(target)
    if d is None:
        return {}
    return {p: f.data for p, f in _read_dir(d).items()}
