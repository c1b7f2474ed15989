"""The PersistentVolume controller's binder (kube-controller-manager's `persistentvolume-binder`):
binds claims to volumes and keeps both phases right. An unbound claim takes a volume pre-bound to
it, or the smallest available volume of its class that fits (static binding); failing that, a
claim whose class has a provisioner is annotated `volume.kubernetes.io/storage-provisioner` for
the external provisioner — for a `WaitForFirstConsumer` class only once the scheduler has chosen
a node (`volume.kubernetes.io/selected-node`). Binding writes the PV's `claimRef` and `Bound`
phase, then the claim's `volumeName`, `pv.kubernetes.io/bind-completed` and `Bound` status with
capacity and access modes, so an interrupted bind resumes. A bound claim whose volume vanished is
`Lost`; a volume whose claim is gone is `Released`, then kept (`Retain`), left to its external
provisioner (`Delete`) or `Failed`. A claim without a class gets the default StorageClass."""

from __future__ import annotations

import logging
from typing import Any

from kybern.api import errors
from kybern.client import informer
from kybern.controllers import common
from kybern.controllers import persistentvolume_util as u

log = logging.getLogger("kybern.controllers.pv")
Obj = dict[str, Any]
PVS = common._res("", "v1", "persistentvolumes")
CLASSES = common._res("storage.k8s.io", "v1", "storageclasses")
RESYNC = 15.0
MSG_EXTERNAL = (
    "Waiting for a volume to be created either by the external provisioner '{}' or manually "
    "by the system administrator. If volume creation is delayed, please verify that the "
    "provisioner is running and correctly registered."
)


def _phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


