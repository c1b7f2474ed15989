"""The scheduler cache (kube-scheduler's `internal/cache`): every node and every pod bound or
assumed to a node, fed by the informers' handlers and by the scheduling cycle. A pod is
*assumed* on its chosen node before the binding call so the next cycle already counts it; the
assumption is confirmed when the informer shows the pod bound (where it was assumed and with
the same spec: `confirm_pod`, which changes no sums and logs no node change), dropped
(`forget_pod`) when the binding fails, and expires `ttl` seconds after a binding that the
informer never confirmed. A scheduling cycle is synchronous, so the cache is its own snapshot:
the node list (interleaved across zones like kube's node tree) is rebuilt only when nodes come
or go. Every change to a node's accounting or object is logged (`changes_since`), so values the
framework caches per node for a pod signature are recomputed for the changed nodes only."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kybern.scheduler.nodeinfo import REGION_LABEL, ZONE_LABEL, NodeInfo, Obj, PodInfo

log = logging.getLogger("kybern.scheduler")
CHANGE_LOG_LIMIT = 4096  # beyond this the log restarts; readers behind it recompute everything


@dataclass
class _PodState:
    pod: PodInfo
    deadline: float | None = None  # set when an assumed pod's binding finished


class Cache:
    def __init__(self, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.nodes: dict[str, NodeInfo] = {}
        self._pods: dict[str, _PodState] = {}
        self._assumed: set[str] = set()
        self._list: list[NodeInfo] | None = None
        self._with_affinity: list[NodeInfo] | None = None
        self._with_anti_affinity: list[NodeInfo] | None = None
        self._changes: list[NodeInfo] = []  # NodeInfo objects append themselves when changed
        self._changes_base = 0  # the log position of `_changes[0]`

    # ---- snapshot ---------------------------------------------------------------------------

    def node_infos(self) -> list[NodeInfo]:
        if self._list is None:
            self._list = _interleave_zones([n for n in self.nodes.values() if n.node is not None])
        return self._list

    def get(self, name: str) -> NodeInfo | None:
        n = self.nodes.get(name)
        return n if n is not None and n.node is not None else None

    def have_pods_with_affinity(self) -> list[NodeInfo]:
        if self._with_affinity is None:
            self._with_affinity = [n for n in self.node_infos() if n.pods_with_affinity]
        return self._with_affinity

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]:
        if self._with_anti_affinity is None:
            self._with_anti_affinity = [
                n for n in self.node_infos() if n.pods_with_required_anti_affinity
            ]
        return self._with_anti_affinity

    def changes_since(self, position: int) -> list[NodeInfo] | None:
        """The nodes changed (possibly repeated) since `position` (from `change_position`);
        None when the log no longer reaches back that far."""
        i = position - self._changes_base
        return self._changes[i:] if i >= 0 else None

    def change_position(self) -> int:
        """The current end of the change log."""
        return self._changes_base + len(self._changes)

    def _trim_changes(self) -> None:
        if len(self._changes) > CHANGE_LOG_LIMIT:
            self._changes_base += len(self._changes)
            self._changes.clear()

    def _pods_changed(self, pi: PodInfo) -> None:
        if pi.has_pod_affinity:
            self._with_affinity = self._with_anti_affinity = None

    # ---- nodes ------------------------------------------------------------------------------

    def add_node(self, node: Obj) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name, node)
            ni._changes = self._changes
            self._list = self._with_affinity = self._with_anti_affinity = None
        else:
            self._trim_changes()
            zone_before = _zone(ni)
            had_node = ni.node is not None
            ni.set_node(node)
            if not had_node or _zone(ni) != zone_before:
                self._list = self._with_affinity = self._with_anti_affinity = None
        return ni

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self.nodes.get(name)
        if ni is None:
            return
        if ni.pods:
            ni.node = None  # pods still point here; keep the accounting until they go
        else:
            del self.nodes[name]
        self._list = self._with_affinity = self._with_anti_affinity = None

    def _node_for(self, name: str) -> NodeInfo:
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name)
            ni._changes = self._changes
        return ni

    def _remove_from_node(self, pi: PodInfo) -> None:
        ni = self.nodes.get(pi.node_name)
        if ni is None:
            return
        ni.remove_pod(pi)
        self._pods_changed(pi)
        if ni.node is None and not ni.pods:
            del self.nodes[pi.node_name]

    def _add_to_node(self, pi: PodInfo) -> None:
        self._trim_changes()
        self._node_for(pi.node_name).add_pod(pi)
        self._pods_changed(pi)

    # ---- pods -------------------------------------------------------------------------------

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def pod(self, key: str) -> PodInfo | None:
        st = self._pods.get(key)
        return st.pod if st is not None else None

    def assume_pod(self, pi: PodInfo) -> None:
        """Count `pi` (with `node_name` set) on its node before it is bound."""
        if pi.key in self._pods:
            raise ValueError(f"pod {pi.key} is in the cache, so can't be assumed")
        self._add_to_node(pi)
        self._pods[pi.key] = _PodState(pi)
        self._assumed.add(pi.key)

    def finish_binding(self, pi: PodInfo) -> None:
        """The binding call returned: start the clock on the assumption."""
        st = self._pods.get(pi.key)
        if st is not None and pi.key in self._assumed:
            st.deadline = self.clock() + self.ttl

    def forget_pod(self, pi: PodInfo) -> None:
        """Drop an assumption (the binding failed or was abandoned)."""
        st = self._pods.get(pi.key)
        if st is None or pi.key not in self._assumed:
            return
        self._remove_from_node(st.pod)
        del self._pods[pi.key]
        self._assumed.discard(pi.key)

    def add_pod(self, pi: PodInfo) -> None:
        """A bound pod seen by the informer; confirms an assumption of it."""
        st = self._pods.get(pi.key)
        if st is not None:
            if st.pod.node_name != pi.node_name:
                log.info(
                    "pod %s was assumed on %s but bound to %s",
                    pi.key,
                    st.pod.node_name,
                    pi.node_name,
                )
            self._remove_from_node(st.pod)
        self._assumed.discard(pi.key)
        self._add_to_node(pi)
        self._pods[pi.key] = _PodState(pi)

    def update_pod(self, pi: PodInfo) -> None:
        self.add_pod(pi)

    def confirm_pod(self, pi: PodInfo) -> bool:
        """`add_pod(pi)` for the informer's copy of an assumed pod bound where it was assumed,
        with the same requests (`PodInfo.rebound`): the node's sums stay as they are, so
        nothing is logged as changed; the node's pod maps end in the order `add_pod` leaves
        them. False (nothing done) if `pi` is not such a pod."""
        key = pi.key
        st = self._pods.get(key)
        if (
            st is None
            or key not in self._assumed
            or st.pod.node_name != pi.node_name
            or st.pod.requests is not pi.requests
        ):
            return False
        ni = self.nodes.get(pi.node_name)
        if ni is None or ni.node is None or ni.pods.get(key) is not st.pod:
            return False
        for pods in (ni.pods, ni.pods_with_affinity, ni.pods_with_required_anti_affinity):
            if key in pods:  # removed and added again: to the end, like remove_pod + add_pod
                del pods[key]
                pods[key] = pi
        self._assumed.discard(key)
        self._pods[key] = _PodState(pi)
        return True

    def remove_pod(self, key: str) -> None:
        st = self._pods.pop(key, None)
        if st is None:
            return
        self._assumed.discard(key)
        self._remove_from_node(st.pod)

    def cleanup_assumed_pods(self) -> list[PodInfo]:
        """Expire assumptions whose binding finished more than `ttl` ago; returns them."""
        now = self.clock()
        expired: list[PodInfo] = []
        for key in list(self._assumed):
            st = self._pods[key]
            if st.deadline is not None and now >= st.deadline:
                log.warning("assumed pod %s expired (never seen bound)", key)
                self._remove_from_node(st.pod)
                del self._pods[key]
                self._assumed.discard(key)
                expired.append(st.pod)
        return expired

    # ---- introspection ----------------------------------------------------------------------

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    @property
    def assumed_count(self) -> int:
        return len(self._assumed)


def _zone(ni: NodeInfo) -> str:
    labels = ni.labels
    region, zone = labels.get(REGION_LABEL, ""), labels.get(ZONE_LABEL, "")
    return f"{region}:\x00:{zone}" if region or zone else ""


def _interleave_zones(nodes: list[NodeInfo]) -> list[NodeInfo]:
    """kube's node tree order: one node of each zone in turn, so a partial scan sees all."""
    zones: dict[str, list[NodeInfo]] = {}
    for n in nodes:
        zones.setdefault(_zone(n), []).append(n)
    if len(zones) <= 1:
        return nodes
    out: list[NodeInfo] = []
    lists = list(zones.values())
    for i in range(max(len(x) for x in lists)):
        out.extend(x[i] for x in lists if i < len(x))
    return out
