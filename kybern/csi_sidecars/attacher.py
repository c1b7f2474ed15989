"""The attacher (kubernetes-csi's external-attacher): each `VolumeAttachment` of this driver is
attached with `ControllerPublishVolume` — the PV's volume handle, the node's id from its CSINode
(or the Node's `csi.volume.kubernetes.io/nodeid` annotation), the capability, read-only flag,
volume context and controller-publish secret — and its status set `attached: true` with the
returned publish context as `attachmentMetadata` (or `attachError`); a finalizer
`external-attacher/<driver>` holds a deleting attachment until `ControllerUnpublishVolume`
detached it. For drivers without PUBLISH_UNPUBLISH_VOLUME attachments are marked attached
without a call, as the external attacher does."""

from __future__ import annotations

import datetime
from typing import Any

from kybern.client import informer
from kybern.csi import csi
from kybern.csi import errors as csierrors
from kybern.csi_sidecars import common as c

Obj = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Attacher(c.Loop):
    name = "csi-attacher"
    component = "csi-attacher"

    def __init__(self, ctx: c.Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.attachments = f.informer(c.VAS)
        self.volumes = f.informer(c.PVS)
        self.csinodes = f.informer(c.CSINODES)
        self.nodes = f.informer(c.NODES)
        self.finalizer = "external-attacher/" + self.driver.replace("/", "-")
        self._attached: set[str] = set()  # uids marked attached, maybe not yet seen as such
        self.attachments.add_handlers(
            informer.Handlers(on_add=self._va, on_update=lambda o, n: self._va(n))
        )
        self.csinodes.add_handlers(
            informer.Handlers(on_add=self._retry_node, on_update=lambda o, n: self._retry_node(n))
        )

    @property
    def publishes(self) -> bool:
        return self.ctx.caps.controller("PUBLISH_UNPUBLISH_VOLUME")

    def _va(self, va: Obj) -> None:
        if (va.get("spec") or {}).get("attacher") == self.driver:
            self.queue.add(va["metadata"]["name"])

    def _retry_node(self, csinode: Obj) -> None:
        for va in self.attachments.list():
            if (va.get("spec") or {}).get("nodeName") == csinode["metadata"]["name"]:
                self._va(va)

    async def reconcile(self, key: str) -> c.Result | None:
        va = self.attachments.get(key)
        if va is None or (va.get("spec") or {}).get("attacher") != self.driver:
            return None
        fins = list(va["metadata"].get("finalizers") or [])
        uid = va["metadata"].get("uid", "")
        if c.deleting(va):
            self._attached.discard(uid)
            if self.finalizer in fins:
                await self.detach(va)
                await c.set_finalizers(
                    self.client, c.VAS, va, [f for f in fins if f != self.finalizer]
                )
            return None
        if (va.get("status") or {}).get("attached"):
            self._attached.discard(uid)
            return None
        if uid in self._attached:
            return None
        if self.finalizer not in fins:
            va = await c.set_finalizers(self.client, c.VAS, va, [*fins, self.finalizer]) or va
        try:
            context = await self.attach(va)
        except (csierrors.CSIError, LookupError, ValueError) as e:
            await self._status(va, {"attachError": {"time": _now(), "message": str(e)}})
            raise
        await self._status(
            va, {"attached": True, "attachmentMetadata": context or None, "attachError": None}
        )
        self._attached.add(uid)
        return None

    def _volume(self, va: Obj) -> tuple[Obj, Obj]:
        """(PV-like spec, its csi source) for the attachment's persistent or inline volume."""
        source = (va.get("spec") or {}).get("source") or {}
        name = source.get("persistentVolumeName")
        if name:
            pv = self.volumes.get(name)
            if pv is None:
                raise LookupError(f"persistentvolume {name} not found")
        else:
            pv = {"metadata": {"name": ""}, "spec": source.get("inlineVolumeSpec") or {}}
        src = (pv.get("spec") or {}).get("csi")
        if not src:
            raise ValueError("the attachment's volume is not a CSI volume")
        return pv, src

    def _node_id(self, va: Obj) -> str:
        node = va["spec"]["nodeName"]
        nid = c.node_id(self.csinodes.get(node), self.nodes.get(node), self.driver)
        if not nid:
            raise LookupError(f"CSINode {node} does not contain driver {self.driver}")
        return nid

    async def attach(self, va: Obj) -> dict[str, str]:
        pv, src = self._volume(va)
        if not self.publishes:
            return {}
        modes = (pv.get("spec") or {}).get("accessModes") or []
        req = csi.ControllerPublishVolumeRequest(
            volume_id=src["volumeHandle"],
            node_id=self._node_id(va),
            volume_capability=c.pv_capability(
                pv, self.ctx.caps.controller("SINGLE_NODE_MULTI_WRITER")
            ),
            readonly=bool(src.get("readOnly")) or modes == ["ReadOnlyMany"],
            secrets=await c.read_secret(self.client, src.get("controllerPublishSecretRef")),
            volume_context=dict(src.get("volumeAttributes") or {}),
        )
        return await self.csi.controller_publish_volume(req, timeout=self.ctx.timeout)

    async def detach(self, va: Obj) -> None:
        if not self.publishes:
            return
        try:
            _, src = self._volume(va)
        except LookupError:
            return  # the PV is gone; nothing names the volume any more
        try:
            secrets = await c.read_secret(self.client, src.get("controllerPublishSecretRef"))
        except c.errors.StatusError:
            secrets = {}
        try:
            await self.csi.controller_unpublish_volume(
                src["volumeHandle"], self._node_id(va), secrets, timeout=self.ctx.timeout
            )
        except csierrors.NotFoundError:
            pass  # the volume or node is gone: it is not attached
        except csierrors.CSIError as e:
            await self._status(va, {"detachError": {"time": _now(), "message": str(e)}})
            raise

    async def _status(self, va: Obj, status: Obj) -> None:
        await c.ignore_not_found(
            self.client.patch(
                c.VAS, va["metadata"]["name"], {"status": status}, subresource="status"
            )
        )
