"""The `snapshot.storage.k8s.io/v1` API as CustomResourceDefinitions — VolumeSnapshotClass,
VolumeSnapshot (namespaced) and VolumeSnapshotContent, the latter two with a status subresource —
as Kubernetes serves them (structural schemas that keep `spec` and `status` open), with the
printer columns kubectl shows, and `install_snapshot_crds` to create them and wait until they
are served. `kybern up --csi-hostpath` and the tests install them; the snapshotter runs only
when they are there."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kybern.api import errors
from kybern.client import rest
from kybern.csi_sidecars import common as c

Obj = dict[str, Any]
CRDS = c._res("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(kind: str, plural: str, scope: str, columns: list[Obj], short: list[str]) -> Obj:
    schema: Obj = {
        "type": "object",
        "properties": {"spec": _OPEN, "status": _OPEN},
        "x-kubernetes-preserve-unknown-fields": True,
    }
    version: Obj = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns,
    }
    if kind != "VolumeSnapshotClass":
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{c.SNAPSHOT_GROUP}"},
        "spec": {
            "group": c.SNAPSHOT_GROUP,
            "names": {
                "kind": kind,
                "listKind": kind + "List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
            },
            "scope": scope,
            "versions": [version],
        },
    }


def _col(name: str, path: str, typ: str = "string") -> Obj:
    return {"name": name, "type": typ, "jsonPath": path}


SNAPSHOT_CRDS: list[Obj] = [
    _crd(
        "VolumeSnapshotClass",
        "volumesnapshotclasses",
        "Cluster",
        [_col("Driver", ".driver"), _col("DeletionPolicy", ".deletionPolicy")],
        ["vsclass", "vsclasses"],
    ),
    _crd(
        "VolumeSnapshot",
        "volumesnapshots",
        "Namespaced",
        [
            _col("ReadyToUse", ".status.readyToUse", "boolean"),
            _col("SourcePVC", ".spec.source.persistentVolumeClaimName"),
            _col("RestoreSize", ".status.restoreSize"),
            _col("SnapshotClass", ".spec.volumeSnapshotClassName"),
            _col("SnapshotContent", ".status.boundVolumeSnapshotContentName"),
        ],
        ["vs"],
    ),
    _crd(
        "VolumeSnapshotContent",
        "volumesnapshotcontents",
        "Cluster",
        [
            _col("ReadyToUse", ".status.readyToUse", "boolean"),
            _col("RestoreSize", ".status.restoreSize", "integer"),
            _col("DeletionPolicy", ".spec.deletionPolicy"),
            _col("Driver", ".spec.driver"),
            _col("VolumeSnapshot", ".spec.volumeSnapshotRef.name"),
        ],
        ["vsc", "vscs"],
    ),
]


async def snapshot_api_served(client: rest.Client) -> bool:
    try:
        doc = await client.request("GET", f"/apis/{c.SNAPSHOT_GROUP}/v1")
    except errors.StatusError as e:
        if e.code == 404:
            return False
        raise
    names = {r.get("name") for r in (doc or {}).get("resources") or ()}
    return {"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"} <= names


async def install_snapshot_crds(client: rest.Client, timeout: float = 30.0) -> None:
    """Create the snapshot CRDs (existing ones are kept) and wait until they are served."""
    for crd in SNAPSHOT_CRDS:
        try:
            await client.create(CRDS, crd)
        except errors.StatusError as e:
            if e.code != 409:
                raise
    deadline = time.monotonic() + timeout
    while not await snapshot_api_served(client):
        if time.monotonic() > deadline:
            raise TimeoutError("the snapshot.storage.k8s.io API is not served")
        await asyncio.sleep(0.1)
