"""The CronJob controller: at each scheduled time (see `cron`) create a Job named
`<cronjob>-<minutes since the epoch>` from `spec.jobTemplate`, honouring suspend,
startingDeadlineSeconds (a start missed by more is skipped), concurrencyPolicy (Allow; Forbid
skips while a Job runs; Replace deletes the running ones), the time zone, and
successful/failedJobsHistoryLimit; it keeps `status.active`, `lastScheduleTime` and
`lastSuccessfulTime`, and requeues itself for the next scheduled time. The wall clock is
injectable (`Context.clock`), so tests need not wait for a minute to turn."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from kybern.api import errors
from kybern.client import informer
from kybern.controllers import common, cron

Obj = dict[str, Any]
CJ, J = common.CRONJOBS, common.JOBS
SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def job_name(cj: Obj, scheduled: float) -> str:
    return f"{cj['metadata']['name']}-{int(scheduled // 60)}"


def _ref(job: Obj) -> Obj:
    m = job["metadata"]
    return {
        "kind": "Job",
        "namespace": m.get("namespace", ""),
        "name": m["name"],
        "uid": m.get("uid", ""),
        "apiVersion": "batch/v1",
        "resourceVersion": m.get("resourceVersion", ""),
    }


def _condition(job: Obj) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


class CronJobController(common.Base):
    name = "cronjob"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.cronjobs = common.shared(ctx, CJ)
        self.jobs = common.shared(ctx, J)
        self.cronjobs.add_handlers(
            informer.Handlers(self.enqueue, lambda old, new: self.enqueue(new))
        )
        self.jobs.add_handlers(
            informer.Handlers(self._job, lambda old, new: self._job(new), self._job)
        )

    def _job(self, job: Obj) -> None:
        cj = common.resolve_owner(
            self.cronjobs, "CronJob", job["metadata"].get("namespace", ""), job
        )
        if cj is not None:
            self.enqueue(cj)

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        cached = self.cronjobs.get(name, ns)
        if cached is None or common.deleting(cached):
            return None
        cj = copy.deepcopy(cached)
        spec = cj.get("spec") or {}
        status = copy.deepcopy(cj.get("status") or {})
        now = self.clock()
        children = self.jobs.by_index("controller", cj["metadata"]["uid"])
        self._sync_active(cj, status, children)
        await self._cleanup(cj, children)
        if spec.get("suspend"):
            await self._write(cj, status)
            return None
        try:
            sched = cron.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except cron.CronError as e:
            reason = "UnknownTimeZone" if "location" in str(e) else "UnparseableSchedule"
            self.recorder.event(cj, "Warning", reason, f"unparseable schedule: {e}")
            await self._write(cj, status)
            return None
        created = common.parse_time(cj["metadata"].get("creationTimestamp")) or now
        earliest = common.parse_time(status.get("lastScheduleTime")) or created
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - int(deadline))
        scheduled, missed = cron.most_recent(sched, earliest, now)
        nxt = cron.next_after(sched, now)
        requeue = common.Result(requeue_after=nxt - now + 0.1) if nxt is not None else None
        if scheduled is None:
            await self._write(cj, status)
            return requeue
        if missed > 100:
            self.recorder.event(
                cj,
                "Warning",
                "TooManyMissedTimes",
                f"too many missed start times: {missed}. Set or decrease "
                ".spec.startingDeadlineSeconds or check clock skew",
            )
        if deadline is not None and scheduled + int(deadline) < now:
            self.recorder.event(
                cj,
                "Warning",
                "MissSchedule",
                f"Missed scheduled time to start a job: {common.format_time(scheduled)}",
            )
            await self._write(cj, status)
            return requeue
        name = job_name(cj, scheduled)
        if any(j["metadata"]["name"] == name for j in children) or any(
            r.get("name") == name for r in status.get("active") or []
        ):
            # already started (perhaps by a sync whose status write was lost to a conflict)
            last = common.parse_time(status.get("lastScheduleTime")) or 0.0
            if scheduled > last:
                status["lastScheduleTime"] = common.format_time(scheduled)
            await self._write(cj, status)
            return requeue
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            self.recorder.event(
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy "
                "is Forbid",
            )
            await self._write(cj, status)
            return requeue
        if policy == "Replace":
            for r in list(status.get("active") or []):
                await common.ignore_not_found(
                    self.client.delete(
                        J, r["name"], ns, propagation="Background", uid=r.get("uid", "")
                    )
                )
                self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {r['name']}")
            status.pop("active", None)
        job = await self._create_job(cj, name, scheduled, sched)
        if job is not None:
            status["active"] = [*(status.get("active") or []), _ref(job)]
        status["lastScheduleTime"] = common.format_time(scheduled)
        await self._write(cj, status)
        return requeue

    def _sync_active(self, cj: Obj, status: Obj, children: list[Obj]) -> None:
        by_uid = {j["metadata"]["uid"]: j for j in children}
        active: list[Obj] = []
        for r in status.get("active") or []:
            j = by_uid.get(r.get("uid", ""))
            if j is None:
                self.recorder.event(
                    cj, "Normal", "MissingJob", f"Active job went missing: {r.get('name')}"
                )
                continue
            done = _condition(j)
            if done:
                self.recorder.event(
                    cj,
                    "Normal",
                    "SawCompletedJob",
                    f"Saw completed job: {j['metadata']['name']}, status: {done}",
                )
                continue
            active.append(r)
        listed = {r.get("uid") for r in active}
        for j in children:
            done = _condition(j)
            if not done and j["metadata"]["uid"] not in listed and not common.deleting(j):
                active.append(_ref(j))
            if done == "Complete":
                t = (j.get("status") or {}).get("completionTime")
                if t and (common.parse_time(t) or 0) > (
                    common.parse_time(status.get("lastSuccessfulTime")) or 0
                ):
                    status["lastSuccessfulTime"] = t
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _create_job(
        self, cj: Obj, name: str, scheduled: float, sched: cron.Schedule
    ) -> Obj | None:
        tpl = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = tpl.get("metadata") or {}
        stamp = datetime.datetime.fromtimestamp(scheduled, sched.tz).isoformat()
        job: Obj = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": cj["metadata"]["namespace"],
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED: stamp},
                "ownerReferences": [common.new_controller_ref(cj, CJ)],
            },
            "spec": copy.deepcopy(tpl.get("spec") or {}),
        }
        if not job["metadata"]["labels"]:
            del job["metadata"]["labels"]
        try:
            out = await self.client.create(J, job)
        except errors.StatusError as e:
            if e.code == 409:
                return None
            self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {e.message}")
            raise
        self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        return out

    async def _cleanup(self, cj: Obj, children: list[Obj]) -> None:
        spec = cj.get("spec") or {}
        for kind, limit in (
            ("Complete", spec.get("successfulJobsHistoryLimit")),
            ("Failed", spec.get("failedJobsHistoryLimit")),
        ):
            if limit is None:
                continue
            done = [j for j in children if _condition(j) == kind and not common.deleting(j)]
            done.sort(
                key=lambda j: (
                    common.parse_time((j.get("status") or {}).get("startTime"))
                    or common.parse_time(j["metadata"].get("creationTimestamp"))
                    or 0.0
                )
            )
            for j in done[: max(len(done) - int(limit), 0)]:
                m = j["metadata"]
                await common.ignore_not_found(
                    self.client.delete(
                        J, m["name"], m["namespace"], propagation="Background", uid=m["uid"]
                    )
                )
                self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {m['name']}")

    async def _write(self, cj: Obj, status: Obj) -> None:
        if status == (cj.get("status") or {}):
            return
        new = dict(cj)
        new["status"] = status
        await common.ignore_not_found(self.client.update_status(CJ, new))
