"""StatefulSets, Endpoints/EndpointSlices, the garbage collector and namespace deletion against
a real `kybern server`, with the controller manager in the test's event loop: ordered pod
creation and removal with claims and partitioned rolling updates; endpoints that follow pod
readiness; background, foreground (blockOwnerDeletion), orphan and dangling-owner collection;
and a namespace whose content is deleted (conditions report what holds it) before it goes."""

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
    set_pod_status,
    unique,
    wait_until,
)

from kybern.api import errors
from kybern.client import rest
from kybern.controllers import common, endpointslice

Obj = dict[str, Any]


CM = common.CONFIGMAPS
STS = common.STATEFULSETS


@pytest.fixture
async def kube(server: Server) -> AsyncIterator[tuple[rest.Client, str]]:
    async with connect(server) as c, running_manager(c, disabled={"nodelifecycle"}):
        ns = unique("cl")
        await create_namespace(c, ns)
        yield c, ns


async def exists(c: rest.Client, res: Any, name: str, ns: str) -> Obj | None:
    try:
        return await c.get(res, name, ns)
    except errors.StatusError as e:
        if e.code == 404:
            return None
        raise


async def gone(c: rest.Client, res: Any, name: str, ns: str) -> bool:
    return await exists(c, res, name, ns) is None


# ---- StatefulSets --------------------------------------------------------------------------------


async def test_statefulset_ordered_creation_scale_down_and_partitioned_update(
    kube: tuple[rest.Client, str],
) -> None:
    c, ns = kube
    tpl = pod_template({"app": "db"})
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": tpl,
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    await c.create(STS, body, ns)

    async def names() -> list[str]:
        return sorted(p["metadata"]["name"] for p in await pods_of(c, ns, "app=db"))

    async def exactly(want: list[str]) -> bool:
        return await names() == want

    await wait_until(lambda: exactly(["db-0"]), 20, "db-0 alone")
    pod = await c.get(common.PODS, "db-0", ns)
    assert pod["spec"]["hostname"] == "db-0" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    claim = {v["name"]: v for v in pod["spec"]["volumes"]}["data"]["persistentVolumeClaim"]
    assert claim["claimName"] == "data-db-0"
    assert await exists(c, common.PVCS, "data-db-0", ns)
    for i in range(3):  # each next pod only once the previous is Running and Ready
        want = [f"db-{j}" for j in range(i + 1)]
        await wait_until(lambda w=want: exactly(w), 20, f"{want}")  # type: ignore[misc]
        await set_pod_status(c, ns, f"db-{i}")
    for i in range(3):
        assert await exists(c, common.PVCS, f"data-db-{i}", ns)

    async def status(**want: Any) -> bool:
        s = (await c.get(STS, "db", ns)).get("status") or {}
        return all(s.get(k) == v for k, v in want.items())

    await wait_until(lambda: status(replicas=3, readyReplicas=3, currentReplicas=3), 20, "status")
    rv = (await c.list(common.PODS, ns))["metadata"]["resourceVersion"]
    deleted: list[str] = []

    async def follow() -> None:
        async for typ, obj in c.watch(common.PODS, ns, resource_version=rv):
            if typ == "DELETED":
                deleted.append(obj["metadata"]["name"])

    watch = asyncio.create_task(follow())
    try:
        await c.patch(STS, "db", {"spec": {"replicas": 1}}, ns)
        await wait_until(lambda: exactly(["db-0"]), 20, "the scale down")

        async def both_seen() -> bool:
            return len(deleted) == 2

        await wait_until(both_seen, 10, "the deletions in the watch")
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    assert deleted == ["db-2", "db-1"]  # highest ordinal first
    assert await exists(c, common.PVCS, "data-db-2", ns)  # retained (whenScaled: Retain)

    async with Kubelet(c, ns):
        await c.patch(STS, "db", {"spec": {"replicas": 3}}, ns)
        await wait_until(lambda: status(replicas=3, readyReplicas=3), 20, "scaled up again")
        new_tpl = pod_template({"app": "db"}, "busybox:2")
        patch = {
            "spec": {
                "template": new_tpl,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            }
        }
        await c.patch(STS, "db", patch, ns)

        async def images() -> dict[str, str]:
            return {
                p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
                for p in await pods_of(c, ns, "app=db")
            }

        async def updated() -> bool:
            return await images() == {"db-0": "busybox:1", "db-1": "busybox:2", "db-2": "busybox:2"}

        await wait_until(updated, 30, "ordinals >= partition updated")
        await wait_until(
            lambda: status(updatedReplicas=2, currentReplicas=1, readyReplicas=3), 20, "revisions"
        )
        s = (await c.get(STS, "db", ns))["status"]
        assert s["currentRevision"] != s["updateRevision"]
        revs = (await c.list(common.REVISIONS, ns)).get("items") or []
        assert {r["metadata"]["name"] for r in revs} == {s["currentRevision"], s["updateRevision"]}


