"""What the CSI sidecars share: the resources they watch (PVs, claims, classes, attachments,
CSINodes, Nodes, Secrets and the `snapshot.storage.k8s.io/v1` kinds), the `Context` a loop gets
(API client, shared informers, event broadcaster, the driver's CSI client and capabilities), the
`Loop` base wiring informer handlers to a reconcile queue, byte quantities, and the
`csi.storage.k8s.io/*` StorageClass parameters: which secret each operation gets (with the
`${pvc.name}`, `${pvc.namespace}`, `${pv.name}`, `${pvc.annotations['...']}` templates), the
`fstype`, and the opaque parameters left for the driver."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from kybern.api import errors, registry, validation
from kybern.client import events, informer, reconcile, rest
from kybern.csi import CSIClient, CSIError, spec

Obj = dict[str, Any]
REG = registry.Registry()
Result = reconcile.Result


def _res(group: str, version: str, plural: str) -> registry.Resource:
    r = REG.lookup(group, version, plural)
    assert r is not None, plural
    return r


PVS = _res("", "v1", "persistentvolumes")
PVCS = _res("", "v1", "persistentvolumeclaims")
NODES = _res("", "v1", "nodes")
SECRETS = _res("", "v1", "secrets")
CLASSES = _res("storage.k8s.io", "v1", "storageclasses")
VAS = _res("storage.k8s.io", "v1", "volumeattachments")
CSINODES = _res("storage.k8s.io", "v1", "csinodes")
CSIDRIVERS = _res("storage.k8s.io", "v1", "csidrivers")
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
_S = frozenset({"status"})
SNAPSHOTS = registry.Resource(
    SNAPSHOT_GROUP, "v1", "VolumeSnapshot", "volumesnapshots", True, subresources=_S, crd=True
)
CONTENTS = registry.Resource(
    SNAPSHOT_GROUP,
    "v1",
    "VolumeSnapshotContent",
    "volumesnapshotcontents",
    False,
    subresources=_S,
    crd=True,
)
SNAPSHOT_CLASSES = registry.Resource(
    SNAPSHOT_GROUP, "v1", "VolumeSnapshotClass", "volumesnapshotclasses", False, crd=True
)

PREFIX = "csi.storage.k8s.io/"
FSTYPE = PREFIX + "fstype"
SECRET_KINDS = {
    "provisioner": "provisioner-secret",
    "controllerPublish": "controller-publish-secret",
    "nodeStage": "node-stage-secret",
    "nodePublish": "node-publish-secret",
    "controllerExpand": "controller-expand-secret",
    "nodeExpand": "node-expand-secret",
    "snapshotter": "snapshotter-secret",
}
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
NODE_ID_ANNOTATION = "csi.volume.kubernetes.io/nodeid"


def quantity_bytes(value: Any) -> int:
    try:
        return int(validation.parse_quantity(value).to_integral_value())
    except (TypeError, ValueError):
        return 0


def format_bytes(n: int) -> str:
    """A byte count as the quantity a provisioner writes (`1Gi`, `512Mi`, `1000`)."""
    for suffix, shift in (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def storage_of(resources: Mapping[str, Any] | None) -> Decimal:
    try:
        return validation.parse_quantity((resources or {}).get("storage") or 0)
    except (TypeError, ValueError):
        return Decimal(0)


def driver_parameters(params: Mapping[str, str]) -> dict[str, str]:
    """The parameters the driver sees: everything but the `csi.storage.k8s.io/` keys."""
    return {k: v for k, v in params.items() if not k.startswith(PREFIX)}


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


def _expand(text: str, pvc: Obj | None, pv_name: str) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1).strip()
        meta = (pvc or {}).get("metadata") or {}
        if key == "pv.name":
            return pv_name
        if key == "pvc.name":
            return str(meta.get("name", ""))
        if key == "pvc.namespace":
            return str(meta.get("namespace", ""))
        am = re.fullmatch(r"pvc\.annotations\['([^']*)'\]", key)
        if am:
            return str((meta.get("annotations") or {}).get(am.group(1), ""))
        raise ValueError(f"unknown template ${{{key}}} in a secret reference")

    return _TEMPLATE.sub(sub, text)


def secret_ref(
    params: Mapping[str, str], kind: str, pvc: Obj | None = None, pv_name: str = ""
) -> Obj | None:
    """`{"name", "namespace"}` of the secret for `kind` (a key of SECRET_KINDS), or None."""
    base = PREFIX + SECRET_KINDS[kind]
    name, ns = params.get(base + "-name"), params.get(base + "-namespace")
    if not name and not ns:
        return None
    if not name or not ns:
        raise ValueError(f"{base}-name and {base}-namespace must be given together")
    return {"name": _expand(name, pvc, pv_name), "namespace": _expand(ns, pvc, pv_name)}


async def read_secret(client: rest.Client, ref: Mapping[str, Any] | None) -> dict[str, str]:
    """The decoded data of the secret `ref` names ({} for None)."""
    if not ref:
        return {}
    obj = await client.get(SECRETS, ref["name"], ref.get("namespace", ""))
    data = obj.get("data") or {}
    out = {k: base64.b64decode(v).decode() for k, v in data.items()}
    out.update(obj.get("stringData") or {})
    return out


def pv_capability(pv: Obj, multi_writer: bool = False) -> Any:
    """The VolumeCapability a CSI PV is used with (its first access mode)."""
    pspec = pv.get("spec") or {}
    src = pspec.get("csi") or {}
    modes = pspec.get("accessModes") or ["ReadWriteOnce"]
    return spec.volume_capability(
        modes[0],
        block=pspec.get("volumeMode") == "Block",
        fs_type=src.get("fsType") or "",
        mount_flags=pspec.get("mountOptions") or (),
        multi_writer=multi_writer,
    )


def node_id(csinode: Obj | None, node: Obj | None, driver: str) -> str:
    """The driver's id of a node: its CSINode entry, else the Node's nodeid annotation."""
    for d in ((csinode or {}).get("spec") or {}).get("drivers") or ():
        if d.get("name") == driver and d.get("nodeID"):
            return str(d["nodeID"])
    notes = ((node or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return str(json.loads(notes.get(NODE_ID_ANNOTATION) or "{}").get(driver) or "")
    except ValueError:
        return ""


@dataclass
class Context:
    client: rest.Client
    factory: informer.InformerFactory
    broadcaster: events.EventBroadcaster
    csi: CSIClient
    caps: spec.Capabilities
    timeout: float = 60.0

    @property
    def driver(self) -> str:
        return self.caps.name


class Loop:
    """One sidecar loop: handlers enqueue keys, workers call `reconcile(key)`."""

    name: ClassVar[str] = ""
    component: ClassVar[str] = ""

    def __init__(self, ctx: Context, *, workers: int = 4) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.csi = ctx.csi
        self.driver = ctx.driver
        self.recorder = ctx.broadcaster.new_recorder(self.component or self.name)
        self.controller = reconcile.Controller(self.name, self._reconcile, workers=workers)
        self.queue = self.controller.queue

    async def reconcile(self, key: str) -> Result | None:
        raise NotImplementedError

    async def _reconcile(self, key: str) -> Result | None:
        """Expected failures (the driver's answer, a missing object, a bad parameter) are
        retried with backoff and logged as one line, as API errors are; bugs keep their
        traceback."""
        try:
            return await self.reconcile(key)
        except (CSIError, LookupError, ValueError) as e:
            raise errors.StatusError(503, "Retrying", f"{type(e).__name__}: {e}") from e

    def start(self) -> None:
        self.controller.start()

    async def stop(self) -> None:
        await self.controller.stop()


def deleting(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


async def ignore_not_found(aw: Any) -> Any:
    try:
        return await aw
    except errors.StatusError as e:
        if e.code != 404:
            raise
        return None


async def set_finalizers(
    client: rest.Client, res: registry.Resource, obj: Obj, fins: list[str]
) -> Obj | None:
    m = obj["metadata"]
    patch = {"metadata": {"finalizers": fins or None, "resourceVersion": m["resourceVersion"]}}
    out: Obj | None = await ignore_not_found(
        client.patch(res, m["name"], patch, m.get("namespace", ""))
    )
    return out
