"""The resizer (kubernetes-csi's external-resizer): when a bound claim of this driver asks for
more storage than its volume has, and its StorageClass has `allowVolumeExpansion`, it marks the
claim `Resizing`, calls `ControllerExpandVolume` (with the controller-expand secret and the
volume's capability), writes the new size into the PV's capacity, and then either finishes the
claim (status capacity, conditions cleared) or, when the driver needs the node's part
(`node_expansion_required`), leaves the claim `FileSystemResizePending` for the node agent's
`NodeExpandVolume`. A driver without controller expansion but with node expansion gets the PV
grown and the node step requested without a CSI call."""

from __future__ import annotations

import datetime
from typing import Any

from kybern.client import informer
from kybern.csi import csi
from kybern.csi import errors as csierrors
from kybern.csi_sidecars import common as c

Obj = dict[str, Any]
RESIZING = "Resizing"
FS_PENDING = "FileSystemResizePending"
FS_PENDING_MESSAGE = (
    "Waiting for user to (re-)start a pod to finish file system resize of volume on node."
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions_without(pvc: Obj, *types: str) -> list[Obj]:
    return [
        x for x in (pvc.get("status") or {}).get("conditions") or [] if x.get("type") not in types
    ]


class Resizer(c.Loop):
    name = "csi-resizer"
    component = "external-resizer"

    def __init__(self, ctx: c.Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.claims = f.informer(c.PVCS)
        self.volumes = f.informer(c.PVS)
        self.classes = f.informer(c.CLASSES)
        self.recorder = ctx.broadcaster.new_recorder(f"external-resizer {self.driver}")
        self.claims.add_handlers(
            informer.Handlers(on_add=self._claim, on_update=lambda o, n: self._claim(n))
        )
        self._refused: set[tuple[str, str]] = set()

    def _claim(self, pvc: Obj) -> None:
        self.queue.add(informer.key_of(pvc))

    async def reconcile(self, key: str) -> c.Result | None:
        ns, _, name = key.rpartition("/")
        pvc = self.claims.get(name, ns)
        if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound":
            return None
        pv = self.volumes.get((pvc.get("spec") or {}).get("volumeName") or "")
        if pv is None or ((pv.get("spec") or {}).get("csi") or {}).get("driver") != self.driver:
            return None
        want = c.storage_of(((pvc.get("spec") or {}).get("resources") or {}).get("requests"))
        status_size = c.storage_of((pvc.get("status") or {}).get("capacity"))
        pv_size = c.storage_of((pv.get("spec") or {}).get("capacity"))
        if want <= status_size:
            return None
        conds = {x.get("type") for x in (pvc.get("status") or {}).get("conditions") or []}
        if pv_size >= want:
            if FS_PENDING not in conds:
                await self._finish(pvc, int(pv_size), self.ctx.caps.node("EXPAND_VOLUME"))
            return None
        sc = self.classes.get(pv["spec"].get("storageClassName") or "")
        if not (sc or {}).get("allowVolumeExpansion"):
            marker = (pvc["metadata"]["uid"], str(want))
            if marker not in self._refused:
                self._refused.add(marker)
                msg = (
                    "only dynamically provisioned pvc can be resized and the storageclass that "
                    "provisions the pvc must support resize"
                )
                self.recorder.event(pvc, "Warning", "VolumeResizeFailed", msg)
            return None
        await self._resize(pvc, pv, int(want))
        return None

    async def _status(self, pvc: Obj, status: Obj) -> Obj:
        m = pvc["metadata"]
        out = await c.ignore_not_found(
            self.client.patch(
                c.PVCS, m["name"], {"status": status}, m["namespace"], subresource="status"
            )
        )
        return out if out is not None else pvc

    async def _resize(self, pvc: Obj, pv: Obj, want: int) -> None:
        cond = {"type": RESIZING, "status": "True", "lastTransitionTime": _now()}
        pvc = await self._status(
            pvc,
            {
                "conditions": [*conditions_without(pvc, RESIZING), cond],
                "allocatedResources": {"storage": c.format_bytes(want)},
            },
        )
        self.recorder.event(
            pvc,
            "Normal",
            "Resizing",
            f"External resizer is resizing volume {pv['metadata']['name']}",
        )
        src = pv["spec"]["csi"]
        if self.ctx.caps.controller("EXPAND_VOLUME"):
            req = csi.ControllerExpandVolumeRequest(
                volume_id=src["volumeHandle"],
                capacity_range=csi.CapacityRange(required_bytes=want),
                secrets=await c.read_secret(self.client, src.get("controllerExpandSecretRef")),
                volume_capability=c.pv_capability(pv),
            )
            try:
                resp = await self.csi.controller_expand_volume(req, timeout=self.ctx.timeout)
            except csierrors.CSIError as e:
                self.recorder.event(
                    pvc,
                    "Warning",
                    "VolumeResizeFailed",
                    f"resize volume {pv['metadata']['name']} failed: {e}",
                )
                raise
            size, node = max(resp.capacity_bytes, want), resp.node_expansion_required
        else:
            size, node = want, True
        await self.client.patch(
            c.PVS, pv["metadata"]["name"], {"spec": {"capacity": {"storage": c.format_bytes(size)}}}
        )
        await self._finish(pvc, size, node)

    async def _finish(self, pvc: Obj, size: int, node_step: bool) -> None:
        if node_step:
            cond = {
                "type": FS_PENDING,
                "status": "True",
                "lastTransitionTime": _now(),
                "message": FS_PENDING_MESSAGE,
            }
            await self._status(
                pvc, {"conditions": [*conditions_without(pvc, RESIZING, FS_PENDING), cond]}
            )
            self.recorder.event(
                pvc,
                "Normal",
                "FileSystemResizeRequired",
                "Require file system resize of volume on node",
            )
            return
        await self._status(
            pvc,
            {
                "capacity": {"storage": c.format_bytes(size)},
                "conditions": conditions_without(pvc, RESIZING, FS_PENDING) or None,
            },
        )
        self.recorder.event(pvc, "Normal", "VolumeResizeSuccessful", "Resize volume succeeded")
