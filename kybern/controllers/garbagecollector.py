"""The garbage collector: a graph of ownerReferences built from informers on every kind that
can be deleted (built-ins, and CRDs found by periodic discovery), and two queues. The
attempt-to-delete queue deletes objects whose owners are all gone (background), deletes the
dependents of owners being deleted in the foreground (owner carries the `foregroundDeletion`
finalizer; it is released once no dependent with `blockOwnerDeletion` remains) and drops
references to owners that are gone while other owners remain. The orphan queue strips the
references to an owner deleted with the `orphan` finalizer, then releases it. Decisions are
made on live reads, never on the cache alone."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from kybern.api import errors, registry
from kybern.client import informer, reconcile
from kybern.controllers import common, discovery

log = logging.getLogger("kybern.controllers.gc")
Obj = dict[str, Any]
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})
ABSENT_CACHE = 10000


@dataclass
class _Node:
    uid: str
    res: registry.Resource
    namespace: str
    name: str
    owners: list[Obj]
    deleting: bool
    finalizers: tuple[str, ...]

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FOREGROUND in self.finalizers


def eligible(r: registry.Resource) -> bool:
    return (
        (r.group, r.plural) not in IGNORED
        and all(v in r.verbs for v in ("list", "watch", "delete"))
        and "/" not in r.plural
        and not r.storage_version  # a further version of a built-in kind: watched in its own
    )


class GarbageCollector(common.Base):
    name = "garbagecollector"
    component = "garbage-collector-controller"

    def __init__(self, ctx: common.Context, disco: discovery.Discovery) -> None:
        super().__init__(ctx, workers=4)
        self.discovery = disco
        self.orphaner = reconcile.Controller(f"{self.name}-orphan", self._orphan, workers=2)
        self.nodes: dict[str, _Node] = {}
        self.dependents: dict[str, set[str]] = {}
        self.absent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.monitors: dict[tuple[str, str, str], informer.Informer] = {}
        self._resync: asyncio.Task[None] | None = None
        for r in common.REG.all():
            if eligible(r):
                self._monitor(r)

    # ---- the graph -----------------------------------------------------------------------

    def _monitor(self, r: registry.Resource) -> informer.Informer:
        inf = self.ctx.factory.informer(r)
        inf.add_handlers(
            informer.Handlers(
                on_add=lambda o: self._observe(r, o),
                on_update=lambda old, new: self._observe(r, new),
                on_delete=lambda o: self._removed(o),
            )
        )
        self.monitors[(r.group, r.version, r.plural)] = inf
        return inf

    def _unlink(self, owner: str, dep: str) -> None:
        deps = self.dependents.get(owner)
        if deps is not None:
            deps.discard(dep)
            if not deps:
                del self.dependents[owner]

    def _recheck_owner(self, owner: str) -> None:
        n = self.nodes.get(owner)
        if n is not None and n.deleting_dependents:
            self.queue.add(owner)

    def _observe(self, res: registry.Resource, obj: Obj) -> None:
        m = obj["metadata"]
        uid = m.get("uid", "")
        refs = [dict(r) for r in m.get("ownerReferences") or []]
        old = self.nodes.get(uid)
        node = _Node(
            uid,
            res,
            m.get("namespace", ""),
            m["name"],
            refs,
            bool(m.get("deletionTimestamp")),
            tuple(m.get("finalizers") or ()),
        )
        self.nodes[uid] = node
        old_owners = {r.get("uid", "") for r in old.owners} if old else set()
        new_owners = {r.get("uid", "") for r in refs}
        for o in old_owners - new_owners:
            self._unlink(o, uid)
            self._recheck_owner(o)
        for o in new_owners - old_owners:
            self.dependents.setdefault(o, set()).add(uid)
        if old is not None and old.owners != refs:
            for o in new_owners:
                self._recheck_owner(o)
        if node.deleting and ORPHAN in node.finalizers:
            self.orphaner.queue.add(uid)
        if node.deleting_dependents:
            self.queue.add(uid)
            for d in self.dependents.get(uid, ()):
                self.queue.add(d)
        if any(o not in self.nodes or self.nodes[o].deleting_dependents for o in new_owners):
            self.queue.add(uid)

    def _removed(self, obj: Obj) -> None:
        m = obj["metadata"]
        uid = m.get("uid", "")
        node = self.nodes.pop(uid, None)
        owners = node.owners if node is not None else m.get("ownerReferences") or []
        for r in owners:
            self._unlink(r.get("uid", ""), uid)
            self._recheck_owner(r.get("uid", ""))
        for d in self.dependents.get(uid, ()):
            self.queue.add(d)
        self._mark_absent(uid)

    def _mark_absent(self, uid: str) -> None:
        self.absent[uid] = None
        while len(self.absent) > ABSENT_CACHE:
            self.absent.popitem(last=False)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        self.orphaner.start()
        self._resync = asyncio.create_task(self._resync_loop(), name="gc-resync")

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await self.orphaner.stop()
        await super().stop()

    async def _resync_loop(self) -> None:
        while True:
            try:
                await self.sync_monitors()
            except Exception as e:  # discovery is best effort; try again next period
                log.debug("gc: discovery: %s", e)
            for uid, node in list(self.nodes.items()):
                if any(r.get("uid") not in self.nodes for r in node.owners):
                    self.queue.add(uid)
            await asyncio.sleep(self.options.gc_resync_period)

    async def sync_monitors(self) -> None:
        """Start informers for kinds that appeared (CRDs), stop those that went away."""
        found = (await self.discovery.resources(fresh=True)).resources
        wanted = {(r.group, r.version, r.plural): r for r in found if eligible(r)}
        for key, r in wanted.items():
            if key not in self.monitors:
                self._monitor(r).start()
        for key in [k for k in self.monitors if k not in wanted]:
            if common.REG.lookup(*key) is not None:
                continue  # built-ins stay
            inf = self.monitors.pop(key)
            await inf.stop()
            for uid in [
                u for u, n in self.nodes.items() if (n.res.group, n.res.plural) == key[::2]
            ]:
                self._removed({"metadata": {"uid": uid, "ownerReferences": self.nodes[uid].owners}})

    # ---- attempt to delete -------------------------------------------------------------------

    async def _get(self, node: _Node) -> Obj | None:
        try:
            obj = await self.client.get(node.res, node.name, node.namespace)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise
        return obj if obj["metadata"].get("uid") == node.uid else None

    async def reconcile(self, key: str) -> common.Result | None:
        node = self.nodes.get(key)
        if node is None or (node.deleting and not node.deleting_dependents):
            return None
        if not node.deleting_dependents and all(
            r.get("uid") in self.nodes and not self.nodes[r["uid"]].deleting_dependents
            for r in node.owners
        ):
            return None  # every owner is present and not waiting: nothing to do
        latest = await self._get(node)
        if latest is None:
            return None
        m = latest["metadata"]
        fins = m.get("finalizers") or []
        if m.get("deletionTimestamp"):
            if FOREGROUND in fins:
                await self._deleting_dependents(node, latest)
            return None
        refs: list[Obj] = m.get("ownerReferences") or []
        if not refs:
            return None
        states = [await self._owner_state(r, node.namespace) for r in refs]
        solid = [r for r, s in zip(refs, states, strict=True) if s == "solid"]
        dangling = [r["uid"] for r, s in zip(refs, states, strict=True) if s == "dangling"]
        waiting = [r["uid"] for r, s in zip(refs, states, strict=True) if s == "waiting"]
        if solid:
            drop = set(dangling) | set(waiting)
            if drop:
                await self._patch_refs(node, latest, [r for r in refs if r["uid"] not in drop])
            return None
        deps = [self.nodes[d] for d in self.dependents.get(node.uid, ()) if d in self.nodes]
        if waiting and deps:
            if any(d.deleting_dependents for d in deps):
                # a cycle of foreground deletions: stop blocking the owners we wait for
                unblocked = [
                    {**r, "blockOwnerDeletion": False} if r["uid"] in waiting else r for r in refs
                ]
                latest = await self._patch_refs(node, latest, unblocked) or latest
            await self._delete(node, latest, "Foreground")
            return None
        policy = "Background"
        if ORPHAN in fins:
            policy = "Orphan"
        elif FOREGROUND in fins:
            policy = "Foreground"
        await self._delete(node, latest, policy)
        return None

    async def _owner_state(self, ref: Obj, namespace: str) -> str:
        """solid (exists), dangling (gone, or another object under that name) or waiting
        (being deleted in the foreground)."""
        uid = ref.get("uid", "")
        if uid in self.absent:
            return "dangling"
        res = await self.discovery.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if res is None:
            return "solid"  # an owner of a kind we cannot resolve is never assumed gone
        try:
            owner = await self.client.get(
                res, ref.get("name", ""), namespace if res.namespaced else ""
            )
        except errors.StatusError as e:
            if e.code != 404:
                raise
            self._mark_absent(uid)
            return "dangling"
        om = owner["metadata"]
        if om.get("uid") != uid:
            self._mark_absent(uid)
            return "dangling"
        if om.get("deletionTimestamp") and FOREGROUND in (om.get("finalizers") or []):
            return "waiting"
        return "solid"

    async def _deleting_dependents(self, node: _Node, latest: Obj) -> None:
        blocking = []
        for d in self.dependents.get(node.uid, ()):
            dn = self.nodes.get(d)
            if dn is not None and any(
                r.get("uid") == node.uid and r.get("blockOwnerDeletion") for r in dn.owners
            ):
                blocking.append(dn)
        if not blocking:
            await self._remove_finalizer(node, latest, FOREGROUND)
            return
        for dn in blocking:
            if not dn.deleting_dependents:
                self.queue.add(dn.uid)

    async def _delete(self, node: _Node, obj: Obj, policy: str) -> None:
        log.debug("gc: deleting %s %s/%s (%s)", node.res.kind, node.namespace, node.name, policy)
        try:
            await self.client.delete(
                node.res, node.name, node.namespace, propagation=policy, uid=node.uid
            )
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise

    async def _patch_refs(self, node: _Node, obj: Obj, refs: list[Obj]) -> Obj | None:
        patch = {
            "metadata": {
                "ownerReferences": refs or None,
                "resourceVersion": obj["metadata"]["resourceVersion"],
            }
        }
        return await common.ignore_not_found(
            self.client.patch(node.res, node.name, patch, node.namespace)
        )

    async def _remove_finalizer(self, node: _Node, obj: Obj, finalizer: str) -> None:
        fins = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        patch = {
            "metadata": {
                "finalizers": fins or None,
                "resourceVersion": obj["metadata"]["resourceVersion"],
            }
        }
        await common.ignore_not_found(self.client.patch(node.res, node.name, patch, node.namespace))

    # ---- orphan ----------------------------------------------------------------------------

    async def _orphan(self, key: str) -> common.Result | None:
        node = self.nodes.get(key)
        if node is None:
            return None
        latest = await self._get(node)
        if latest is None:
            return None
        m = latest["metadata"]
        if not m.get("deletionTimestamp") or ORPHAN not in (m.get("finalizers") or []):
            return None
        for d in list(self.dependents.get(node.uid, ())):
            dn = self.nodes.get(d)
            if dn is None:
                continue
            dep = await self._get(dn)
            if dep is None:
                continue
            refs = dep["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != node.uid]
            if len(kept) != len(refs):
                await self._patch_refs(dn, dep, kept)
        await self._remove_finalizer(node, latest, ORPHAN)
        return None
