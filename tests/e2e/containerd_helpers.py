"""Helpers of the CRI end-to-end tests, thin wrappers over `kybern.cri.containerd` and
`kybern.images`: `running_containerd` starts a containerd of the test's own (temporary dir,
own socket, kybern's pause image as sandbox image, busybox and pause imported), yields it and,
on the way out, stops it and fails the test if any mount, process or directory of it is left;
`wait_until` polls a coroutine with a deadline (never a bare sleep); `pod_names` gives each test
unique pod metadata."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from kybern.cri import Containerd
from kybern.images import busybox, oci

T = TypeVar("T")


def require_binaries() -> None:
    missing = [b for b in ("containerd", "ctr", "runc") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"missing {missing}: run scripts/install-system-deps test")


async def build_images() -> tuple[oci.Image, oci.Image, bytes]:
    """(busybox, pause, layout tarball with both), built in a thread."""

    def build() -> tuple[oci.Image, oci.Image, bytes]:
        bb, pause = busybox.build_all(busybox.read_busybox())
        return bb, pause, oci.layout_tar([bb, pause])

    return await asyncio.to_thread(build)


@contextlib.asynccontextmanager
async def running_containerd(layout: bytes) -> AsyncIterator[Containerd]:
    require_binaries()
    ctd = Containerd()
    try:
        await ctd.start()
        await ctd.import_layout(layout)
        yield ctd
    finally:
        await ctd.stop()
        left = await ctd.leftovers()
        assert left == [], f"containerd left {left}"


async def wait_until(
    probe: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition"
) -> T:
    """Await `probe()` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.05)


def pod_names(prefix: str) -> tuple[str, str]:
    """A unique pod name and uid."""
    uid = str(uuid.uuid4())
    return f"{prefix}-{uid[:8]}", uid
