"""The node IPAM controller (kube-controller-manager's range allocator): every Node gets
`spec.podCIDR` and `spec.podCIDRs`, a subnet of `--cluster-cidr` of size `--node-cidr-mask-size`
(default 10.244.0.0/16 in /24s), the lowest free one; a node that already has one keeps it (and
it counts as used when it lies in the cluster CIDR); a deleted node's subnet is free again. A
node for which no subnet is left gets a `CIDRNotAvailable` event. `CIDRAllocator` is pure."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from kybern.api import errors
from kybern.client import informer
from kybern.controllers import common

log = logging.getLogger("kybern.controllers")
Obj = dict[str, Any]
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_MASK_SIZE = 24


class CIDRAllocator:
    """Subnets of size `mask` of `cluster`, handed out lowest first."""

    def __init__(self, cluster: str, mask: int, used: Iterable[str] = ()) -> None:
        self.cluster = ipaddress.ip_network(cluster, strict=False)
        if mask < self.cluster.prefixlen or mask > self.cluster.max_prefixlen:
            raise ValueError(f"node CIDR mask size {mask} does not fit cluster CIDR {self.cluster}")
        self.mask = mask
        self.size = 2 ** (mask - self.cluster.prefixlen)
        self.used: set[int] = set()
        for c in used:
            self.occupy(c)

    def _index(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.cluster.version or net.prefixlen != self.mask:
            return None
        if not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        step = 2 ** (self.cluster.max_prefixlen - self.mask)
        return (int(net.network_address) - int(self.cluster.network_address)) // step

    def _subnet(self, index: int) -> str:
        step = 2 ** (self.cluster.max_prefixlen - self.mask)
        base = int(self.cluster.network_address) + index * step
        return str(ipaddress.ip_network((base, self.mask)))

    def occupy(self, cidr: str) -> bool:
        """Mark `cidr` used (False if it is not one of this allocator's subnets)."""
        i = self._index(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def allocate(self) -> str | None:
        for i in range(self.size):
            if i not in self.used:
                self.used.add(i)
                return self._subnet(i)
        return None

    def release(self, cidr: str) -> None:
        i = self._index(cidr)
        if i is not None:
            self.used.discard(i)


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = [str(c) for c in spec.get("podCIDRs") or [] if c]
    return cidrs or ([str(spec["podCIDR"])] if spec.get("podCIDR") else [])


class NodeIPAMController(common.Base):
    name = "nodeipam"

    def __init__(
        self,
        ctx: common.Context,
        *,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        mask_size: int = DEFAULT_MASK_SIZE,
    ) -> None:
        super().__init__(ctx)
        self.allocator = CIDRAllocator(cluster_cidr, mask_size)
        self.nodes = common.shared(ctx, common.NODES)
        self.nodes.add_handlers(
            informer.Handlers(
                on_add=self.enqueue,
                on_update=lambda old, new: self.enqueue(new),
                on_delete=self._deleted,
            )
        )
        self._primed = False

    def _deleted(self, node: Obj) -> None:
        for cidr in node_cidrs(node):
            self.allocator.release(cidr)

    def _prime(self) -> None:
        for n in self.nodes.list():
            for cidr in node_cidrs(n):
                self.allocator.occupy(cidr)
        self._primed = True

    async def reconcile(self, key: str) -> common.Result | None:
        if not self._primed:
            self._prime()
        node = self.nodes.get(key)
        if node is None or common.deleting(node):
            return None
        have = node_cidrs(node)
        if have:
            self.allocator.occupy(have[0])
            return None
        cidr = self.allocator.allocate()
        if cidr is None:
            self.recorder.event(
                node,
                "Normal",
                "CIDRNotAvailable",
                f"Node {key} status is now: CIDRNotAvailable",
            )
            log.warning("nodeipam: no podCIDR left in %s for node %s", self.allocator.cluster, key)
            return common.Result(requeue_after=30.0)
        try:
            await self.client.patch(
                common.NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
            )
        except errors.StatusError as e:
            self.allocator.release(cidr)
            if e.code == 404:
                return None
            raise
        log.info("nodeipam: node %s gets podCIDR %s", key, cidr)
        return None
