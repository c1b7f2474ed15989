"""The in-tree scheduler plugins and their explicit registry (kube-scheduler's
`NewInTreeRegistry`): `in_tree()` maps each plugin name to its factory; nothing registers itself
by being imported. Plugins from other distributions come in through the
`kybern.scheduler.plugins` entry point group (`external()`)."""

from __future__ import annotations

import importlib.metadata
import logging

from kybern.scheduler import framework as fw
from kybern.scheduler.plugins import (
    basic,
    interpodaffinity,
    nodeaffinity,
    noderesources,
    podtopologyspread,
    tainttoleration,
    volumebinding,
)

log = logging.getLogger("kybern.scheduler")
ENTRY_POINT_GROUP = "kybern.scheduler.plugins"


def in_tree() -> fw.Registry:
    return fw.Registry(
        {
            "PrioritySort": basic.new_priority_sort,
            "NodeName": basic.new_node_name,
            "NodeUnschedulable": basic.new_node_unschedulable,
            "NodeResourcesFit": noderesources.new_fit,
            "NodeResourcesBalancedAllocation": noderesources.new_balanced_allocation,
            "NodeAffinity": nodeaffinity.new_node_affinity,
            "TaintToleration": tainttoleration.new_taint_toleration,
            "PodTopologySpread": podtopologyspread.new_pod_topology_spread,
            "InterPodAffinity": interpodaffinity.new_inter_pod_affinity,
            "VolumeBinding": volumebinding.new_volume_binding,
            "DefaultBinder": basic.new_default_binder,
        }
    )


def external() -> fw.Registry:
    """Factories advertised by installed distributions under `kybern.scheduler.plugins`
    (entry point name = plugin name, object = factory)."""
    reg = fw.Registry()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            reg.register(ep.name, ep.load())
        except Exception:
            log.exception("cannot load scheduler plugin %s from %s", ep.name, ep.value)
    return reg


__all__ = ["ENTRY_POINT_GROUP", "external", "in_tree"]
