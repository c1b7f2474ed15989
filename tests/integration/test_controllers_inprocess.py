"""Every controller against the memory store, all in the test's event loop: an `APIServer` on
`memory://` (no subprocess, no SQLite file) serves HTTPS on a loopback port, a `rest.Client`
is built from its URL and PKI as `kybern/cli/components.py` does, and a `ControllerManager`
runs only the controllers under test, on a fake wall clock and short timings. The tests play
kubelet and scheduler where needed and assert what the controllers did. This file lives in
tests/integration, not tests/unit, because the in-process server still needs a loopback
socket. Waiting is on conditions with deadlines (`wait_until`), never on fixed sleeps."""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_controllers_support import pod_template, set_pod_status, wait_until

from kybern.api import errors
from kybern.apiserver import certs
from kybern.apiserver.server import APIServer, Config
from kybern.client import rest
from kybern.controllers import common, cronjob, daemonset, manager

Obj = dict[str, Any]
NS = "work"
TIMEOUT = 20.0


class FakeClock:
    """The controllers' wall clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Kube:
    client: rest.Client
    clock: FakeClock
    manager: manager.ControllerManager


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI for the module (key generation is the slow part of a start); each test's server
    reuses a copy of it."""
    d = tmp_path_factory.mktemp("pki") / "pki"
    pki = certs.ensure_pki(d, hosts=["127.0.0.1", socket.gethostname()])
    certs.ensure_front_proxy(pki)
    return d


@contextlib.asynccontextmanager
async def in_process(
    data_dir: Path,
    pki_dir: Path,
    enabled: set[str],
    options: common.Options | None = None,
) -> AsyncIterator[Kube]:
    shutil.copytree(pki_dir, data_dir / "pki")
    api = APIServer(Config(data_dir=data_dir, port=0, datastore_endpoint="memory://"))
    await api.start()
    try:
        assert api.pki is not None
        cfg = rest.Config(
            server=api.url,
            ca_data=api.pki.ca_cert.read_bytes(),
            cert_data=api.pki.admin_cert.read_bytes(),
            key_data=api.pki.admin_key.read_bytes(),
        )
        async with rest.Client(cfg, user_agent="test-inprocess") as client:
            await client.create(
                common.NAMESPACES,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            )
            clock = FakeClock()
            mgr = manager.ControllerManager(
                client,
                disabled=set(manager.NAMES) - enabled,
                options=options or common.Options(namespace_requeue=0.1),
                clock=clock,
                retry_period=0.2,
            )
            await mgr.start()
            try:
                await mgr.wait_running(TIMEOUT)
                assert set(mgr.controllers) == enabled
                yield Kube(client, clock, mgr)
            finally:
                await mgr.stop()
    finally:
        await api.stop()


def live(items: list[Obj]) -> list[Obj]:
    return [o for o in items if not o["metadata"].get("deletionTimestamp")]


async def pods(c: rest.Client, selector: str = "") -> list[Obj]:
    return live((await c.list(common.PODS, NS, label_selector=selector)).get("items") or [])


async def count_pods(c: rest.Client, selector: str, n: int) -> list[Obj] | None:
    items = await pods(c, selector)
    return items if len(items) == n else None


async def gone(c: rest.Client, res: Any, name: str, ns: str = NS) -> bool:
    try:
        await c.get(res, name, ns)
    except errors.StatusError as e:
        return e.code == 404
    return False


def controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = common.controller_ref(obj)
    return bool(ref and ref.get("uid") == owner["metadata"]["uid"])


def workload(kind: str, name: str, replicas: int, api: str = "apps/v1") -> Obj:
    labels = {"app": name}
    selector: Obj = {"matchLabels": labels} if api == "apps/v1" else labels
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": selector, "template": pod_template(labels)},
    }


async def add_ready_node(c: rest.Client, name: str) -> Obj:
    node = await c.create(
        common.NODES,
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}}},
    )
    now = common.format_time(time.time())
    node["status"] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    }
    out: Obj = await c.update_status(common.NODES, node)
    return out


# ---- workloads --------------------------------------------------------------------------------


