"""The Deployment controller: owns ReplicaSets named `<deployment>-<pod-template-hash>` and
moves pods from the old ones to the new one — RollingUpdate within maxSurge/maxUnavailable,
Recreate (all old pods gone before new ones start) — proportional scaling mid-rollout, paused
deployments, revision annotations (so `kubectl rollout undo` works: the old ReplicaSet whose
template comes back becomes the new one again), revisionHistoryLimit cleanup and the
`Progressing`/`Available` conditions with progressDeadlineSeconds. The arithmetic lives in
`rollout`; fed by the deployment, ReplicaSet and pod informers."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import errors, selectors
from kybern.client import informer
from kybern.controllers import common
from kybern.controllers import rollout as ro

Obj = dict[str, Any]
D, RS = common.DEPLOYMENTS, common.REPLICASETS


class DeploymentController(common.Base):
    name = "deployment"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.deployments = common.shared(ctx, D)
        self.rss = common.shared(ctx, RS)
        self.pods = common.shared(ctx, common.PODS)
        self.deployments.add_handlers(
            informer.Handlers(self.enqueue, lambda o, n: self.enqueue(n), self.enqueue)
        )
        self.rss.add_handlers(informer.Handlers(self._rs_added, self._rs_updated, self._rs_deleted))
        self.pods.add_handlers(informer.Handlers(on_delete=self._pod_deleted))

    # ---- handlers ----------------------------------------------------------------------

    def _owner(self, rs: Obj) -> Obj | None:
        return common.resolve_owner(
            self.deployments, "Deployment", rs["metadata"].get("namespace", ""), rs
        )

    def _matching(self, rs: Obj) -> list[Obj]:
        labels = rs["metadata"].get("labels") or {}
        out = []
        for d in self.deployments.by_index("namespace", rs["metadata"].get("namespace", "")):
            sel = _selector(d)
            if sel is not None and sel.matches(labels):
                out.append(d)
        return out

    def _rs_added(self, rs: Obj) -> None:
        if common.controller_ref(rs) is not None:
            d = self._owner(rs)
            if d is not None:
                self.enqueue(d)
            return
        for d in self._matching(rs):
            self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        old_ref, new_ref = common.controller_ref(old), common.controller_ref(new)
        if old_ref != new_ref and old_ref is not None:
            prev = self._owner(old)
            if prev is not None:
                self.enqueue(prev)
        if new_ref is not None:
            d = self._owner(new)
            if d is not None:
                self.enqueue(d)
        elif old["metadata"].get("labels") != new["metadata"].get("labels") or old_ref:
            for d in self._matching(new):
                self.enqueue(d)

    def _rs_deleted(self, rs: Obj) -> None:
        d = self._owner(rs)
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = common.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rss.get(ref.get("name", ""), pod["metadata"].get("namespace", ""))
        if rs is None:
            return
        d = self._owner(rs)
        if d is not None and not ro.is_rolling(d):
            self.enqueue(d)

    # ---- reconcile ---------------------------------------------------------------------

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        cached = self.deployments.get(name, ns)
        if cached is None:
            return None
        d = copy.deepcopy(cached)
        sel = _selector(d)
        if sel is None or sel.empty:
            self.recorder.event(
                d,
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            status = dict(d.get("status") or {})
            if status.get("observedGeneration") != d["metadata"].get("generation"):
                status["observedGeneration"] = d["metadata"].get("generation")
                await self._write_status(d, status)
            return None
        rss = await common.claim(
            self.client,
            RS,
            d,
            D,
            sel,
            self.rss.by_index("namespace", ns),
            common.adopt_check(self.client, D, d),
        )
        if common.deleting(d):
            new_rs, old = await self._get_all(d, rss, create=False)
            await self._sync_status(d, _all(new_rs, old), new_rs)
            return None
        d = await self._check_paused_conditions(d)
        spec = d.get("spec") or {}
        if spec.get("paused") or await self._is_scaling_event(d, rss):
            await self._sync(d, rss)
            return None
        if ro.is_rolling(d):
            return await self._rollout_rolling(d, rss)
        return await self._rollout_recreate(d, rss)

    # ---- ReplicaSets ---------------------------------------------------------------------

    def _find_new(self, d: Obj, rss: list[Obj]) -> Obj | None:
        template = (d.get("spec") or {}).get("template") or {}
        for rs in sorted(rss, key=ro._created):
            if ro.equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                return rs
        return None

    async def _get_all(
        self, d: Obj, rss: list[Obj], *, create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created when `create`) with
        its revision brought up to date, and the old ones."""
        new_rs = self._find_new(d, rss)
        old = [rs for rs in rss if rs is not new_rs]
        new_revision = str(ro.max_revision(old) + 1)
        if new_rs is not None:
            i = next(i for i, rs in enumerate(rss) if rs is new_rs)
            new_rs = rss[i] = await self._sync_new_rs(d, new_rs, new_revision)
        elif create:
            new_rs = await self._create_new_rs(d, old, new_revision)
            rss.append(new_rs)
        if new_rs is not None:
            await self._set_deployment_revision(d, ro.revision(new_rs))
        return new_rs, old

    async def _sync_new_rs(self, d: Obj, rs: Obj, new_revision: str) -> Obj:
        ann, changed = ro.annotations_for_rs(d, rs, new_revision, exists=True)
        min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
        if changed or ((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
            rs = copy.deepcopy(rs)
            rs["metadata"]["annotations"] = ann
            rs["spec"]["minReadySeconds"] = min_ready
            rs = await self.client.update(RS, rs)
        status = d.get("status") or {}
        if _has_deadline(d) and common.get_condition(status, "Progressing") is None:
            status = copy.deepcopy(status)
            common.set_condition(
                status,
                "Progressing",
                "True",
                "FoundNewReplicaSet",
                f'Found new replica set "{rs["metadata"]["name"]}"',
                common.format_time(self.clock()),
                update_time=True,
            )
            await self._write_status(d, status)
        return rs

    async def _create_new_rs(self, d: Obj, old: list[Obj], new_revision: str) -> Obj:
        spec = d.get("spec") or {}
        status = d.get("status") or {}
        collisions = status.get("collisionCount")
        template = copy.deepcopy(spec.get("template") or {})
        h = ro.template_hash(template, collisions)
        tmeta = template.setdefault("metadata", {})
        tmeta.setdefault("labels", {})[ro.HASH_LABEL] = h
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[ro.HASH_LABEL] = h
        name = f"{d['metadata']['name']}-{h}"
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d["metadata"]["namespace"],
                "labels": dict(tmeta["labels"]),
                "ownerReferences": [common.new_controller_ref(d, D)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds") or 0,
                "selector": selector,
                "template": template,
            },
        }
        ann, _ = ro.annotations_for_rs(d, rs, new_revision, exists=False)
        rs["metadata"]["annotations"] = ann
        size = ro.new_rs_replicas(d, old, None)
        rs["spec"]["replicas"] = size
        ro.set_replicas_annotations(rs, ro.replicas_of(d), ro.replicas_of(d) + ro.max_surge(d))
        try:
            created = await self.client.create(RS, rs)
        except errors.StatusError as e:
            if e.code != 409:
                raise
            existing = await self.client.get(RS, name, d["metadata"]["namespace"])
            if common.owned_by(existing, d) and ro.equal_ignore_hash(
                (existing.get("spec") or {}).get("template") or {}, spec.get("template") or {}
            ):
                return existing
            new_status = copy.deepcopy(status)
            new_status["collisionCount"] = int(collisions or 0) + 1
            await self._write_status(d, new_status)
            raise
        if size > 0:
            self.recorder.event(
                d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {size}"
            )
        if _has_deadline(d):
            new_status = copy.deepcopy(status)
            common.set_condition(
                new_status,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{name}"',
                common.format_time(self.clock()),
                update_time=True,
                force=True,
            )
            await self._write_status(d, new_status)
        return created

    async def _set_deployment_revision(self, d: Obj, rev: int) -> None:
        ann = d["metadata"].get("annotations") or {}
        if not rev or ann.get(ro.REVISION) == str(rev):
            return
        out = await self.client.patch(
            D,
            d["metadata"]["name"],
            {"metadata": {"annotations": {ro.REVISION: str(rev)}}},
            d["metadata"]["namespace"],
        )
        d["metadata"] = out["metadata"]

    async def _scale(self, d: Obj, rs: Obj, size: int) -> tuple[bool, Obj]:
        """scaleReplicaSet: resize and stamp the desired/max replica annotations."""
        old_size = ro.replicas_of(rs)
        new = copy.deepcopy(rs)
        ann_changed = ro.set_replicas_annotations(
            new, ro.replicas_of(d), ro.replicas_of(d) + ro.max_surge(d)
        )
        if old_size == size and not ann_changed:
            return False, rs
        new["spec"]["replicas"] = size
        out = await self.client.update(RS, new)
        if old_size != size:
            direction = "up" if size > old_size else "down"
            self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} "
                f"from {old_size} to {size}",
            )
        return old_size != size, out

    # ---- strategies ----------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> common.Result | None:
        new_rs, old = await self._get_all(d, rss, create=True)
        assert new_rs is not None
        want = ro.replicas_of(d)
        if ro.replicas_of(new_rs) != want:
            if ro.replicas_of(new_rs) > want:
                scaled, new_rs = await self._scale(d, new_rs, want)
            else:
                size = ro.new_rs_replicas(d, _all(new_rs, old), new_rs)
                scaled, new_rs = await self._scale(d, new_rs, size)
            if scaled:
                return await self._sync_rollout_status(d, _all(new_rs, old), new_rs)
        if ro.spec_sum(old) > 0:
            limit = ro.max_scaled_down(d, _all(new_rs, old), new_rs)
            if limit > 0:
                changed = False
                active_old = [rs for rs in old if ro.replicas_of(rs) > 0]
                by_name = {rs["metadata"]["name"]: rs for rs in old}
                for rs, size in ro.cleanup_unhealthy(active_old, limit):
                    scaled, by_name[rs["metadata"]["name"]] = await self._scale(d, rs, size)
                    changed = changed or scaled
                old = list(by_name.values())
                for rs, size in ro.scale_down_old(d, _all(new_rs, old), old):
                    scaled, by_name[rs["metadata"]["name"]] = await self._scale(d, rs, size)
                    changed = changed or scaled
                old = list(by_name.values())
                if changed:
                    return await self._sync_rollout_status(d, _all(new_rs, old), new_rs)
        if ro.is_complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        return await self._sync_rollout_status(d, _all(new_rs, old), new_rs)

    async def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> common.Result | None:
        new_rs, old = await self._get_all(d, rss, create=False)
        scaled_any = False
        by_name = {rs["metadata"]["name"]: rs for rs in old}
        for rs in old:
            if ro.replicas_of(rs) > 0:
                scaled, by_name[rs["metadata"]["name"]] = await self._scale(d, rs, 0)
                scaled_any = scaled_any or scaled
        old = list(by_name.values())
        if scaled_any or self._old_pods_running(new_rs, old):
            return await self._sync_rollout_status(d, _all(new_rs, old), new_rs)
        if new_rs is None:
            new_rs, old = await self._get_all(d, rss, create=True)
        assert new_rs is not None
        scaled, new_rs = await self._scale(d, new_rs, ro.replicas_of(d))
        if not scaled and ro.is_complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        return await self._sync_rollout_status(d, _all(new_rs, old), new_rs)

    def _old_pods_running(self, new_rs: Obj | None, old: list[Obj]) -> bool:
        if sum(ro.status_int(rs, "replicas") for rs in old) > 0:
            return True
        for rs in old:
            for pod in self.pods.by_index("controller", rs["metadata"]["uid"]):
                if not common.is_pod_terminal(pod):
                    return True
        return False

    async def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        new_rs, old = await self._get_all(d, rss, create=False)
        for rs in _all(new_rs, old):
            if ro.replicas_of(rs) <= 0:
                continue
            desired = ro.annotation_int(rs, ro.DESIRED_REPLICAS)
            if desired is not None and desired != ro.replicas_of(d):
                return True
        return False

    async def _sync(self, d: Obj, rss: list[Obj]) -> None:
        """Scaling (and paused deployments): resize without rolling, then status."""
        new_rs, old = await self._get_all(d, rss, create=False)
        new_rs, old = await self._scale_all(d, new_rs, old)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old)
        await self._sync_status(d, _all(new_rs, old), new_rs)

    async def _scale_all(
        self, d: Obj, new_rs: Obj | None, old: list[Obj]
    ) -> tuple[Obj | None, list[Obj]]:
        want = ro.replicas_of(d)
        everything = _all(new_rs, old)
        active = [rs for rs in everything if ro.replicas_of(rs) > 0]
        target: Obj | None = None
        if not active and everything:
            target = new_rs or sorted(old, key=ro._created)[-1]
        elif len(active) == 1:
            target = active[0]
        by_name = {rs["metadata"]["name"]: rs for rs in everything}
        if target is not None:
            _, by_name[target["metadata"]["name"]] = await self._scale(d, target, want)
        elif ro.is_saturated(d, new_rs):
            for rs in old:
                if ro.replicas_of(rs) > 0:
                    _, by_name[rs["metadata"]["name"]] = await self._scale(d, rs, 0)
        elif ro.is_rolling(d):
            sizes = ro.proportional_sizes(d, active, new_rs)
            for rs in active:
                _, by_name[rs["metadata"]["name"]] = await self._scale(
                    d, rs, sizes[rs["metadata"]["name"]]
                )
        new_name = new_rs["metadata"]["name"] if new_rs is not None else None
        return (
            by_name.get(new_name) if new_name else None,
            [rs for n, rs in by_name.items() if n != new_name],
        )

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [rs for rs in old if not common.deleting(rs)]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda rs: (ro.revision(rs), ro._created(rs)))
        for rs in cleanable[:diff]:
            m = rs["metadata"]
            if (
                ro.status_int(rs, "replicas") != 0
                or ro.replicas_of(rs) != 0
                or int(m.get("generation", 1)) > ro.status_int(rs, "observedGeneration")
            ):
                continue
            await common.ignore_not_found(
                self.client.delete(RS, m["name"], m["namespace"], uid=m["uid"])
            )

    # ---- status --------------------------------------------------------------------------

    async def _check_paused_conditions(self, d: Obj) -> Obj:
        if not _has_deadline(d):
            return d
        status = copy.deepcopy(d.get("status") or {})
        cond = common.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return d
        paused = bool((d.get("spec") or {}).get("paused"))
        paused_cond = cond is not None and cond.get("reason") == "DeploymentPaused"
        now = common.format_time(self.clock())
        if paused and not paused_cond:
            common.set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now,
                update_time=True,
            )
        elif not paused and paused_cond:
            common.set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                now,
                update_time=True,
            )
        else:
            return d
        await self._write_status(d, status)
        return d

    async def _sync_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> None:
        status = ro.calculate_status(d, all_rss, new_rs, common.format_time(self.clock()))
        await self._write_status(d, status)

    async def _sync_rollout_status(
        self, d: Obj, all_rss: list[Obj], new_rs: Obj | None
    ) -> common.Result | None:
        now = self.clock()
        ts = common.format_time(now)
        status = ro.calculate_status(d, all_rss, new_rs, ts)
        spec = d.get("spec") or {}
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else ""
        if _has_deadline(d) and not spec.get("paused"):
            if ro.is_complete(d, status):
                if new_rs is not None:
                    common.set_condition(
                        status,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                        ts,
                        update_time=True,
                    )
            elif ro.is_progressing(d, status):
                common.set_condition(
                    status,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                    ts,
                    update_time=True,
                    force=True,
                )
            elif ro.timed_out(d, status, now):
                common.set_condition(
                    status,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    ts,
                    update_time=True,
                )
        failures = [
            c
            for rs in all_rss
            for c in (rs.get("status") or {}).get("conditions") or []
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        ]
        if failures:
            f = failures[0]
            common.set_condition(
                status,
                "ReplicaFailure",
                "True",
                f.get("reason", ""),
                f.get("message", ""),
                ts,
                update_time=True,
            )
        else:
            common.remove_condition(status, "ReplicaFailure")
        if not any(c.get("type") == "Available" for c in status.get("conditions") or []):
            status.pop("conditions", None)
        await self._write_status(d, status)
        return self._requeue_stuck(d, status, now)

    def _requeue_stuck(self, d: Obj, status: Obj, now: float) -> common.Result | None:
        if not _has_deadline(d) or (d.get("spec") or {}).get("paused"):
            return None
        cond = common.get_condition(status, "Progressing")
        if (
            cond is None
            or ro.is_complete(d, status)
            or cond.get("reason")
            in (
                "ProgressDeadlineExceeded",
                "NewReplicaSetAvailable",
            )
        ):
            return None
        since = common.parse_time(cond.get("lastUpdateTime")) or now
        after = since + int((d.get("spec") or {}).get("progressDeadlineSeconds") or 0) - now
        return common.Result(requeue_after=max(after, 0.0) + 1.0)

    async def _write_status(self, d: Obj, status: Obj) -> None:
        if status == (d.get("status") or {}):
            return
        new = dict(d)
        new["status"] = status
        try:
            out = await self.client.update_status(D, new)
        except errors.StatusError as e:
            if e.code == 404:
                return
            raise
        d["metadata"] = out["metadata"]
        d["status"] = out.get("status") or {}


def _selector(d: Obj) -> selectors.LabelSelector | None:
    try:
        return selectors.from_label_selector_object((d.get("spec") or {}).get("selector"))
    except errors.StatusError:
        return None


def _has_deadline(d: Obj) -> bool:
    return (d.get("spec") or {}).get("progressDeadlineSeconds") is not None


def _all(new_rs: Obj | None, old: list[Obj]) -> list[Obj]:
    return [*old, new_rs] if new_rs is not None else list(old)
