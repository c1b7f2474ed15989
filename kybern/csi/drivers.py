"""The CSI drivers registered on one node, as the kubelet keeps them: `DriverRegistry` is the
`registration.Handler` a `PluginWatcher` feeds — on registration it connects to the driver,
discovers its capabilities, calls `NodeGetInfo` and publishes the driver for the node through a
`CSINodePublisher` (the Node's `csi.volume.kubernetes.io/nodeid` annotation and topology labels,
and the driver's entry in the node's `CSINode`: node id, topology keys, `allocatable.count`); on
deregistration it takes the entry out again. The publisher talks to the API server through any
object with the REST client's `get`/`create`/`update`/`patch` verbs (kybern's `rest.Client`),
with the Node and CSINode resources handed in, so this protocol package imports no client code;
the object edits themselves are pure functions."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from kybern.csi import errors, registration, spec
from kybern.csi.client import CSIClient

log = logging.getLogger("kybern.csi.drivers")
NODE_ID_ANNOTATION = "csi.volume.kubernetes.io/nodeid"
Obj = dict[str, Any]


class ObjectAPI(Protocol):
    """The verbs of kybern's REST client the publisher uses; errors carry `.code` (HTTP)."""

    async def get(self, res: Any, name: str, namespace: str = "") -> Obj: ...

    async def create(self, res: Any, obj: Obj, namespace: str = "") -> Obj: ...

    async def update(self, res: Any, obj: Obj) -> Obj: ...


def _code(e: BaseException) -> int | None:
    code = getattr(e, "code", None)
    return code if isinstance(code, int) else None


def csinode_with_driver(
    csinode: Obj | None,
    node: Obj,
    driver: str,
    node_id: str,
    topology_keys: list[str],
    max_volumes: int,
) -> Obj:
    """The CSINode of `node` with `driver`'s entry set (created, owned by the Node, if None)."""
    if csinode is None:
        meta = node["metadata"]
        csinode = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSINode",
            "metadata": {
                "name": meta["name"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}
                ],
            },
            "spec": {"drivers": []},
        }
    out = copy.deepcopy(csinode)
    entry: Obj = {"name": driver, "nodeID": node_id, "topologyKeys": sorted(topology_keys)}
    if max_volumes > 0:
        entry["allocatable"] = {"count": max_volumes}
    spec_ = out.setdefault("spec", {})
    drivers = [d for d in spec_.get("drivers") or [] if d.get("name") != driver]
    spec_["drivers"] = [*drivers, entry]
    return out


def csinode_without_driver(csinode: Obj, driver: str) -> Obj:
    out = copy.deepcopy(csinode)
    spec_ = out.setdefault("spec", {})
    spec_["drivers"] = [d for d in spec_.get("drivers") or [] if d.get("name") != driver]
    return out


def node_with_driver(node: Obj, driver: str, node_id: str, topology: Mapping[str, str]) -> Obj:
    """The Node with the driver's node id in the nodeid annotation and its topology labels."""
    out = copy.deepcopy(node)
    meta = out.setdefault("metadata", {})
    notes = meta.setdefault("annotations", {}) or {}
    meta["annotations"] = notes
    ids = json.loads(notes.get(NODE_ID_ANNOTATION) or "{}")
    ids[driver] = node_id
    notes[NODE_ID_ANNOTATION] = json.dumps(ids, sort_keys=True, separators=(",", ":"))
    labels = meta.setdefault("labels", {}) or {}
    meta["labels"] = labels
    labels.update(topology)
    return out


def node_without_driver(node: Obj, driver: str) -> Obj:
    out = copy.deepcopy(node)
    notes = out.get("metadata", {}).get("annotations") or {}
    ids = json.loads(notes.get(NODE_ID_ANNOTATION) or "{}")
    ids.pop(driver, None)
    if ids:
        notes[NODE_ID_ANNOTATION] = json.dumps(ids, sort_keys=True, separators=(",", ":"))
    else:
        notes.pop(NODE_ID_ANNOTATION, None)
    return out


