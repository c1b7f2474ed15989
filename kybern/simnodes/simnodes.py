"""`SimNodes`: one process that plays kubelet for many nodes without running containers (like
kwok). It registers the Node objects, renews each node's Lease in `kube-node-lease` every
`heartbeat_interval` seconds with the renewals spread evenly over the interval, refreshes node
status every few minutes (and at once when a controller marked a node not Ready), and watches
the bound pods (field selector `spec.nodeName!=`) with one informer, acting on those bound to
its nodes: a bound pod is reported Running with an IP from the node's pod CIDR and ready
container statuses (one merge patch of the status fields that change);
`sim.kybern.io/run-for` and `sim.kybern.io/exit-code` end its containers and apply the restart
policy (CrashLoopBackOff with back-off on failure); a pod marked for deletion is removed with
grace 0 and a UID precondition, as a kubelet does once its containers are gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kybern.api import errors, registry
from kybern.client import informer, rest, workqueue
from kybern.simnodes import objects as o

log = logging.getLogger("kybern.simnodes")

NODES = next(r for r in registry.BUILTIN if r.kind == "Node")
PODS = next(r for r in registry.BUILTIN if r.kind == "Pod" and not r.group)
LEASES = next(r for r in registry.BUILTIN if r.kind == "Lease")
TRANSIENT = (TimeoutError, aiohttp.ClientError, OSError)
Key = tuple[str, str]  # ("pod", "ns/name") | ("node", name)
BOUND = "spec.nodeName!="  # kubelets watch their own pods; we watch every bound one
MERGE = rest.PATCH_TYPES["merge"]
HEARTBEAT_CONCURRENCY = 16  # Lease renewals in flight at once


@dataclass(frozen=True)
class Statistics:
    nodes: int
    pods: int
    heartbeats: int
    heartbeat_failures: int
    status_writes: int
    deletions: int


class SimNodes:
    def __init__(
        self,
        client: rest.Client,
        *,
        count: int,
        cpu: str = "32",
        memory: str = "256Gi",
        pods: int = 110,
        ephemeral_storage: str = "100Gi",
        name_prefix: str = "sim-",
        labels: Mapping[str, str] | None = None,
        taints: list[o.Obj] | None = None,
        zones: int = 0,
        pod_cidr: str = "10.128.0.0/9",
        node_cidr: str = "172.16.0.0/12",
        heartbeat_interval: float = 10.0,
        lease_duration: int = 40,
        status_report_interval: float = 300.0,
        restart_backoff: float = 10.0,
        max_restart_backoff: float = 300.0,
        workers: int = 16,
        tune_gc: bool = True,
    ) -> None:
        self.client = client
        self.names = [f"{name_prefix}{i}" for i in range(count)]
        self._index = {n: i for i, n in enumerate(self.names)}
        self.capacity = {
            "cpu": cpu,
            "memory": memory,
            "pods": str(pods),
            "ephemeral-storage": ephemeral_storage,
        }
        self.labels = dict(labels or {})
        self.taints = list(taints or [])
        self.zones = zones
        self.pod_cidr, self.node_cidr = pod_cidr, node_cidr
        self.heartbeat_interval = heartbeat_interval
        self.lease_duration = lease_duration
        self.status_report_interval = status_report_interval
        self.restart_backoff = restart_backoff
        self.max_restart_backoff = max_restart_backoff
        self.workers = workers
        self.tune_gc = tune_gc  # informer.tune_gc() once synced (a process of its own)
        self._node_ips: dict[str, str] = {}
        self._pod_ips: dict[str, o.PodIPs] = {}
        self._sims: dict[str, o.PodSim] = {}
        self._written: dict[str, o.Obj] = {}
        # the status last computed for a pod, and what it was computed from
        self._desired: dict[str, tuple[tuple[Any, ...], o.Obj]] = {}  # compared, not hashed
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._leases: dict[str, o.LeaseRenewal] = {}
        self._factory = informer.InformerFactory(client)
        self._pods = self._factory.informer(PODS, field_selector=BOUND)
        self._nodes = self._factory.informer(NODES)
        self.queue: workqueue.WorkQueue[Key] = workqueue.WorkQueue(
            "simnodes", bucket=workqueue.TokenBucket(qps=1000.0, burst=1000)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(32)
        self._heartbeats = self._hb_failures = self._writes = self._deletes = 0
        self._busy = 0
        self._idle = asyncio.Event()
        self._running = False

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the nodes and their leases, then start heartbeats and the pod loop."""
        await self._register()
        self._pods.add_handlers(
            informer.Handlers(self._on_pod, lambda _, p: self._on_pod(p), self._on_pod_gone)
        )
        self._nodes.add_handlers(
            informer.Handlers(self._on_node, lambda _, n: self._on_node(n), None)
        )
        self._running = True
        self._factory.start()
        await self._factory.wait_synced(60.0)
        if self.tune_gc:
            informer.tune_gc()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="sim-heartbeats"))
        self._tasks += [
            asyncio.create_task(self._worker(), name=f"sim-worker-{i}") for i in range(self.workers)
        ]

    async def stop(self, *, cleanup: bool = False) -> None:
        """Stop simulating; the nodes stay (and go NotReady) unless `cleanup`."""
        self._running = False
        self.queue.shutdown()
        for t in [*self._tasks, *self._inflight]:
            t.cancel()
        for t in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, workqueue.ShutDown, Exception):
                await t
        self._tasks = []
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        await self._factory.stop()
        if cleanup:
            await self._cleanup()

    def statistics(self) -> Statistics:
        return Statistics(
            nodes=len(self.names),
            pods=sum(1 for s in self._sims.values() if not s.final),
            heartbeats=self._heartbeats,
            heartbeat_failures=self._hb_failures,
            status_writes=self._writes,
            deletions=self._deletes,
        )

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every queued pod and node has been synced (timers may still be set)."""
        async with asyncio.timeout(timeout):
            while len(self.queue) or self._busy:
                self._idle.clear()
                await self._idle.wait()

    async def _bounded(self, coro: Any) -> Any:
        async with self._sem:
            return await coro

    async def _register(self) -> None:
        existing: dict[str, o.Obj] = {}
        token = ""
        while True:
            page = await self.client.list(NODES, limit=500, continue_token=token)
            for n in page.get("items") or []:
                existing[n["metadata"]["name"]] = n
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        alloc = o.SubnetAllocator(
            self.pod_cidr,
            self.node_cidr,
            [(n.get("spec") or {}).get("podCIDR", "") for n in existing.values()],
        )
        plans: list[tuple[str, str, o.Obj | None]] = []
        for name in self.names:
            old = existing.get(name)
            cidr = ((old or {}).get("spec") or {}).get("podCIDR") or alloc.allocate()
            plans.append((name, cidr, old))
        await asyncio.gather(
            *(
                self._bounded(self._register_one(name, cidr, old, alloc))
                for name, cidr, old in plans
            )
        )

    def _node_labels(self, name: str) -> dict[str, str]:
        labels = dict(self.labels)
        if self.zones > 0:
            labels.setdefault(o.REGION_LABEL, "sim")
            labels.setdefault(o.ZONE_LABEL, f"zone-{self._index[name] % self.zones}")
        return labels

    async def _register_one(
        self, name: str, cidr: str, old: o.Obj | None, alloc: o.SubnetAllocator
    ) -> None:
        ip = alloc.node_ip(cidr)
        self._node_ips[name] = ip
        self._pod_ips[name] = o.PodIPs(cidr)
        now = o.rfc3339(time.time())
        desired = o.node_object(
            name,
            cidr=cidr,
            ip=ip,
            capacity=self.capacity,
            labels=self._node_labels(name),
            taints=self.taints,
            now=now,
        )
        node = old
        if node is None:
            try:
                node = await self.client.create(NODES, desired)
            except errors.StatusError as e:
                if e.code != 409:
                    raise
                node = await self.client.get(NODES, name)
        # the API server may drop status on create (kubelets register with it): set it now;
        # a merge patch, so a controller writing the node meanwhile causes no conflict
        node = await self.client.patch(
            NODES, name, {"status": desired["status"]}, subresource="status"
        )
        uid = node["metadata"]["uid"]
        lease = o.lease_object(name, uid, self.lease_duration, o.micro_time(time.time()))
        try:
            await self.client.create(LEASES, lease, o.LEASE_NAMESPACE)
        except errors.StatusError as e:
            if e.code != 409:
                raise
            await self._renew(name)

    async def _cleanup(self) -> None:
        mine = set(self.names)
        pods = [
            p for p in self._pods.items.values() if (p.get("spec") or {}).get("nodeName") in mine
        ]

        async def gone(coro: Any) -> None:
            with contextlib.suppress(errors.StatusError, *TRANSIENT):
                await coro

        await asyncio.gather(
            *(
                self._bounded(
                    gone(
                        self.client.delete(
                            PODS, p["metadata"]["name"], p["metadata"]["namespace"], grace_period=0
                        )
                    )
                )
                for p in pods
            ),
            *(self._bounded(gone(self.client.delete(LEASES, n, o.LEASE_NAMESPACE))) for n in mine),
            *(self._bounded(gone(self.client.delete(NODES, n))) for n in mine),
        )

    # ---- heartbeats -------------------------------------------------------------------------

    async def _renew(self, name: str) -> None:
        renewal = self._leases.get(name)
        if renewal is None:
            renewal = self._leases[name] = o.LeaseRenewal(
                rest.resource_path(LEASES, o.LEASE_NAMESPACE, name), name
            )
        try:
            # the renewed Lease is not needed: no decoding of the answer
            await self.client.request(
                "PATCH",
                renewal.path,
                body=renewal.body(o.micro_time(time.time())),
                content_type=MERGE,
                decode=False,
            )
            self._heartbeats += 1
        except errors.StatusError as e:
            self._hb_failures += 1
            if e.code == 404:
                with contextlib.suppress(errors.StatusError):
                    node = await self.client.get(NODES, name)
                    lease = o.lease_object(
                        name,
                        node["metadata"]["uid"],
                        self.lease_duration,
                        o.micro_time(time.time()),
                    )
                    await self.client.create(LEASES, lease, o.LEASE_NAMESPACE)
            else:
                log.debug("lease of %s: %s", name, e.message)
        except TRANSIENT as e:
            self._hb_failures += 1
            log.debug("lease of %s: %s", name, e)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._inflight.add(t)
        t.add_done_callback(self._inflight.discard)

    async def _renew_all(self, names: list[str]) -> None:
        """Renew the leases of `names`, a few at a time (one task per slot, not per node)."""
        it = iter(names)

        async def drain() -> None:
            for name in it:
                await self._renew(name)

        await asyncio.gather(*(drain() for _ in range(min(HEARTBEAT_CONCURRENCY, len(names)))))

    async def _heartbeat_loop(self) -> None:
        """Every tick renews the nodes of one slot, so N nodes cost N/interval requests per
        second, evenly; node status is re-reported on a slower rotation."""
        tick = min(1.0, self.heartbeat_interval)
        slots = max(1, round(self.heartbeat_interval / tick))
        report_every = max(1, math.ceil(self.status_report_interval / self.heartbeat_interval))
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            slot = n % slots
            rnd = n // slots
            names = self.names[slot::slots]
            self._spawn(self._renew_all(names))
            if rnd > 0:
                for j, name in enumerate(names):
                    if rnd % report_every == j % report_every:
                        self.queue.add(("node", name))
            n += 1
            await asyncio.sleep(max(0.0, start + n * tick - loop.time()))

    # ---- informer handlers ------------------------------------------------------------------

    def _on_node(self, node: o.Obj) -> None:
        name = node["metadata"]["name"]
        if self._running and name in self._index and not o.node_ready(node):
            self.queue.add(("node", name))

    def _on_pod(self, pod: o.Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self._index:
            key = informer.key_of(pod)
            if not self._settled(key, pod):
                self.queue.add(("pod", key))

    def _settled(self, key: str, pod: o.Obj) -> bool:
        """True when `_sync_pod` would find nothing to do for `pod` (the informer's latest):
        it is our last status write coming back. Such an event is not queued at all."""
        written = self._written.get(key)
        sim = self._sims.get(key)
        if written is None or sim is None:
            return False
        meta = pod["metadata"]
        if sim.uid != meta.get("uid") or meta.get("deletionTimestamp"):
            return False
        desired = self._desired_status(key, pod, sim)
        return written is desired and (pod.get("status") or {}).get("phase") == desired["phase"]

    def _on_pod_gone(self, pod: o.Obj) -> None:
        key = informer.key_of(pod)
        if key in self._sims:
            self.queue.add(("pod", key))

    # ---- workers ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        with contextlib.suppress(workqueue.ShutDown):
            while True:
                key = await self.queue.get()
                self._busy += 1
                try:
                    if key[0] == "node":
                        await self._sync_node(key[1])
                    else:
                        await self._sync_pod(key[1])
                    self.queue.forget(key)
                except asyncio.CancelledError:
                    raise
                except errors.StatusError as e:
                    log.debug("sim %s: %s", key, e.message)
                    self.queue.add_rate_limited(key)
                except TRANSIENT as e:
                    log.debug("sim %s: %s", key, e)
                    self.queue.add_rate_limited(key)
                except Exception:
                    log.exception("sim %s failed", key)
                    self.queue.add_rate_limited(key)
                finally:
                    self._busy -= 1
                    self.queue.done(key)
                    if not self._busy and not len(self.queue):
                        self._idle.set()

    async def _sync_node(self, name: str) -> None:
        node = self._nodes.get(name)
        now = o.rfc3339(time.time())
        before = {
            c.get("type"): c.get("lastTransitionTime", now)
            for c in ((node or {}).get("status") or {}).get("conditions") or ()
            if c.get("status") == ("True" if c.get("type") == "Ready" else "False")
        }
        patch = {"status": {"conditions": o.node_conditions(now, before)}}
        await self.client.patch(NODES, name, patch, subresource="status")

    def _forget(self, key: str) -> None:
        sim = self._sims.pop(key, None)
        self._written.pop(key, None)
        self._desired.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if sim is not None and sim.node in self._pod_ips and not sim.final:
            self._pod_ips[sim.node].release(sim.ip)

    async def _sync_pod(self, key: str) -> None:
        ns, _, name = key.partition("/")
        pod = self._pods.get(name, ns)
        node = (pod or {}).get("spec", {}).get("nodeName")
        if pod is None or node not in self._index:
            self._forget(key)
            return
        meta = pod["metadata"]
        sim = self._sims.get(key)
        if sim is not None and sim.uid != meta.get("uid"):
            self._forget(key)
            sim = None
        if meta.get("deletionTimestamp"):
            await self._delete(pod)
            return
        if sim is None:
            sim = self._adopt(key, pod, node)
            if sim is None:
                return  # finished before we took over: leave it alone
        desired = self._desired_status(key, pod, sim)
        current = pod.get("status") or {}
        written = self._written.get(key)
        if written is desired and current.get("phase") == desired["phase"]:
            return  # our own write coming back (or nothing new)
        if not o.status_differs(current, desired):
            self._written[key] = desired
            return
        # a merge patch of the fields that change: those the pod shows otherwise, and those
        # our last write set otherwise (the informer may not have seen that write yet)
        changed = {
            k: v
            for k, v in desired.items()
            if current.get(k) != v or (written is not None and written.get(k) != v)
        }
        await self.client.request(
            "PATCH",
            rest.resource_path(PODS, ns, name, "status"),
            body={"metadata": {"uid": meta.get("uid")}, "status": changed},
            content_type=MERGE,
            decode=False,  # the pod comes back on the watch
        )
        self._writes += 1
        self._written[key] = desired
        if sim.final and key in self._sims:
            self._pod_ips[sim.node].release(sim.ip)

    def _desired_status(self, key: str, pod: o.Obj, sim: o.PodSim) -> o.Obj:
        """`o.pod_status`, computed again only when what it depends on changed (most events
        of a pod are our own status write coming back on the watch)."""
        spec = pod.get("spec") or {}
        meta = pod["metadata"]
        sig = (
            sim.state_key(),
            [(c.get("name"), c.get("image")) for c in spec.get("containers") or ()],
            [(c.get("name"), c.get("image")) for c in spec.get("initContainers") or ()],
            (pod.get("status") or {}).get("qosClass"),
            meta.get("name"),
            meta.get("namespace"),
        )
        cached = self._desired.get(key)
        if cached is not None and cached[0] == sig:
            return cached[1]
        desired = o.pod_status(pod, sim, self._backoff(sim))
        self._desired[key] = (sig, desired)
        return desired

    async def _delete(self, pod: o.Obj) -> None:
        meta = pod["metadata"]
        key = informer.key_of(pod)
        try:
            await self.client.delete(
                PODS, meta["name"], meta.get("namespace", ""), grace_period=0, uid=meta["uid"]
            )
            self._deletes += 1
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise
        self._forget(key)

    def _adopt(self, key: str, pod: o.Obj, node: str) -> o.PodSim | None:
        """Start simulating `pod`: a new pod starts now; one already reported Running (by an
        earlier process) continues from its status."""
        status = pod.get("status") or {}
        now = time.time()
        ips = self._pod_ips[node]
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return None
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        if phase == "Running" and status.get("podIP"):
            ip = status["podIP"]
            if not host_network:
                ips.reserve(ip)
            started = o.parse_time(status.get("startTime")) or now
            run_started = started
            restarts = 0
            for cs in status.get("containerStatuses") or ():
                restarts = max(restarts, int(cs.get("restartCount") or 0))
                running = (cs.get("state") or {}).get("running") or {}
                run_started = o.parse_time(running.get("startedAt")) or run_started
            sim = o.PodSim(
                pod["metadata"]["uid"], node, ip, self._node_ips[node], started, run_started
            )
            sim.restarts = restarts
        else:
            ip = self._node_ips[node] if host_network else ips.allocate()
            sim = o.PodSim(pod["metadata"]["uid"], node, ip, self._node_ips[node], now, now)
        sim.changed = sim.run_started
        self._sims[key] = sim
        self._arm(key, pod, sim)
        return sim

    # ---- run-for, exit codes and restarts ---------------------------------------------------

    def _backoff(self, sim: o.PodSim) -> float:
        if sim.crashes <= 0:
            return 0.0
        return min(self.restart_backoff * 2 ** (sim.crashes - 1), self.max_restart_backoff)

    def _arm(self, key: str, pod: o.Obj, sim: o.PodSim) -> None:
        duration = o.run_for(pod)
        if duration is None:
            return
        remaining = max(0.0, sim.run_started + duration - time.time())
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(remaining, self._finish, key, sim.uid)

    def _finish(self, key: str, uid: str) -> None:
        self._timers.pop(key, None)
        sim = self._sims.get(key)
        ns, _, name = key.partition("/")
        pod = self._pods.get(name, ns)
        if sim is None or sim.uid != uid or pod is None:
            return
        now = time.time()
        code = o.exit_code(pod)
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        sim.exit_code = code
        sim.finished = now
        sim.changed = now
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            sim.state = o.TERMINATED
            sim.final = True
        else:
            sim.last_state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": o.rfc3339(sim.run_started),
                    "finishedAt": o.rfc3339(now),
                    "containerID": o.container_id(sim.uid, "", sim.restarts),
                }
            }
            sim.restarts += 1
            if code == 0:
                sim.crashes = 0
                self._restart(key, uid)
                return
            sim.crashes += 1
            sim.state = o.WAITING
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(self._backoff(sim), self._restart, key, uid)
        self.queue.add(("pod", key))

    def _restart(self, key: str, uid: str) -> None:
        self._timers.pop(key, None)
        sim = self._sims.get(key)
        ns, _, name = key.partition("/")
        pod = self._pods.get(name, ns)
        if sim is None or sim.uid != uid or pod is None:
            return
        now = time.time()
        sim.state = o.RUNNING
        sim.exit_code = 0
        sim.run_started = now
        sim.changed = now
        self._arm(key, pod, sim)
        self.queue.add(("pod", key))