class PersistentVolumeController(common.Base):
    name = "persistentvolume-binder"
    component = "persistentvolume-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.claims = common.shared(ctx, common.PVCS)
        self.volumes = ctx.factory.informer(PVS)
        self.classes = ctx.factory.informer(CLASSES)
        self._no_retroactive: set[str] = set()
        self.claims.add_handlers(
            informer.Handlers(
                on_add=self._claim, on_update=lambda o, n: self._claim(n), on_delete=self._gone
            )
        )
        self.volumes.add_handlers(
            informer.Handlers(
                on_add=self._volume, on_update=lambda o, n: self._volume(n), on_delete=self._volume
            )
        )
        self.classes.add_handlers(
            informer.Handlers(on_add=self._class, on_update=lambda o, n: self._class(n))
        )

    # ---- events -------------------------------------------------------------------------------

    def _claim(self, pvc: Obj) -> None:
        self.queue.add("pvc:" + informer.key_of(pvc))

    def _gone(self, pvc: Obj) -> None:
        name = (pvc.get("spec") or {}).get("volumeName")
        if name:
            self.queue.add("pv:" + name)

    def _volume(self, pv: Obj) -> None:
        self.queue.add("pv:" + pv["metadata"]["name"])
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.queue.add(f"pvc:{ref.get('namespace', '')}/{ref['name']}")

    def _class(self, sc: Obj) -> None:
        for pvc in self.claims.list():
            if _phase(pvc) in ("", "Pending"):
                self._claim(pvc)

    def default_class(self) -> str | None:
        sc = u.default_class(self.classes.list())
        return sc["metadata"]["name"] if sc else None

    async def reconcile(self, key: str) -> common.Result | None:
        kind, _, rest = key.partition(":")
        if kind == "pv":
            pv = self.volumes.get(rest)
            if pv is not None:
                await self.sync_volume(pv)
            return None
        ns, name = common.split_key(rest)
        pvc = self.claims.get(name, ns)
        if pvc is None:
            return None
        await self.sync_claim(pvc)
        if _phase(pvc) != "Bound":
            return common.Result(requeue_after=RESYNC)
        return None

    # ---- claims -------------------------------------------------------------------------------

    async def sync_claim(self, pvc: Obj) -> None:
        default = self.default_class()
        if (pvc.get("spec") or {}).get("storageClassName") is None and default:
            pvc = await self._assign_default(pvc, default)
        cls = u.claim_class(pvc, default)
        if u.ANN_BIND_COMPLETED not in u.notes_of(pvc):
            await self._sync_unbound(pvc, cls)
        else:
            await self._sync_bound(pvc)

    async def _assign_default(self, pvc: Obj, default: str) -> Obj:
        """Retroactive default class assignment; API servers that keep the class immutable
        refuse it, and then the default class stays implied."""
        uid = pvc["metadata"].get("uid", "")
        if uid in self._no_retroactive:
            return pvc
        m = pvc["metadata"]
        patch: Obj = {"metadata": {"resourceVersion": m["resourceVersion"]}}
        patch["spec"] = {"storageClassName": default}
        try:
            return await self.client.patch(common.PVCS, m["name"], patch, m.get("namespace", ""))
        except errors.StatusError as e:
            if e.code not in (403, 422):
                raise
            self._no_retroactive.add(uid)
            return pvc

    async def _sync_unbound(self, pvc: Obj, cls: str) -> None:
        spec = pvc.get("spec") or {}
        notes = u.notes_of(pvc)
        vol_name = spec.get("volumeName")
        if vol_name:
            pv = self.volumes.get(vol_name)
            if pv is None:
                await self._claim_phase(pvc, "Pending")
                return
            ref = (pv.get("spec") or {}).get("claimRef")
            if not ref or u.claim_ref_matches(pv, pvc):
                await self.bind(pv, pvc)
                return
            await self._claim_phase(pvc, "Pending")
            self.recorder.event(
                pvc,
                "Warning",
                "FailedBinding",
                f'volume "{vol_name}" already bound to a different claim.',
            )
            return
        sc = self.classes.get(cls) if cls else None
        delayed = sc is not None and sc.get("volumeBindingMode") == u.WAIT_FOR_FIRST_CONSUMER
        pv = u.find_best_match(pvc, self.volumes.list(), cls, delayed=delayed)
        if pv is not None:
            await self.bind(pv, pvc)
            return
        await self._claim_phase(pvc, "Pending")
        if delayed and u.ANN_SELECTED_NODE not in notes:
            self.recorder.event(
                pvc,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
            return
        provisioner = (sc or {}).get("provisioner") or ""
        if sc is not None and provisioner and provisioner != u.NO_PROVISIONER:
            if notes.get(u.ANN_STORAGE_PROVISIONER) != provisioner:
                m = pvc["metadata"]
                ann = {u.ANN_STORAGE_PROVISIONER: provisioner}
                ann[u.ANN_BETA_STORAGE_PROVISIONER] = provisioner
                await self.client.patch(
                    common.PVCS, m["name"], {"metadata": {"annotations": ann}}, m["namespace"]
                )
            self.recorder.event(
                pvc, "Normal", "ExternalProvisioning", MSG_EXTERNAL.format(provisioner)
            )
            return
        why = (
            "no persistent volumes available for this claim and no storage class is set"
            if not cls
            else f'storageclass.storage.k8s.io "{cls}" not found'
            if sc is None
            else "no persistent volumes available for this claim"
        )
        self.recorder.event(pvc, "Normal", "FailedBinding", why)

    async def _sync_bound(self, pvc: Obj) -> None:
        vol_name = (pvc.get("spec") or {}).get("volumeName")
        pv = self.volumes.get(vol_name) if vol_name else None
        if pv is None:
            if _phase(pvc) != "Lost":
                await self._claim_phase(pvc, "Lost")
                what = "its PersistentVolume" if vol_name else "reference to PersistentVolume"
                self.recorder.event(
                    pvc,
                    "Warning",
                    "ClaimLost",
                    f"Bound claim has lost {what}. Data on the volume is lost!",
                )
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or ref.get("uid") == pvc["metadata"].get("uid"):
            await self.bind(pv, pvc)
            return
        if _phase(pvc) != "Lost":
            await self._claim_phase(pvc, "Lost")
            self.recorder.event(
                pvc,
                "Warning",
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )

    async def _claim_phase(self, pvc: Obj, phase: str) -> None:
        if _phase(pvc) == phase:
            return
        m = pvc["metadata"]
        await common.ignore_not_found(
            self.client.patch(
                common.PVCS,
                m["name"],
                {"status": {"phase": phase}},
                m["namespace"],
                subresource="status",
            )
        )

    # ---- binding ------------------------------------------------------------------------------

    async def bind(self, pv: Obj, pvc: Obj) -> None:
        """kube's `bind`: PV claimRef, PV phase, claim volumeName and annotations, claim
        status — each step skipped when already done."""
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or ref.get("uid") != pvc["metadata"].get("uid"):
            new = {**pv, "spec": {**pv["spec"], "claimRef": u.claim_ref(pvc)}}
            if not ref:
                meta = dict(new["metadata"])
                meta["annotations"] = {**u.notes_of(pv), u.ANN_BOUND_BY_CONTROLLER: "yes"}
                new["metadata"] = meta
            pv = await self.client.update(PVS, new)
        if _phase(pv) != "Bound":
            pv = await self.client.patch(
                PVS, pv["metadata"]["name"], {"status": {"phase": "Bound"}}, subresource="status"
            )
        name = pv["metadata"]["name"]
        spec = pvc.get("spec") or {}
        notes = u.notes_of(pvc)
        if spec.get("volumeName") != name or notes.get(u.ANN_BIND_COMPLETED) != "yes":
            ann = {**notes, u.ANN_BIND_COMPLETED: "yes"}
            if spec.get("volumeName") != name:
                ann[u.ANN_BOUND_BY_CONTROLLER] = "yes"
            new = {**pvc, "spec": {**spec, "volumeName": name}}
            new["metadata"] = {**pvc["metadata"], "annotations": ann}
            pvc = await self.client.update(common.PVCS, new)
        status = pvc.get("status") or {}
        patch: Obj = {}
        if status.get("phase") != "Bound":
            patch["phase"] = "Bound"
        modes = (pv.get("spec") or {}).get("accessModes")
        if modes and status.get("accessModes") != modes:
            patch["accessModes"] = modes
        cap = ((pv.get("spec") or {}).get("capacity") or {}).get("storage")
        if cap and not (status.get("capacity") or {}).get("storage"):
            patch["capacity"] = {"storage": cap}
        if patch:
            m = pvc["metadata"]
            await self.client.patch(
                common.PVCS, m["name"], {"status": patch}, m["namespace"], subresource="status"
            )

    # ---- volumes ------------------------------------------------------------------------------

    async def sync_volume(self, pv: Obj) -> None:
        spec = pv.get("spec") or {}
        ref = spec.get("claimRef")
        name = pv["metadata"]["name"]
        if not ref or not ref.get("uid"):
            if _phase(pv) not in ("Available",) and not pv["metadata"].get("deletionTimestamp"):
                await self._volume_phase(pv, "Available")
            return
        claim = self.claims.get(ref.get("name", ""), ref.get("namespace", ""))
        if claim is None or claim["metadata"].get("uid") != ref["uid"]:
            claim = await common.ignore_not_found(
                self.client.get(common.PVCS, ref.get("name", ""), ref.get("namespace", ""))
            )
            if claim is not None and claim["metadata"].get("uid") != ref["uid"]:
                claim = None
        if claim is None:
            await self._released(pv)
            return
        bound_to = (claim.get("spec") or {}).get("volumeName")
        if not bound_to:
            self._claim(claim)  # the claim's sync finishes the binding
            return
        if bound_to == name:
            if _phase(pv) != "Bound":
                await self._volume_phase(pv, "Bound")
            return
        if u.notes_of(pv).get(u.ANN_BOUND_BY_CONTROLLER) and not u.is_external(pv):
            new = {**pv, "spec": {k: v for k, v in spec.items() if k != "claimRef"}}
            notes = {k: v for k, v in u.notes_of(pv).items() if k != u.ANN_BOUND_BY_CONTROLLER}
            new["metadata"] = {**pv["metadata"], "annotations": notes}
            pv = await self.client.update(PVS, new)
            await self._volume_phase(pv, "Available")
        elif u.is_external(pv):
            await self._released(pv)

    async def _released(self, pv: Obj) -> None:
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if _phase(pv) not in ("Released", "Failed"):
            pv = await self._volume_phase(pv, "Released")
        if policy == "Retain" or _phase(pv) == "Failed":
            return
        if policy == "Delete" and u.is_external(pv):
            return  # the external provisioner deletes the volume and then the PV
        reason = "VolumeFailedDelete" if policy == "Delete" else "VolumeFailedRecycle"
        msg = f"no volume plugin matched for {policy.lower()} of volume {pv['metadata']['name']}"
        await self._volume_phase(pv, "Failed", msg)
        self.recorder.event(pv, "Warning", reason, msg)

    async def _volume_phase(self, pv: Obj, phase: str, message: str = "") -> Obj:
        status: Obj = {"phase": phase}
        if message:
            status["message"] = message
        out = await common.ignore_not_found(
            self.client.patch(PVS, pv["metadata"]["name"], {"status": status}, subresource="status")
        )
        return out if out is not None else pv
