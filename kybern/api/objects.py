"""Small helpers for Kubernetes objects as dicts: timestamps, uids, generated names, and the
pieces of metadata the API server fills in."""

from __future__ import annotations

import datetime
import secrets
import uuid
from typing import Any

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels, as Kubernetes does


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


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
