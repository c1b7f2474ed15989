"""DaemonSets and node lifecycle against a real `kybern server`: the test registers Node objects
itself (no agents run here), plays scheduler and kubelet where needed, and runs the controller
manager in its event loop — a DaemonSet covers every eligible node and follows node additions,
labels, taints and removals; a node whose Lease goes stale becomes Unknown, is tainted
unreachable, its pods are marked not ready and evicted unless they tolerate it, and the taints
go once it heartbeats again."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from typing import Any

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

from kybern.api import errors
from kybern.client import events, rest
from kybern.controllers import common, daemonset, placement

Obj = dict[str, Any]


DS = common.DAEMONSETS


def _micro(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def add_node(c: rest.Client, name: str, labels: dict[str, str] | None = None) -> Obj:
    node = await c.create(
        common.NODES,
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}},
    )
    return await post_ready(c, node)


async def post_ready(c: rest.Client, node: Obj) -> Obj:
    now = common.format_time(time.time())
    status = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    }
    # a patch, not an update: node IPAM may have written the node since it was read
    return await c.patch(
        common.NODES, node["metadata"]["name"], {"status": status}, subresource="status"
    )


async def renew_lease(c: rest.Client, node: str) -> None:
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 40,
            "renewTime": _micro(time.time()),
        },
    }
    try:
        lease = await c.get(common.LEASES, node, "kube-node-lease")
    except errors.StatusError:
        await c.create(common.LEASES, body, "kube-node-lease")
        return
    lease["spec"]["renewTime"] = _micro(time.time())
    await c.update(common.LEASES, lease)


async def remove_nodes(c: rest.Client, names: list[str]) -> None:
    for n in names:
        with contextlib.suppress(errors.StatusError):
            await c.delete(common.NODES, n)


async def test_daemonset_covers_every_eligible_node(server: Server) -> None:
    async with connect(server) as c, running_manager(c, disabled={"nodelifecycle"}):
        ns = unique("ds")
        await create_namespace(c, ns)
        tag = unique("n")
        names = [f"{tag}-a", f"{tag}-b"]
        for n in names:
            await add_node(c, n, {"pool": tag})
        try:
            tpl = pod_template({"app": "agent"})
            tpl["spec"]["nodeSelector"] = {"pool": tag}
            await c.create(
                DS,
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "metadata": {"name": "agent"},
                    "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": tpl},
                },
                ns,
            )

            async def covered(expected: set[str]) -> list[Obj] | None:
                pods = [
                    p
                    for p in (await c.list(common.PODS, ns)).get("items") or []
                    if not p["metadata"].get("deletionTimestamp")
                ]
                return (
                    pods
                    if {daemonset.pod_node(p) for p in pods} == expected
                    and len(pods) == len(expected)
                    else None
                )

            pods = await wait_until(lambda: covered(set(names)), 20, "a pod on each node")
            for p in pods:
                term = p["spec"]["affinity"]["nodeAffinity"][
                    "requiredDuringSchedulingIgnoredDuringExecution"
                ]["nodeSelectorTerms"][0]
                assert term["matchFields"][0]["key"] == "metadata.name"
                keys = {t.get("key") for t in p["spec"]["tolerations"]}
                assert {placement.NOT_READY, placement.UNREACHABLE} <= keys
                assert "controller-revision-hash" in p["metadata"]["labels"]
            # play scheduler (bind each pod to the node of its affinity) and kubelet
            for p in pods:
                name, node = p["metadata"]["name"], daemonset.pod_node(p)
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"kind": "Node", "name": node},
                }
                await c.create(common.PODS, binding, ns, subresource="binding", name=name)
                await set_pod_status(c, ns, name, node=node, ip="10.1.0.1")

            async def status(desired: int, ready: int) -> bool:
                s = (await c.get(DS, "agent", ns)).get("status") or {}
                return (
                    s.get("desiredNumberScheduled") == desired
                    and s.get("currentNumberScheduled") == desired
                    and s.get("numberReady") == ready
                    and s.get("updatedNumberScheduled") == desired
                )

            await wait_until(lambda: status(2, 2), 20, "status of 2 ready daemon pods")

            names.append(f"{tag}-c")
            await add_node(c, names[-1], {"pool": tag})
            await wait_until(lambda: covered(set(names)), 20, "a pod on the added node")
            names.append(f"{tag}-d")
            await add_node(c, names[-1], {"pool": "elsewhere"})  # not selected
            await wait_until(lambda: status(3, 2), 20, "the unselected node to be ignored")
            await c.patch(common.NODES, names[-1], {"metadata": {"labels": {"pool": tag}}})
            await wait_until(lambda: covered(set(names)), 20, "a pod once the node is labelled")
            taint = {"key": "dedicated", "value": "x", "effect": "NoExecute"}
            await c.patch(common.NODES, names[0], {"spec": {"taints": [taint]}})
            await wait_until(lambda: covered(set(names[1:])), 20, "eviction from the tainted node")
            await c.delete(common.NODES, names[1])
            await wait_until(lambda: covered(set(names[2:])), 20, "removal from the deleted node")
        finally:
            await remove_nodes(c, names)


async def test_node_lifecycle_stale_lease_taints_and_evicts(server: Server) -> None:
    opts = common.Options(
        node_monitor_grace_period=1.0, node_startup_grace_period=1.0, default_toleration_seconds=1.0
    )
    async with connect(server) as c, running_manager(c, options=opts):
        ns = unique("nl")
        await create_namespace(c, ns)
        tag = unique("n")
        ok, stale = f"{tag}-ok", f"{tag}-stale"
        for n in (ok, stale):
            await add_node(c, n)
            await renew_lease(c, n)

        alive = {ok}

        async def heartbeat() -> None:
            while True:
                for n in sorted(alive):
                    await renew_lease(c, n)
                await asyncio.sleep(0.2)

        beat = asyncio.create_task(heartbeat())
        try:
            pods = {}
            for name, node, tols in (
                ("plain", stale, []),
                (
                    "tolerant",
                    stale,
                    [{"key": placement.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}],
                ),
                ("healthy", ok, []),
            ):
                spec = pod_template({"app": name})["spec"]
                spec.update(nodeName=node, tolerations=tols)
                pods[name] = await c.create(
                    common.PODS,
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
                    ns,
                )
                await set_pod_status(c, ns, name, node=node, ip="10.2.0.1")

            async def unknown() -> Obj | None:
                node = await c.get(common.NODES, stale)
                ready = common.get_condition(node["status"], "Ready") or {}
                taints = {
                    (t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []
                }
                want = {(placement.UNREACHABLE, "NoSchedule"), (placement.UNREACHABLE, "NoExecute")}
                return node if ready.get("status") == "Unknown" and taints == want else None

            tainted = await wait_until(unknown, 20, "the stale node to become Unknown and tainted")
            assert (common.get_condition(tainted["status"], "Ready") or {})[
                "reason"
            ] == "NodeStatusUnknown"

            async def evicted() -> bool:
                p = await c.get(common.PODS, "plain", ns)
                return bool(p["metadata"].get("deletionTimestamp"))

            await wait_until(evicted, 20, "eviction of the pod without a toleration")
            tolerant = await c.get(common.PODS, "tolerant", ns)
            assert not tolerant["metadata"].get("deletionTimestamp")
            assert not common.is_pod_ready(tolerant)  # marked not ready with its node
            healthy_node = await c.get(common.NODES, ok)
            assert (common.get_condition(healthy_node["status"], "Ready") or {})["status"] == "True"
            assert not (healthy_node.get("spec") or {}).get("taints")
            healthy = await c.get(common.PODS, "healthy", ns)
            assert common.is_pod_ready(healthy) and not healthy["metadata"].get("deletionTimestamp")
            evs = (
                await c.list(events.EVENTS, ns, field_selector="reason=TaintManagerEviction")
            ).get("items")
            assert [e["involvedObject"]["name"] for e in evs or []] == ["plain"]

            # the kubelet comes back: heartbeat and Ready again, and the taints go
            alive.add(stale)
            await renew_lease(c, stale)
            await post_ready(c, await c.get(common.NODES, stale))

            async def recovered() -> bool:
                node = await c.get(common.NODES, stale)
                return not (node.get("spec") or {}).get("taints")

            await wait_until(recovered, 20, "the taints to be removed")
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await remove_nodes(c, [ok, stale])
