"""The scheduler process: informers on pods, nodes and namespaces feed the cache and the
scheduling queue; while this instance holds the `kube-system/kybern-scheduler` Lease, one loop
pops a pod, runs the synchronous scheduling cycle (filter, score, assume, reserve, permit — no
API call) and hands the pod to an asynchronous binding cycle (wait on permit, pre-bind, bind,
post-bind) so the next cycle never waits on the API server. Failures set the pod's
`PodScheduled=False` condition and record a `FailedScheduling` event with kube-scheduler's
message; successes record `Scheduled`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kybern.api import errors, registry
from kybern.client import events, informer, leaderelection, rest
from kybern.scheduler import framework as fw
from kybern.scheduler import plugins
from kybern.scheduler.cache import Cache
from kybern.scheduler.nodeinfo import Obj, PodInfo
from kybern.scheduler.plugins.basic import PODS
from kybern.scheduler.profile import Profile
from kybern.scheduler.queue import SchedulingQueue
from kybern.scheduler.runtime import Framework, NoNodesAvailable

log = logging.getLogger("kybern.scheduler")

NODES = next(r for r in registry.BUILTIN if r.kind == "Node")
NAMESPACES = next(r for r in registry.BUILTIN if r.kind == "Namespace")
LEASES = next(r for r in registry.BUILTIN if r.kind == "Lease")
LEASE_NAME = "kybern-scheduler"
UNSCHEDULABLE_LEFTOVER_INTERVAL = 30.0
EVENT_ASSIGNED_POD_ADD = fw.ClusterEvent(fw.ASSIGNED_POD, fw.ActionType.ADD, "AssignedPodAdd")


@dataclass(frozen=True)
class Statistics:
    scheduled: int
    failed_attempts: int
    errors: int
    active: int
    backoff: int
    unschedulable: int
    assumed: int
    binding: int
    is_leader: bool


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _strip(pod: Obj) -> tuple[Any, Any]:
    meta = {
        k: v
        for k, v in pod["metadata"].items()
        if k not in ("resourceVersion", "generation", "managedFields", "finalizers")
    }
    return meta, pod.get("spec")


def _gated(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("schedulingGates"))


def pod_updated(old: Obj, new: Obj) -> bool:
    """kube's `isPodUpdated`: anything but status, resourceVersion, generation, managedFields
    and finalizers changed."""
    return _strip(old) != _strip(new)


def node_change(old: Obj, new: Obj) -> fw.ActionType:
    """Which scheduling-relevant parts of a node changed (0: nothing that matters)."""
    a = fw.ActionType(0)
    os_, ns_ = old.get("status") or {}, new.get("status") or {}
    if os_.get("allocatable") != ns_.get("allocatable"):
        a |= fw.ActionType.UPDATE_NODE_ALLOCATABLE
    if old["metadata"].get("labels") != new["metadata"].get("labels"):
        a |= fw.ActionType.UPDATE_NODE_LABEL
    ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
    if ospec.get("taints") != nspec.get("taints") or bool(ospec.get("unschedulable")) != bool(
        nspec.get("unschedulable")
    ):
        a |= fw.ActionType.UPDATE_NODE_TAINT

    def conds(s: Mapping[str, Any]) -> dict[str, Any]:
        return {c.get("type"): c.get("status") for c in s.get("conditions") or ()}

    if conds(os_) != conds(ns_):
        a |= fw.ActionType.UPDATE_NODE_CONDITION
    return a


class Scheduler:
    """`await start()` lists and watches, then campaigns for the Lease and schedules while it
    leads; `await stop()` releases the Lease and stops everything."""

    def __init__(
        self,
        client: rest.Client,
        *,
        name: str = "default-scheduler",
        profile: Profile | None = None,
        plugin_registry: fw.Registry | None = None,
        leader_elect: bool = True,
        lease_name: str = LEASE_NAME,
        identity: str = "",
        assumed_ttl: float = 30.0,
        tune_gc: bool = True,
    ) -> None:
        self.client = client
        self.tune_gc = tune_gc  # informer.tune_gc() once synced (a process of its own)
        self.profile = profile or Profile(scheduler_name=name)
        self.name = self.profile.scheduler_name
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.leader_elect = leader_elect
        self.lease_name = lease_name
        self.cache = Cache(ttl=assumed_ttl)
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self._factory = informer.InformerFactory(client)
        self.handle = fw.Handle(
            snapshot=self.cache,
            client=client,
            scheduler_name=self.name,
            namespace_labels=self.namespace_labels,
            informer_factory=self._factory,
            on_event=self._plugin_event,
        )
        self.framework = Framework(self.profile, plugin_registry or plugins.in_tree(), self.handle)
        self.queue = SchedulingQueue(
            self.framework.less, plugin_events=self.framework.events_to_register()
        )
        self._pods = self._factory.informer(PODS)
        self._nodes = self._factory.informer(NODES)
        self._namespaces = self._factory.informer(NAMESPACES)
        self._broadcaster = events.EventBroadcaster(client)
        self.recorder = self._broadcaster.new_recorder(self.name, socket.gethostname())
        self._elector: leaderelection.LeaderElector | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._leading: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._scheduled = self._failed = self._errors = 0
        self.latencies: list[float] = []  # first queued -> bound, per scheduled pod
        self.is_leader = asyncio.Event()
        self._wire()

    # ---- informer handlers ------------------------------------------------------------------

    def _wire(self) -> None:
        self._pods.add_handlers(
            informer.Handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        )
        self._nodes.add_handlers(
            informer.Handlers(self._on_node_add, self._on_node_update, self._on_node_delete)
        )
        self._namespaces.add_handlers(
            informer.Handlers(self._on_ns_add, lambda _, n: self._on_ns_add(n), self._on_ns_delete)
        )

    def _plugin_event(self, event: fw.ClusterEvent) -> None:
        """A cluster event seen by a plugin's own informer (claims, volumes, classes, ...)."""
        self.queue.move_all_to_active_or_backoff(event)

    def _responsible(self, pod: Obj) -> bool:
        return (pod.get("spec") or {}).get("schedulerName", "default-scheduler") == self.name

    def _on_pod_add(self, pod: Obj) -> None:
        if _terminal(pod):
            return
        if _assigned(pod):
            pi = PodInfo(pod)
            self.cache.add_pod(pi)
            self.queue.delete(pi.key)
            self.queue.move_all_to_active_or_backoff(EVENT_ASSIGNED_POD_ADD)
        elif self._responsible(pod):
            if _gated(pod):
                self._spawn(self._set_gated(pod), "gated")
                return
            self.queue.add(PodInfo(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if _assigned(new):
            key = f"{new['metadata'].get('namespace', '')}/{new['metadata']['name']}"
            if _terminal(new):
                if self.cache.pod(key) is not None:
                    self.cache.remove_pod(key)
                    self.queue.move_all_to_active_or_backoff(fw.EVENT_ASSIGNED_POD_DELETE)
                return
            before = self.cache.pod(key)
            was_assigned = _assigned(old) and before is not None
            if not was_assigned and before is not None and self.cache.is_assumed(key):
                # our binding seen on the watch: the assumed pod info serves (same requests,
                # same node), so neither the pod nor the node's sums are computed again
                confirmed = before.rebound(new)
                if confirmed is not None and self.cache.confirm_pod(confirmed):
                    self.queue.delete(key)
                    self.queue.move_all_to_active_or_backoff(EVENT_ASSIGNED_POD_ADD)
                    return
            if (
                was_assigned
                and before is not None
                and old.get("spec") == new.get("spec")
                and old["metadata"].get("labels") == new["metadata"].get("labels")
                and bool(old["metadata"].get("deletionTimestamp"))
                == bool(new["metadata"].get("deletionTimestamp"))
            ):
                before.pod = new  # a status change (the kubelet's): nothing to recount
                return
            pi = PodInfo(new)
            self.cache.update_pod(pi)
            if not was_assigned:
                self.queue.delete(key)
                self.queue.move_all_to_active_or_backoff(EVENT_ASSIGNED_POD_ADD)
            elif before is not None:
                action = fw.ActionType(0)
                if before.labels != pi.labels:
                    action |= fw.ActionType.UPDATE_POD_LABEL
                if pi.requests.milli_cpu < before.requests.milli_cpu or (
                    pi.requests.memory < before.requests.memory
                ):
                    action |= fw.ActionType.UPDATE_POD_SCALE_DOWN
                if action:
                    self.queue.move_all_to_active_or_backoff(
                        fw.ClusterEvent(fw.ASSIGNED_POD, action, "AssignedPodUpdate")
                    )
            return
        if not self._responsible(new) or _terminal(new):
            self.queue.delete(f"{new['metadata'].get('namespace', '')}/{new['metadata']['name']}")
            return
        pi = PodInfo(new)
        if self.cache.is_assumed(pi.key):
            return  # its binding is in flight
        if _gated(new):  # kube's SchedulingGates: held back until the gates are removed
            self.queue.delete(pi.key)
            return
        self.queue.update(pi, spec_changed=pod_updated(old, new))

    def _on_pod_delete(self, pod: Obj) -> None:
        key = f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
        self.queue.delete(key)
        uid = pod["metadata"].get("uid", "")
        wp = self.handle.get_waiting_pod(uid)
        if wp is not None:
            wp.reject("", "pod was deleted")
        if self.cache.pod(key) is not None:
            self.cache.remove_pod(key)
            self.queue.move_all_to_active_or_backoff(fw.EVENT_ASSIGNED_POD_DELETE)

    def _on_node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff(fw.EVENT_NODE_ADD)

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(new)
        action = node_change(old, new)
        if action:
            self.queue.move_all_to_active_or_backoff(fw.ClusterEvent(fw.NODE, action, "NodeUpdate"))

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    def _on_ns_add(self, ns: Obj) -> None:
        self.namespace_labels[ns["metadata"]["name"]] = ns["metadata"].get("labels") or {}

    def _on_ns_delete(self, ns: Obj) -> None:
        self.namespace_labels.pop(ns["metadata"]["name"], None)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._broadcaster.start()
        self._factory.start()
        await self._factory.wait_synced()
        if self.tune_gc:
            informer.tune_gc()
        if self.leader_elect:
            self._tasks.append(asyncio.create_task(self._campaign(), name="scheduler-election"))
        else:
            self._lead()

    async def stop(self) -> None:
        for t in [*self._tasks, *self._leading, *self._background]:
            t.cancel()
        for t in [*self._tasks, *self._leading, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks, self._leading = [], []
        self._background.clear()
        self.queue.close()
        if self._elector is not None and self.is_leader.is_set():
            with contextlib.suppress(errors.StatusError, aiohttp.ClientError, OSError):
                await asyncio.wait_for(self._release(), 5.0)
        self.is_leader.clear()
        with contextlib.suppress(TimeoutError):
            await self._broadcaster.flush(2.0)
        await self._broadcaster.stop()
        await self._factory.stop()

    async def wait_leader(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.is_leader.wait(), timeout)

    async def _campaign(self) -> None:
        while True:
            elector = self._elector = leaderelection.LeaderElector(
                self.client, self.lease_name, self.identity
            )
            run = asyncio.create_task(elector.run(), name="scheduler-lease")
            won = asyncio.create_task(elector.is_leader.wait())
            try:
                await asyncio.wait({run, won}, return_when=asyncio.FIRST_COMPLETED)
                if elector.is_leader.is_set():
                    log.info("scheduler %s leads", self.identity)
                    self._lead()
                await run  # returns when the lease, once held, is lost
            finally:
                run.cancel()
                won.cancel()
            log.warning("scheduler %s lost its lease; pausing", self.identity)
            for t in self._leading:
                t.cancel()
            self._leading = []
            self.is_leader.clear()

    def _lead(self) -> None:
        self.is_leader.set()
        self._leading = [
            asyncio.create_task(self._schedule_loop(), name="scheduler-loop"),
            asyncio.create_task(self._flush_loop(), name="scheduler-flush"),
        ]

    async def _release(self) -> None:
        """client-go's ReleaseOnCancel: hand the Lease back so a successor need not wait."""
        lease = await self.client.get(LEASES, self.lease_name, "kube-system")
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        lease["spec"] = spec
        await self.client.update(LEASES, lease)

    def statistics(self) -> Statistics:
        active, backoff, unsched = self.queue.pending()
        return Statistics(
            scheduled=self._scheduled,
            failed_attempts=self._failed,
            errors=self._errors,
            active=active,
            backoff=backoff,
            unschedulable=unsched,
            assumed=self.cache.assumed_count,
            binding=len(self._background),
            is_leader=self.is_leader.is_set(),
        )

    # ---- the loops --------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            qpi = await self.queue.pop()
            try:
                self.schedule_one(qpi)
            except Exception:
                log.exception("scheduling %s failed", qpi.key)
            await asyncio.sleep(0)  # let informers and bindings run between cycles

    async def _flush_loop(self) -> None:
        last_leftover = time.monotonic()
        while True:
            nxt = self.queue.next_backoff_expiry()
            delay = 1.0 if nxt is None else min(1.0, max(nxt - time.monotonic(), 0.01))
            await asyncio.sleep(delay)
            self.queue.flush_backoff_completed()
            now = time.monotonic()
            if now - last_leftover >= UNSCHEDULABLE_LEFTOVER_INTERVAL:
                last_leftover = now
                self.queue.flush_unschedulable_left_over()
            for pi in self.cache.cleanup_assumed_pods():
                pod = self._pods.get(pi.name, pi.namespace)
                if pod is not None and not _assigned(pod) and self._responsible(pod):
                    self.queue.add(PodInfo(pod))

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def schedule_one(self, qpi: fw.QueuedPodInfo) -> None:
        """One synchronous scheduling cycle; the binding cycle continues in a task."""
        pod = qpi.pod_info
        if pod.pod["metadata"].get("deletionTimestamp") or self.cache.is_assumed(pod.key):
            return
        fwk = self.framework
        state = fw.CycleState()
        cycle = self.queue.scheduling_cycle
        qpi.unschedulable_plugins = set()
        try:
            result = fwk.schedule_pod(state, pod, self.cache)
        except fw.FitError as e:
            qpi.unschedulable_plugins = set(e.diagnosis.unschedulable_plugins)
            if fwk.post_filter:
                _, pst = fwk.run_post_filter(state, pod, e.diagnosis.node_to_status)
                if not pst.is_success() and pst.message:
                    e.diagnosis.post_filter_msg = pst.message
            self._handle_failure(qpi, fw.Status(fw.Code.UNSCHEDULABLE, str(e)), cycle)
            return
        except NoNodesAvailable as e:
            self._handle_failure(qpi, fw.unresolvable(str(e)), cycle)
            return
        except Exception as e:
            log.exception("scheduling cycle of %s", pod.key)
            self._handle_failure(qpi, fw.as_status(e), cycle)
            return
        host = result.suggested_host
        assumed = pod.with_node(host)
        self.cache.assume_pod(assumed)
        st = fwk.run_reserve(state, assumed, host)
        if st is None:
            st = fwk.run_permit(state, assumed, host)
            if st is not None and st.is_wait():
                st = None
        if st is not None and not st.is_success():
            fwk.run_unreserve(state, assumed, host)
            self.cache.forget_pod(assumed)
            if st.is_rejected() and st.plugin:
                qpi.unschedulable_plugins = {st.plugin}
            self._handle_failure(qpi, st, cycle)
            return
        self._spawn(self._binding_cycle(state, qpi, assumed, host, cycle), f"bind-{pod.key}")

    async def _binding_cycle(
        self, state: fw.CycleState, qpi: fw.QueuedPodInfo, assumed: PodInfo, host: str, cycle: int
    ) -> None:
        fwk = self.framework
        st: fw.Status | None
        try:
            st = None
            if assumed.uid in self.handle.waiting_pods:
                st = await fwk.wait_on_permit(assumed)
            if fwk.pre_bind and fw.is_success(st):
                st = await fwk.run_pre_bind(state, assumed, host)
            if fw.is_success(st):
                st = await fwk.run_bind(state, assumed, host)
        except asyncio.CancelledError:
            self.cache.forget_pod(assumed)
            raise
        except Exception as e:  # a transport failure, a bug in a plugin
            st = fw.as_status(e)
        if st is not None and not st.is_success():
            fwk.run_unreserve(state, assumed, host)
            self.cache.forget_pod(assumed)
            self.queue.move_all_to_active_or_backoff(fw.EVENT_ASSIGNED_POD_DELETE)
            self._handle_failure(qpi, st, cycle)
            return
        self.cache.finish_binding(assumed)
        self._scheduled += 1
        self.latencies.append(self.queue.clock() - qpi.initial_attempt_timestamp)
        self.recorder.event(
            _with_kind(assumed.pod),
            "Normal",
            "Scheduled",
            f"Successfully assigned {assumed.namespace}/{assumed.name} to {host}",
        )
        fwk.run_post_bind(state, assumed, host)

    # ---- failures ---------------------------------------------------------------------------

    def _handle_failure(self, qpi: fw.QueuedPodInfo, status: fw.Status, cycle: int) -> None:
        pod = qpi.pod_info
        if status.code == fw.Code.ERROR:
            self._errors += 1
            log.warning("error scheduling %s: %s", pod.key, status.message)
        else:
            self._failed += 1
            log.debug("unable to schedule %s: %s", pod.key, status.message)
        current = self._pods.get(pod.name, pod.namespace)
        if current is None or current["metadata"].get("uid") != pod.uid:
            return  # deleted (or replaced) meanwhile
        if _assigned(current):
            return  # bound meanwhile (by us or someone else)
        if current is not pod.pod:
            qpi.pod_info = PodInfo(current)
        self.queue.add_unschedulable_if_not_present(qpi, cycle, error=status.code == fw.Code.ERROR)
        reason = "Unschedulable" if status.is_rejected() else "SchedulerError"
        message = status.message
        self.recorder.event(_with_kind(current), "Warning", "FailedScheduling", message)
        self._spawn(self._set_condition(current, reason, message), f"condition-{pod.key}")

    async def _set_gated(self, pod: Obj) -> None:
        await self._set_condition(
            pod, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates"
        )

    async def _set_condition(self, pod: Obj, reason: str, message: str) -> None:
        conds = (pod.get("status") or {}).get("conditions") or []
        old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (
            "False",
            reason,
            message,
        ):
            return
        transition = (
            old["lastTransitionTime"]
            if old is not None and old.get("status") == "False" and old.get("lastTransitionTime")
            else _now()
        )
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": transition,
        }
        meta = pod["metadata"]
        try:
            await self.client.patch(
                PODS,
                meta["name"],
                {"status": {"conditions": [cond]}},
                meta.get("namespace", ""),
                patch_type="strategic",
                subresource="status",
            )
        except errors.StatusError as e:
            log.debug("cannot set PodScheduled of %s: %s", meta["name"], e.message)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            log.debug("cannot set PodScheduled of %s: %s", meta["name"], e)


def _with_kind(pod: Obj) -> Obj:
    if pod.get("kind"):
        return pod
    return {**pod, "kind": "Pod", "apiVersion": "v1"}
