"""The agent as a node: restarting it does not restart running containers and it resyncs their
status; killing it makes the node NotReady (the node lifecycle controller, run here with a short
grace period) and starting it again makes the node and its pods Ready; static pods from the
manifest directory run and are mirrored into the API; the node's Lease is renewed."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agent_helpers import (
    Cluster,
    container_status,
    in_namespace,
    is_ready,
    is_running,
    pod_manifest,
    running_cluster,
    wait_until,
)

from kybern.agent import common
from kybern.client import events, informer
from kybern.controllers import common as ctl_common
from kybern.controllers import nodelifecycle
from kybern.cri import messages

pytestmark = pytest.mark.asyncio(loop_scope="module")
Obj = dict[str, Any]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = Path(tmp_path_factory.mktemp("agent-node"))
    (base / "manifests").mkdir()
    args = ("--pod-manifest-path", str(base / "manifests"))
    async with running_cluster(base, agent_args=args) as c:
        yield c


@contextlib.asynccontextmanager
async def node_lifecycle(c: Cluster) -> AsyncIterator[None]:
    """The node lifecycle controller in this process, with a grace period of 3 s."""
    factory = informer.InformerFactory(c.client)
    broadcaster = events.EventBroadcaster(c.client)
    opts = ctl_common.Options(
        node_monitor_grace_period=3.0,
        node_startup_grace_period=3.0,
        default_toleration_seconds=600.0,
    )
    ctl = nodelifecycle.NodeLifecycleController(
        ctl_common.Context(c.client, factory, broadcaster, opts)
    )
    broadcaster.start()
    factory.start()
    try:
        await factory.wait_synced(30.0)
        ctl.start()
        yield
    finally:
        await ctl.stop()
        await factory.stop()
        await broadcaster.stop()


def node_ready(node: Obj) -> str:
    for cond in node.get("status", {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return str(cond["status"])
    return ""


async def test_restarted_agent_adopts_running_containers(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    await cluster.apply(in_namespace(pod_manifest("keep", ["sleep", "3600"]), ns))
    before = container_status(await cluster.wait_pod(ns, "keep", is_running))
    assert await cluster.agent.stop() == 0
    # while the agent is away, the status goes stale (as a controller might mark it)
    stale = {"conditions": [{"type": "Ready", "status": "False", "reason": "Stale"}]}
    await cluster.client.patch(common.PODS, "keep", {"status": stale}, ns, subresource="status")
    await cluster.start_agent()
    p = await cluster.wait_pod(ns, "keep", is_ready, what="the status resynced")
    after = container_status(p)
    assert after["containerID"] == before["containerID"]
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    assert after["restartCount"] == 0


async def test_killed_agent_makes_the_node_not_ready_until_it_returns(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    await cluster.apply(in_namespace(pod_manifest("stay", ["sleep", "3600"]), ns))
    before = container_status(await cluster.wait_pod(ns, "stay", is_ready))
    async with node_lifecycle(cluster):
        await cluster.agent.kill()

        async def unknown() -> bool:
            return node_ready(await cluster.node_obj()) == "Unknown"

        await wait_until(unknown, 30.0, "the node to go NotReady")
        await cluster.wait_pod(ns, "stay", lambda p: not is_ready(p), what="the pod unready")
        await cluster.start_agent()
        await cluster.wait_node_ready()
        p = await cluster.wait_pod(ns, "stay", is_ready, what="the pod ready again")

        async def untainted() -> bool:  # the controller takes the taints off the Ready node
            taints = (await cluster.node_obj()).get("spec", {}).get("taints") or []
            return not [t for t in taints if t["key"].startswith("node.kubernetes.io/")]

        await wait_until(untainted, 30.0, "the node's not-ready taints to go")
    assert container_status(p)["containerID"] == before["containerID"]


async def test_static_pod_runs_and_is_mirrored(cluster: Cluster) -> None:
    manifest = cluster.base / "manifests" / "web.yaml"
    pod = pod_manifest("static-web", ["sleep", "3600"])
    manifest.write_text(json.dumps(pod))
    name = f"static-web-{cluster.node}"
    mirror = await cluster.wait_pod("default", name, is_running, what="the mirror pod running")
    annotations = mirror["metadata"]["annotations"]
    assert annotations[common.CONFIG_SOURCE] == "file"
    assert annotations[common.CONFIG_MIRROR] == annotations[common.CONFIG_HASH]
    assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Node"
    uid = annotations[common.CONFIG_HASH]
    # deleting the mirror does not stop the static pod: the mirror comes back
    await cluster.kubectl("delete", "pod", name, "-n", "default", "--wait=false")

    async def recreated() -> Obj | None:
        p = await cluster.pod("default", name)
        return p if p["metadata"]["uid"] != mirror["metadata"]["uid"] else None

    await wait_until(recreated, 30.0, "a new mirror pod")
    sandboxes = await cluster.rt.list_pod_sandbox(
        messages.sandbox_filter(labels={common.POD_UID_LABEL: uid})
    )
    assert len([s for s in sandboxes if s.state == 0]) == 1  # still the same, ready sandbox
    manifest.unlink()

    async def gone() -> bool:
        pods = (await cluster.client.list(common.PODS, "default")).get("items") or []
        sbs = await cluster.rt.list_pod_sandbox(
            messages.sandbox_filter(labels={common.POD_UID_LABEL: uid})
        )
        return not [p for p in pods if p["metadata"]["name"] == name] and not sbs

    await wait_until(gone, 30.0, "the static pod and its mirror to go")


async def test_lease_is_renewed(cluster: Cluster) -> None:
    first = await cluster.client.get(common.LEASES, cluster.node, common.LEASE_NAMESPACE)

    async def renewed() -> bool:
        lease = await cluster.client.get(common.LEASES, cluster.node, common.LEASE_NAMESPACE)
        return bool(lease["spec"]["renewTime"] != first["spec"]["renewTime"])

    await wait_until(renewed, 30.0, "a lease renewal")
