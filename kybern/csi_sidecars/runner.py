"""`Sidecars`: what `kybern csi-sidecars` runs next to one CSI driver, whichever driver it is.
It waits for the driver (`Probe`), discovers its name and capabilities, and starts the loops
those capabilities call for over one shared informer factory and event broadcaster: the
provisioner (CREATE_DELETE_VOLUME), the attacher (always; trivial without
PUBLISH_UNPUBLISH_VOLUME), the resizer (controller or node EXPAND_VOLUME) and the snapshotter
(CREATE_DELETE_SNAPSHOT, once the `snapshot.storage.k8s.io/v1` API is served — it checks again
until it is). `stats` counts the CSI calls the loops made."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kybern.client import events, informer, rest
from kybern.csi import CallStats, CSIClient
from kybern.csi_sidecars import common, crds
from kybern.csi_sidecars.attacher import Attacher
from kybern.csi_sidecars.provisioner import Provisioner
from kybern.csi_sidecars.resizer import Resizer
from kybern.csi_sidecars.snapshotter import Snapshotter

log = logging.getLogger("kybern.csi.sidecars")
SNAPSHOT_API_RECHECK = 5.0


class Sidecars:
    def __init__(
        self,
        client: rest.Client,
        csi_address: str,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 60.0,
    ) -> None:
        self.client = client
        self.csi = CSIClient(csi_address, timeout=timeout)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.loops: dict[str, common.Loop] = {}
        self.ctx: common.Context | None = None
        self._factory: informer.InformerFactory | None = None
        self._broadcaster: events.EventBroadcaster | None = None
        self._snapshot_task: asyncio.Task[None] | None = None

    @property
    def stats(self) -> CallStats:
        return self.csi.stats

    @property
    def driver(self) -> str:
        return self.ctx.driver if self.ctx is not None else ""

    async def start(self) -> None:
        await self.csi.wait_ready(self.connect_timeout)
        caps = await self.csi.discover()
        factory = self._factory = informer.InformerFactory(self.client)
        broadcaster = self._broadcaster = events.EventBroadcaster(self.client)
        ctx = self.ctx = common.Context(
            self.client, factory, broadcaster, self.csi, caps, self.timeout
        )
        if caps.controller("CREATE_DELETE_VOLUME"):
            self.loops["provisioner"] = Provisioner(ctx)
        self.loops["attacher"] = Attacher(ctx)
        if caps.controller("EXPAND_VOLUME") or caps.node("EXPAND_VOLUME"):
            self.loops["resizer"] = Resizer(ctx)
        snapshots = caps.controller("CREATE_DELETE_SNAPSHOT")
        if snapshots and await crds.snapshot_api_served(self.client):
            self.loops["snapshotter"] = Snapshotter(ctx)
        broadcaster.start()
        factory.start()
        await factory.wait_synced(timeout=60.0)
        for loop in self.loops.values():
            loop.start()
        if snapshots and "snapshotter" not in self.loops:
            self._snapshot_task = asyncio.create_task(self._await_snapshot_api())
        log.info("CSI sidecars for %s running: %s", caps.name, ", ".join(self.loops))

    async def _await_snapshot_api(self) -> None:
        assert self.ctx is not None and self._factory is not None
        while True:
            with contextlib.suppress(Exception):
                if await crds.snapshot_api_served(self.client):
                    break
            await asyncio.sleep(SNAPSHOT_API_RECHECK)
        loop = Snapshotter(self.ctx)
        self._factory.start()
        await self._factory.wait_synced(timeout=60.0)
        self.loops["snapshotter"] = loop
        loop.start()
        log.info("the snapshot API is served: snapshotter running")

    async def stop(self) -> None:
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._snapshot_task
        for loop in self.loops.values():
            await loop.stop()
        self.loops = {}
        if self._factory is not None:
            await self._factory.stop()
        if self._broadcaster is not None:
            with contextlib.suppress(TimeoutError):
                await self._broadcaster.flush(timeout=2.0)
            await self._broadcaster.stop()
        await self.csi.close()
