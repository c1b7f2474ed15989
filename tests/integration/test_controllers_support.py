"""Helpers for the controller integration tests (a `ControllerManager` in the test's event loop
against a real `kybern server` that runs the API machinery alone, a stand-in kubelet that marks
pods Running and Ready, and waiting on conditions with deadlines), plus the tests of the
manager itself: leader election and hand-over on the Lease, the manager wired into `kybern
server`, `--disable-controllers` names, the default ServiceAccount and the event recorder's
aggregation against the real server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import Server, wait_for

from kybern.api import errors
from kybern.client import events, rest
from kybern.controllers import common, manager

Obj = dict[str, Any]
T = TypeVar("T")


@contextlib.contextmanager
def server_with_controllers() -> Iterator[Server]:
    """`kybern server` as deployed: its own controller manager and scheduler running."""
    base = Path(tempfile.mkdtemp(prefix="kybern-ctl-"))
    srv = Server(base, args=())
    try:
        srv.start()
        yield srv
        assert srv.running, f"server died during the tests:\n{srv.log_tail()}"
        rc = srv.stop()
        assert rc == 0, f"server exited with {rc} on SIGTERM:\n{srv.log_tail()}"
    finally:
        with contextlib.suppress(Exception):
            srv.kill()
        shutil.rmtree(base, ignore_errors=True)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0, message: str = "condition"
) -> T:
    """Await `probe()` until it returns something truthy; fail at the deadline. Exceptions
    count as "not yet" (the last one is reported)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except (errors.StatusError, KeyError, IndexError, AssertionError) as e:
            last = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last!r})" if last else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}{detail}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_manager(
    client: rest.Client,
    *,
    disabled: set[str] | frozenset[str] = frozenset(),
    options: common.Options | None = None,
    clock: Callable[[], float] = time.time,
    identity: str = "",
) -> AsyncIterator[manager.ControllerManager]:
    mgr = manager.ControllerManager(
        client, disabled=disabled, options=options, clock=clock, identity=identity
    )
    await mgr.start()
    try:
        await mgr.wait_running(30.0)
        yield mgr
    finally:
        await mgr.stop()


@contextlib.asynccontextmanager
async def connect(server: Server) -> AsyncIterator[rest.Client]:
    async with rest.Client(rest.load_kubeconfig(server.kubeconfig)) as c:
        yield c


async def create_namespace(client: rest.Client, name: str) -> None:
    await client.create(
        common.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )


def pod_template(labels: dict[str, str], image: str = "busybox:1") -> Obj:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {"name": "c", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}
            ]
        },
    }