# ---- Endpoints and EndpointSlices ----------------------------------------------------------------


async def test_endpoints_follow_ready_pods(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    svc: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    svc = await c.create(common.SERVICES, svc, ns)
    for name in ("a", "b"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": pod_template({})["spec"],
        }
        await c.create(common.PODS, pod, ns)
    await set_pod_status(c, ns, "a", ip="10.9.0.1")
    await set_pod_status(c, ns, "b", ip="10.9.0.2", ready=False)

    async def subsets(want: list[Obj]) -> Obj | None:
        ep = await c.get(common.ENDPOINTS, "web", ns)
        return ep if (ep.get("subsets") or []) == want else None

    def addr(ip: str, name: str, uid: str) -> Obj:
        return {"ip": ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": name, "uid": uid}}

    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in await pods_of(c, ns)}
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    ep = await wait_until(
        lambda: subsets(
            [
                {
                    "addresses": [addr("10.9.0.1", "a", uids["a"])],
                    "notReadyAddresses": [addr("10.9.0.2", "b", uids["b"])],
                    "ports": ports,
                }
            ]
        ),
        20,
        "one ready and one not-ready address",
    )
    assert ep["metadata"]["labels"] == {"tier": "front"}

    async def slice_state() -> list[tuple[str, bool]] | None:
        items = (
            await c.list(common.SLICES, ns, label_selector=f"{endpointslice.SERVICE_NAME}=web")
        ).get("items") or []
        if len(items) != 1:
            return None
        sl: Obj = items[0]
        assert sl["metadata"]["labels"][endpointslice.MANAGED_BY] == endpointslice.CONTROLLER
        assert sl["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
        assert sl["addressType"] == "IPv4" and sl["ports"][0]["port"] == 8080
        return sorted(
            (e["addresses"][0], e["conditions"]["ready"]) for e in sl.get("endpoints") or []
        )

    async def slice_is(want: list[tuple[str, bool]]) -> bool:
        return await slice_state() == want

    await wait_until(lambda: slice_is([("10.9.0.1", True), ("10.9.0.2", False)]), 20, "the slice")
    await set_pod_status(c, ns, "b", ip="10.9.0.2")
    await wait_until(
        lambda: subsets(
            [
                {
                    "addresses": [
                        addr("10.9.0.1", "a", uids["a"]),
                        addr("10.9.0.2", "b", uids["b"]),
                    ],
                    "ports": ports,
                }
            ]
        ),
        20,
        "both ready",
    )
    await c.delete(common.PODS, "a", ns)
    await wait_until(
        lambda: subsets([{"addresses": [addr("10.9.0.2", "b", uids["b"])], "ports": ports}]),
        20,
        "the deleted pod to leave",
    )
    await wait_until(lambda: slice_is([("10.9.0.2", True)]), 20, "the slice to follow")
    await c.delete(common.SERVICES, "web", ns)
    await wait_until(lambda: gone(c, common.ENDPOINTS, "web", ns), 20, "Endpoints removed")

    async def no_slices() -> bool:
        return not (await c.list(common.SLICES, ns)).get("items")

    await wait_until(no_slices, 20, "EndpointSlices collected with their Service")


# ---- garbage collection --------------------------------------------------------------------------


def cm(name: str, *owners: Obj, block: bool = False, finalizers: list[str] | None = None) -> Obj:
    meta: Obj = {"name": name}
    if owners:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": o["metadata"]["name"],
                "uid": o["metadata"]["uid"],
                **({"blockOwnerDeletion": True} if block else {}),
            }
            for o in owners
        ]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


