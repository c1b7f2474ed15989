"""The StatefulSet controller: pods with stable names `<set>-<ordinal>` (hostname = name,
subdomain = serviceName, labels `statefulset.kubernetes.io/pod-name` and
`apps.kubernetes.io/pod-index`), a PersistentVolumeClaim `<template>-<set>-<ordinal>` per
volumeClaimTemplate created before its pod, OrderedReady management (create in ordinal order,
each waiting for the previous to be Running and Ready; remove from the highest ordinal, one
at a time) or Parallel, failed pods recreated, and RollingUpdate from the highest ordinal down
to `partition` with ControllerRevisions (currentRevision/updateRevision) or OnDelete; status
replicas/readyReplicas/availableReplicas/currentReplicas/updatedReplicas."""

from __future__ import annotations

import copy
import re
from typing import Any

from kybern.api import errors, selectors
from kybern.client import informer
from kybern.controllers import common, history

Obj = dict[str, Any]
STS = common.STATEFULSETS
POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"


def ordinal(sts_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod["metadata"]["name"])
    return int(m.group(1)) if m else None


def claim_name(template: Obj, sts: Obj, ord_: int) -> str:
    return f"{template['metadata']['name']}-{sts['metadata']['name']}-{ord_}"


def is_healthy(pod: Obj, min_ready: int, now: float) -> bool:
    return (
        common.pod_phase(pod) == "Running"
        and not common.deleting(pod)
        and common.is_pod_available(pod, min_ready, now)
    )


def new_pod(sts: Obj, template: Obj, ord_: int, rev_hash: str) -> Obj:
    name = f"{sts['metadata']['name']}-{ord_}"
    pod = common.pod_from_template(
        template,
        sts,
        STS,
        name=name,
        labels={POD_NAME: name, POD_INDEX: str(ord_), history.HASH_LABEL: rev_hash},
    )
    spec = pod["spec"]
    spec["hostname"] = name
    if (sts.get("spec") or {}).get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    vols = [v for v in spec.get("volumes") or []]
    for t in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
        vname = t["metadata"]["name"]
        vols = [v for v in vols if v.get("name") != vname]
        vols.append(
            {"name": vname, "persistentVolumeClaim": {"claimName": claim_name(t, sts, ord_)}}
        )
    if vols:
        spec["volumes"] = vols
    return pod


