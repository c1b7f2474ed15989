"""PodTopologySpread's system default constraints through a real `kybern server` (controllers,
scheduler and three equal simulated nodes): a Deployment of 6 replicas ends 2/2/2, as
kube-scheduler spreads a ReplicaSet's pods by hostname when the pods have no constraints."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from conftest import eventually, running_server

from kybern.api import registry
from kybern.client import rest

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = TypeVar("T")
DEADLINE = 60.0
PODS = next(r for r in registry.BUILTIN if r.kind == "Pod")
NODES = next(r for r in registry.BUILTIN if r.kind == "Node")
NAMESPACES = next(r for r in registry.BUILTIN if r.kind == "Namespace")
DEPLOYMENTS = next(r for r in registry.BUILTIN if r.kind == "Deployment")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[rest.Client]:
    with running_server(args=("--sim-nodes", "3")) as srv:
        cfg = await asyncio.to_thread(rest.load_kubeconfig, srv.kubeconfig)
        async with rest.Client(cfg) as c:

            async def ready() -> bool:
                nodes = (await c.list(NODES))["items"]
                return len(nodes) == 3 and all(
                    any(
                        cond["type"] == "Ready" and cond["status"] == "True"
                        for cond in n.get("status", {}).get("conditions") or ()
                    )
                    for n in nodes
                )

            await eventually(ready, "three Ready simulated nodes")
            yield c


async def test_deployment_of_six_spreads_two_per_node(client: rest.Client) -> None:
    ns = "spread"
    await client.create(NAMESPACES, {"metadata": {"name": ns}})
    labels = {"app": "web"}
    body: dict[str, Any] = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    await client.create(DEPLOYMENTS, body, ns)

    async def placed() -> Counter[str] | None:
        pods = (await client.list(PODS, ns))["items"]
        nodes = Counter(p["spec"].get("nodeName") or "" for p in pods)
        return nodes if len(pods) == 6 and "" not in nodes else None

    per_node = await eventually(placed, "six scheduled pods")
    assert sorted(per_node.values()) == [2, 2, 2], per_node
