"""`kybern up --csi-hostpath` (without the node agent): the driver serves in-process and offers
itself on the registration socket under the data dir, its CSIDriver, the default StorageClass
`standard`, the snapshot API and the default VolumeSnapshotClass exist, the in-process sidecars
provision and delete a volume for a claim, and SIGTERM stops everything and removes the
sockets."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import REPO

from kybern.api import errors, registry
from kybern.client import rest
from kybern.csi import mount, registration

T = TypeVar("T")
REG = registry.Registry()
DRIVER = "hostpath.csi.kybern.io"


def res(group: str, plural: str) -> registry.Resource:
    r = REG.lookup(group, "v1", plural)
    assert r is not None
    return r


PVCS, PVS, NAMESPACES = (
    res("", "persistentvolumeclaims"),
    res("", "persistentvolumes"),
    res("", "namespaces"),
)
CLASSES, CSIDRIVERS = res("storage.k8s.io", "storageclasses"), res("storage.k8s.io", "csidrivers")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
        except (errors.StatusError, OSError) as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
def up() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    base = Path(tempfile.mkdtemp(prefix="kybern-csi-up-"))
    log = open(base / "up.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kybern", "up", "--data-dir", str(base / "data"), "--port", "0",
         "--disable-agent", "--csi-hostpath"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        leaked = mount.mounts_below(base)
        mount.unmount_all(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not leaked, leaked


async def test_up_with_csi_hostpath(up: tuple[Path, subprocess.Popen[bytes]]) -> None:
    base, proc = up
    data = base / "data"

    def alive() -> None:
        assert proc.poll() is None, (base / "up.log").read_text()[-3000:]

    async def kubeconfig() -> rest.Config | None:
        alive()
        path = data / "kubeconfig"
        return await asyncio.to_thread(rest.load_kubeconfig, path) if path.exists() else None

    cfg = await eventually(kubeconfig, "the kubeconfig")
    async with rest.Client(cfg) as client:
        sc = await eventually(lambda: client.get(CLASSES, "standard"), "StorageClass standard")
        alive()
        assert sc["provisioner"] == DRIVER
        assert (
            sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
        )
        assert (await client.get(CSIDRIVERS, DRIVER))["spec"]["attachRequired"] is True
        snapclass = registry.Resource(
            "snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass", "volumesnapshotclasses", False
        )
        await eventually(lambda: client.get(snapclass, "csi-hostpath-snapclass"), "snapclass")
        sock = data / "plugins_registry" / registration.socket_name(DRIVER)
        info = await registration.get_info(sock)
        assert (info.type, info.name, info.endpoint) == (
            "CSIPlugin",
            DRIVER,
            str(data / "csi-hostpath" / "csi.sock"),
        )
        await client.create(NAMESPACES, {"metadata": {"name": "up-csi"}})
        await client.create(
            CLASSES,
            {"metadata": {"name": "now"}, "provisioner": DRIVER, "volumeBindingMode": "Immediate"},
        )
        claim = {
            "metadata": {"name": "c"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "now",
                "resources": {"requests": {"storage": "4Mi"}},
            },
        }
        await client.create(PVCS, claim, "up-csi")

        async def bound() -> str:
            pvc = await client.get(PVCS, "c", "up-csi")
            return (
                str(pvc["spec"].get("volumeName") or "")
                if (pvc.get("status") or {}).get("phase") == "Bound"
                else ""
            )

        pv = await client.get(PVS, await eventually(bound, "the claim bound"))
        handle = pv["spec"]["csi"]["volumeHandle"]
        volume = data / "csi-hostpath" / "data" / "volumes" / handle
        assert volume.is_dir()
        await client.delete(PVCS, "c", "up-csi")

        async def gone() -> bool:
            try:
                await client.get(PVS, pv["metadata"]["name"])
            except errors.StatusError as e:
                return e.code == 404
            return False

        await eventually(gone, "the PV deleted")
        assert not volume.exists()
        state = json.loads((data / "csi-hostpath" / "data" / "state.json").read_text())
        assert handle not in state["volumes"]
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 60) == 0
    assert not sock.exists() and not (data / "csi-hostpath" / "csi.sock").exists()
