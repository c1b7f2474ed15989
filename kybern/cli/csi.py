"""`kybern csi-hostpath` (the hostpath CSI driver: `--endpoint unix:///PATH/csi.sock --data-dir
DIR --node-id NODE [--driver-name NAME] [--kubelet-registration-dir DIR]`) and `kybern
csi-sidecars` (`--csi-address unix:///PATH/csi.sock --kubeconfig FILE`: provisioner, attacher,
resizer and snapshotter for that driver), each until SIGTERM/SIGINT; and `LocalCSI`, what
`kybern up --csi-hostpath` runs in-process: the driver registered in the node's registration
directory, its sidecars, its CSIDriver, a default StorageClass `standard`, the snapshot API and
a default VolumeSnapshotClass."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from kybern import __version__
from kybern.api import errors, registry
from kybern.client import rest
from kybern.csi import hostpath
from kybern.csi_sidecars import Sidecars, crds

log = logging.getLogger("kybern.csi")
STORAGE_CLASS = "standard"
SNAPSHOT_CLASS = "csi-hostpath-snapclass"
_REG = registry.Registry()


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("csi-hostpath", help="run the hostpath CSI driver")
    p.add_argument("--endpoint", required=True, help="the CSI socket, unix:///PATH/csi.sock")
    p.add_argument("--data-dir", required=True, help="where volumes and snapshots are kept")
    p.add_argument("--node-id", required=True, help="this node's id (its Node's name)")
    p.add_argument("--driver-name", default=hostpath.DRIVER_NAME)
    p.add_argument(
        "--kubelet-registration-dir",
        default="",
        help="also register with the kubelet/agent through a socket in this directory",
    )
    p.add_argument("--max-volumes-per-node", type=int, default=0, help="0: no limit")
    p.add_argument("--disable-attach", action="store_true", help="offer no ControllerPublishVolume")
    p.add_argument("-v", "--verbose", action="store_true")
    s = sub.add_parser("csi-sidecars", help="run the CSI controller sidecars for a driver")
    s.add_argument("--csi-address", required=True, help="the driver's socket, unix:///PATH")
    s.add_argument("--kubeconfig", required=True, help="the cluster to work for")
    s.add_argument("--timeout", type=float, default=60.0, help="deadline of each CSI call (s)")
    s.add_argument("-v", "--verbose", action="store_true")


def hostpath_config(args: argparse.Namespace) -> hostpath.Config:
    return hostpath.Config(
        data_dir=Path(args.data_dir).absolute(),
        node_id=args.node_id,
        name=args.driver_name,
        vendor_version=__version__,
        max_volumes_per_node=args.max_volumes_per_node,
        attach=not args.disable_attach,
    )


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_hostpath(args: argparse.Namespace) -> int:
    driver = hostpath.HostpathDriver(
        hostpath_config(args),
        args.endpoint,
        registration_dir=args.kubelet_registration_dir or None,
    )
    try:
        await driver.start()
    except (OSError, ValueError) as e:
        log.error("cannot start the driver: %s", e)
        return 1
    await _until_signalled()
    await driver.stop()
    return 0


async def run_sidecars(args: argparse.Namespace) -> int:
    try:
        cfg = await asyncio.to_thread(rest.load_kubeconfig, args.kubeconfig)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        log.error("cannot read kubeconfig %s: %s", args.kubeconfig, e)
        return 1
    client = rest.Client(cfg, user_agent="kybern-csi-sidecars")
    sidecars = Sidecars(client, args.csi_address, timeout=args.timeout)
    starting = asyncio.create_task(sidecars.start())
    signalled = asyncio.create_task(_until_signalled())
    try:
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            log.error("cannot start the sidecars: %s", starting.exception())
            return 1
        await signalled
    finally:
        for t in (starting, signalled):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await sidecars.stop()
        await client.close()
    return 0


async def _ensure(client: rest.Client, res: registry.Resource, obj: dict[str, Any]) -> None:
    try:
        await client.create(res, obj)
    except errors.StatusError as e:
        if e.code != 409:
            raise


class LocalCSI:
    """The hostpath driver and its sidecars inside `kybern up`, for the node `node_name`."""

    def __init__(
        self, client: rest.Client, data_dir: Path, node_name: str, registration_dir: Path
    ) -> None:
        self.client = client
        base = data_dir / "csi-hostpath"
        self.driver = hostpath.HostpathDriver(
            hostpath.Config(base / "data", node_name, vendor_version=__version__),
            f"unix://{base}/csi.sock",
            registration_dir=registration_dir,
        )
        self.sidecars = Sidecars(client, self.driver.endpoint)

    async def start(self) -> None:
        await self.driver.start()
        name = self.driver.config.name
        lookup = _REG.lookup
        csidriver = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": name},
            "spec": {
                "attachRequired": True,
                "podInfoOnMount": True,
                "fsGroupPolicy": "File",
                "volumeLifecycleModes": ["Persistent", "Ephemeral"],
            },
        }
        sc = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": name,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": True,
        }
        snapclass = {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {
                "name": SNAPSHOT_CLASS,
                "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
            },
            "driver": name,
            "deletionPolicy": "Delete",
        }
        drivers, classes = (
            lookup("storage.k8s.io", "v1", "csidrivers"),
            lookup("storage.k8s.io", "v1", "storageclasses"),
        )
        assert drivers is not None and classes is not None
        await _ensure(self.client, drivers, csidriver)
        await _ensure(self.client, classes, sc)
        await crds.install_snapshot_crds(self.client)
        await _ensure(self.client, crds.c.SNAPSHOT_CLASSES, snapclass)
        await self.sidecars.start()

    async def stop(self) -> None:
        await self.sidecars.stop()
        await self.driver.stop()