async def test_deployment_creates_replicaset_and_scales(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"deployment", "replicaset"}) as k:
        c = k.client
        d = await c.create(common.DEPLOYMENTS, workload("Deployment", "web", 3), NS)

        async def replicaset() -> Obj | None:
            items = (await c.list(common.REPLICASETS, NS)).get("items") or []
            return items[0] if len(items) == 1 else None

        rs = await wait_until(replicaset, TIMEOUT, "the Deployment's ReplicaSet")
        assert controlled_by(rs, d)
        assert rs["spec"]["replicas"] == 3
        made = await wait_until(lambda: count_pods(c, "app=web", 3), TIMEOUT, "3 pods")
        assert all(controlled_by(p, rs) for p in made)

        async def status_replicas(n: int) -> bool:
            s = (await c.get(common.DEPLOYMENTS, "web", NS)).get("status") or {}
            return s.get("replicas") == n and s.get("updatedReplicas") == n

        await wait_until(lambda: status_replicas(3), TIMEOUT, "status.replicas 3")
        await c.patch(common.DEPLOYMENTS, "web", {"spec": {"replicas": 1}}, NS)
        await wait_until(lambda: count_pods(c, "app=web", 1), TIMEOUT, "scaled down to 1 pod")
        await wait_until(lambda: status_replicas(1), TIMEOUT, "status.replicas 1")


async def test_replicaset_adopts_orphan_and_fills_up(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"replicaset"}) as k:
        c = k.client
        orphan = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "orphan", "labels": {"app": "rs"}},
            "spec": pod_template({"app": "rs"})["spec"],
        }
        await c.create(common.PODS, orphan, NS)
        rs = await c.create(common.REPLICASETS, workload("ReplicaSet", "rs", 2), NS)
        made = await wait_until(lambda: count_pods(c, "app=rs", 2), TIMEOUT, "2 pods")

        async def adopted() -> bool:
            return controlled_by(await c.get(common.PODS, "orphan", NS), rs)

        await wait_until(adopted, TIMEOUT, "the orphan pod to be adopted")
        assert "orphan" in {p["metadata"]["name"] for p in made}
        # a pod that stops matching the selector is released, and replaced
        await c.patch(common.PODS, "orphan", {"metadata": {"labels": {"app": "other"}}}, NS)

        async def released() -> bool:
            return common.controller_ref(await c.get(common.PODS, "orphan", NS)) is None

        await wait_until(released, TIMEOUT, "the relabelled pod to be released")
        await wait_until(lambda: count_pods(c, "app=rs", 2), TIMEOUT, "a replacement pod")


async def test_replication_controller(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"replicationcontroller"}) as k:
        c = k.client
        rc = await c.create(common.RCS, workload("ReplicationController", "rc", 2, "v1"), NS)
        made = await wait_until(lambda: count_pods(c, "app=rc", 2), TIMEOUT, "2 pods")
        assert all(controlled_by(p, rc) for p in made)
        assert {(common.controller_ref(p) or {}).get("kind") for p in made} == {
            "ReplicationController"
        }

        async def status() -> bool:
            s = (await c.get(common.RCS, "rc", NS)).get("status") or {}
            return s.get("replicas") == 2

        await wait_until(status, TIMEOUT, "status.replicas 2")


async def test_statefulset_ordered_with_claims(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"statefulset"}) as k:
        c = k.client
        body = workload("StatefulSet", "db", 2)
        body["spec"]["serviceName"] = "db"
        body["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ]
        await c.create(common.STATEFULSETS, body, NS)

        async def names(want: list[str]) -> bool:
            return sorted(p["metadata"]["name"] for p in await pods(c, "app=db")) == want

        await wait_until(lambda: names(["db-0"]), TIMEOUT, "db-0 alone")
        assert not await gone(c, common.PVCS, "data-db-0")
        await set_pod_status(c, NS, "db-0")  # Running and Ready: the next one may start
        await wait_until(lambda: names(["db-0", "db-1"]), TIMEOUT, "db-1 after db-0 is Ready")
        db1 = await c.get(common.PODS, "db-1", NS)
        assert db1["spec"]["hostname"] == "db-1" and db1["spec"]["subdomain"] == "db"
        assert not await gone(c, common.PVCS, "data-db-1")


async def test_daemonset_one_pod_per_node(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"daemonset"}) as k:
        c = k.client
        for n in ("n-a", "n-b"):
            await add_ready_node(c, n)
        tpl = pod_template({"app": "agent"})
        await c.create(
            common.DAEMONSETS,
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": tpl},
            },
            NS,
        )

        async def covered(want: set[str]) -> bool:
            items = await pods(c, "app=agent")
            return len(items) == len(want) and {daemonset.pod_node(p) for p in items} == want

        await wait_until(lambda: covered({"n-a", "n-b"}), TIMEOUT, "a pod on each node")
        await add_ready_node(c, "n-c")
        await wait_until(lambda: covered({"n-a", "n-b", "n-c"}), TIMEOUT, "the added node")