class CSINodePublisher:
    """Keeps the Node and CSINode of `node_name` in step with the drivers registered there.
    `nodes` and `csinodes` are the resources the API client takes (registry entries)."""

    def __init__(self, api: ObjectAPI, node_name: str, *, nodes: Any, csinodes: Any) -> None:
        self.api = api
        self.node_name = node_name
        self.nodes = nodes
        self.csinodes = csinodes

    async def _csinode(self) -> Obj | None:
        try:
            return await self.api.get(self.csinodes, self.node_name)
        except Exception as e:
            if _code(e) == 404:
                return None
            raise

    async def _retry(self, fn: Any) -> None:
        for attempt in range(10):
            try:
                await fn()
                return
            except Exception as e:
                if _code(e) != 409 or attempt == 9:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def ensure(self) -> Obj:
        """The node's CSINode, created empty if missing (the kubelet does this at start)."""
        found = await self._csinode()
        if found is not None:
            return found
        node = await self.api.get(self.nodes, self.node_name)
        obj = csinode_with_driver(None, node, "", "", [], 0)
        obj["spec"]["drivers"] = []
        try:
            return await self.api.create(self.csinodes, obj)
        except Exception as e:
            if _code(e) != 409:
                raise
            return await self.api.get(self.csinodes, self.node_name)

    async def install(
        self, driver: str, node_id: str, topology: Mapping[str, str], max_volumes: int
    ) -> None:
        async def node_step() -> None:
            node = await self.api.get(self.nodes, self.node_name)
            new = node_with_driver(node, driver, node_id, topology)
            if new != node:
                await self.api.update(self.nodes, new)

        async def csinode_step() -> None:
            current = await self._csinode()
            node = await self.api.get(self.nodes, self.node_name)
            new = csinode_with_driver(current, node, driver, node_id, list(topology), max_volumes)
            if current is None:
                await self.api.create(self.csinodes, new)
            elif new != current:
                await self.api.update(self.csinodes, new)

        await self._retry(node_step)
        await self._retry(csinode_step)

    async def uninstall(self, driver: str) -> None:
        async def csinode_step() -> None:
            current = await self._csinode()
            if current is not None:
                new = csinode_without_driver(current, driver)
                if new != current:
                    await self.api.update(self.csinodes, new)

        async def node_step() -> None:
            node = await self.api.get(self.nodes, self.node_name)
            new = node_without_driver(node, driver)
            if new != node:
                await self.api.update(self.nodes, new)

        await self._retry(csinode_step)
        await self._retry(node_step)


@dataclasses.dataclass
class Driver:
    """A driver registered on this node and what it told about itself."""

    name: str
    endpoint: str
    client: CSIClient
    capabilities: spec.Capabilities
    node_id: str
    max_volumes: int
    topology: dict[str, str]


class DriverNotRegistered(errors.CSIError):
    """No driver of that name has registered on this node (yet)."""


class DriverRegistry(registration.Handler):
    """The drivers registered on this node, by name. Give it a publisher to keep CSINode up to
    date; `timeout` is the default deadline of the driver clients it makes."""

    def __init__(
        self, publisher: CSINodePublisher | None = None, *, timeout: float = 120.0
    ) -> None:
        self.publisher = publisher
        self.timeout = timeout
        self.drivers: dict[str, Driver] = {}
        self._changed = asyncio.Condition()

    async def register(self, plugin: registration.Plugin) -> None:
        endpoint = plugin.endpoint if "://" in plugin.endpoint else f"unix://{plugin.endpoint}"
        client = CSIClient(endpoint, timeout=self.timeout)
        try:
            caps = await client.discover(timeout=30.0)
            if caps.name != plugin.name:
                raise ValueError(f"the driver at {endpoint} calls itself {caps.name}")
            info = await client.node_get_info(timeout=30.0)
            if not info.node_id:
                raise ValueError("NodeGetInfo returned no node id")
            topology = dict(info.accessible_topology.segments)
            if self.publisher is not None:
                await self.publisher.install(
                    plugin.name, info.node_id, topology, info.max_volumes_per_node
                )
        except BaseException:
            await client.close()
            raise
        old = self.drivers.get(plugin.name)
        self.drivers[plugin.name] = Driver(
            plugin.name, endpoint, client, caps, info.node_id, info.max_volumes_per_node, topology
        )
        if old is not None:
            await old.client.close()
        async with self._changed:
            self._changed.notify_all()

    async def deregister(self, plugin: registration.Plugin) -> None:
        driver = self.drivers.pop(plugin.name, None)
        if driver is None:
            return
        await driver.client.close()
        if self.publisher is not None:
            await self.publisher.uninstall(plugin.name)

    def get(self, name: str) -> Driver:
        driver = self.drivers.get(name)
        if driver is None:
            raise DriverNotRegistered(
                f"driver name {name} not found in the list of registered CSI drivers"
            )
        return driver

    async def wait_for(self, name: str, timeout: float = 30.0) -> Driver:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: name in self.drivers), timeout)
        return self.drivers[name]

    async def close(self) -> None:
        for d in self.drivers.values():
            await d.client.close()
        self.drivers.clear()
