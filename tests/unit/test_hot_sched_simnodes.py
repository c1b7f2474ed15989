"""The simulated nodes' fast paths give what the general paths give: a Lease renewal's body,
encoded from parts, is the bytes `orjson.dumps` makes of the merge patch; and a pod event that
is not queued because the pod shows our last status write (`SimNodes._settled`) is one that
`_sync_pod` would have done nothing for (no request, no change of state)."""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.client import rest
from kybern.simnodes import SimNodes
from kybern.simnodes import objects as o
from kybern.simnodes.simnodes import LEASES

Obj = dict[str, Any]


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30), st.floats(0, 4e9, allow_nan=False))
def test_lease_renewal_body_is_the_encoded_merge_patch(name: str, t: float) -> None:
    now = o.micro_time(t)
    renewal = o.LeaseRenewal(rest.resource_path(LEASES, o.LEASE_NAMESPACE, name), name)
    assert renewal.body(now) == orjson.dumps({"spec": {"holderIdentity": name, "renewTime": now}})
    assert renewal.path == rest.resource_path(LEASES, o.LEASE_NAMESPACE, name)


class FakeClient:
    """Records what the simulated nodes send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    async def request(self, method: str, path: str, *, body: Any = None, **kw: Any) -> None:
        self.sent.append((method, path, orjson.loads(body) if isinstance(body, bytes) else body))

    async def delete(self, res: Any, name: str, namespace: str = "", **kw: Any) -> None:
        self.sent.append(("DELETE", f"{namespace}/{name}", None))


def simulator(client: FakeClient, nodes: int = 3) -> SimNodes:
    sim = SimNodes(client, count=nodes, name_prefix="n", tune_gc=False)  # type: ignore[arg-type]
    alloc = o.SubnetAllocator(sim.pod_cidr, sim.node_cidr)
    for name in sim.names:
        cidr = alloc.allocate()
        sim._node_ips[name] = alloc.node_ip(cidr)
        sim._pod_ips[name] = o.PodIPs(cidr)
    sim._running = True
    return sim


def bound_pod(name: str, node: str, uid: str = "") -> Obj:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "img:1"}],
            "restartPolicy": "Always",
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def sim_state(sim: SimNodes) -> Any:
    return (
        {k: vars(s).copy() for k, s in sim._sims.items()},
        dict(sim._written),
        {k: v[1] for k, v in sim._desired.items()},
        {n: sorted(ips.used) for n, ips in sim._pod_ips.items()},
        sim._writes,
        sim._deletes,
    )


def variants(rng: random.Random, pod: Obj) -> Obj:
    """The pod as a later event may show it."""
    out = copy.deepcopy(pod)
    r = rng.random()
    if r < 0.1:
        out["status"]["phase"] = "Pending"
    elif r < 0.2:
        out["status"].pop("podIP", None)
    elif r < 0.25:
        out["metadata"]["uid"] = "replaced"
    elif r < 0.3:
        out["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    elif r < 0.35:
        out["spec"]["containers"][0]["image"] = "img:2"
    elif r < 0.4:
        out["status"]["qosClass"] = "Burstable"
    elif r < 0.45:
        out["metadata"]["name"] = out["metadata"]["name"]  # unchanged: a resync
    return out


async def exercise(seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    client = FakeClient()
    sim = simulator(client)
    pods: dict[str, Obj] = {}
    settled = unsettled = 0
    for step in range(400):
        if rng.random() < 0.3 or not pods:
            name = f"p{step}"
            pods[name] = bound_pod(name, rng.choice(sim.names))
        name = rng.choice(list(pods))
        key = f"ns/{name}"
        pod = variants(rng, pods[name])
        if client.sent and client.sent[-1][0] == "PATCH" and rng.random() < 0.8:
            # our last write coming back on the watch (as the server merges it)
            _, path, body = client.sent[-1]
            written = path.split("/")[-2]
            if written in pods:
                name, key = written, f"ns/{written}"
                pod = copy.deepcopy(pods[name])
                pod["status"].update(body["status"])
        sim._pods.items[key] = pod
        before, sent = sim_state(sim), len(client.sent)
        if sim._settled(key, pod):
            settled += 1
            await sim._sync_pod(key)
            assert len(client.sent) == sent, "settled, yet _sync_pod sent something"
            assert sim_state(sim) == before, "settled, yet _sync_pod changed something"
        else:
            unsettled += 1
            await sim._sync_pod(key)
        if client.sent[sent:]:
            method, _, body = client.sent[-1]
            if method == "PATCH":
                pods[name]["status"].update(body["status"])
            else:
                pods.pop(name, None)
                sim._pods.items.pop(key, None)
    return settled, unsettled


def test_settled_pods_are_those_sync_pod_leaves_alone() -> None:
    for seed in range(4):
        settled, unsettled = asyncio.run(exercise(seed))
        assert settled > 40 and unsettled > 40


async def echo_is_not_queued() -> None:
    client = FakeClient()
    sim = simulator(client, nodes=1)
    pod = bound_pod("a", "n0")
    sim._pods.items["ns/a"] = pod
    sim._on_pod(pod)
    assert len(sim.queue) == 1  # a new pod: synced
    key = await sim.queue.get()
    await sim._sync_pod(key[1])
    sim.queue.done(key)
    _, _, body = client.sent[-1]
    echo = copy.deepcopy(pod)
    echo["status"].update(body["status"])
    sim._pods.items["ns/a"] = echo
    sim._on_pod(echo)
    assert len(sim.queue) == 0  # our own write coming back: nothing to do
    echo2 = copy.deepcopy(echo)
    echo2["status"]["phase"] = "Pending"
    sim._pods.items["ns/a"] = echo2
    sim._on_pod(echo2)
    assert len(sim.queue) == 1  # someone else's write: synced again
    sim.queue.shutdown()


def test_our_own_status_write_coming_back_is_not_queued() -> None:
    asyncio.run(echo_is_not_queued())
