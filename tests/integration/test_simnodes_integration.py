"""Simulated nodes against a real `kybern server`, in the test's event loop: nodes register Ready
with capacity and keep their Leases renewed; pods bound to them (created with `spec.nodeName`,
no scheduler needed) run, finish after `sim.kybern.io/run-for` with `sim.kybern.io/exit-code`
as their restart policy says (Succeeded, Failed, CrashLoopBackOff then Running again), and are
removed like a kubelet removes them once deleted; a node marked not Ready is reported Ready
again; `stop()` leaves the nodes, `cleanup` removes them; and the `kybern sim-nodes` command
does the same from a child process until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from conftest import REPO, Server, eventually

from kybern.api import errors
from kybern.client import rest
from kybern.simnodes import SimNodes, objects
from kybern.simnodes.simnodes import LEASES, NODES, PODS

Obj = dict[str, Any]
T = TypeVar("T")
DEADLINE = 30.0
CLI = (
    "import argparse, asyncio, sys\n"
    "from kybern.cli import simnodes\n"
    "p = argparse.ArgumentParser()\n"
    "simnodes.add_parser(p.add_subparsers(dest='command'))\n"
    "sys.exit(asyncio.run(simnodes.run(p.parse_args(sys.argv[1:]))))\n"
)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[rest.Client]:
    cfg = await asyncio.to_thread(rest.load_kubeconfig, server.kubeconfig)
    async with rest.Client(cfg) as c:
        yield c


@pytest.fixture
async def sim(client: rest.Client, ns: str) -> AsyncIterator[SimNodes]:
    s = SimNodes(
        client, count=2, name_prefix="simtest-", heartbeat_interval=0.5, restart_backoff=0.2
    )
    await s.start()
    try:
        yield s
    finally:
        pods = await client.list(PODS, ns)
        for p in pods["items"]:
            with contextlib.suppress(errors.StatusError):
                await client.delete(PODS, p["metadata"]["name"], ns, grace_period=0)
        await s.stop(cleanup=True)


async def make_pod(
    client: rest.Client,
    ns: str,
    name: str,
    node: str = "simtest-0",
    restart: str = "Always",
    **annotations: str,
) -> Obj:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }
    return await client.create(PODS, body, ns)


async def pod_where(
    client: rest.Client, ns: str, name: str, pred: Callable[[Obj], bool], what: str
) -> Obj:
    async def probe() -> Obj | None:
        p = await client.get(PODS, name, ns)
        return p if pred(p) else None

    return await eventually(probe, f"{name}: {what}")


def container(p: Obj) -> Obj:
    statuses = p["status"].get("containerStatuses") or [{}]
    return statuses[0]


async def test_nodes_register_ready_and_heartbeat(client: rest.Client, sim: SimNodes) -> None:
    nodes = {n: await client.get(NODES, n) for n in ("simtest-0", "simtest-1")}
    for n in nodes.values():
        assert objects.node_ready(n)
        assert n["status"]["allocatable"] == {
            "cpu": "32",
            "memory": "256Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        assert n["metadata"]["labels"]["kubernetes.io/hostname"] == n["metadata"]["name"]
        assert n["spec"]["podCIDR"]
    assert nodes["simtest-0"]["spec"]["podCIDR"] != nodes["simtest-1"]["spec"]["podCIDR"]
    first = await client.get(LEASES, "simtest-0", "kube-node-lease")
    assert first["spec"]["holderIdentity"] == "simtest-0"

    async def renewed() -> bool:
        lease = await client.get(LEASES, "simtest-0", "kube-node-lease")
        return bool(lease["spec"]["renewTime"] != first["spec"]["renewTime"])

    await eventually(renewed, "a lease renewal")
    assert sim.statistics().heartbeats > 0


async def test_bound_pod_runs_with_an_ip(client: rest.Client, ns: str, sim: SimNodes) -> None:
    await make_pod(client, ns, "runs")
    p = await pod_where(
        client, ns, "runs", lambda p: p["status"].get("phase") == "Running", "Running"
    )
    node = await client.get(NODES, "simtest-0")
    prefix = node["spec"]["podCIDR"].rsplit(".", 1)[0] + "."
    assert p["status"]["podIP"].startswith(prefix)
    assert p["status"]["hostIP"] == node["status"]["addresses"][0]["address"]
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert {conds[t] for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")} == {
        "True"
    }
    c = container(p)
    assert c["ready"] and c["started"] and c["restartCount"] == 0
    assert c["state"]["running"]["startedAt"]
    assert p["status"]["qosClass"] == "BestEffort"


async def test_run_for_and_exit_codes(client: rest.Client, ns: str, sim: SimNodes) -> None:
    run_for, code = objects.RUN_FOR, objects.EXIT_CODE
    await make_pod(client, ns, "ok", restart="Never", **{run_for: "200ms", code: "0"})
    await make_pod(client, ns, "bad", restart="Never", **{run_for: "200ms", code: "3"})
    await make_pod(client, ns, "once", restart="OnFailure", **{run_for: "200ms"})
    ok = await pod_where(
        client, ns, "ok", lambda p: p["status"].get("phase") == "Succeeded", "Succeeded"
    )
    assert container(ok)["state"]["terminated"]["reason"] == "Completed"
    bad = await pod_where(
        client, ns, "bad", lambda p: p["status"].get("phase") == "Failed", "Failed"
    )
    assert container(bad)["state"]["terminated"]["exitCode"] == 3
    assert container(bad)["state"]["terminated"]["reason"] == "Error"
    await pod_where(
        client, ns, "once", lambda p: p["status"].get("phase") == "Succeeded", "Succeeded"
    )


async def test_failing_container_crash_loops_and_restarts(
    client: rest.Client, ns: str, sim: SimNodes
) -> None:
    annotations = {objects.RUN_FOR: "300ms", objects.EXIT_CODE: "1"}
    await make_pod(client, ns, "crashy", restart="OnFailure", **annotations)
    p = await pod_where(
        client,
        ns,
        "crashy",
        lambda p: "waiting" in (container(p).get("state") or {}),
        "CrashLoopBackOff",
    )
    c = container(p)
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["restartCount"] >= 1 and c["lastState"]["terminated"]["exitCode"] == 1
    assert p["status"]["phase"] == "Running"
    await pod_where(
        client,
        ns,
        "crashy",
        lambda p: (
            "running" in (container(p).get("state") or {}) and container(p)["restartCount"] >= 1
        ),
        "running again after the back-off",
    )
    await make_pod(client, ns, "loops", restart="Always", **{objects.RUN_FOR: "200ms"})
    await pod_where(
        client,
        ns,
        "loops",
        lambda p: container(p).get("restartCount", 0) >= 2 and p["status"]["phase"] == "Running",
        "two restarts",
    )


async def test_deleted_pod_is_removed(client: rest.Client, ns: str, sim: SimNodes) -> None:
    await make_pod(client, ns, "doomed", node="simtest-1")
    await pod_where(
        client, ns, "doomed", lambda p: p["status"].get("phase") == "Running", "Running"
    )
    await client.delete(PODS, "doomed", ns)  # graceful: the node finishes the deletion

    async def gone() -> bool:
        try:
            await client.get(PODS, "doomed", ns)
        except errors.StatusError as e:
            return e.code == 404
        return False

    await eventually(gone, "the pod to be removed")
    assert sim.statistics().deletions >= 1


async def test_not_ready_node_is_reported_ready_again(client: rest.Client, sim: SimNodes) -> None:
    node = await client.get(NODES, "simtest-1")
    conds = [
        {**c, "status": "Unknown", "reason": "NodeStatusUnknown"} if c["type"] == "Ready" else c
        for c in node["status"]["conditions"]
    ]
    await client.patch(NODES, "simtest-1", {"status": {"conditions": conds}}, subresource="status")

    async def ready() -> bool:
        return objects.node_ready(await client.get(NODES, "simtest-1"))

    await eventually(ready, "Ready=True again")


async def test_stop_keeps_nodes_and_a_new_process_adopts_running_pods(
    client: rest.Client, ns: str
) -> None:
    first = SimNodes(client, count=1, name_prefix="adopt-")
    await first.start()
    await make_pod(client, ns, "survivor", node="adopt-0")
    before = await pod_where(
        client, ns, "survivor", lambda p: p["status"].get("phase") == "Running", "Running"
    )
    await first.stop()
    kept = await client.get(NODES, "adopt-0")  # still there after stop()
    second = SimNodes(client, count=1, name_prefix="adopt-")
    await second.start()
    try:
        await second.wait_idle()
        after = await client.get(PODS, "survivor", ns)
        assert after["status"]["podIP"] == before["status"]["podIP"]
        assert after["status"]["startTime"] == before["status"]["startTime"]
        assert second.statistics().status_writes == 0  # nothing to correct
        node = await client.get(NODES, "adopt-0")
        assert node["spec"]["podCIDR"] == kept["spec"]["podCIDR"]
        assert node["metadata"]["uid"] == kept["metadata"]["uid"]
    finally:
        await client.delete(PODS, "survivor", ns, grace_period=0)
        await second.stop(cleanup=True)
    for res, name, namespace in ((NODES, "adopt-0", ""), (LEASES, "adopt-0", "kube-node-lease")):
        with pytest.raises(errors.StatusError) as e:
            await client.get(res, name, namespace)
        assert e.value.code == 404


async def test_cli_runs_until_sigterm_and_cleans_up(server: Server, client: rest.Client) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        "sim-nodes",
        "--kubeconfig",
        str(server.kubeconfig),
        "--count",
        "3",
        "--name-prefix",
        "cli-",
        "--cpu",
        "4",
        "--label",
        "pool=cli",
        "--cleanup",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def registered() -> list[Obj]:
            nodes = await client.list(NODES, label_selector="pool=cli")
            ready = [n for n in nodes["items"] if objects.node_ready(n)]
            return ready if len(ready) == 3 else []

        nodes = await eventually(registered, "three CLI nodes")
        assert {n["status"]["capacity"]["cpu"] for n in nodes} == {"4"}
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE)
        assert proc.returncode == 0, stderr.decode()
        left = await client.list(NODES, label_selector="pool=cli")
        assert left["items"] == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