async def test_garbage_collector_policies(kube: tuple[rest.Client, str]) -> None:
    c, ns = kube
    # background: the dependent goes after its owner
    a = await c.create(CM, cm("a"), ns)
    await c.create(CM, cm("a-dep", a), ns)
    await c.delete(CM, "a", ns)
    await wait_until(lambda: gone(c, CM, "a-dep", ns), 20, "background collection")
    # a dependent created for an owner that no longer exists
    await c.create(CM, cm("dangling", a), ns)
    await wait_until(lambda: gone(c, CM, "dangling", ns), 20, "collection of a dangling dependent")
    # two owners: losing one only drops that reference
    o1, o2 = await c.create(CM, cm("o1"), ns), await c.create(CM, cm("o2"), ns)
    await c.create(CM, cm("shared", o1, o2), ns)
    await c.delete(CM, "o1", ns)

    async def one_ref() -> bool:
        refs = (await c.get(CM, "shared", ns))["metadata"].get("ownerReferences") or []
        return [r["name"] for r in refs] == ["o2"]

    await wait_until(one_ref, 20, "the reference to the deleted owner to be dropped")
    # orphan: the dependent stays, without the reference
    p = await c.create(CM, cm("parent"), ns)
    await c.create(CM, cm("child", p), ns)
    await c.delete(CM, "parent", ns, propagation="Orphan")
    await wait_until(lambda: gone(c, CM, "parent", ns), 20, "the orphaning owner to go")
    child = await c.get(CM, "child", ns)
    assert not child["metadata"].get("ownerReferences")
    # foreground: the owner waits for dependents that block it
    f = await c.create(CM, cm("front"), ns)
    await c.create(CM, cm("held", f, block=True, finalizers=["example.com/hold"]), ns)
    await c.create(CM, cm("free", f), ns)
    await c.delete(CM, "front", ns, propagation="Foreground")
    await wait_until(lambda: gone(c, CM, "free", ns), 20, "the non-blocking dependent")

    async def held_deleting() -> bool:
        return bool((await c.get(CM, "held", ns))["metadata"].get("deletionTimestamp"))

    await wait_until(held_deleting, 20, "the blocking dependent to be deleted")
    front = await c.get(CM, "front", ns)
    assert front["metadata"]["finalizers"] == ["foregroundDeletion"]
    await c.patch(CM, "held", {"metadata": {"finalizers": None}}, ns)
    await wait_until(lambda: gone(c, CM, "front", ns), 20, "the owner once nothing blocks it")


async def test_default_policy_orphans_replication_controller_pods(
    kube: tuple[rest.Client, str],
) -> None:
    c, ns = kube
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "rc"},
        "spec": {"replicas": 1, "selector": {"app": "rc"}, "template": pod_template({"app": "rc"})},
    }
    await c.create(common.RCS, rc, ns)
    await wait_until(lambda: pods_of(c, ns, "app=rc"), 20, "the pod")
    await c.delete(common.RCS, "rc", ns)  # no propagationPolicy: v1 RCs orphan by default
    await wait_until(lambda: gone(c, common.RCS, "rc", ns), 20, "the RC to go")

    async def outcome() -> str:
        pods = await pods_of(c, ns, "app=rc")
        if not pods:
            return "collected"
        return "" if pods[0]["metadata"].get("ownerReferences") else "orphaned"

    assert await wait_until(outcome, 20, "the pod to be orphaned or collected") == "orphaned"


# ---- namespaces ----------------------------------------------------------------------------------


async def test_namespace_deletion_removes_everything(server: Server) -> None:
    async with connect(server) as c, running_manager(c, disabled={"nodelifecycle"}):
        ns = unique("gone")
        await create_namespace(c, ns)
        await c.create(CM, cm("plain"), ns)
        await c.create(CM, cm("held", finalizers=["example.com/hold"]), ns)
        tpl = pod_template({"app": "x"})
        await c.create(
            common.DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "x"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "template": tpl},
            },
            ns,
        )
        await wait_until(lambda: pods_of(c, ns, "app=x"), 20, "the deployment's pods")
        await c.delete(common.NAMESPACES, ns)

        async def waiting_on_finalizer() -> Obj | None:
            n = await c.get(common.NAMESPACES, ns)
            conds = {x["type"]: x for x in (n.get("status") or {}).get("conditions") or []}
            fin = conds.get("NamespaceFinalizersRemaining") or {}
            return n if fin.get("status") == "True" else None

        n = await wait_until(waiting_on_finalizer, 20, "the NamespaceFinalizersRemaining condition")
        conds = {x["type"]: x for x in n["status"]["conditions"]}
        assert (
            "example.com/hold in 1 resource instances"
            in conds["NamespaceFinalizersRemaining"]["message"]
        )
        assert conds["NamespaceContentRemaining"]["status"] == "True"
        assert (
            "configmaps has 1 resource instances" in conds["NamespaceContentRemaining"]["message"]
        )
        assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
        assert n["status"]["phase"] == "Terminating"
        assert not await pods_of(c, ns)
        assert not (await c.list(common.DEPLOYMENTS, ns)).get("items")
        await c.patch(CM, "held", {"metadata": {"finalizers": None}}, ns)
        await wait_until(lambda: gone(c, common.NAMESPACES, ns, ""), 30, "the namespace to go")
