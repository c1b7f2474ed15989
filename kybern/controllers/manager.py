"""The controller manager (kube-controller-manager's role): contends for the Lease
`kube-system/kybern-controller-manager`; while it leads, it runs one shared informer factory,
the event broadcaster and every enabled controller (`NAMES`, minus `disabled`), starting the
workers only once the informers have synced; when leadership is lost it stops them and
contends again. `stop()` releases the Lease so a successor takes over at once. The CLI
creates one per `kybern server`/`kybern up` (`--disable-controllers`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from kybern.api import errors
from kybern.client import events, informer, leaderelection, rest
from kybern.controllers import (
    attachdetach,
    common,
    cronjob,
    csrsigning,
    daemonset,
    deployment,
    discovery,
    endpoints,
    endpointslice,
    garbagecollector,
    job,
    namespace,
    nodeipam,
    nodelifecycle,
    persistentvolume,
    pvcprotection,
    replicaset,
    serviceaccount,
    statefulset,
)

log = logging.getLogger("kybern.controllers")
LEASE_NAME = "kybern-controller-manager"
LEASE_NAMESPACE = "kube-system"
NAMES: tuple[str, ...] = (
    "deployment",
    "replicaset",
    "replicationcontroller",
    "garbagecollector",
    "namespace",
    "nodelifecycle",
    "nodeipam",
    "endpoints",
    "endpointslice",
    "serviceaccount",
    "job",
    "cronjob",
    "daemonset",
    "statefulset",
    "persistentvolume-binder",
    "attachdetach",
    "pvc-protection",
    "csrsigning",
)


def _build(
    name: str,
    ctx: common.Context,
    disco: discovery.Discovery,
    ipam: tuple[str, int] = (nodeipam.DEFAULT_CLUSTER_CIDR, nodeipam.DEFAULT_MASK_SIZE),
) -> common.Base:
    if name == "nodeipam":
        return nodeipam.NodeIPAMController(ctx, cluster_cidr=ipam[0], mask_size=ipam[1])
    if name == "garbagecollector":
        return garbagecollector.GarbageCollector(ctx, disco)
    if name == "namespace":
        return namespace.NamespaceController(ctx, disco)
    simple: dict[str, Callable[[common.Context], common.Base]] = {
        "deployment": deployment.DeploymentController,
        "replicaset": replicaset.ReplicaSetController,
        "replicationcontroller": replicaset.ReplicationManager,
        "nodelifecycle": nodelifecycle.NodeLifecycleController,
        "endpoints": endpoints.EndpointsController,
        "endpointslice": endpointslice.EndpointSliceController,
        "serviceaccount": serviceaccount.ServiceAccountController,
        "job": job.JobController,
        "cronjob": cronjob.CronJobController,
        "daemonset": daemonset.DaemonSetController,
        "statefulset": statefulset.StatefulSetController,
        "persistentvolume-binder": persistentvolume.PersistentVolumeController,
        "attachdetach": attachdetach.AttachDetachController,
        "pvc-protection": pvcprotection.PVCProtectionController,
        "csrsigning": csrsigning.CSRSigningController,
    }
    return simple[name](ctx)


def parse_disabled(text: str) -> set[str]:
    """`--disable-controllers a,b`: the names, checked against NAMES."""
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = names - set(NAMES)
    if unknown:
        raise ValueError(
            f"unknown controllers: {', '.join(sorted(unknown))} (known: {', '.join(NAMES)})"
        )
    return names


class ControllerManager:
    def __init__(
        self,
        client: rest.Client,
        *,
        disabled: set[str] | frozenset[str] = frozenset(),
        identity: str = "",
        options: common.Options | None = None,
        clock: Callable[[], float] = time.time,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        cluster_cidr: str = nodeipam.DEFAULT_CLUSTER_CIDR,
        node_cidr_mask_size: int = nodeipam.DEFAULT_MASK_SIZE,
    ) -> None:
        unknown = set(disabled) - set(NAMES)
        if unknown:
            raise ValueError(f"unknown controllers: {', '.join(sorted(unknown))}")
        self.client = client
        self.enabled = tuple(n for n in NAMES if n not in disabled)
        self.ipam = (cluster_cidr, node_cidr_mask_size)
        if "nodeipam" in self.enabled:
            nodeipam.CIDRAllocator(cluster_cidr, node_cidr_mask_size)  # ValueError if bad
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.options = options or common.Options()
        self.clock = clock
        self.elector = leaderelection.LeaderElector(
            client,
            LEASE_NAME,
            self.identity,
            namespace=LEASE_NAMESPACE,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
        self.controllers: dict[str, common.Base] = {}
        self.factory: informer.InformerFactory | None = None
        self.broadcaster: events.EventBroadcaster | None = None
        self.running = asyncio.Event()  # set while this instance leads and runs controllers
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin contending for leadership; returns at once (see `wait_running`). With every
        controller disabled there is nothing to lead: the Lease is left to others."""
        if not self.enabled:
            log.info("all controllers disabled; not contending for %s", LEASE_NAME)
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="controller-manager")

    async def wait_running(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.running.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_controllers()
        if self.elector.is_leader.is_set():
            await self._release()

    async def _run(self) -> None:
        while True:
            self.elector.is_leader.clear()
            self.elector.lost.clear()
            election = asyncio.create_task(self.elector.run(), name="leader-election")
            leader = asyncio.create_task(self.elector.is_leader.wait())
            try:
                await asyncio.wait({election, leader}, return_when=asyncio.FIRST_COMPLETED)
                if self.elector.is_leader.is_set():
                    await self._start_controllers()
                    await election  # returns when leadership is lost
                    log.warning("controller manager lost leadership; stopping controllers")
            except Exception:
                log.exception("controller manager failed; contending again")
            finally:
                for t in (leader, election):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                await self._stop_controllers()
            await asyncio.sleep(self.elector.retry_period)

    async def _start_controllers(self) -> None:
        factory = informer.InformerFactory(self.client)
        broadcaster = events.EventBroadcaster(self.client, clock=self.clock)
        ctx = common.Context(self.client, factory, broadcaster, self.options, self.clock)
        disco = discovery.Discovery(self.client)
        self.factory, self.broadcaster = factory, broadcaster
        self.controllers = {n: _build(n, ctx, disco, self.ipam) for n in self.enabled}
        broadcaster.start()
        factory.start()
        await factory.wait_synced(timeout=60.0)
        for c in self.controllers.values():
            c.start()
        self.running.set()
        log.info("controllers running: %s", ", ".join(self.enabled))

    async def _stop_controllers(self) -> None:
        self.running.clear()
        for c in self.controllers.values():
            await c.stop()
        self.controllers = {}
        if self.factory is not None:
            await self.factory.stop()
            self.factory = None
        if self.broadcaster is not None:
            with contextlib.suppress(TimeoutError):
                await self.broadcaster.flush(timeout=2.0)
            await self.broadcaster.stop()
            self.broadcaster = None

    async def _release(self) -> None:
        """ReleaseOnCancel: clear the holder so another candidate acquires immediately."""
        with contextlib.suppress(errors.StatusError, OSError, TimeoutError):
            lease = await self.client.get(leaderelection.LEASES, LEASE_NAME, LEASE_NAMESPACE)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = None
            spec["leaseDurationSeconds"] = 1
            lease["spec"] = spec
            await self.client.update(leaderelection.LEASES, lease)
        self.elector.is_leader.clear()
