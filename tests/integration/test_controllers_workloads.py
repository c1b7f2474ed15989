"""Deployments, ReplicaSets and ReplicationControllers against a real `kybern server`, with
the controller manager running in the test's event loop and a stand-in kubelet marking pods
Ready: creation, scaling with kubectl, a rolling update watched pod by pod for the maxSurge and
maxUnavailable bounds, `kubectl rollout undo`, Recreate, pause/resume, progress deadline,
revision history, adoption and release, and deletion (background and foreground)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Server
from test_controllers_support import (
    Kubelet,
    connect,
    create_namespace,
    pod_template,
    pods_of,
    running_manager,
    unique,
    wait_until,
)

from kybern.client import rest
from kybern.controllers import common
from kybern.controllers import rollout as ro

Obj = dict[str, Any]


D, RS = common.DEPLOYMENTS, common.REPLICASETS


@pytest.fixture
async def kube(server: Server) -> AsyncIterator[tuple[rest.Client, str]]:
    async with connect(server) as c, running_manager(c, disabled={"nodelifecycle"}):
        ns = unique("wl")
        await create_namespace(c, ns)
        yield c, ns


def deployment(name: str, replicas: int, image: str = "busybox:1", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template({"app": name}, image),
            **spec,
        },
    }


async def replicasets(c: rest.Client, ns: str, app: str) -> list[Obj]:
    return (await c.list(RS, ns, label_selector=f"app={app}")).get("items") or []


async def rolled_out(c: rest.Client, ns: str, name: str, replicas: int) -> Obj | None:
    d = await c.get(D, name, ns)
    s = d.get("status") or {}
    ok = (
        s.get("observedGeneration") == d["metadata"]["generation"]
        and s.get("updatedReplicas") == replicas
        and s.get("availableReplicas") == replicas
        and s.get("replicas") == replicas
    )
    return d if ok else None


def image_of(obj: Obj) -> str:
    spec = obj["spec"]["template"]["spec"] if obj.get("kind") != "Pod" else obj["spec"]
    return str(spec["containers"][0]["image"])


async def test_deployment_creates_replicaset_and_pods_and_scales(
    kube: tuple[rest.Client, str], server: Server
) -> None:
    c, ns = kube
    async with Kubelet(c, ns):
        await c.create(D, deployment("web", 3), ns)
        d = await wait_until(lambda: rolled_out(c, ns, "web", 3), 30, "3 available replicas")
        (rs,) = await replicasets(c, ns, "web")
        h = rs["metadata"]["labels"][ro.HASH_LABEL]
        assert rs["metadata"]["name"] == f"web-{h}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", ro.HASH_LABEL: h}
        assert rs["metadata"]["annotations"][ro.REVISION] == "1"
        assert d["metadata"]["annotations"][ro.REVISION] == "1"
        assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        pods = await pods_of(c, ns, "app=web")
        assert len(pods) == 3
        assert all(
            p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods
        )
        conds = {x["type"]: x for x in d["status"]["conditions"]}
        assert conds["Available"]["status"] == "True"
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert (rs.get("status") or {}).get("readyReplicas") == 3

        server.kubectl("scale", "deployment/web", "--replicas=5", "-n", ns)
        await wait_until(lambda: rolled_out(c, ns, "web", 5), 30, "scaled up to 5")
        server.kubectl("scale", "deployment/web", "--replicas=2", "-n", ns)
        await wait_until(lambda: rolled_out(c, ns, "web", 2), 30, "scaled down to 2")
        assert len(await pods_of(c, ns, "app=web")) == 2
        assert len(await replicasets(c, ns, "web")) == 1


class PodWatch:
    """Follows the pods of a namespace through a watch and checks, after every event, that
    the pods not being deleted stay within [min_ready ready, max_total total]."""

    def __init__(self, c: rest.Client, ns: str, max_total: int, min_ready: int) -> None:
        self.c, self.ns = c, ns
        self.max_total, self.min_ready = max_total, min_ready
        self.pods: dict[str, Obj] = {}
        self.violations: list[str] = []
        self.peak = 0
        self.images_seen: list[set[str]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodWatch:
        lst = await self.c.list(common.PODS, self.ns)
        self.pods = {p["metadata"]["name"]: p for p in lst.get("items") or []}
        rv = lst["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, rv: str) -> None:
        async for typ, obj in self.c.watch(common.PODS, self.ns, resource_version=rv):
            if typ == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if typ == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = obj
            live = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
            ready = sum(1 for p in live if common.is_pod_ready(p))
            self.peak = max(self.peak, len(live))
            self.images_seen.append({image_of(p) for p in live})
            if len(live) > self.max_total:
                self.violations.append(f"{len(live)} pods > {self.max_total} after {typ} {name}")
            if ready < self.min_ready:
                self.violations.append(f"{ready} ready < {self.min_ready} after {typ} {name}")


async def test_rolling_update_respects_surge_and_unavailable_then_undo(
    kube: tuple[rest.Client, str], server: Server
) -> None:
    c, ns = kube
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    async with Kubelet(c, ns):
        await c.create(D, deployment("roll", 4, strategy=strategy), ns)
        await wait_until(lambda: rolled_out(c, ns, "roll", 4), 30, "the first rollout")
        async with PodWatch(c, ns, max_total=5, min_ready=3) as watch:
            server.kubectl("set", "image", "deployment/roll", "c=busybox:2", "-n", ns)
            d = await wait_until(lambda: rolled_out(c, ns, "roll", 4), 60, "the second rollout")
        assert not watch.violations, watch.violations
        assert watch.peak == 5  # the surge was used
        assert any(len(images) == 2 for images in watch.images_seen)  # old and new together
        pods = await pods_of(c, ns, "app=roll")
        assert sorted(image_of(p) for p in pods) == ["busybox:2"] * 4
        rss = await replicasets(c, ns, "roll")
        assert sorted((image_of(r), r["spec"]["replicas"], ro.revision(r)) for r in rss) == [
            ("busybox:1", 0, 1),
            ("busybox:2", 4, 2),
        ]
        assert d["metadata"]["annotations"][ro.REVISION] == "2"

        server.kubectl("rollout", "undo", "deployment/roll", "-n", ns)
        d = await wait_until(lambda: _with_image(c, ns, "roll", "busybox:1", 4), 60, "the rollback")
        by_image = {image_of(r): r for r in await replicasets(c, ns, "roll")}
        assert len(by_image) == 2  # the old ReplicaSet was reused, not recreated
        old = by_image["busybox:1"]
        assert ro.revision(old) == 3
        assert old["metadata"]["annotations"][ro.REVISION_HISTORY] == "1"
        assert by_image["busybox:2"]["spec"]["replicas"] == 0
        assert d["metadata"]["annotations"][ro.REVISION] == "3"
        out = server.kubectl("rollout", "status", "deployment/roll", "-n", ns, "--timeout=20s")
        assert "successfully rolled out" in out.stdout


async def _with_image(c: rest.Client, ns: str, name: str, image: str, n: int) -> Obj | None:
    d = await rolled_out(c, ns, name, n)
    if d is None or image_of(d) != image:
        return None
    pods = await pods_of(c, ns, f"app={name}")
    return d if sorted(image_of(p) for p in pods) == [image] * n else None


async def test_recreate_never_runs_old_and_new_together(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    async with Kubelet(c, ns):
        await c.create(D, deployment("rec", 3, strategy={"type": "Recreate"}), ns)
        await wait_until(lambda: rolled_out(c, ns, "rec", 3), 30, "the first rollout")
        async with PodWatch(c, ns, max_total=3, min_ready=0) as watch:
            await c.patch(
                D, "rec", {"spec": {"template": pod_template({"app": "rec"}, "busybox:2")}}, ns
            )
            await wait_until(lambda: _with_image(c, ns, "rec", "busybox:2", 3), 60, "the recreate")
        assert not watch.violations, watch.violations
        assert all(len(images) <= 1 for images in watch.images_seen), "old and new pods coexisted"


async def test_paused_deployment_and_progress_deadline(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    kubelet = Kubelet(c, ns)
    async with kubelet:
        await c.create(D, deployment("p", 2, progressDeadlineSeconds=2), ns)
        await wait_until(lambda: rolled_out(c, ns, "p", 2), 30, "the first rollout")
        await c.patch(D, "p", {"spec": {"paused": True}}, ns)

        async def paused() -> bool:
            d = await c.get(D, "p", ns)
            conds = {x["type"]: x for x in d["status"].get("conditions") or []}
            return conds["Progressing"]["reason"] == "DeploymentPaused"

        await wait_until(paused, 10, "the DeploymentPaused condition")
        await c.patch(D, "p", {"spec": {"template": pod_template({"app": "p"}, "busybox:9")}}, ns)
        await c.patch(D, "p", {"spec": {"replicas": 3}}, ns)

        async def scaled() -> bool:
            d = await c.get(D, "p", ns)
            s = d.get("status") or {}
            return (s.get("replicas"), s.get("availableReplicas"), s.get("updatedReplicas")) == (
                3,
                3,
                None,  # the new template has no ReplicaSet yet
            ) and s.get("observedGeneration") == d["metadata"]["generation"]

        await wait_until(scaled, 30, "scaling while paused")
        assert len(await replicasets(c, ns, "p")) == 1  # no rollout while paused
        kubelet.paused = True  # new pods never become ready: the rollout stalls
        await c.patch(D, "p", {"spec": {"paused": False}}, ns)

        async def timed_out() -> bool:
            d = await c.get(D, "p", ns)
            conds = {x["type"]: x for x in d["status"].get("conditions") or []}
            return conds["Progressing"]["reason"] == "ProgressDeadlineExceeded" and (
                conds["Progressing"]["status"] == "False"
            )

        await wait_until(timed_out, 30, "ProgressDeadlineExceeded")
        assert len(await replicasets(c, ns, "p")) == 2


async def test_revision_history_limit(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    async with Kubelet(c, ns):
        await c.create(D, deployment("h", 1, revisionHistoryLimit=1), ns)
        for image in ("busybox:2", "busybox:3"):
            await wait_until(lambda: rolled_out(c, ns, "h", 1), 30, "a rollout")
            await c.patch(D, "h", {"spec": {"template": pod_template({"app": "h"}, image)}}, ns)
        await wait_until(lambda: _with_image(c, ns, "h", "busybox:3", 1), 30, "the last rollout")

        async def two_left() -> bool:
            return len(await replicasets(c, ns, "h")) == 2

        await wait_until(two_left, 30, "old ReplicaSets beyond the limit to be deleted")
        assert sorted(ro.revision(r) for r in await replicasets(c, ns, "h")) == [2, 3]


async def test_delete_background_and_foreground(
    kube: tuple[rest.Client, str], server: Server
) -> None:
    c, ns = kube
    async with Kubelet(c, ns):
        await c.create(D, deployment("bg", 2), ns)
        await c.create(D, deployment("fg", 2), ns)
        await wait_until(lambda: rolled_out(c, ns, "bg", 2), 30, "bg")
        await wait_until(lambda: rolled_out(c, ns, "fg", 2), 30, "fg")
    server.kubectl("delete", "deployment/bg", "-n", ns, "--wait=false")

    async def gone(app: str) -> bool:
        return not await replicasets(c, ns, app) and not (
            await c.list(common.PODS, ns, label_selector=f"app={app}")
        ).get("items")

    await wait_until(lambda: gone("bg"), 30, "background deletion of ReplicaSets and pods")
    await c.delete(D, "fg", ns, propagation="Foreground")
    d = await c.get(D, "fg", ns)  # still there: it waits for its dependents
    assert "foregroundDeletion" in d["metadata"]["finalizers"]
    assert d["metadata"]["deletionTimestamp"]

    async def deployment_gone() -> bool:
        lst = await c.list(D, ns, field_selector="metadata.name=fg")
        return not lst.get("items")

    await wait_until(deployment_gone, 30, "foreground deletion to finish")
    assert await gone("fg")


async def test_replicaset_adopts_and_releases(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "rs"}},
        "spec": pod_template({})["spec"],
    }
    await c.create(common.PODS, orphan, ns)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": pod_template({"app": "rs"}),
        },
    }
    created = await c.create(RS, rs, ns)

    async def owned_two() -> list[Obj] | None:
        pods = await pods_of(c, ns, "app=rs")
        ok = len(pods) == 2 and all(
            (p["metadata"].get("ownerReferences") or [{}])[0].get("uid")
            == created["metadata"]["uid"]
            for p in pods
        )
        return pods if ok else None

    pods = await wait_until(owned_two, 30, "adoption of the orphan plus one new pod")
    assert "orphan" in {p["metadata"]["name"] for p in pods}
    await c.patch(common.PODS, "orphan", {"metadata": {"labels": {"app": "other"}}}, ns)

    async def released() -> bool:
        p = await c.get(common.PODS, "orphan", ns)
        return not p["metadata"].get("ownerReferences") and bool(await owned_two())

    await wait_until(released, 30, "the release of the relabelled pod and a replacement")

    async def status_ok() -> bool:
        s = (await c.get(RS, "rs", ns)).get("status") or {}
        return (
            s.get("replicas") == 2
            and s.get("fullyLabeledReplicas") == 2
            and (s.get("observedGeneration") == 1)
        )

    await wait_until(status_ok, 10, "ReplicaSet status")


async def test_replication_controller(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "rc"},
        "spec": {"replicas": 3, "selector": {"app": "rc"}, "template": pod_template({"app": "rc"})},
    }
    async with Kubelet(c, ns):
        await c.create(common.RCS, rc, ns)

        async def ready(n: int) -> bool:
            s = (await c.get(common.RCS, "rc", ns)).get("status") or {}
            return (
                s.get("readyReplicas") == n
                and s.get("availableReplicas") == n
                and (len(await pods_of(c, ns, "app=rc")) == n)
            )

        await wait_until(lambda: ready(3), 30, "3 ready pods")
        await c.patch(common.RCS, "rc", {"spec": {"replicas": 1}}, ns)
        await wait_until(lambda: ready(1), 30, "scale down to 1")
