"""The scheduler and simulated nodes against a real `kybern server` (one per module), both
running in the test's event loop on the async client: pods are bound and become Running; a pod
that fits nowhere stays Pending with `PodScheduled=False` and a `FailedScheduling` event saying
why; nodeSelector, node affinity, taints, pod anti-affinity and topology spread across three
zones are respected; a pending pod is scheduled once a node that fits it is added. Every test
removes its pods and nodes again, so the next one sees only its own cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from conftest import Server, eventually

from kybern.api import errors, registry
from kybern.client import rest
from kybern.scheduler import Scheduler
from kybern.scheduler.plugins.basic import PODS
from kybern.simnodes import SimNodes
from kybern.simnodes.simnodes import NODES

Obj = dict[str, Any]
T = TypeVar("T")
EVENTS = next(r for r in registry.BUILTIN if r.kind == "Event" and not r.group)
LEASES = next(r for r in registry.BUILTIN if r.kind == "Lease")
DEADLINE = 30.0


class Cluster:
    """Sim nodes and a scheduler started by one test, stopped (and cleaned up) after it."""

    def __init__(self, client: rest.Client, ns: str) -> None:
        self.client = client
        self.ns = ns
        self.sims: list[SimNodes] = []
        self.scheduler: Scheduler | None = None

    async def nodes(self, prefix: str, count: int, **kw: Any) -> SimNodes:
        sim = SimNodes(self.client, count=count, name_prefix=prefix, **kw)
        self.sims.append(sim)
        await sim.start()
        return sim

    async def schedule(self) -> Scheduler:
        self.scheduler = Scheduler(self.client)
        await self.scheduler.start()
        await self.scheduler.wait_leader()
        return self.scheduler

    async def pod(
        self, name: str, cpu: str = "100m", labels: dict[str, str] | None = None, **spec: Any
    ) -> Obj:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
                ],
                **spec,
            },
        }
        return await self.client.create(PODS, body, self.ns)

    async def get(self, name: str) -> Obj:
        return await self.client.get(PODS, name, self.ns)

    async def running(self, *names: str) -> list[Obj]:
        async def probe() -> list[Obj] | None:
            pods = [await self.get(n) for n in names]
            ok = all(
                p["status"].get("phase") == "Running" and p["spec"].get("nodeName") for p in pods
            )
            return pods if ok else None

        return await eventually(probe, f"{names} Running")

    async def unschedulable(self, name: str) -> Obj:
        async def probe() -> Obj | None:
            p = await self.get(name)
            cond = next(
                (c for c in p["status"].get("conditions") or [] if c["type"] == "PodScheduled"),
                None,
            )
            if cond and cond["status"] == "False" and cond.get("reason") == "Unschedulable":
                return cond
            return None

        return await eventually(probe, f"{name} PodScheduled=False")

    async def events(self, name: str, reason: str) -> list[Obj]:
        async def probe() -> list[Obj]:
            evs = await self.client.list(
                EVENTS, self.ns, field_selector=f"involvedObject.name={name},reason={reason}"
            )
            return list(evs["items"])

        return await eventually(probe, f"a {reason} event of {name}")

    async def close(self) -> None:
        pods = await self.client.list(PODS, self.ns)
        for p in pods["items"]:
            with contextlib.suppress(errors.StatusError):
                await self.client.delete(PODS, p["metadata"]["name"], self.ns, grace_period=0)
        if self.scheduler is not None:
            await self.scheduler.stop()
        for sim in self.sims:
            await sim.stop(cleanup=True)


@pytest.fixture
async def cluster(server: Server, ns: str) -> AsyncIterator[Cluster]:
    cfg = await asyncio.to_thread(rest.load_kubeconfig, server.kubeconfig)
    async with rest.Client(cfg) as client:
        c = Cluster(client, ns)
        try:
            yield c
        finally:
            await c.close()


async def test_pods_are_bound_and_run_with_scheduled_events(cluster: Cluster) -> None:
    await cluster.nodes("bind-", 3, cpu="2")
    await cluster.schedule()
    names = [f"web-{i}" for i in range(6)]
    for n in names:
        await cluster.pod(n, cpu="500m")
    pods = await cluster.running(*names)
    assert {p["spec"]["nodeName"] for p in pods} <= {"bind-0", "bind-1", "bind-2"}
    assert all(p["status"]["podIP"] for p in pods)
    per_node: dict[str, int] = {}
    for p in pods:
        per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    assert max(per_node.values()) <= 4  # 2 CPUs hold four 500m pods
    ev = (await cluster.events("web-0", "Scheduled"))[0]
    assert ev["type"] == "Normal"
    assert (
        ev["message"]
        == f"Successfully assigned {cluster.ns}/web-0 to {pods[0]['spec']['nodeName']}"
    )
    assert ev["source"]["component"] == "default-scheduler"


async def test_pod_that_fits_nowhere_stays_pending_and_says_why(cluster: Cluster) -> None:
    await cluster.nodes("small-", 3, cpu="2")
    await cluster.schedule()
    await cluster.pod("huge", cpu="4")
    cond = await cluster.unschedulable("huge")
    assert cond["message"] == "0/3 nodes are available: 3 Insufficient cpu."
    ev = (await cluster.events("huge", "FailedScheduling"))[0]
    assert ev["type"] == "Warning"
    assert ev["message"] == "0/3 nodes are available: 3 Insufficient cpu."
    pod = await cluster.get("huge")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


async def test_pending_pod_is_scheduled_when_a_node_fits(cluster: Cluster) -> None:
    await cluster.nodes("tiny-", 1, cpu="1")
    sched = await cluster.schedule()
    await cluster.pod("waits", cpu="4")
    await cluster.unschedulable("waits")
    assert sched.statistics().unschedulable == 1
    await cluster.nodes("roomy-", 1, cpu="8")
    (pod,) = await cluster.running("waits")
    assert pod["spec"]["nodeName"] == "roomy-0"


async def test_node_selector_affinity_and_taints(cluster: Cluster) -> None:
    await cluster.nodes("ssd-", 2, labels={"disk": "ssd"})
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    await cluster.nodes("gpu-", 2, labels={"accel": "gpu"}, taints=[taint])
    await cluster.schedule()
    await cluster.pod("selector", nodeSelector={"disk": "ssd"})
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "accel", "operator": "In", "values": ["gpu"]}]}
                ]
            }
        }
    }
    toleration = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    await cluster.pod("tolerates", affinity=affinity, tolerations=[toleration])
    await cluster.pod("intolerant", affinity=affinity)
    await cluster.pod("anywhere")
    selector, tolerates, anywhere = await cluster.running("selector", "tolerates", "anywhere")
    assert selector["spec"]["nodeName"].startswith("ssd-")
    assert tolerates["spec"]["nodeName"].startswith("gpu-")
    assert anywhere["spec"]["nodeName"].startswith("ssd-")  # no toleration for the gpu nodes
    cond = await cluster.unschedulable("intolerant")
    assert cond["message"] == (
        "0/4 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, "
        "2 node(s) had untolerated taint {dedicated: gpu}."
    )


async def test_topology_spread_across_three_zones(cluster: Cluster) -> None:
    await cluster.nodes("zoned-", 6, zones=3)
    await cluster.schedule()
    spread = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}},
    }
    names = [f"s-{i}" for i in range(9)]
    for n in names:
        await cluster.pod(n, labels={"app": "spread"}, topologySpreadConstraints=[spread])
    pods = await cluster.running(*names)
    zone_of = {f"zoned-{i}": f"zone-{i % 3}" for i in range(6)}
    counts: dict[str, int] = {}
    for p in pods:
        z = zone_of[p["spec"]["nodeName"]]
        counts[z] = counts.get(z, 0) + 1
    assert counts == {"zone-0": 3, "zone-1": 3, "zone-2": 3}


async def test_required_pod_anti_affinity_per_host(cluster: Cluster) -> None:
    await cluster.nodes("anti-", 3)
    await cluster.schedule()
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "solo"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    for i in range(4):
        await cluster.pod(f"solo-{i}", labels={"app": "solo"}, affinity=anti)
    cond = await cluster.unschedulable("solo-3")  # created last, it finds every host taken
    # the placed pods' own terms repel it first (kube checks existing pods' rules first)
    assert cond["message"] == (
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    )
    placed = await cluster.running("solo-0", "solo-1", "solo-2")
    assert len({p["spec"]["nodeName"] for p in placed}) == 3


async def test_stop_hands_back_the_lease(cluster: Cluster) -> None:
    await cluster.nodes("lease-", 1)
    sched = await cluster.schedule()
    lease = await cluster.client.get(LEASES, "kybern-scheduler", "kube-system")
    assert lease["spec"]["holderIdentity"] == sched.identity
    await sched.stop()
    cluster.scheduler = None
    lease = await cluster.client.get(LEASES, "kybern-scheduler", "kube-system")
    assert not lease["spec"].get("holderIdentity")
    # a successor takes over at once
    await cluster.schedule()
    await cluster.pod("after")
    await cluster.running("after")
    nodes = await cluster.client.list(NODES)
    assert [n["metadata"]["name"] for n in nodes["items"]] == ["lease-0"]


async def test_scheduling_gates_hold_a_pod_back(cluster: Cluster) -> None:
    await cluster.nodes("gate-", 1)
    await cluster.schedule()
    await cluster.pod("gated", schedulingGates=[{"name": "example.com/wait"}])

    async def gated() -> bool:
        p = await cluster.get("gated")
        conds = p["status"].get("conditions") or []
        return any(
            c["type"] == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conds
        )

    await eventually(gated, "PodScheduled=False reason SchedulingGated")
    assert not (await cluster.get("gated"))["spec"].get("nodeName")
    await cluster.client.patch(PODS, "gated", {"spec": {"schedulingGates": None}}, cluster.ns)
    await cluster.running("gated")