# ---- batch ------------------------------------------------------------------------------------


def job_body(name: str, **spec: Any) -> Obj:
    tpl = pod_template({"app": name})
    tpl["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": tpl, **spec},
    }


async def test_job_runs_to_completion(tmp_path: Path, pki_dir: Path) -> None:
    opts = common.Options(job_backoff_base=0.05, job_backoff_max=0.2)
    async with in_process(tmp_path, pki_dir, {"job"}, opts) as k:
        c = k.client
        await c.create(common.JOBS, job_body("work", completions=2, parallelism=1), NS)
        for i in range(2):  # parallelism 1: one pod at a time, each finished by the test

            async def next_pod(total: int = i + 1) -> Obj | None:
                items = await pods(c, "app=work")
                running = [q for q in items if not common.is_pod_terminal(q)]
                return running[0] if len(items) == total and len(running) == 1 else None

            p = await wait_until(next_pod, TIMEOUT, f"pod {i + 1} of the Job")
            await set_pod_status(c, NS, p["metadata"]["name"], phase="Succeeded", ready=False)

        async def complete() -> bool:
            j = await c.get(common.JOBS, "work", NS)
            cond = common.get_condition(j.get("status") or {}, "Complete") or {}
            return cond.get("status") == "True" and j["status"].get("succeeded") == 2

        await wait_until(complete, TIMEOUT, "the Complete condition")


async def test_cronjob_fires_at_the_fake_time(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"cronjob"}) as k:
        c = k.client
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": job_body("x")["spec"]}}
        cj = await c.create(
            common.CRONJOBS,
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "tick"},
                "spec": spec,
            },
            NS,
        )
        created = common.parse_time(cj["metadata"]["creationTimestamp"])
        assert created is not None
        assert not (await c.list(common.JOBS, NS)).get("items")
        scheduled = (int(created // 60) + 1) * 60
        # the controller's clock (only) one second past the next minute, however late it is now
        k.clock.offset = scheduled + 1.0 - time.time()
        await c.patch(common.CRONJOBS, "tick", {"metadata": {"labels": {"nudge": "1"}}}, NS)

        async def one_job() -> Obj | None:
            items = (await c.list(common.JOBS, NS)).get("items") or []
            return items[0] if len(items) == 1 else None

        j = await wait_until(one_job, TIMEOUT, "the scheduled Job")
        assert j["metadata"]["name"] == cronjob.job_name(cj, scheduled)
        assert controlled_by(j, cj)

        async def last_schedule() -> bool:
            s = (await c.get(common.CRONJOBS, "tick", NS)).get("status") or {}
            return s.get("lastScheduleTime") == common.format_time(scheduled)

        await wait_until(last_schedule, TIMEOUT, "status.lastScheduleTime")


# ---- cluster ----------------------------------------------------------------------------------


async def test_garbage_collector_background_and_orphan(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"garbagecollector"}) as k:
        c = k.client

        def cm(name: str, owner: Obj | None = None) -> Obj:
            meta: Obj = {"name": name}
            if owner is not None:
                meta["ownerReferences"] = [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                    }
                ]
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

        owner = await c.create(common.CONFIGMAPS, cm("owner"), NS)
        await c.create(common.CONFIGMAPS, cm("child", owner), NS)
        kept_owner = await c.create(common.CONFIGMAPS, cm("owner2"), NS)
        await c.create(common.CONFIGMAPS, cm("kept", kept_owner), NS)

        await c.delete(common.CONFIGMAPS, "owner", NS, propagation="Background")
        await wait_until(
            lambda: gone(c, common.CONFIGMAPS, "child"), TIMEOUT, "the dependent to be collected"
        )
        await c.delete(common.CONFIGMAPS, "owner2", NS, propagation="Orphan")
        await wait_until(
            lambda: gone(c, common.CONFIGMAPS, "owner2"), TIMEOUT, "the orphaning owner to go"
        )
        kept = await c.get(common.CONFIGMAPS, "kept", NS)
        assert not kept["metadata"].get("ownerReferences")


