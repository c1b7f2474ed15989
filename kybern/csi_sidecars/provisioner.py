"""The provisioner (kubernetes-csi's external-provisioner): for every claim the PV controller
handed to this driver (`volume.kubernetes.io/storage-provisioner`) — for `WaitForFirstConsumer`
classes once the scheduler picked a node — it calls `CreateVolume` named `pvc-<claim uid>` with
the claim's size and access modes, the class's opaque parameters and mount options, the
provisioner secret, a content source (a ready VolumeSnapshot, or another claim to clone) and the
topology the volume must reach (the selected node's segment, or every segment of nodes running
the driver, narrowed by `allowedTopologies`), then creates the PersistentVolume pre-bound to the
claim with the driver's topology as node affinity and the node/controller secrets as references.
A provisioning failure on a selected node that cannot host the volume removes the selected-node
annotation so the pod is scheduled again. Released volumes of this driver with reclaim policy
`Delete` are deleted with `DeleteVolume`, then their PV (held until then by a finalizer)."""

from __future__ import annotations

import time
import uuid
import zlib
from typing import Any

from kybern.api import errors
from kybern.client import informer
from kybern.csi import csi, spec
from kybern.csi import errors as csierrors
from kybern.csi_sidecars import common as c

Obj = dict[str, Any]
FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
ANN_DELETE_SECRET_NAME = "volume.kubernetes.io/provisioner-deletion-secret-name"
ANN_DELETE_SECRET_NS = "volume.kubernetes.io/provisioner-deletion-secret-namespace"
IDENTITY_KEY = "storage.kubernetes.io/csiProvisionerIdentity"
SECRET_REFS = {
    "controllerPublish": "controllerPublishSecretRef",
    "nodeStage": "nodeStageSecretRef",
    "nodePublish": "nodePublishSecretRef",
    "controllerExpand": "controllerExpandSecretRef",
    "nodeExpand": "nodeExpandSecretRef",
}


class ProvisioningError(Exception):
    """Provisioning cannot proceed; `reschedule` when another node may succeed."""

    def __init__(self, message: str, *, reschedule: bool = False) -> None:
        super().__init__(message)
        self.reschedule = reschedule