async def set_pod_status(
    client: rest.Client,
    namespace: str,
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    ip: str = "",
    node: str = "",
) -> Obj | None:
    """Play kubelet: write the pod's status (retrying on conflicts)."""
    for _ in range(20):
        try:
            pod = await client.get(common.PODS, name, namespace)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise
        now = common.format_time(time.time())
        status = dict(pod.get("status") or {})
        status["phase"] = phase
        status["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ]
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        if node:
            status["hostIP"] = "10.0.0.1"
        pod["status"] = status
        try:
            return await client.update_status(common.PODS, pod)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            if e.code != 409:
                raise
    raise AssertionError(f"could not update the status of pod {namespace}/{name}")


class Kubelet:
    """Marks every pod of a namespace Running and Ready (with an IP) once it appears, as a
    node agent would; `paused` holds new pods Pending."""

    def __init__(self, client: rest.Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.paused = False
        self._task: asyncio.Task[None] | None = None
        self._n = 0

    async def __aenter__(self) -> Kubelet:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not self.paused:
                pods = (await self.client.list(common.PODS, self.namespace)).get("items") or []
                for p in pods:
                    if p["metadata"].get("deletionTimestamp") or common.is_pod_ready(p):
                        continue
                    if common.is_pod_terminal(p):
                        continue
                    self._n += 1
                    ip = f"10.244.{self._n // 250}.{self._n % 250 + 1}"
                    await set_pod_status(self.client, self.namespace, p["metadata"]["name"], ip=ip)
            await asyncio.sleep(0.05)


async def pods_of(client: rest.Client, namespace: str, selector: str = "") -> list[Obj]:
    items: list[Obj] = (await client.list(common.PODS, namespace, label_selector=selector)).get(
        "items"
    ) or []
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


# ---- tests of the manager itself --------------------------------------------------------------


def test_kybern_server_runs_the_controllers() -> None:
    """The controller manager wired into `kybern server`: a Deployment gets its pods."""
    with server_with_controllers() as srv:
        srv.kubectl("create", "namespace", "wired")
        srv.kubectl(
            "apply",
            "-n",
            "wired",
            "-f",
            "-",
            input="""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
""",
        )

        def two_pods() -> bool:
            out = srv.kubectl_json("get", "pods", "-n", "wired", "-l", "app=web")
            return len(out["items"]) == 2

        wait_for(two_pods, 30, message="the deployment's pods")
        sa = srv.kubectl_json("get", "serviceaccount", "default", "-n", "wired")
        assert sa["metadata"]["name"] == "default"


def test_names_and_disabled() -> None:
    assert set(manager.NAMES) >= {"deployment", "garbagecollector", "statefulset", "namespace"}
    assert manager.parse_disabled("job, cronjob") == {"job", "cronjob"}
    with pytest.raises(ValueError, match="unknown controllers: nope"):
        manager.parse_disabled("job,nope")


async def test_leader_election_hands_over(server: Server) -> None:
    async with connect(server) as c:
        first = manager.ControllerManager(c, identity="first", disabled={"garbagecollector"})
        second = manager.ControllerManager(c, identity="second", disabled={"garbagecollector"})
        await first.start()
        await first.wait_running()
        await second.start()
        lease = await c.get(common.LEASES, manager.LEASE_NAME, manager.LEASE_NAMESPACE)
        assert lease["spec"]["holderIdentity"] == "first"
        assert not second.running.is_set()
        await first.stop()  # releases the Lease: the second takes over without waiting 15 s
        await second.wait_running(10.0)
        lease = await c.get(common.LEASES, manager.LEASE_NAME, manager.LEASE_NAMESPACE)
        assert lease["spec"]["holderIdentity"] == "second"
        await second.stop()


async def test_default_service_account(server: Server) -> None:
    async with connect(server) as c, running_manager(c):
        ns = unique("sa")
        await create_namespace(c, ns)
        await wait_until(
            lambda: c.get(common.SERVICEACCOUNTS, "default", ns), 10, "the default ServiceAccount"
        )
        await c.delete(common.SERVICEACCOUNTS, "default", ns)
        sa = await wait_until(
            lambda: c.get(common.SERVICEACCOUNTS, "default", ns), 10, "it to be recreated"
        )
        assert sa["metadata"]["name"] == "default"


async def test_events_are_aggregated(server: Server) -> None:
    async with connect(server) as c:
        ns = unique("ev")
        await create_namespace(c, ns)
        cm = await c.create(
            common.CONFIGMAPS,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns}},
        )
        b = events.EventBroadcaster(c)
        b.start()
        rec = b.new_recorder("test-controller")
        for _ in range(5):
            rec.event(cm, "Normal", "Same", "the same message")
        for i in range(12):
            rec.event(cm, "Warning", "Varied", f"message {i}")
        for _ in range(40):  # beyond the burst of the per-object token bucket
            rec.event(cm, "Normal", "Flood", "flood")
        await b.flush()
        await b.stop()
        items = (await c.list(events.EVENTS, ns)).get("items") or []
        same = [e for e in items if e["reason"] == "Same"]
        assert len(same) == 1 and same[0]["count"] == 5
        assert same[0]["involvedObject"]["uid"] == cm["metadata"]["uid"]
        assert same[0]["source"]["component"] == "test-controller"
        assert same[0]["reportingComponent"] == "test-controller"
        varied = [e for e in items if e["reason"] == "Varied"]
        combined = [e for e in varied if e["message"].startswith(events.COMBINED)]
        assert len(varied) == 10 and len(combined) == 1 and combined[0]["count"] == 3
        flood = [e for e in items if e["reason"] == "Flood"]
        assert len(flood) == 1 and flood[0]["count"] == 25 - 5 - 12
        assert b.dropped == 40 - flood[0]["count"]
