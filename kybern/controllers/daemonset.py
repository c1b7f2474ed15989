"""The DaemonSet controller: one pod per eligible node — nodeSelector and required node
affinity match, NoSchedule/NoExecute taints tolerated (with the tolerations Kubernetes adds to
daemon pods) — following node additions, changes and removals. As in Kubernetes, pods are
created with a required node affinity to their node (`matchFields metadata.name`) and the
scheduler binds them. Failed pods and extra pods on a node are deleted; nodes that stop being
eligible lose their pod (NoExecute) or keep it (NoSchedule). Template changes roll out through
ControllerRevisions with the RollingUpdate strategy (maxUnavailable) or on delete."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from kybern.api import errors, selectors
from kybern.client import informer
from kybern.controllers import common, history, placement
from kybern.controllers import rollout as ro

Obj = dict[str, Any]
DS = common.DAEMONSETS
DAEMON_TOLERATIONS = (
    (placement.NOT_READY, "NoExecute"),
    (placement.UNREACHABLE, "NoExecute"),
    (placement.DISK_PRESSURE, "NoSchedule"),
    (placement.MEMORY_PRESSURE, "NoSchedule"),
    (placement.PID_PRESSURE, "NoSchedule"),
    (placement.UNSCHEDULABLE, "NoSchedule"),
)


def daemon_pod_spec(ds: Obj) -> Obj:
    """The template's pod spec with the tolerations every daemon pod gets."""
    spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
    tols: list[Obj] = list(spec.get("tolerations") or [])
    wanted = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append((placement.NETWORK_UNAVAILABLE, "NoSchedule"))
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tols):
            tols.append({"key": key, "operator": "Exists", "effect": effect})
    spec["tolerations"] = tols
    return spec


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run a pod here, should keep an existing one)."""
    spec = daemon_pod_spec(ds)
    if spec.get("nodeName") and spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    if not placement.node_matches(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tols = spec.get("tolerations") or []
    if placement.untolerated(tols, taints, ("NoExecute",)):
        return False, False
    if placement.untolerated(tols, taints, ("NoSchedule",)):
        return False, True
    return True, True


def pod_node(pod: Obj) -> str:
    """The node a daemon pod is for: spec.nodeName, or its node affinity before binding."""
    name = (pod.get("spec") or {}).get("nodeName")
    if name:
        return str(name)
    req = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in req.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and f.get("values"):
                return str(f["values"][0])
    return ""


def with_node_affinity(spec: Obj, node: str) -> Obj:
    """ReplaceDaemonSetPodNodeNameNodeAffinity."""
    spec = copy.deepcopy(spec)
    affinity = spec.setdefault("affinity", {})
    na = affinity.setdefault("nodeAffinity", {})
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }
    return spec


class DaemonSetController(common.Base):
    name = "daemonset"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.expectations = common.Expectations(time.monotonic)
        self.dss = common.shared(ctx, DS)
        self.nodes = common.shared(ctx, common.NODES)
        self.pods = common.shared(ctx, common.PODS)
        self.revisions = common.shared(ctx, common.REVISIONS)
        self.dss.add_handlers(
            informer.Handlers(self.enqueue, lambda old, new: self.enqueue(new), self._ds_deleted)
        )
        self.nodes.add_handlers(
            informer.Handlers(lambda n: self._all(), self._node_updated, lambda n: self._all())
        )
        self.pods.add_handlers(
            informer.Handlers(self._pod, lambda old, new: self._pod(new), self._pod_deleted)
        )

    # ---- handlers ----------------------------------------------------------------------

    def _all(self) -> None:
        for ds in self.dss.list():
            self.enqueue(ds)

    def _ds_deleted(self, ds: Obj) -> None:
        self.expectations.forget(informer.key_of(ds))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        def shape(n: Obj) -> Any:
            ready = common.get_condition(n.get("status") or {}, "Ready") or {}
            return (
                n["metadata"].get("labels"),
                (n.get("spec") or {}).get("taints"),
                ready.get("status"),
            )

        if shape(old) != shape(new):
            self._all()

    def _owner(self, pod: Obj) -> Obj | None:
        return common.resolve_owner(
            self.dss, "DaemonSet", pod["metadata"].get("namespace", ""), pod
        )

    def _pod(self, pod: Obj) -> None:
        if common.controller_ref(pod) is None:
            labels = pod["metadata"].get("labels") or {}
            for ds in self.dss.by_index("namespace", pod["metadata"].get("namespace", "")):
                if _selector(ds).matches(labels):
                    self.enqueue(ds)
            return
        owner = self._owner(pod)
        if owner is None:
            return
        key = informer.key_of(owner)
        if common.deleting(pod):
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        else:
            self.expectations.creation_observed(key)
        self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        ds = self._owner(pod)
        if ds is not None:
            key = informer.key_of(ds)
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
            self.queue.add(key)

    # ---- reconcile ---------------------------------------------------------------------

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        cached = self.dss.get(name, ns)
        if cached is None:
            self.expectations.forget(key)
            return None
        ds = copy.deepcopy(cached)
        pods = await common.claim(
            self.client,
            common.PODS,
            ds,
            DS,
            _selector(ds),
            self.pods.by_index("namespace", ns),
            common.adopt_check(self.client, DS, ds),
        )
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(pod_node(p), []).append(p)
        if common.deleting(ds):
            await self._write_status(ds, self._status(ds, by_node, ""))
            return None
        template = (ds.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        rev, revs, collisions = await history.sync(
            self.client, self.revisions, ds, DS, template, labels
        )
        h = history.hash_of(rev)
        if collisions != int((ds.get("status") or {}).get("collisionCount") or 0):
            ds.setdefault("status", {})["collisionCount"] = collisions
        result: common.Result | None = None
        if self.expectations.satisfied(key):
            result = await self._manage(ds, key, by_node, h)
            strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
            if strategy.get(
                "type", "RollingUpdate"
            ) == "RollingUpdate" and self.expectations.satisfied(key):
                await self._rolling_update(ds, key, by_node, h)
        live = {str((p["metadata"].get("labels") or {}).get(history.HASH_LABEL)) for p in pods}
        limit = int((ds.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
        await history.cleanup(self.client, ds, revs, live | {h}, limit)
        status = self._status(ds, by_node, h)
        await self._write_status(ds, status)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready > 0 and status["numberReady"] != status.get("numberAvailable", 0):
            result = common.Result(requeue_after=float(min_ready))
        return result

    async def _manage(
        self, ds: Obj, key: str, by_node: dict[str, list[Obj]], h: str
    ) -> common.Result | None:
        create: list[str] = []
        delete: list[Obj] = []
        for node in self.nodes.list():
            n = node["metadata"]["name"]
            run, keep = should_run(ds, node)
            pods = [p for p in by_node.get(n, []) if not common.deleting(p)]
            if run and not pods:
                create.append(n)
            elif keep:
                running = []
                for p in pods:
                    if common.is_pod_terminal(p):
                        self.recorder.event(
                            ds,
                            "Warning",
                            "FailedDaemonPod",
                            f"Found failed daemon pod {p['metadata']['namespace']}/"
                            f"{p['metadata']['name']} on node {n}, will try to kill it",
                        )
                        delete.append(p)
                    else:
                        running.append(p)
                running.sort(
                    key=lambda p: (
                        common.parse_time(p["metadata"].get("creationTimestamp")) or 0.0,
                        p["metadata"]["name"],
                    )
                )
                delete += running[1:]
                if run and not running:
                    create.append(n)
            else:
                delete += pods
        names = {node["metadata"]["name"] for node in self.nodes.list()}
        for n, pods in by_node.items():
            if n not in names:  # the node is gone
                delete += [p for p in pods if not common.deleting(p)]
        await self._sync_nodes(ds, key, create, delete, h)
        return None

    async def _sync_nodes(
        self, ds: Obj, key: str, create: list[str], delete: list[Obj], h: str
    ) -> None:
        self.expectations.expect(
            key, adds=len(create), deletes=[p["metadata"]["uid"] for p in delete]
        )
        template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
        spec = daemon_pod_spec(ds)
        first: BaseException | None = None
        todo = list(create)
        for batch in common.slow_start_batches(len(create)):
            chunk, todo = todo[:batch], todo[batch:]
            results = await asyncio.gather(
                *(self._create(ds, template, spec, n, h) for n in chunk), return_exceptions=True
            )
            errs = [r for r in results if isinstance(r, BaseException)]
            if errs:
                self.expectations.lower(key, adds=len(errs) + len(todo))
                first = errs[0]
                break
        for p in delete:
            m = p["metadata"]
            try:
                await self.client.delete(common.PODS, m["name"], m["namespace"], uid=m["uid"])
                self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
            except errors.StatusError as e:
                self.expectations.lower(key, deletes=[m["uid"]])
                if e.code not in (404, 409):
                    first = first or e
        if first is not None:
            raise first if isinstance(first, errors.StatusError) else errors.internal(str(first))

    async def _create(self, ds: Obj, template: Obj, spec: Obj, node: str, h: str) -> None:
        tpl = {**template, "spec": with_node_affinity(spec, node)}
        pod = common.pod_from_template(tpl, ds, DS, labels={history.HASH_LABEL: h})
        try:
            out = await self.client.create(common.PODS, pod)
        except errors.StatusError as e:
            self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.event(
            ds, "Normal", "SuccessfulCreate", f"Created pod: {out['metadata']['name']}"
        )

    async def _rolling_update(
        self, ds: Obj, key: str, by_node: dict[str, list[Obj]], h: str
    ) -> None:
        now = self.clock()
        spec = ds.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        desired = sum(1 for n in nodes.values() if should_run(ds, n)[0])
        max_unavailable = ro.scaled_value(ru.get("maxUnavailable", 1), desired, True)
        unavailable = 0
        replace: list[Obj] = []
        candidates: list[Obj] = []
        for n, node in sorted(nodes.items()):
            if not should_run(ds, node)[1]:
                continue
            pods = [p for p in by_node.get(n, []) if not common.deleting(p)]
            new = [
                p for p in pods if (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) == h
            ]
            old = [p for p in pods if p not in new]
            if (not old and not new) or (old and new):
                unavailable += 1
            elif new:
                if not common.is_pod_available(new[0], min_ready, now):
                    unavailable += 1
            elif not common.is_pod_available(old[0], min_ready, now):
                replace.append(old[0])
                unavailable += 1
            elif unavailable < max_unavailable:
                candidates.append(old[0])
        room = min(max(max_unavailable - unavailable, 0), len(candidates))
        victims = replace + candidates[:room]
        if victims:
            await self._sync_nodes(ds, key, [], victims, h)

    def _status(self, ds: Obj, by_node: dict[str, list[Obj]], h: str) -> Obj:
        now = self.clock()
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        desired = current = misscheduled = ready = available = updated = 0
        for node in self.nodes.list():
            n = node["metadata"]["name"]
            run, _ = should_run(ds, node)
            pods = sorted(
                (p for p in by_node.get(n, []) if not common.deleting(p)),
                key=lambda p: common.parse_time(p["metadata"].get("creationTimestamp")) or 0.0,
            )
            if run:
                desired += 1
                if pods:
                    current += 1
                    p = pods[0]
                    ready += common.is_pod_ready(p)
                    available += common.is_pod_available(p, min_ready, now)
                    if h and (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) == h:
                        updated += 1
            elif pods:
                misscheduled += 1
        status: Obj = {
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        extra = {
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
        }
        status.update({k: v for k, v in extra.items() if v})
        old = ds.get("status") or {}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        return status

    async def _write_status(self, ds: Obj, status: Obj) -> None:
        if status == (self.dss.get(ds["metadata"]["name"], ds["metadata"]["namespace"]) or {}).get(
            "status"
        ):
            return
        new = dict(ds)
        new["status"] = status
        await common.ignore_not_found(self.client.update_status(DS, new))


def _selector(ds: Obj) -> selectors.LabelSelector:
    try:
        s = selectors.from_label_selector_object((ds.get("spec") or {}).get("selector"))
    except errors.StatusError:
        return selectors.LabelSelector.nothing()
    return selectors.LabelSelector.nothing() if s.empty else s
