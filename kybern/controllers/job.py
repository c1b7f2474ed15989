"""The Job controller (NonIndexed completion mode): keeps `parallelism` pods running until
`completions` pods succeeded (or, without completions, until one succeeded and the rest
finished), recreating failed pods with exponential backoff until more than `backoffLimit`
failed, honouring suspend and activeDeadlineSeconds, and reporting active/ready/succeeded/
failed, startTime, completionTime and the `Complete`/`Failed`/`Suspended` conditions. Pods carry
the `batch.kubernetes.io/job-tracking` finalizer: a finished pod is first recorded in
`status.uncountedTerminatedPods`, then released, then counted — so no pod is counted twice or
lost even when pods are deleted. Jobs without a selector get the generated
`batch.kubernetes.io/controller-uid` one."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from kybern.api import errors, selectors
from kybern.client import informer
from kybern.controllers import common

Obj = dict[str, Any]
TRACKING = "batch.kubernetes.io/job-tracking"
UID_LABEL = "batch.kubernetes.io/controller-uid"
J = common.JOBS


def is_finished(job: Obj) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def job_selector(job: Obj) -> tuple[selectors.LabelSelector, dict[str, str]]:
    """The selector and the labels created pods need (the generated ones when the server did
    not generate a selector)."""
    spec = job.get("spec") or {}
    if spec.get("selector"):
        try:
            return selectors.from_label_selector_object(spec["selector"]), {}
        except errors.StatusError:
            return selectors.LabelSelector.nothing(), {}
    m = job["metadata"]
    labels = {
        UID_LABEL: m["uid"],
        "controller-uid": m["uid"],
        "batch.kubernetes.io/job-name": m["name"],
        "job-name": m["name"],
    }
    return selectors.selector_from_set({UID_LABEL: m["uid"]}), labels


def backoff_delay(failures: int, base: float, cap: float) -> float:
    if failures <= 0:
        return 0.0
    return min(base * (2 ** (failures - 1)), cap)


def want_active(job: Obj, succeeded: int, active: int) -> int:
    spec = job.get("spec") or {}
    parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
    completions = spec.get("completions")
    if completions is None:
        return active if succeeded > 0 else parallelism
    return max(min(int(completions) - succeeded, parallelism), 0)


def is_complete(job: Obj, succeeded: int, active: int) -> bool:
    completions = (job.get("spec") or {}).get("completions")
    if completions is None:
        return succeeded > 0 and active == 0
    return succeeded >= int(completions) and active == 0


class JobController(common.Base):
    name = "job"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.expectations = common.Expectations(time.monotonic)
        self.jobs = common.shared(ctx, J)
        self.pods = common.shared(ctx, common.PODS)
        self._last_failure: dict[str, float] = {}
        self.jobs.add_handlers(
            informer.Handlers(self.enqueue, lambda old, new: self.enqueue(new), self._job_deleted)
        )
        self.pods.add_handlers(
            informer.Handlers(self._pod, lambda old, new: self._pod(new), self._pod_deleted)
        )

    # ---- handlers ----------------------------------------------------------------------

    def _owner(self, pod: Obj) -> Obj | None:
        return common.resolve_owner(self.jobs, "Job", pod["metadata"].get("namespace", ""), pod)

    def _job_deleted(self, job: Obj) -> None:
        key = informer.key_of(job)
        self.expectations.forget(key)
        self._last_failure.pop(key, None)
        for p in self.pods.by_index("controller", job["metadata"].get("uid", "")):
            if TRACKING in (p["metadata"].get("finalizers") or []):
                self.queue.add("pod:" + informer.key_of(p))

    def _pod(self, pod: Obj) -> None:
        ref = common.controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return
        job = self._owner(pod)
        if job is None:
            if TRACKING in (pod["metadata"].get("finalizers") or []):
                self.queue.add("pod:" + informer.key_of(pod))
            return
        key = informer.key_of(job)
        if common.deleting(pod):
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        else:
            self.expectations.creation_observed(key)
        self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        job = self._owner(pod)
        if job is not None:
            key = informer.key_of(job)
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
            self.queue.add(key)

    # ---- reconcile ---------------------------------------------------------------------

    async def reconcile(self, key: str) -> common.Result | None:
        if key.startswith("pod:"):
            await self._release_orphan(key[4:])
            return None
        ns, name = common.split_key(key)
        cached = self.jobs.get(name, ns)
        if cached is None:
            self.expectations.forget(key)
            return None
        job = copy.deepcopy(cached)
        sel, _ = job_selector(job)
        pods = await common.claim(
            self.client,
            common.PODS,
            job,
            J,
            sel,
            self.pods.by_index("namespace", ns),
            common.adopt_check(self.client, J, job),
        )
        job = await self._track(key, job, pods)
        if is_finished(job) or common.deleting(job):
            return None
        if not self.expectations.satisfied(key):
            return None
        return await self._sync(key, job, pods)

    async def _track(self, key: str, job: Obj, pods: list[Obj]) -> Obj:
        """Record finished pods as uncounted, release their finalizers, then count them."""
        status = copy.deepcopy(job.get("status") or {})
        unc = status.get("uncountedTerminatedPods") or {}
        succ, fail = list(unc.get("succeeded") or []), list(unc.get("failed") or [])
        known = set(succ) | set(fail)
        finished = is_finished(job) or common.deleting(job)
        for p in pods:
            m = p["metadata"]
            if TRACKING not in (m.get("finalizers") or []) or m["uid"] in known:
                continue
            phase = common.pod_phase(p)
            if phase == "Succeeded":
                succ.append(m["uid"])
            elif phase == "Failed" or common.deleting(p) or finished:
                fail.append(m["uid"])
        if len(fail) > len(unc.get("failed") or []):
            self._last_failure[key] = time.monotonic()
        if len(succ) + len(fail) > len(known):
            status["uncountedTerminatedPods"] = {"succeeded": succ, "failed": fail}
            job = await self._write_status(job, status)
            status = copy.deepcopy(job.get("status") or {})
        if not succ and not fail:
            return job
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        released: set[str] = set()
        for uid in succ + fail:
            tracked = by_uid.get(uid)
            if tracked is None or TRACKING not in (tracked["metadata"].get("finalizers") or []):
                released.add(uid)
            elif await self._remove_finalizer(tracked):
                released.add(uid)
        if not released:
            return job
        status["succeeded"] = int(status.get("succeeded") or 0) + sum(
            1 for u in succ if u in released
        )
        status["failed"] = int(status.get("failed") or 0) + sum(1 for u in fail if u in released)
        status["uncountedTerminatedPods"] = {
            k: v
            for k, v in (
                ("succeeded", [u for u in succ if u not in released]),
                ("failed", [u for u in fail if u not in released]),
            )
            if v
        }
        for k in ("succeeded", "failed"):
            if not status[k]:
                del status[k]
        return await self._write_status(job, status)

    async def _remove_finalizer(self, pod: Obj) -> bool:
        m = pod["metadata"]
        fins = [f for f in m.get("finalizers") or [] if f != TRACKING]
        patch = {"metadata": {"finalizers": fins or None, "resourceVersion": m["resourceVersion"]}}
        try:
            await self.client.patch(common.PODS, m["name"], patch, m["namespace"])
        except errors.StatusError as e:
            if e.code == 404:
                return True
            if e.code == 409:
                return False
            raise
        return True

    async def _release_orphan(self, key: str) -> None:
        ns, name = common.split_key(key)
        pod = self.pods.get(name, ns)
        if pod is None or TRACKING not in (pod["metadata"].get("finalizers") or []):
            return
        job = self._owner(pod)
        if job is not None and not is_finished(job) and not common.deleting(job):
            return
        if not await self._remove_finalizer(pod):
            raise errors.conflict("pods", "", name, "retry")

    async def _sync(self, key: str, job: Obj, pods: list[Obj]) -> common.Result | None:
        now = self.clock()
        ts = common.format_time(now)
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        unc = status.get("uncountedTerminatedPods") or {}
        succeeded = int(status.get("succeeded") or 0) + len(unc.get("succeeded") or [])
        failed = int(status.get("failed") or 0) + len(unc.get("failed") or [])
        active = [p for p in pods if common.is_pod_active(p)]
        backoff_limit = int(
            spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6
        )
        restarts = sum(
            int(c.get("restartCount") or 0)
            for p in active
            for c in (p.get("status") or {}).get("containerStatuses") or []
        )
        on_failure = ((spec.get("template") or {}).get("spec") or {}).get(
            "restartPolicy"
        ) == "OnFailure"
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = ts
        start = common.parse_time(status.get("startTime"))
        deadline = spec.get("activeDeadlineSeconds")
        failure: tuple[str, str] | None = None
        result: common.Result | None = None
        if failed > backoff_limit or (on_failure and backoff_limit and restarts >= backoff_limit):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and start is not None and not suspended:
            if now >= start + int(deadline):
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                result = common.Result(requeue_after=start + int(deadline) - now + 0.05)
        if failure is not None:
            await self._delete_pods(key, job, active)
            active = []
            common.set_condition(status, "Failed", "True", failure[0], failure[1], ts)
            self.recorder.event(job, "Warning", failure[0], failure[1])
        elif suspended:
            await self._delete_pods(key, job, active)
            active = []
            status.pop("startTime", None)
            common.set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", ts)
        else:
            cond = common.get_condition(status, "Suspended")
            if cond is not None and cond.get("status") == "True":
                common.set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", ts)
            want = want_active(job, succeeded, len(active))
            if len(active) > want:
                victims = common.rank_for_deletion(active, active)[: len(active) - want]
                await self._delete_pods(key, job, victims)
                gone = {p["metadata"]["uid"] for p in victims}
                active = [p for p in active if p["metadata"]["uid"] not in gone]
            elif len(active) < want:
                wait = self._backoff_left(key, failed)
                if wait > 0:
                    result = common.Result(requeue_after=wait)
                else:
                    created = await self._create_pods(key, job, want - len(active))
                    active += created
            if is_complete(job, succeeded, len(active)):
                common.set_condition(
                    status,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    ts,
                )
                status["completionTime"] = ts
                self.recorder.event(job, "Normal", "Completed", "Job completed")
                result = None
        for c in status.get("conditions") or []:
            c.setdefault("lastProbeTime", c.get("lastTransitionTime"))
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if common.is_pod_ready(p))
        status["terminating"] = sum(
            1 for p in pods if common.deleting(p) and not common.is_pod_terminal(p)
        )
        status.setdefault("uncountedTerminatedPods", {})
        for k in ("active", "terminating"):
            if not status[k]:
                del status[k]
        await self._write_status(job, status)
        return result

    def _backoff_left(self, key: str, failed: int) -> float:
        last = self._last_failure.get(key)
        if last is None or failed <= 0:
            return 0.0
        delay = backoff_delay(failed, self.options.job_backoff_base, self.options.job_backoff_max)
        return max(last + delay - time.monotonic(), 0.0)

    async def _create_pods(self, key: str, job: Obj, count: int) -> list[Obj]:
        _, extra = job_selector(job)
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta["finalizers"] = [*tmeta.get("finalizers", []), TRACKING]
        self.expectations.expect(key, adds=count)
        created: list[Obj] = []
        for batch in common.slow_start_batches(count):
            results = await asyncio.gather(
                *(
                    self.client.create(
                        common.PODS,
                        common.pod_from_template(template, job, J, labels=extra),
                    )
                    for _ in range(batch)
                ),
                return_exceptions=True,
            )
            for r in results:
                if isinstance(r, dict):
                    created.append(r)
                    self.recorder.event(
                        job, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}"
                    )
            errs = [r for r in results if isinstance(r, BaseException)]
            if errs:
                self.expectations.lower(key, adds=count - len(created))
                self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {errs[0]}")
                if isinstance(errs[0], errors.StatusError):
                    raise errs[0]
                raise errors.internal(str(errs[0]))
        return created

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> None:
        if not pods:
            return
        uids = [p["metadata"]["uid"] for p in pods]
        self.expectations.expect(key, deletes=uids)
        for p, uid in zip(pods, uids, strict=True):
            m = p["metadata"]
            try:
                await self.client.delete(common.PODS, m["name"], m["namespace"], uid=uid)
                self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
            except errors.StatusError as e:
                self.expectations.lower(key, deletes=[uid])
                if e.code not in (404, 409):
                    raise

    async def _write_status(self, job: Obj, status: Obj) -> Obj:
        if status == (job.get("status") or {}):
            return job
        new = dict(job)
        new["status"] = status
        try:
            return await self.client.update_status(J, new)
        except errors.StatusError as e:
            if e.code == 404:
                return job
            raise