def _notes(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


class Provisioner(c.Loop):
    name = "csi-provisioner"
    component = "csi-provisioner"

    def __init__(self, ctx: c.Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.claims = f.informer(c.PVCS)
        self.volumes = f.informer(c.PVS)
        self.classes = f.informer(c.CLASSES)
        self.csinodes = f.informer(c.CSINODES)
        self.nodes = f.informer(c.NODES)
        self.identity = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:4]}-{self.driver}"
        self.claims.add_handlers(
            informer.Handlers(on_add=self._claim, on_update=lambda o, n: self._claim(n))
        )
        self.volumes.add_handlers(
            informer.Handlers(
                on_add=self._volume, on_update=lambda o, n: self._volume(n), on_delete=self._gone
            )
        )
        # done but maybe not yet seen by the informers: PV names created, handles deleted
        self._created: set[str] = set()
        self._deleted: set[str] = set()

    def _claim(self, pvc: Obj) -> None:
        self.queue.add("pvc:" + informer.key_of(pvc))

    def _volume(self, pv: Obj) -> None:
        self._created.discard(pv["metadata"]["name"])
        self.queue.add("pv:" + pv["metadata"]["name"])

    def _gone(self, pv: Obj) -> None:
        self._deleted.discard(((pv.get("spec") or {}).get("csi") or {}).get("volumeHandle"))

    async def reconcile(self, key: str) -> c.Result | None:
        kind, _, rest = key.partition(":")
        if kind == "pv":
            pv = self.volumes.get(rest)
            if pv is not None:
                await self.sync_volume(pv)
            return None
        ns, _, name = rest.rpartition("/")
        pvc = self.claims.get(name, ns)
        if pvc is not None:
            await self.sync_claim(pvc)
        return None

    # ---- provisioning -------------------------------------------------------------------------

    def _default_class(self) -> str:
        defaults = [
            sc for sc in self.classes.list() if _notes(sc).get(c.ANN_DEFAULT_CLASS) == "true"
        ]
        if not defaults:
            return ""
        best = max(defaults, key=lambda sc: sc["metadata"].get("creationTimestamp") or "")
        return str(best["metadata"]["name"])

    def class_of(self, pvc: Obj) -> str:
        name = (pvc.get("spec") or {}).get("storageClassName")
        return self._default_class() if name is None else str(name)

    def wants(self, pvc: Obj) -> Obj | None:
        """The claim's StorageClass when this driver should provision it now, else None."""
        if c.deleting(pvc) or (pvc.get("spec") or {}).get("volumeName"):
            return None
        notes = _notes(pvc)
        if self.driver not in (
            notes.get(c.ANN_STORAGE_PROVISIONER),
            notes.get(c.ANN_BETA_STORAGE_PROVISIONER),
        ):
            return None
        sc = self.classes.get(self.class_of(pvc))
        if sc is None or sc.get("provisioner") != self.driver:
            return None
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not notes.get(
            c.ANN_SELECTED_NODE
        ):
            return None
        return sc

    async def sync_claim(self, pvc: Obj) -> None:
        sc = self.wants(pvc)
        if sc is None:
            return
        pv_name = f"pvc-{pvc['metadata']['uid']}"
        if self.volumes.get(pv_name) is not None or pv_name in self._created:
            return
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        self.recorder.event(
            pvc,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{ns}/{name}"',
        )
        try:
            pv = await self.provision(pvc, sc, pv_name)
        except (ProvisioningError, csierrors.CSIError, ValueError) as e:
            msg = f"failed to provision volume with StorageClass {sc['metadata']['name']!r}: {e}"
            self.recorder.event(pvc, "Warning", "ProvisioningFailed", msg)
            reschedule = isinstance(e, ProvisioningError) and e.reschedule
            reschedule |= isinstance(e, csierrors.ResourceExhaustedError)
            if reschedule and _notes(pvc).get(c.ANN_SELECTED_NODE):
                await self._unselect(pvc)
                return
            raise
        try:
            await self.client.create(c.PVS, pv)
        except errors.StatusError as e:
            if e.code != 409:
                raise
        self._created.add(pv_name)
        self.recorder.event(
            pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}"
        )

    async def _unselect(self, pvc: Obj) -> None:
        m = pvc["metadata"]
        patch = {"metadata": {"annotations": {c.ANN_SELECTED_NODE: None}}}
        await c.ignore_not_found(self.client.patch(c.PVCS, m["name"], patch, m["namespace"]))

    def _topology(self, pvc: Obj, sc: Obj) -> csi.TopologyRequirement | None:
        if not self.ctx.caps.topology:
            return None
        selected = _notes(pvc).get(c.ANN_SELECTED_NODE)
        nodes = [selected] if selected else [n["metadata"]["name"] for n in self.nodes.list()]
        segments: list[dict[str, str]] = []
        for name in sorted(nodes):
            keys = next(
                (
                    d.get("topologyKeys") or []
                    for d in ((self.csinodes.get(name) or {}).get("spec") or {}).get("drivers")
                    or ()
                    if d.get("name") == self.driver
                ),
                None,
            )
            node = self.nodes.get(name)
            seg = spec.node_topology(
                (node or {}).get("metadata", {}).get("labels") or {}, keys or ()
            )
            if keys is None or seg is None:
                if selected:
                    raise ProvisioningError(
                        f"node {selected} has no topology for driver {self.driver} in its CSINode",
                        reschedule=True,
                    )
                continue
            allowed = sc.get("allowedTopologies") or []
            if allowed and not any(
                all(
                    seg.get(e.get("key", "")) in (e.get("values") or [])
                    for e in t.get("matchLabelExpressions") or ()
                )
                for t in allowed
            ):
                if selected:
                    raise ProvisioningError("the selected node is outside allowedTopologies")
                continue
            if seg not in segments:
                segments.append(seg)
        if not segments:
            return None
        topo = [csi.Topology(segments=s) for s in segments]
        shift = zlib.crc32(pvc["metadata"]["name"].encode()) % len(topo)
        return csi.TopologyRequirement(requisite=topo, preferred=topo[shift:] + topo[:shift])

    async def _content_source(
        self, pvc: Obj, size: int
    ) -> tuple[csi.VolumeContentSource | None, int]:
        pspec = pvc.get("spec") or {}
        src = pspec.get("dataSourceRef") or pspec.get("dataSource")
        if not src:
            return None, 0
        ns = pvc["metadata"]["namespace"]
        kind, group = src.get("kind"), src.get("apiGroup") or ""
        if kind == "VolumeSnapshot" and group == c.SNAPSHOT_GROUP:
            if not self.ctx.caps.controller("CREATE_DELETE_SNAPSHOT"):
                raise ProvisioningError("the driver cannot restore snapshots")
            vs = await self.client.get(c.SNAPSHOTS, src["name"], ns)
            status = vs.get("status") or {}
            if not status.get("readyToUse") or not status.get("boundVolumeSnapshotContentName"):
                raise ProvisioningError(f"snapshot {src['name']} is not ready")
            content = await self.client.get(c.CONTENTS, status["boundVolumeSnapshotContentName"])
            handle = (content.get("status") or {}).get("snapshotHandle")
            if (content.get("spec") or {}).get("driver") != self.driver or not handle:
                raise ProvisioningError(f"snapshot {src['name']} is not of driver {self.driver}")
            out = csi.VolumeContentSource()
            out.snapshot.snapshot_id = handle
            return out, c.quantity_bytes(status.get("restoreSize") or 0)
        if kind == "PersistentVolumeClaim" and not group:
            if not self.ctx.caps.controller("CLONE_VOLUME"):
                raise ProvisioningError("the driver cannot clone volumes")
            source = self.claims.get(src["name"], ns)
            vol = ((source or {}).get("spec") or {}).get("volumeName")
            pv = self.volumes.get(vol) if vol else None
            handle = (((pv or {}).get("spec") or {}).get("csi") or {}).get("volumeHandle")
            if pv is None or pv["spec"]["csi"].get("driver") != self.driver or not handle:
                raise ProvisioningError(f"claim {src['name']} is not a bound volume of this driver")
            if self.class_of(source or {}) != self.class_of(pvc):
                raise ProvisioningError("a clone must use the storage class of its source")
            source_size = c.quantity_bytes((pv["spec"].get("capacity") or {}).get("storage"))
            if size < source_size:
                raise ProvisioningError("a clone cannot be smaller than its source")
            out = csi.VolumeContentSource()
            out.volume.volume_id = handle
            return out, source_size
        raise ProvisioningError(f"unsupported data source {group}/{kind}")

    async def provision(self, pvc: Obj, sc: Obj, pv_name: str) -> Obj:
        pspec = pvc.get("spec") or {}
        params = dict(sc.get("parameters") or {})
        block = pspec.get("volumeMode") == "Block"
        fs_type = "" if block else params.get(c.FSTYPE, "")
        resources = pspec.get("resources") or {}
        size = c.quantity_bytes((resources.get("requests") or {}).get("storage") or 0)
        limit = c.quantity_bytes((resources.get("limits") or {}).get("storage") or 0)
        multi = self.ctx.caps.controller("SINGLE_NODE_MULTI_WRITER")
        caps = [
            spec.volume_capability(
                m,
                block=block,
                fs_type=fs_type,
                mount_flags=sc.get("mountOptions") or (),
                multi_writer=multi,
            )
            for m in pspec.get("accessModes") or ["ReadWriteOnce"]
        ]
        source, _ = await self._content_source(pvc, size)
        prov_ref = c.secret_ref(params, "provisioner", pvc, pv_name)
        req = csi.CreateVolumeRequest(
            name=pv_name,
            capacity_range=csi.CapacityRange(required_bytes=size, limit_bytes=limit),
            volume_capabilities=caps,
            parameters=c.driver_parameters(params),
            secrets=await c.read_secret(self.client, prov_ref),
        )
        if source is not None:
            req.volume_content_source.CopyFrom(source)
        topology = self._topology(pvc, sc)
        if topology is not None:
            req.accessibility_requirements.CopyFrom(topology)
        vol = await self.csi.create_volume(req, timeout=self.ctx.timeout)
        return self.persistent_volume(pvc, sc, pv_name, vol, fs_type, prov_ref, size)

    def persistent_volume(
        self,
        pvc: Obj,
        sc: Obj,
        pv_name: str,
        vol: csi.Volume,
        fs_type: str,
        prov_ref: Obj | None,
        size: int,
    ) -> Obj:
        pspec = pvc.get("spec") or {}
        params = sc.get("parameters") or {}
        m = pvc["metadata"]
        notes = {c.ANN_PROVISIONED_BY: self.driver}
        if prov_ref:
            notes[ANN_DELETE_SECRET_NAME] = prov_ref["name"]
            notes[ANN_DELETE_SECRET_NS] = prov_ref["namespace"]
        source: Obj = {
            "driver": self.driver,
            "volumeHandle": vol.volume_id,
            "volumeAttributes": {**dict(vol.volume_context), IDENTITY_KEY: self.identity},
        }
        if fs_type:
            source["fsType"] = fs_type
        for kind, field in SECRET_REFS.items():
            ref = c.secret_ref(params, kind, pvc, pv_name)
            if ref:
                source[field] = ref
        out: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": notes, "finalizers": [FINALIZER]},
            "spec": {
                "accessModes": pspec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {"storage": c.format_bytes(vol.capacity_bytes or size)},
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": m["namespace"],
                    "name": m["name"],
                    "uid": m["uid"],
                    "resourceVersion": m["resourceVersion"],
                },
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                "storageClassName": sc["metadata"]["name"],
                "volumeMode": pspec.get("volumeMode") or "Filesystem",
                "csi": source,
            },
        }
        if sc.get("mountOptions"):
            out["spec"]["mountOptions"] = list(sc["mountOptions"])
        terms = spec.topology_terms(dict(t.segments) for t in vol.accessible_topology)
        if terms:
            out["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": terms}}
        return out

    # ---- deletion -----------------------------------------------------------------------------

    async def sync_volume(self, pv: Obj) -> None:
        pspec = pv.get("spec") or {}
        if (pspec.get("csi") or {}).get("driver") != self.driver:
            return
        if _notes(pv).get(c.ANN_PROVISIONED_BY) != self.driver:
            return
        fins = list(pv["metadata"].get("finalizers") or [])
        policy = pspec.get("persistentVolumeReclaimPolicy") or "Delete"
        phase = (pv.get("status") or {}).get("phase")
        released = phase in ("Released", "Failed") or (c.deleting(pv) and phase != "Bound")
        if policy != "Delete":
            if c.deleting(pv) and FINALIZER in fins:
                await c.set_finalizers(self.client, c.PVS, pv, [f for f in fins if f != FINALIZER])
            return
        if not released:
            return
        notes = _notes(pv)
        ref = None
        if notes.get(ANN_DELETE_SECRET_NAME):
            ref = {"name": notes[ANN_DELETE_SECRET_NAME], "namespace": notes[ANN_DELETE_SECRET_NS]}
        handle = pspec["csi"]["volumeHandle"]
        if handle not in self._deleted:
            secrets = await c.read_secret(self.client, ref)
            await self.csi.delete_volume(handle, secrets, timeout=self.ctx.timeout)
            self._deleted.add(handle)
        if FINALIZER in fins:
            pv = (
                await c.set_finalizers(self.client, c.PVS, pv, [f for f in fins if f != FINALIZER])
                or pv
            )
        if not c.deleting(pv):
            await c.ignore_not_found(self.client.delete(c.PVS, pv["metadata"]["name"]))
