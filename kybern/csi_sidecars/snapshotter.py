"""The snapshotter: the snapshot controller and kubernetes-csi's csi-snapshotter in one loop
for this driver. A `VolumeSnapshot` of a bound claim of this driver (its class, or the default
VolumeSnapshotClass naming the driver) gets a `VolumeSnapshotContent` `snapcontent-<uid>`
referring back to it; the content is cut with `CreateSnapshot` (named `snapshot-<uid>`, the class
parameters and snapshotter secret) and its status (`snapshotHandle`, `readyToUse`, `restoreSize`,
`creationTime`) is mirrored into the snapshot's. A pre-provisioned content (`snapshotHandle`) is
read back with `ListSnapshots`. Finalizers keep a snapshot until its content is gone and a
content until `DeleteSnapshot` removed the data (deletion policy `Delete`); `Retain` keeps it."""

from __future__ import annotations

import datetime
from typing import Any

from kybern.client import informer
from kybern.csi import csi
from kybern.csi_sidecars import common as c

Obj = dict[str, Any]
VS_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
VSC_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
ANN_DEFAULT = "snapshot.storage.kubernetes.io/is-default-class"


def _rfc3339(ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Snapshotter(c.Loop):
    name = "csi-snapshotter"
    component = "csi-snapshotter"

    def __init__(self, ctx: c.Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.snapshots = f.informer(c.SNAPSHOTS)
        self.contents = f.informer(c.CONTENTS)
        self.classes = f.informer(c.SNAPSHOT_CLASSES)
        self.claims = f.informer(c.PVCS)
        self.volumes = f.informer(c.PVS)
        self.snapshots.add_handlers(
            informer.Handlers(on_add=self._vs, on_update=lambda o, n: self._vs(n))
        )
        self.contents.add_handlers(
            informer.Handlers(
                on_add=self._vsc, on_update=lambda o, n: self._vsc(n), on_delete=self._vsc_gone
            )
        )

    def _vs(self, vs: Obj) -> None:
        self.queue.add("vs:" + informer.key_of(vs))

    def _vsc(self, vsc: Obj) -> None:
        self.queue.add("vsc:" + vsc["metadata"]["name"])
        self._vsc_gone(vsc)

    def _vsc_gone(self, vsc: Obj) -> None:
        ref = (vsc.get("spec") or {}).get("volumeSnapshotRef") or {}
        if ref.get("name"):
            self.queue.add(f"vs:{ref.get('namespace', '')}/{ref['name']}")

    async def reconcile(self, key: str) -> c.Result | None:
        kind, _, rest = key.partition(":")
        if kind == "vsc":
            vsc = self.contents.get(rest)
            if vsc is not None and (vsc.get("spec") or {}).get("driver") == self.driver:
                await self.sync_content(vsc)
            return None
        ns, _, name = rest.rpartition("/")
        vs = self.snapshots.get(name, ns)
        if vs is not None:
            await self.sync_snapshot(vs)
        return None

    # ---- VolumeSnapshot -----------------------------------------------------------------------

    def snapshot_class(self, vs: Obj) -> Obj | None:
        name = (vs.get("spec") or {}).get("volumeSnapshotClassName")
        if name:
            return self.classes.get(name)
        return next(
            (
                k
                for k in self.classes.list()
                if k.get("driver") == self.driver
                and (k["metadata"].get("annotations") or {}).get(ANN_DEFAULT) == "true"
            ),
            None,
        )

    def content_name(self, vs: Obj) -> str:
        bound = (vs.get("status") or {}).get("boundVolumeSnapshotContentName")
        pre = ((vs.get("spec") or {}).get("source") or {}).get("volumeSnapshotContentName")
        return str(bound or pre or f"snapcontent-{vs['metadata']['uid']}")

    async def sync_snapshot(self, vs: Obj) -> None:
        fins = list(vs["metadata"].get("finalizers") or [])
        content = self.contents.get(self.content_name(vs))
        if content is not None and (content.get("spec") or {}).get("driver") != self.driver:
            return
        if c.deleting(vs):
            if VS_FINALIZER not in fins:
                return
            if content is not None and content["spec"].get("deletionPolicy") == "Delete":
                if not c.deleting(content):
                    await c.ignore_not_found(
                        self.client.delete(c.CONTENTS, content["metadata"]["name"])
                    )
                return  # finish once the content is gone
            await c.set_finalizers(
                self.client, c.SNAPSHOTS, vs, [f for f in fins if f != VS_FINALIZER]
            )
            return
        if content is None:
            content = await self._new_content(vs)
            if content is None:
                return
        if VS_FINALIZER not in fins:
            vs = await c.set_finalizers(self.client, c.SNAPSHOTS, vs, [*fins, VS_FINALIZER]) or vs
        await self._mirror(vs, content)

    async def _new_content(self, vs: Obj) -> Obj | None:
        source = (vs.get("spec") or {}).get("source") or {}
        klass = self.snapshot_class(vs)
        if klass is None or klass.get("driver") != self.driver:
            return None
        claim_name = source.get("persistentVolumeClaimName")
        if not claim_name:
            return None
        ns = vs["metadata"]["namespace"]
        pvc = self.claims.get(claim_name, ns)
        pv = self.volumes.get(((pvc or {}).get("spec") or {}).get("volumeName") or "")
        src = ((pv or {}).get("spec") or {}).get("csi") or {}
        if src.get("driver") != self.driver:
            self.recorder.event(
                vs, "Warning", "SnapshotPending", f"waiting for claim {claim_name} to be bound"
            )
            return None
        m = vs["metadata"]
        content: Obj = {
            "apiVersion": f"{c.SNAPSHOT_GROUP}/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": self.content_name(vs)},
            "spec": {
                "volumeSnapshotRef": {
                    "kind": "VolumeSnapshot",
                    "apiVersion": f"{c.SNAPSHOT_GROUP}/v1",
                    "namespace": ns,
                    "name": m["name"],
                    "uid": m["uid"],
                },
                "source": {"volumeHandle": src["volumeHandle"]},
                "driver": self.driver,
                "deletionPolicy": klass.get("deletionPolicy") or "Delete",
                "volumeSnapshotClassName": klass["metadata"]["name"],
            },
        }
        try:
            out: Obj = await self.client.create(c.CONTENTS, content)
        except c.errors.StatusError as e:
            if e.code != 409:
                raise
            out = await self.client.get(c.CONTENTS, content["metadata"]["name"])
        return out

    async def _mirror(self, vs: Obj, content: Obj) -> None:
        cs = content.get("status") or {}
        status: Obj = {"boundVolumeSnapshotContentName": content["metadata"]["name"]}
        status["readyToUse"] = bool(cs.get("readyToUse"))
        if cs.get("restoreSize") is not None:
            status["restoreSize"] = c.format_bytes(int(cs["restoreSize"]))
        if cs.get("creationTime"):
            status["creationTime"] = _rfc3339(int(cs["creationTime"]))
        if cs.get("error"):
            status["error"] = cs["error"]
        old = vs.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return
        m = vs["metadata"]
        await c.ignore_not_found(
            self.client.patch(
                c.SNAPSHOTS, m["name"], {"status": status}, m["namespace"], subresource="status"
            )
        )

    # ---- VolumeSnapshotContent ----------------------------------------------------------------

    async def sync_content(self, vsc: Obj) -> None:
        fins = list(vsc["metadata"].get("finalizers") or [])
        spec, status = vsc.get("spec") or {}, vsc.get("status") or {}
        if c.deleting(vsc):
            if VSC_FINALIZER in fins:
                handle = status.get("snapshotHandle")
                if handle and spec.get("deletionPolicy") == "Delete":
                    secrets = await self._secrets(spec)
                    await self.csi.delete_snapshot(handle, secrets, timeout=self.ctx.timeout)
                await c.set_finalizers(
                    self.client, c.CONTENTS, vsc, [f for f in fins if f != VSC_FINALIZER]
                )
            return
        if VSC_FINALIZER not in fins:
            vsc = (
                await c.set_finalizers(self.client, c.CONTENTS, vsc, [*fins, VSC_FINALIZER]) or vsc
            )
        ref = spec.get("volumeSnapshotRef") or {}
        if ref.get("name") and spec.get("deletionPolicy") == "Delete":
            vs = self.snapshots.get(ref["name"], ref.get("namespace", ""))
            if (
                self.snapshots.synced.is_set()
                and (vs is None or vs["metadata"].get("uid") != ref.get("uid"))
                and status.get("snapshotHandle")
            ):
                await c.ignore_not_found(self.client.delete(c.CONTENTS, vsc["metadata"]["name"]))
                return
        if status.get("snapshotHandle") and status.get("readyToUse"):
            return
        source = spec.get("source") or {}
        if source.get("volumeHandle"):
            params = (self.classes.get(spec.get("volumeSnapshotClassName") or "") or {}).get(
                "parameters"
            ) or {}
            req = csi.CreateSnapshotRequest(
                source_volume_id=source["volumeHandle"],
                name=f"snapshot-{ref.get('uid') or vsc['metadata']['uid']}",
                parameters=c.driver_parameters(params),
                secrets=await self._secrets(spec),
            )
            snap = await self.csi.create_snapshot(req, timeout=self.ctx.timeout)
        elif source.get("snapshotHandle"):
            listed = await self.csi.list_snapshots(
                csi.ListSnapshotsRequest(snapshot_id=source["snapshotHandle"]),
                timeout=self.ctx.timeout,
            )
            if not listed.entries:
                raise LookupError(f"snapshot {source['snapshotHandle']} does not exist")
            snap = listed.entries[0].snapshot
        else:
            return
        new = {
            "snapshotHandle": snap.snapshot_id,
            "readyToUse": snap.ready_to_use,
            "restoreSize": snap.size_bytes,
            "creationTime": snap.creation_time.ToNanoseconds(),
        }
        await c.ignore_not_found(
            self.client.patch(
                c.CONTENTS, vsc["metadata"]["name"], {"status": new}, subresource="status"
            )
        )

    async def _secrets(self, spec: Obj) -> dict[str, str]:
        klass = self.classes.get(spec.get("volumeSnapshotClassName") or "") or {}
        ref = c.secret_ref(klass.get("parameters") or {}, "snapshotter")
        return await c.read_secret(self.client, ref)