async def test_namespace_deletion_empties_it(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"namespace"}) as k:
        c = k.client
        for name in ("a", "b"):
            await c.create(
                common.CONFIGMAPS,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
                NS,
            )
        await c.delete(common.NAMESPACES, NS)
        await wait_until(lambda: gone(c, common.NAMESPACES, NS, ""), TIMEOUT, "the namespace")
        assert not (await c.list(common.CONFIGMAPS, NS)).get("items")


async def test_serviceaccount_default_in_every_namespace(tmp_path: Path, pki_dir: Path) -> None:
    async with in_process(tmp_path, pki_dir, {"serviceaccount"}) as k:
        c = k.client
        await c.create(
            common.NAMESPACES,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
        )
        for ns in (NS, "other"):
            await wait_until(
                lambda n=ns: c.get(common.SERVICEACCOUNTS, "default", n),  # type: ignore[misc]
                TIMEOUT,
                f"the default ServiceAccount of {ns}",
            )
        await c.delete(common.SERVICEACCOUNTS, "default", "other")
        await wait_until(
            lambda: c.get(common.SERVICEACCOUNTS, "default", "other"),
            TIMEOUT,
            "the default ServiceAccount to be recreated",
        )


async def test_endpoints_and_endpointslices_follow_ready_pods(
    tmp_path: Path, pki_dir: Path
) -> None:
    async with in_process(tmp_path, pki_dir, {"endpoints", "endpointslice"}) as k:
        c = k.client
        await c.create(
            common.SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc"},
                "spec": {"selector": {"app": "be"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
            NS,
        )
        for name, ip in (("be-1", "10.9.0.1"), ("be-2", "10.9.0.2")):
            await c.create(
                common.PODS,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "be"}},
                    "spec": pod_template({"app": "be"})["spec"],
                },
                NS,
            )
            await set_pod_status(c, NS, name, ip=ip, node="n1")

        async def endpoint_ips(want: set[str]) -> bool:
            ep = await c.get(common.ENDPOINTS, "svc", NS)
            ips = {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
            return ips == want

        async def slice_ips(want: set[str]) -> bool:
            items = (
                await c.list(common.SLICES, NS, label_selector="kubernetes.io/service-name=svc")
            ).get("items") or []
            ready = {
                a
                for s in items
                for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready")
                for a in e.get("addresses") or []
            }
            return ready == want

        both = {"10.9.0.1", "10.9.0.2"}
        await wait_until(lambda: endpoint_ips(both), TIMEOUT, "Endpoints of both pods")
        await wait_until(lambda: slice_ips(both), TIMEOUT, "an EndpointSlice of both pods")
        await set_pod_status(c, NS, "be-2", ready=False, ip="10.9.0.2", node="n1")
        await wait_until(lambda: endpoint_ips({"10.9.0.1"}), TIMEOUT, "the unready pod out")
        await wait_until(lambda: slice_ips({"10.9.0.1"}), TIMEOUT, "the unready pod not ready")


async def test_node_lifecycle_on_the_fake_clock(tmp_path: Path, pki_dir: Path) -> None:
    opts = common.Options(default_toleration_seconds=0.2)  # grace periods stay at 40 s / 60 s
    async with in_process(tmp_path, pki_dir, {"nodelifecycle"}, opts) as k:
        c = k.client
        await add_ready_node(c, "n1")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {**pod_template({"app": "p"})["spec"], "nodeName": "n1"},
        }
        await c.create(common.PODS, pod, NS)
        await set_pod_status(c, NS, "p", node="n1", ip="10.8.0.1")

        async def ready_status() -> str:
            node = await c.get(common.NODES, "n1")
            return str((common.get_condition(node["status"], "Ready") or {}).get("status"))

        assert await ready_status() == "True"
        # 100 s pass on the controller's clock with no heartbeat: beyond the 40 s grace period
        k.clock.offset = 100.0
        await c.patch(common.NODES, "n1", {"metadata": {"labels": {"nudge": "1"}}})

        async def unknown_and_tainted() -> bool:
            node = await c.get(common.NODES, "n1")
            taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}
            return (
                await ready_status() == "Unknown"
                and (
                    "node.kubernetes.io/unreachable",
                    "NoExecute",
                )
                in taints
            )

        await wait_until(unknown_and_tainted, TIMEOUT, "n1 Unknown and tainted unreachable")

        async def evicted() -> bool:
            p = await c.get(common.PODS, "p", NS)
            return bool(p["metadata"].get("deletionTimestamp"))

        await wait_until(evicted, TIMEOUT, "eviction of the pod on the unreachable node")
