"""The node lifecycle controller: a node is healthy while its kubelet heartbeats — its Lease in
`kube-node-lease` is renewed or its Ready condition's heartbeat moves. When neither changed for
the grace period (40 s; 60 s for a node that never reported), the Ready and pressure
conditions become Unknown and the pods on it are marked not ready. Taints follow the
conditions: `node.kubernetes.io/not-ready` (Ready=False) and `unreachable` (Ready=Unknown)
with NoSchedule and NoExecute, plus the NoSchedule condition taints (unschedulable, memory/
disk/pid pressure, network-unavailable). The taint manager half deletes pods on NoExecute-
tainted nodes once their tolerations run out (default 300 s for not-ready/unreachable)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kybern.api import errors
from kybern.client import informer, reconcile
from kybern.controllers import common, placement

Obj = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure")
MANAGED = frozenset(
    {
        placement.NOT_READY,
        placement.UNREACHABLE,
        placement.UNSCHEDULABLE,
        placement.MEMORY_PRESSURE,
        placement.DISK_PRESSURE,
        placement.PID_PRESSURE,
        placement.NETWORK_UNAVAILABLE,
    }
)
_CONDITION_TAINTS = {
    "MemoryPressure": placement.MEMORY_PRESSURE,
    "DiskPressure": placement.DISK_PRESSURE,
    "PIDPressure": placement.PID_PRESSURE,
    "NetworkUnavailable": placement.NETWORK_UNAVAILABLE,
}


@dataclass
class _Health:
    probe: float  # local time the last heartbeat change was seen
    signature: tuple[str, ...]


def desired_taints(node: Obj, now: str, current: list[Obj]) -> list[Obj]:
    """The node's taints with the ones this controller manages brought in line with its
    conditions (keeping timeAdded of taints that stay)."""
    status = node.get("status") or {}
    ready = common.get_condition(status, "Ready")
    want: list[tuple[str, str]] = []
    rs = ready.get("status") if ready else None
    if rs == "False":
        want += [(placement.NOT_READY, "NoSchedule"), (placement.NOT_READY, "NoExecute")]
    elif rs == "Unknown":
        want += [(placement.UNREACHABLE, "NoSchedule"), (placement.UNREACHABLE, "NoExecute")]
    for typ, key in _CONDITION_TAINTS.items():
        c = common.get_condition(status, typ)
        if c is not None and c.get("status") == "True":
            want.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        want.append((placement.UNSCHEDULABLE, "NoSchedule"))
    out = [t for t in current if t.get("key") not in MANAGED]
    for key, effect in want:
        old = next((t for t in current if t.get("key") == key and t.get("effect") == effect), None)
        if old is not None:
            out.append(old)
        else:
            t: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                t["timeAdded"] = now
            out.append(t)
    return out


class NodeLifecycleController(common.Base):
    name = "nodelifecycle"
    component = "node-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.nodes = common.shared(ctx, common.NODES)
        self.leases = common.shared(ctx, common.LEASES)
        self.pods = common.shared(ctx, common.PODS)
        self.health: dict[str, _Health] = {}
        self.evictor = reconcile.Controller(f"{self.name}-eviction", self._evict, workers=2)
        self.nodes.add_handlers(
            informer.Handlers(self.enqueue, self._node_updated, self._node_deleted)
        )
        self.leases.add_handlers(informer.Handlers(self._lease, lambda old, new: self._lease(new)))
        self.pods.add_handlers(informer.Handlers(self._pod, lambda old, new: self._pod(new)))

    def start(self) -> None:
        super().start()
        self.evictor.start()

    async def stop(self) -> None:
        await self.evictor.stop()
        await super().stop()

    # ---- handlers ----------------------------------------------------------------------

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)
        if _noexec(old) != _noexec(new):
            for p in self.pods.by_index("node", new["metadata"]["name"]):
                self.evictor.queue.add(informer.key_of(p))

    def _node_deleted(self, node: Obj) -> None:
        self.health.pop(node["metadata"]["name"], None)

    def _lease(self, lease: Obj) -> None:
        if lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.queue.add(lease["metadata"]["name"])

    def _pod(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or common.deleting(pod):
            return
        n = self.nodes.get(node)
        if n is not None and _noexec(n):
            self.evictor.queue.add(informer.key_of(pod))

    # ---- node health ---------------------------------------------------------------------

    def _signature(self, node: Obj) -> tuple[str, ...]:
        lease = self.leases.get(node["metadata"]["name"], LEASE_NAMESPACE)
        renew = ((lease or {}).get("spec") or {}).get("renewTime") or ""
        ready = common.get_condition(node.get("status") or {}, "Ready") or {}
        return (renew, str(ready.get("lastHeartbeatTime") or ""), str(ready.get("status") or ""))

    async def reconcile(self, key: str) -> common.Result | None:
        # the informer's object, read only: every write below works on a copy of what it
        # changes, so a lease renewal (the common case: nothing to do) copies nothing
        node = self.nodes.get(key)
        if node is None:
            self.health.pop(key, None)
            return None
        now = self.clock()
        sig = self._signature(node)
        h = self.health.get(key)
        if h is None or h.signature != sig:
            h = self.health[key] = _Health(now, sig)
        ready = common.get_condition(node.get("status") or {}, "Ready")
        grace = (
            self.options.node_monitor_grace_period
            if ready is not None
            else self.options.node_startup_grace_period
        )
        result: common.Result | None = None
        if now > h.probe + grace:
            node = await self._mark_unknown(node, now)
        else:
            result = common.Result(requeue_after=h.probe + grace - now + 0.05)
        node = await self._sync_taints(node, now)
        if (common.get_condition(node.get("status") or {}, "Ready") or {}).get(
            "status"
        ) == "Unknown":
            await self._mark_pods_not_ready(key)
        return result

    async def _mark_unknown(self, node: Obj, now: float) -> Obj:
        status = copy.deepcopy(node.get("status") or {})
        ts = common.format_time(now)
        created = node["metadata"].get("creationTimestamp") or ts
        changed = False
        for typ in ("Ready", *PRESSURE):
            c = common.get_condition(status, typ)
            if c is None:
                status.setdefault("conditions", []).append(
                    {
                        "type": typ,
                        "status": "Unknown",
                        "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.",
                        "lastHeartbeatTime": created,
                        "lastTransitionTime": ts,
                    }
                )
                changed = True
            elif c.get("status") != "Unknown":
                c.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                    lastTransitionTime=ts,
                )
                changed = True
        if not changed:
            return node
        new = dict(node)
        new["status"] = status
        out = await self.client.update_status(common.NODES, new)
        self.recorder.event(
            out,
            "Normal",
            "NodeNotReady",
            f"Node {node['metadata']['name']} status is now: NodeNotReady",
        )
        h = self.health.get(node["metadata"]["name"])
        if h is not None:
            h.signature = self._signature(out)
        return out

    async def _sync_taints(self, node: Obj, now: float) -> Obj:
        current = list((node.get("spec") or {}).get("taints") or [])
        want = desired_taints(node, common.format_time(now), current)
        if want == current:
            return node
        new = copy.deepcopy(node)
        new.setdefault("spec", {})["taints"] = want or None
        if not want:
            new["spec"].pop("taints")
        return await self.client.update(common.NODES, new)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        ts = common.format_time(self.clock())
        for pod in self.pods.by_index("node", node_name):
            if not common.is_pod_ready(pod) or common.is_pod_terminal(pod):
                continue
            new = copy.deepcopy(pod)
            for c in new["status"].get("conditions") or []:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=ts)
            try:
                await self.client.update_status(common.PODS, new)
            except errors.StatusError as e:
                if e.code not in (404, 409):
                    raise
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    # ---- taint-based eviction --------------------------------------------------------------

    async def _evict(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        pod = self.pods.get(name, ns)
        if pod is None or common.deleting(pod) or common.is_pod_terminal(pod):
            return None
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return None
        taints = (node.get("spec") or {}).get("taints") or []
        now = self.clock()
        when = placement.eviction_time(pod, taints, self.options.default_toleration_seconds, now)
        if when is None:
            return None
        if when > now:
            return common.Result(requeue_after=when - now + 0.05)
        self.recorder.event(
            pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}"
        )
        try:
            await self.client.delete(common.PODS, name, ns, uid=pod["metadata"]["uid"])
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise
        return None


def _noexec(node: Obj) -> list[tuple[str, str]]:
    return sorted(
        (str(t.get("key")), str(t.get("value") or ""))
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") == "NoExecute"
    )
