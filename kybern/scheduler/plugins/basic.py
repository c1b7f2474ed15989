"""The small in-tree plugins: `PrioritySort` (queue order: priority, then time queued),
`NodeName` (a pod naming a node fits only there), `NodeUnschedulable` (cordoned nodes, unless
the pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`) and `DefaultBinder` (POST
`pods/<name>/binding`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from kybern.api import errors, registry
from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo, tolerates

PODS = next(r for r in registry.BUILTIN if r.kind == "Pod" and not r.group)

ERR_REASON_NODE_NAME = "node(s) didn't match the requested node name"
ERR_REASON_UNSCHEDULABLE = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class PrioritySort:
    name: ClassVar[str] = "PrioritySort"

    def less(self, a: fw.QueuedPodInfo, b: fw.QueuedPodInfo) -> bool:
        pa, pb = a.pod_info.priority, b.pod_info.priority
        return pa > pb or (pa == pb and a.timestamp < b.timestamp)


class NodeName:
    name: ClassVar[str] = "NodeName"

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [fw.ClusterEvent(fw.NODE, fw.ActionType.ADD)]

    def pre_filter(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[fw.PreFilterResult | None, fw.Status | None]:
        if not pod.node_name:
            return None, fw.SKIP
        return fw.PreFilterResult({pod.node_name}), None

    def sign_pod(self, pod: PodInfo) -> Hashable:
        return pod.node_name

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        if pod.node_name and pod.node_name != node.name:
            return fw.unresolvable(ERR_REASON_NODE_NAME)
        return None


class NodeUnschedulable:
    name: ClassVar[str] = "NodeUnschedulable"

    def events_to_register(self) -> list[fw.ClusterEvent]:
        return [fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_TAINT)]

    def sign_pod(self, pod: PodInfo) -> Hashable:
        tolerations = pod.spec.get("tolerations") or ()
        if not tolerations:
            return False  # what `any` gives over no tolerations
        return any(tolerates(t, UNSCHEDULABLE_TAINT) for t in tolerations)

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        if not node.unschedulable:
            return None
        tolerations = pod.spec.get("tolerations") or ()
        if any(tolerates(t, UNSCHEDULABLE_TAINT) for t in tolerations):
            return None
        return fw.unresolvable(ERR_REASON_UNSCHEDULABLE)

    def filter_nodes(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> dict[int, fw.Status]:
        out: dict[int, fw.Status] = {}
        for i in [i for i, n in enumerate(nodes) if n.unschedulable]:
            st = self.filter(state, pod, nodes[i])
            if st is not None:
                out[i] = st
        return out


def binding_object(pod: PodInfo, node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"kind": "Node", "name": node_name},
    }


class DefaultBinder:
    name: ClassVar[str] = "DefaultBinder"

    def __init__(self, handle: fw.Handle) -> None:
        self.handle = handle

    async def bind(self, state: fw.CycleState, pod: PodInfo, node_name: str) -> fw.Status | None:
        client = self.handle.client
        if client is None:
            return fw.Status(fw.Code.ERROR, "DefaultBinder has no API client")
        try:
            await client.create(
                PODS,
                binding_object(pod, node_name),
                pod.namespace,
                subresource="binding",
                name=pod.name,
            )
        except errors.StatusError as e:
            return fw.Status(fw.Code.ERROR, e.message, error=e)
        return None


def new_priority_sort(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return PrioritySort()


def new_node_name(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return NodeName()


def new_node_unschedulable(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return NodeUnschedulable()


def new_default_binder(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    return DefaultBinder(handle)
