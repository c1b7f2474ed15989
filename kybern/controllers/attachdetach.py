"""The attach-detach controller (kube's `attachdetach`): for every node it compares the CSI
volumes its scheduled pods need — claims bound to CSI PersistentVolumes whose driver requires
attachment (`CSIDriver.spec.attachRequired`, true when the driver has no CSIDriver object) —
with the `VolumeAttachment`s naming the node, creates the missing ones (named like the kubelet's
CSI plugin names them: `csi-` + sha256 of volume handle, driver and node) for the driver's
external attacher, deletes those no pod needs any more (a deleting pod holds its volumes while a
container still runs), and reports the attached ones in the node's `status.volumesAttached`
(`kubernetes.io/csi/<driver>^<handle>`)."""

from __future__ import annotations

import hashlib
from typing import Any

from kybern.client import informer
from kybern.controllers import common
from kybern.controllers.persistentvolume import PVS
from kybern.controllers.pvcprotection import claims_of

Obj = dict[str, Any]
VAS = common._res("storage.k8s.io", "v1", "volumeattachments")
CSIDRIVERS = common._res("storage.k8s.io", "v1", "csidrivers")


def attachment_name(handle: str, driver: str, node: str) -> str:
    return "csi-" + hashlib.sha256(f"{handle}{driver}{node}".encode()).hexdigest()


def unique_volume_name(driver: str, handle: str) -> str:
    return f"kubernetes.io/csi/{driver}^{handle}"


def holds_volumes(pod: Obj) -> bool:
    """A scheduled, non-terminal pod; while deleting, only as long as a container runs."""
    if not (pod.get("spec") or {}).get("nodeName") or common.is_pod_terminal(pod):
        return False
    if not common.deleting(pod):
        return True
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any("running" in (s.get("state") or {}) for s in statuses)


def _has_claim(spec: Obj) -> bool:
    """Whether a pod spec has a volume `claims_of` names a claim for."""
    for v in spec.get("volumes") or ():
        if (v.get("persistentVolumeClaim") or {}).get("claimName") or v.get("ephemeral"):
            return True
    return False


def _va_node(va: Obj) -> list[str]:
    n = (va.get("spec") or {}).get("nodeName")
    return [n] if n else []


class AttachDetachController(common.Base):
    name = "attachdetach"
    component = "attachdetach-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.pods = common.shared(ctx, common.PODS)
        self.claims = common.shared(ctx, common.PVCS)
        self.volumes = ctx.factory.informer(PVS)
        self.drivers = ctx.factory.informer(CSIDRIVERS)
        self.nodes = ctx.factory.informer(common.NODES)
        self.attachments = ctx.factory.informer(VAS)
        self.attachments.add_indexer("node", _va_node)
        self.pods.add_handlers(
            informer.Handlers(
                on_add=self._pod,
                on_update=self._pod_moved,
                on_delete=self._pod,
            )
        )
        for inf in (self.claims, self.volumes, self.drivers):
            inf.add_handlers(
                informer.Handlers(
                    on_add=self._all, on_update=lambda o, n: self._all(n), on_delete=self._all
                )
            )
        self.attachments.add_handlers(
            informer.Handlers(
                on_add=self._va, on_update=lambda o, n: self._va(n), on_delete=self._va
            )
        )
        self.nodes.add_handlers(informer.Handlers(on_add=self.enqueue))

    def _pod(self, pod: Obj) -> None:
        """The pod's node, when the pod may need attachments: like kube's desired-state
        populator, which looks only at the changed pod's volumes, a pod with no claim (direct
        or ephemeral) changes nothing, so it does not cost a walk over its node's pods."""
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if node and _has_claim(spec):
            self.queue.add(node)

    def _pod_moved(self, old: Obj, new: Obj) -> None:
        self._pod(old)
        self._pod(new)

    def _va(self, va: Obj) -> None:
        for n in _va_node(va):
            self.queue.add(n)

    def _all(self, _: Obj) -> None:
        for node in {(p.get("spec") or {}).get("nodeName") for p in self.pods.list()}:
            if node:
                self.queue.add(node)

    def attach_required(self, driver: str) -> bool:
        obj = self.drivers.get(driver)
        if obj is None:
            return True
        return (obj.get("spec") or {}).get("attachRequired") is not False

    def desired(self, node: str) -> dict[str, Obj]:
        """The VolumeAttachments `node` needs, by name."""
        out: dict[str, Obj] = {}
        for pod in self.pods.by_index("node", node):
            if not _has_claim(pod.get("spec") or {}) or not holds_volumes(pod):
                continue
            ns = pod["metadata"].get("namespace", "")
            for claim in claims_of(pod):
                pvc = self.claims.get(claim, ns)
                pv_name = ((pvc or {}).get("spec") or {}).get("volumeName")
                pv = self.volumes.get(pv_name) if pv_name else None
                src = ((pv or {}).get("spec") or {}).get("csi")
                if pv is None or not src or not self.attach_required(src["driver"]):
                    continue
                name = attachment_name(src["volumeHandle"], src["driver"], node)
                out[name] = {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "VolumeAttachment",
                    "metadata": {"name": name},
                    "spec": {
                        "attacher": src["driver"],
                        "nodeName": node,
                        "source": {"persistentVolumeName": pv["metadata"]["name"]},
                    },
                }
        return out

    async def reconcile(self, key: str) -> common.Result | None:
        node = key
        want = self.desired(node)
        have = {va["metadata"]["name"]: va for va in self.attachments.by_index("node", node)}
        for name, va in want.items():
            if name not in have:
                await self._create(va)
        for name, va in have.items():
            if name in want or common.deleting(va):
                continue
            if not (va.get("spec") or {}).get("source", {}).get("persistentVolumeName"):
                continue
            await common.ignore_not_found(self.client.delete(VAS, name))
        await self._report(node, [va for n, va in have.items() if n in want])
        return None

    async def _create(self, va: Obj) -> None:
        try:
            await self.client.create(VAS, va)
        except Exception as e:
            if getattr(e, "code", None) != 409:
                raise

    async def _report(self, node: str, attachments: list[Obj]) -> None:
        """`status.volumesAttached` of the node: the attached volumes the node needs."""
        obj = self.nodes.get(node)
        if obj is None:
            return
        attached = []
        for va in attachments:
            if not (va.get("status") or {}).get("attached"):
                continue
            pv = self.volumes.get(va["spec"]["source"].get("persistentVolumeName", ""))
            src = ((pv or {}).get("spec") or {}).get("csi")
            if src:
                name = unique_volume_name(src["driver"], src["volumeHandle"])
                attached.append({"name": name, "devicePath": ""})
        attached.sort(key=lambda a: a["name"])
        if ((obj.get("status") or {}).get("volumesAttached") or []) == attached:
            return
        patch = {"status": {"volumesAttached": attached or None}}
        await common.ignore_not_found(
            self.client.patch(common.NODES, node, patch, subresource="status")
        )
