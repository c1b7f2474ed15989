"""The ReplicaSet controller and the ReplicationController manager (one implementation, two
resources): keep `spec.replicas` active pods matching the selector — adopting orphans and
releasing pods that stopped matching, creating in slow-start batches and deleting the
lowest-ranked pods, with expectations so a slow watch never causes over-creation — and
report `replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas`,
`observedGeneration` and the `ReplicaFailure` condition. Fed by the pod and owner informers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kybern.api import errors, registry, selectors
from kybern.client import informer
from kybern.controllers import common

Obj = dict[str, Any]
BURST_REPLICAS = 500


class ReplicaSetController(common.Base):
    name = "replicaset"
    res: registry.Resource = common.REPLICASETS

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.expectations = common.Expectations(time.monotonic)
        self.owners = common.shared(ctx, self.res)
        self.pods = common.shared(ctx, common.PODS)
        self.owners.add_handlers(
            informer.Handlers(
                on_add=self.enqueue,
                on_update=lambda old, new: self.enqueue(new),
                on_delete=self._owner_deleted,
            )
        )
        self.pods.add_handlers(
            informer.Handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        )

    # ---- selectors ---------------------------------------------------------------------

    def selector_of(self, owner: Obj) -> selectors.LabelSelector:
        sel = (owner.get("spec") or {}).get("selector")
        try:
            s = selectors.from_label_selector_object(sel)
        except errors.StatusError:
            return selectors.LabelSelector.nothing()
        return selectors.LabelSelector.nothing() if s.empty else s

    def _matching_owners(self, pod: Obj) -> list[Obj]:
        labels = pod["metadata"].get("labels") or {}
        ns = pod["metadata"].get("namespace", "")
        return [
            o for o in self.owners.by_index("namespace", ns) if self.selector_of(o).matches(labels)
        ]

    # ---- handlers ----------------------------------------------------------------------

    def _owner_deleted(self, owner: Obj) -> None:
        key = informer.key_of(owner)
        self.expectations.forget(key)
        self.queue.add(key)

    def _owner_of(self, pod: Obj) -> Obj | None:
        return common.resolve_owner(
            self.owners, self.res.kind, pod["metadata"].get("namespace", ""), pod
        )

    def _pod_added(self, pod: Obj) -> None:
        if common.deleting(pod):
            self._pod_deleted(pod)
            return
        if common.controller_ref(pod) is not None:
            owner = self._owner_of(pod)
            if owner is not None:
                key = informer.key_of(owner)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for owner in self._matching_owners(pod):
            self.enqueue(owner)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if common.deleting(new):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = common.controller_ref(old), common.controller_ref(new)
        if old_ref != new_ref and old_ref is not None:
            prev = self._owner_of(old)
            if prev is not None:
                self.enqueue(prev)
        if new_ref is not None:
            owner = self._owner_of(new)
            if owner is None:
                return
            self.enqueue(owner)
            min_ready = int((owner.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not common.is_pod_ready(old) and common.is_pod_ready(new):
                self.queue.add_after(informer.key_of(owner), min_ready + 1.0)
            return
        if labels_changed or old_ref != new_ref:
            for owner in self._matching_owners(new):
                self.enqueue(owner)

    def _pod_deleted(self, pod: Obj) -> None:
        owner = self._owner_of(pod)
        if owner is None:
            return
        key = informer.key_of(owner)
        self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        self.queue.add(key)

    # ---- reconcile ---------------------------------------------------------------------

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        owner = self.owners.get(name, ns)
        if owner is None:
            self.expectations.forget(key)
            return None
        needs_sync = self.expectations.satisfied(key) and not common.deleting(owner)
        selector = self.selector_of(owner)
        is_active = common.is_pod_active
        active = [p for p in common.claim_candidates(self.pods, owner) if is_active(p)]
        pods = await common.claim(
            self.client,
            common.PODS,
            owner,
            self.res,
            selector,
            active,
            common.adopt_check(self.client, self.res, owner),
        )
        failure: Exception | None = None
        if needs_sync:
            try:
                await self._manage(owner, key, pods)
            except errors.StatusError as e:
                failure = e
        status = self.calculate_status(owner, pods, failure)
        await self._update_status(owner, status)
        if failure is not None:
            raise failure
        min_ready = int((owner.get("spec") or {}).get("minReadySeconds") or 0)
        if (
            needs_sync
            and min_ready > 0
            and status.get("readyReplicas", 0) != status.get("availableReplicas", 0)
        ):
            return common.Result(requeue_after=float(min_ready))
        return None

    async def _manage(self, owner: Obj, key: str, pods: list[Obj]) -> None:
        spec = owner.get("spec") or {}
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        diff = len(pods) - want
        if diff < 0:
            await self._create(owner, key, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            victims = common.rank_for_deletion(pods, pods)[: min(diff, BURST_REPLICAS)]
            await self._delete(owner, key, victims)

    async def _create(self, owner: Obj, key: str, count: int) -> None:
        template = (owner.get("spec") or {}).get("template") or {}
        self.expectations.expect(key, adds=count)
        created = 0
        for batch in common.slow_start_batches(count):
            results = await asyncio.gather(
                *(
                    self.client.create(
                        common.PODS, common.pod_from_template(template, owner, self.res)
                    )
                    for _ in range(batch)
                ),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if isinstance(r, dict):
                    created += 1
                    self.recorder.event(
                        owner, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}"
                    )
            if failures:
                self.expectations.lower(key, adds=count - created)
                err = failures[0]
                self.recorder.event(owner, "Warning", "FailedCreate", f"Error creating: {err}")
                if isinstance(err, errors.StatusError):
                    raise err
                raise errors.internal(str(err))

    async def _delete(self, owner: Obj, key: str, victims: list[Obj]) -> None:
        uids = [p["metadata"]["uid"] for p in victims]
        self.expectations.expect(key, deletes=uids)
        results = await asyncio.gather(
            *(
                self.client.delete(
                    common.PODS, p["metadata"]["name"], p["metadata"]["namespace"], uid=uid
                )
                for p, uid in zip(victims, uids, strict=True)
            ),
            return_exceptions=True,
        )
        first: BaseException | None = None
        for p, uid, r in zip(victims, uids, results, strict=True):
            if isinstance(r, BaseException):
                self.expectations.lower(key, deletes=[uid])
                if isinstance(r, errors.StatusError) and r.code in (404, 409):
                    continue
                first = first or r
                self.recorder.event(owner, "Warning", "FailedDelete", f"Error deleting: {r}")
            else:
                self.recorder.event(
                    owner, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}"
                )
        if first is not None:
            raise first if isinstance(first, errors.StatusError) else errors.internal(str(first))

    def calculate_status(self, owner: Obj, pods: list[Obj], failure: Exception | None) -> Obj:
        spec = owner.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.clock()
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        tsel = selectors.selector_from_set(tlabels)
        status: Obj = dict(owner.get("status") or {})
        status["replicas"] = len(pods)
        labeled = ready = available = 0
        matches, ready_and_available = tsel.matches, common.ready_and_available
        for p in pods:  # one pass: this runs over every pod of the owner on every sync
            if matches(p["metadata"].get("labels") or {}):
                labeled += 1
            r, a = ready_and_available(p, min_ready, now)
            ready += r
            available += a
        counts = {
            "fullyLabeledReplicas": labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
        }
        for k, v in counts.items():
            if v:
                status[k] = v
            else:
                status.pop(k, None)
        status["observedGeneration"] = owner["metadata"].get("generation", 1)
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        if failure is not None and len(pods) < want:
            common.set_condition(
                status,
                "ReplicaFailure",
                "True",
                "FailedCreate",
                str(failure),
                common.format_time(now),
            )
        elif failure is None:
            common.remove_condition(status, "ReplicaFailure")
        return status

    async def _update_status(self, owner: Obj, status: Obj) -> None:
        if status == (owner.get("status") or {}):
            return
        new = dict(owner)
        new["status"] = status
        try:
            await self.client.update_status(self.res, new)
        except errors.StatusError as e:
            if e.code != 404:
                raise


class ReplicationManager(ReplicaSetController):
    """ReplicationControllers: the same loop; the selector is a plain label map."""

    name = "replicationcontroller"
    component = "replication-controller"
    res = common.RCS

    def selector_of(self, owner: Obj) -> selectors.LabelSelector:
        sel = (owner.get("spec") or {}).get("selector")
        if not isinstance(sel, dict) or not sel:
            return selectors.LabelSelector.nothing()
        return selectors.selector_from_set(sel)
