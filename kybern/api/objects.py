"""Small helpers for Kubernetes objects as dicts: timestamps, uids, generated names, and the
pieces of metadata the API server fills in."""

from __future__ import annotations

import copy
import datetime
import os
import secrets
import time
from typing import Any

import orjson

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels, as Kubernetes does


_now_cache: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The current UTC time to the second (formatted once per second)."""
    global _now_cache
    sec = int(time.time())
    if _now_cache[0] != sec:
        _now_cache = (
            sec,
            datetime.datetime.fromtimestamp(sec, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    return _now_cache[1]


_UID_BATCH = 64
_uid_pool: list[bytes] = []


def new_uid() -> str:
    """A random (version 4) UUID. The random bytes are read 64 UUIDs at a time: one
    `getrandom` call, and one release of the GIL, instead of one per object."""
    if not _uid_pool:
        raw = os.urandom(16 * _UID_BATCH)
        _uid_pool.extend(raw[i : i + 16] for i in range(0, len(raw), 16))
    b = bytearray(_uid_pool.pop())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _not_json(v: Any) -> Any:
    raise TypeError


def copy_json(value: Any) -> Any:
    """A deep copy of a value decoded from JSON (the watch cache's objects, request bodies):
    encoded and decoded by orjson, many times faster than `copy.deepcopy`. Sequences come back
    as lists, as they would from storage; datetimes, dataclasses, subclasses of the JSON types
    and integers beyond 64 bits fall back to `deep_copy`."""
    if value.__class__ is dict or value.__class__ is list:
        try:
            return orjson.loads(orjson.dumps(value, default=_not_json, option=_PASSTHROUGH))
        except TypeError:
            pass
    return deep_copy(value)


def deep_copy(value: Any) -> Any:
    """`copy.deepcopy` for trees of dicts and lists (several times faster): dicts and lists are
    copied, JSON scalars shared, anything else deep-copied by `copy.deepcopy`."""
    cls = value.__class__
    if cls is dict:
        return {k: v if v.__class__ in _ATOMIC else deep_copy(v) for k, v in value.items()}
    if cls is list:
        return [v if v.__class__ in _ATOMIC else deep_copy(v) for v in value]
    if cls in _ATOMIC:
        return value
    return copy.deepcopy(value)


def generate_name(base: str) -> str:
    """`base` (cut to 58 characters) plus 5 random characters."""
    suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
    return base[:58] + suffix


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what a change of bumps `generation`."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
