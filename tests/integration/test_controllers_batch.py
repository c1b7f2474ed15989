"""Jobs and CronJobs against a real `kybern server` with the controller manager in the test's
event loop; the test plays kubelet by moving pods to Succeeded or Failed. The CronJob
controller runs on an injected clock the test advances, so schedules fire without waiting for
the minute to turn."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Server
from test_controllers_support import (
    connect,
    create_namespace,
    pod_template,
    running_manager,
    set_pod_status,
    unique,
    wait_until,
)

from kybern.client import events, rest
from kybern.controllers import common, cronjob
from kybern.controllers import job as jobmod

Obj = dict[str, Any]


J, CJ = common.JOBS, common.CRONJOBS


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def kube(server: Server) -> AsyncIterator[tuple[rest.Client, str, FakeClock]]:
    clock = FakeClock()
    opts = common.Options(job_backoff_base=0.05, job_backoff_max=0.2)
    async with (
        connect(server) as c,
        running_manager(c, disabled={"nodelifecycle"}, options=opts, clock=clock),
    ):
        ns = unique("batch")
        await create_namespace(c, ns)
        yield c, ns, clock


def job(name: str, **spec: Any) -> Obj:
    tpl = pod_template({"app": name})
    tpl["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": tpl, **spec},
    }


async def job_pods(c: rest.Client, ns: str, j: Obj) -> list[Obj]:
    items = (await c.list(common.PODS, ns)).get("items") or []
    return [p for p in items if common.owned_by(p, j)]


async def finish_pods(c: rest.Client, ns: str, j: Obj, phase: str, limit: int = 100) -> int:
    n = 0
    for p in await job_pods(c, ns, j):
        if (
            n < limit
            and not common.is_pod_terminal(p)
            and not p["metadata"].get("deletionTimestamp")
        ):
            await set_pod_status(c, ns, p["metadata"]["name"], phase=phase, ready=False)
            n += 1
    return n


def condition(obj: Obj, typ: str) -> Obj | None:
    return common.get_condition(obj.get("status") or {}, typ)


async def test_job_runs_to_completion(kube: tuple[rest.Client, str, FakeClock]) -> None:
    c, ns, _ = kube
    j = await c.create(J, job("work", completions=3, parallelism=2), ns)

    async def active(n: int) -> list[Obj] | None:
        pods = [p for p in await job_pods(c, ns, j) if not common.is_pod_terminal(p)]
        return pods if len(pods) == n else None

    pods = await wait_until(lambda: active(2), 20, "2 parallel pods")
    assert all(jobmod.TRACKING in p["metadata"]["finalizers"] for p in pods)
    assert all(p["metadata"]["labels"][jobmod.UID_LABEL] == j["metadata"]["uid"] for p in pods)
    done = 0
    while done < 3:
        want = min(2, 3 - done)
        await wait_until(lambda w=want: active(w), 20, "active pods")  # type: ignore[misc]
        done += await finish_pods(c, ns, j, "Succeeded", limit=1)

    async def complete() -> Obj | None:
        cur = await c.get(J, "work", ns)
        cond = condition(cur, "Complete")
        return cur if cond and cond["status"] == "True" else None

    cur = await wait_until(complete, 20, "the Complete condition")
    s = cur["status"]
    assert s["succeeded"] == 3 and not s.get("failed") and not s.get("active")
    assert s["completionTime"] and s["startTime"]
    assert not (s.get("uncountedTerminatedPods") or {}).get("succeeded")
    pods = await job_pods(c, ns, j)
    assert len(pods) == 3
    assert not any(jobmod.TRACKING in (p["metadata"].get("finalizers") or []) for p in pods)


async def test_job_fails_after_backoff_limit(kube: tuple[rest.Client, str, FakeClock]) -> None:
    c, ns, _ = kube
    j = await c.create(J, job("bad", backoffLimit=1), ns)
    for _ in range(2):

        async def running() -> bool:
            return any(not common.is_pod_terminal(p) for p in await job_pods(c, ns, j))

        await wait_until(running, 20, "a pod to fail")
        await finish_pods(c, ns, j, "Failed")

    async def failed() -> Obj | None:
        cur = await c.get(J, "bad", ns)
        cond = condition(cur, "Failed")
        return cur if cond and cond["status"] == "True" else None

    cur = await wait_until(failed, 20, "the Failed condition")
    assert condition(cur, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert cur["status"]["failed"] == 2
    assert len(await job_pods(c, ns, j)) == 2  # no third attempt


async def test_cronjob_creates_jobs_on_schedule(kube: tuple[rest.Client, str, FakeClock]) -> None:
    c, ns, clock = kube
    spec = {
        "schedule": "* * * * *",
        "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": job("x")["spec"]},
    }
    cj = await c.create(
        CJ,
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"}, "spec": spec},
        ns,
    )
    created = common.parse_time(cj["metadata"]["creationTimestamp"])
    assert created is not None
    clock.offset = 61.0  # the next minute has come
    await c.patch(CJ, "tick", {"metadata": {"labels": {"nudge": "1"}}}, ns)

    async def first_job() -> Obj | None:
        items = (await c.list(J, ns)).get("items") or []
        return items[0] if len(items) == 1 else None

    j = await wait_until(first_job, 20, "the first Job")
    scheduled = (int(created // 60) + 1) * 60
    assert j["metadata"]["name"] == cronjob.job_name(cj, scheduled)
    assert j["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    assert cronjob.SCHEDULED in j["metadata"]["annotations"]

    async def active() -> Obj | None:
        cur = await c.get(CJ, "tick", ns)
        s = cur.get("status") or {}
        return (
            cur if [a["name"] for a in s.get("active") or []] == [j["metadata"]["name"]] else None
        )

    cur = await wait_until(active, 20, "status.active")
    assert cur["status"]["lastScheduleTime"] == common.format_time(scheduled)

    clock.offset = 121.0  # one more minute: Forbid skips while the first Job runs
    await c.patch(CJ, "tick", {"metadata": {"labels": {"nudge": "2"}}}, ns)

    async def forbidden() -> bool:
        evs = (await c.list(events.EVENTS, ns, field_selector="reason=JobAlreadyActive")).get(
            "items"
        )
        return bool(evs)

    await wait_until(forbidden, 20, "the JobAlreadyActive event")
    assert len((await c.list(J, ns)).get("items") or []) == 1

    await wait_until(lambda: finish_pods(c, ns, j, "Succeeded"), 20, "the Job's pod")

    second = cronjob.job_name(cj, scheduled + 60)

    async def succeeded_then_next() -> Obj | None:
        # the first Job finished: it leaves status.active, sets lastSuccessfulTime, and the
        # start that Forbid held back happens now
        cur = await c.get(CJ, "tick", ns)
        s = cur.get("status") or {}
        names = [a["name"] for a in s.get("active") or []]
        return cur if s.get("lastSuccessfulTime") and names == [second] else None

    cur = await wait_until(succeeded_then_next, 20, "lastSuccessfulTime and the next Job")
    assert cur["status"]["lastScheduleTime"] == common.format_time(scheduled + 60)
    assert len((await c.list(J, ns)).get("items") or []) == 2