class StatefulSetController(common.Base):
    name = "statefulset"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.sets = common.shared(ctx, STS)
        self.pods = common.shared(ctx, common.PODS)
        self.revisions = common.shared(ctx, common.REVISIONS)
        self.claims = common.shared(ctx, common.PVCS)
        self.sets.add_handlers(informer.Handlers(self.enqueue, lambda old, new: self.enqueue(new)))
        self.pods.add_handlers(
            informer.Handlers(self._pod, lambda old, new: self._pod(new), self._pod)
        )

    def _pod(self, pod: Obj) -> None:
        ns = pod["metadata"].get("namespace", "")
        if common.controller_ref(pod) is not None:
            sts = common.resolve_owner(self.sets, "StatefulSet", ns, pod)
            if sts is not None:
                self.enqueue(sts)
            return
        labels = pod["metadata"].get("labels") or {}
        for sts in self.sets.by_index("namespace", ns):
            if _selector(sts).matches(labels):
                self.enqueue(sts)

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        cached = self.sets.get(name, ns)
        if cached is None:
            return None
        sts = copy.deepcopy(cached)
        pods = await common.claim(
            self.client,
            common.PODS,
            sts,
            STS,
            _selector(sts),
            self.pods.by_index("namespace", ns),
            common.adopt_check(self.client, STS, sts),
        )
        spec = sts.get("spec") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if common.deleting(sts):
            return None
        update_rev, revs, collisions = await history.sync(
            self.client, self.revisions, sts, STS, template, labels
        )
        status = sts.get("status") or {}
        current_rev = next(
            (r for r in revs if r["metadata"]["name"] == status.get("currentRevision")), update_rev
        )
        replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        members: dict[int, Obj] = {}
        condemned: list[Obj] = []
        for p in pods:
            o = ordinal(name, p)
            if o is None:
                continue
            if o < replicas:
                members[o] = p
            else:
                condemned.append(p)
        await self._update_pods(sts, members, condemned, replicas, current_rev, update_rev)
        new_status = self._status(sts, pods, replicas, current_rev, update_rev, collisions)
        live = {history.hash_of(current_rev), history.hash_of(update_rev)} | {
            str((p["metadata"].get("labels") or {}).get(history.HASH_LABEL)) for p in pods
        }
        await history.cleanup(
            self.client, sts, revs, live, int(spec.get("revisionHistoryLimit", 10) or 0)
        )
        if new_status != status:
            new = dict(sts)
            new["status"] = new_status
            await common.ignore_not_found(self.client.update_status(STS, new))
        min_ready = int(spec.get("minReadySeconds") or 0)
        if min_ready and new_status.get("readyReplicas", 0) != new_status.get(
            "availableReplicas", 0
        ):
            return common.Result(requeue_after=float(min_ready))
        return None

    def _template_for(self, sts: Obj, ord_: int, current: Obj, update: Obj) -> tuple[Obj, str]:
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if current["metadata"]["name"] != update["metadata"]["name"] and (
            strategy.get("type") == "OnDelete" or ord_ < partition
        ):
            return history.template_of(current), history.hash_of(current)
        return spec.get("template") or {}, history.hash_of(update)

    async def _update_pods(
        self,
        sts: Obj,
        members: dict[int, Obj],
        condemned: list[Obj],
        replicas: int,
        current: Obj,
        update: Obj,
    ) -> None:
        spec = sts.get("spec") or {}
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.clock()
        unhealthy = 0
        for o in range(replicas):
            pod = members.get(o)
            if pod is None:
                template, h = self._template_for(sts, o, current, update)
                await self._create(sts, template, o, h)
                if monotonic:
                    return
                continue
            if common.is_pod_terminal(pod) and not common.deleting(pod):
                await self._delete(
                    sts, pod, "failed" if common.pod_phase(pod) == "Failed" else "done"
                )
                if monotonic:
                    return
                continue
            await self._ensure_claims(sts, o)
            if not is_healthy(pod, min_ready, now):
                unhealthy += 1
                if monotonic:
                    return
        for pod in sorted(condemned, key=lambda p: -(ordinal(sts["metadata"]["name"], p) or 0)):
            if common.deleting(pod):
                if monotonic:
                    return
                continue
            if monotonic and unhealthy:
                return
            await self._scaled_claims(sts, pod)
            await self._delete(sts, pod, "scale down")
            if monotonic:
                return
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        target = history.hash_of(update)
        for o in range(replicas - 1, partition - 1, -1):
            pod = members.get(o)
            if pod is None:
                return
            have = (pod["metadata"].get("labels") or {}).get(history.HASH_LABEL)
            if have != target and not common.deleting(pod):
                await self._delete(sts, pod, "update")
                return
            if not is_healthy(pod, min_ready, now):
                return

    async def _create(self, sts: Obj, template: Obj, o: int, h: str) -> None:
        await self._ensure_claims(sts, o)
        pod = new_pod(sts, template, o, h)
        try:
            await self.client.create(common.PODS, pod)
        except errors.StatusError as e:
            if e.code == 409:
                return
            self.recorder.event(
                sts,
                "Warning",
                "FailedCreate",
                f"create Pod {pod['metadata']['name']} in StatefulSet "
                f"{sts['metadata']['name']} failed error: {e.message}",
            )
            raise
        self.recorder.event(
            sts,
            "Normal",
            "SuccessfulCreate",
            f"create Pod {pod['metadata']['name']} in StatefulSet "
            f"{sts['metadata']['name']} successful",
        )

    async def _delete(self, sts: Obj, pod: Obj, why: str) -> None:
        m = pod["metadata"]
        await common.ignore_not_found(
            self.client.delete(common.PODS, m["name"], m["namespace"], uid=m["uid"])
        )
        self.recorder.event(
            sts,
            "Normal",
            "SuccessfulDelete",
            f"delete Pod {m['name']} in StatefulSet {sts['metadata']['name']} successful",
        )

    async def _ensure_claims(self, sts: Obj, o: int) -> None:
        spec = sts.get("spec") or {}
        ns = sts["metadata"]["namespace"]
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        match = ((spec.get("selector") or {}).get("matchLabels")) or {}
        for t in spec.get("volumeClaimTemplates") or []:
            cname = claim_name(t, sts, o)
            if self.claims.get(cname, ns) is not None:
                continue
            meta: Obj = {
                "name": cname,
                "namespace": ns,
                "labels": {**(t["metadata"].get("labels") or {}), **match},
            }
            if t["metadata"].get("annotations"):
                meta["annotations"] = dict(t["metadata"]["annotations"])
            if retention.get("whenDeleted") == "Delete":
                meta["ownerReferences"] = [common.new_controller_ref(sts, STS)]
            pvc = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta,
                "spec": copy.deepcopy(t.get("spec") or {}),
            }
            try:
                await self.client.create(common.PVCS, pvc)
            except errors.StatusError as e:
                if e.code != 409:
                    self.recorder.event(
                        sts,
                        "Warning",
                        "FailedCreate",
                        f"create Claim {cname} for StatefulSet {sts['metadata']['name']} "
                        f"failed error: {e.message}",
                    )
                    raise
                continue
            self.recorder.event(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Claim {cname} Pod {sts['metadata']['name']}-{o} in StatefulSet "
                f"{sts['metadata']['name']} success",
            )

    async def _scaled_claims(self, sts: Obj, pod: Obj) -> None:
        """whenScaled: Delete — the claims of a removed ordinal become owned by its pod."""
        spec = sts.get("spec") or {}
        if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") != "Delete":
            return
        o = ordinal(sts["metadata"]["name"], pod)
        if o is None:
            return
        ref = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
            "blockOwnerDeletion": True,
        }
        for t in spec.get("volumeClaimTemplates") or []:
            pvc = self.claims.get(claim_name(t, sts, o), sts["metadata"]["namespace"])
            if pvc is None:
                continue
            refs = [
                r for r in pvc["metadata"].get("ownerReferences") or [] if r.get("kind") != "Pod"
            ]
            await common.ignore_not_found(
                self.client.patch(
                    common.PVCS,
                    pvc["metadata"]["name"],
                    {"metadata": {"ownerReferences": [*refs, ref]}},
                    pvc["metadata"]["namespace"],
                )
            )

    def _status(
        self, sts: Obj, pods: list[Obj], replicas: int, current: Obj, update: Obj, collisions: int
    ) -> Obj:
        now = self.clock()
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        mine = [p for p in pods if ordinal(sts["metadata"]["name"], p) is not None]
        ch, uh = history.hash_of(current), history.hash_of(update)
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(mine),
            "readyReplicas": sum(1 for p in mine if common.is_pod_ready(p)),
            "availableReplicas": sum(1 for p in mine if common.is_pod_available(p, min_ready, now)),
            "currentReplicas": sum(
                1 for p in mine if (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) == ch
            ),
            "updatedReplicas": sum(
                1 for p in mine if (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) == uh
            ),
            "currentRevision": current["metadata"]["name"],
            "updateRevision": update["metadata"]["name"],
            "collisionCount": collisions,
        }
        if (
            status["updatedReplicas"] == replicas
            and status["readyReplicas"] == replicas
            and status["replicas"] == replicas
        ):
            status["currentRevision"] = status["updateRevision"]
            status["currentReplicas"] = status["updatedReplicas"]
        if (sts.get("status") or {}).get("conditions"):
            status["conditions"] = sts["status"]["conditions"]
        for k in ("readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"):
            if not status[k]:
                del status[k]
        return status


def _selector(sts: Obj) -> selectors.LabelSelector:
    try:
        s = selectors.from_label_selector_object((sts.get("spec") or {}).get("selector"))
    except errors.StatusError:
        return selectors.LabelSelector.nothing()
    return selectors.LabelSelector.nothing() if s.empty else s
