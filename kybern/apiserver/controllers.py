"""Control loops that live inside the API server because they are part of serving the API:
the CRD loop (a CRD's resources become servable, with `NamesAccepted`/`Established`
conditions, and are cleaned up when it goes). Namespace termination is the `namespace`
controller's (kybern/controllers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kybern.api import errors, objects, registry
from kybern.apiserver import cache as cachemod
from kybern.apiserver import store as storemod

log = logging.getLogger("kybern.apiserver")
Obj = dict[str, Any]
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
CRDS = next(r for r in registry.BUILTIN if r.kind == "CustomResourceDefinition")
NAMESPACES = registry.BUILTIN[0]


def resources_of(crd: Obj) -> list[registry.Resource]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = v.get("subresources") or {}
        out.append(
            registry.Resource(
                group=spec.get("group", ""),
                version=v.get("name", ""),
                kind=names.get("kind", ""),
                plural=names.get("plural", ""),
                namespaced=spec.get("scope") == "Namespaced",
                singular=names.get("singular") or names.get("kind", "").lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset(k for k in ("status", "scale") if k in subs),
                field_selectors=tuple(
                    str(f.get("jsonPath", "")).lstrip(".")
                    for f in v.get("selectableFields") or []
                    if isinstance(f, dict) and f.get("jsonPath")
                ),
                crd=True,
                list_kind_name=names.get("listKind") or "",
            )
        )
    return out


class Loop:
    """Runs `reconcile(obj)` for every change of one resource, serially, from a cache watcher."""

    def __init__(self, st: storemod.Store, res: registry.Resource) -> None:
        self.store = st
        self.res = res
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        rc = self.store.cacher.get(self.res.key_prefix)
        watcher = cachemod.Watcher("", None)
        rc.watchers.add(watcher)
        try:
            for o in list(rc.items()):
                await self._safe(o.obj, False)
            while True:
                ev = await watcher.queue.get()
                if ev is None:
                    watcher = cachemod.Watcher("", None)  # dropped: start again from state
                    rc.watchers.add(watcher)
                    for o in list(rc.items()):
                        await self._safe(o.obj, False)
                    continue
                await self._safe(ev.obj.obj, ev.type == "DELETED")
        finally:
            rc.watchers.discard(watcher)

    async def _safe(self, obj: Obj, deleted: bool) -> None:
        try:
            await self.reconcile(obj, deleted)
        except errors.StatusError as e:
            if e.code not in (404, 409):
                log.warning("%s %s: %s", self.res.kind, obj["metadata"].get("name"), e.message)
        except Exception:
            log.exception("%s loop failed on %s", self.res.kind, obj["metadata"].get("name"))

    async def reconcile(self, obj: Obj, deleted: bool) -> None:
        raise NotImplementedError


class CRDLoop(Loop):
    def __init__(self, st: storemod.Store) -> None:
        super().__init__(st, CRDS)
        self.served: dict[str, list[registry.Resource]] = {}

    async def reconcile(self, crd: Obj, deleted: bool) -> None:
        name = crd["metadata"]["name"]
        if deleted:
            self._unserve(name)
            self.store.crds.forget(name)
            return
        if crd["metadata"].get("deletionTimestamp"):
            await self._terminating(crd)
            await self._cleanup(crd)
            return
        self.store.crds.of(crd)  # compile the schemas and CEL rules once, before serving
        wanted = resources_of(crd)
        conflict = self._conflict(crd, wanted)
        if conflict:
            await self._set_conditions(crd, conflict)
            return
        if self.served.get(name) != wanted:
            # the new versions are routed before the dropped ones go: a version served before
            # and after never answers 404, and its watches (same storage prefix) stay open
            for r in wanted:
                await self.store.cacher.add_resource(r.key_prefix)
                self.store.registry.add(r)
            kept = {(r.group, r.version, r.plural) for r in wanted}
            for r in self.served.get(name, []):
                if (r.group, r.version, r.plural) not in kept:
                    self.store.registry.remove(r)
            self.served[name] = wanted
        await self._set_conditions(crd, "")

    def _conflict(self, crd: Obj, wanted: list[registry.Resource]) -> str:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if name_expected := f"{names.get('plural', '')}.{spec.get('group', '')}":
            if crd["metadata"]["name"] != name_expected:
                return f'must be spec.names.plural+"."+spec.group ({name_expected})'
        for r in wanted:
            existing = self.store.registry.lookup(r.group, r.version, r.plural)
            if existing is not None and not existing.crd:
                return f'"{r.plural}" is already in use'
            for other, served in self.served.items():
                if other != crd["metadata"]["name"] and any(
                    s.group == r.group and s.kind == r.kind for s in served
                ):
                    return f'"{r.kind}" is already in use'
        return ""

    def _unserve(self, name: str) -> None:
        for r in self.served.pop(name, []):
            self.store.registry.remove(r)
            if not any(o.key_prefix == r.key_prefix for rs in self.served.values() for o in rs):
                self.store.cacher.remove_resource(r.key_prefix)

    async def _set_conditions(self, crd: Obj, conflict: str) -> None:
        now = objects.now_rfc3339()
        names = dict((crd.get("spec") or {}).get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", names.get("kind", "") + "List")
        if conflict:
            conds = [
                {
                    "type": "NamesAccepted",
                    "status": "False",
                    "reason": "NameConflict",
                    "message": conflict,
                },
                {
                    "type": "Established",
                    "status": "False",
                    "reason": "NotAccepted",
                    "message": "not all names are accepted",
                },
            ]
        else:
            conds = [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                },
            ]
        status = crd.get("status") or {}
        old = {c.get("type"): c for c in status.get("conditions") or []}
        for c in conds:
            prev = old.get(c["type"])
            c["lastTransitionTime"] = (
                prev["lastTransitionTime"]
                if prev and prev.get("status") == c["status"] and prev.get("lastTransitionTime")
                else now
            )
        versions = [
            v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")
        ]
        desired = {
            "conditions": conds,
            "acceptedNames": {} if conflict else names,
            "storedVersions": sorted(set(status.get("storedVersions") or []) | set(versions)),
        }
        if all(status.get(k) == v for k, v in desired.items()):
            return

        def mutate(cur: Obj) -> Obj:
            cur["status"] = {**(cur.get("status") or {}), **desired}
            return cur

        await self.store.guaranteed_update(
            CRDS, "", crd["metadata"]["name"], mutate, subresource="status"
        )

    async def _terminating(self, crd: Obj) -> None:
        """Condition `Terminating` while the custom resources are being deleted."""
        conds = (crd.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Terminating" and c.get("status") == "True" for c in conds):
            return

        def mutate(cur: Obj) -> Obj:
            status = cur.setdefault("status", {})
            kept = [c for c in status.get("conditions") or [] if c.get("type") != "Terminating"]
            kept.append(
                {
                    "type": "Terminating",
                    "status": "True",
                    "reason": "InstanceDeletionInProgress",
                    "message": "CustomResource deletion is in progress",
                    "lastTransitionTime": objects.now_rfc3339(),
                }
            )
            status["conditions"] = kept
            return cur

        with contextlib.suppress(errors.StatusError):
            await self.store.guaranteed_update(
                CRDS, "", crd["metadata"]["name"], mutate, subresource="status"
            )

    async def _cleanup(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        for r in self.served.get(name, [])[:1]:
            rc = self.store.cacher.get(r.key_prefix)
            for o in list(rc.items()):
                m = o.obj["metadata"]
                with contextlib.suppress(errors.StatusError):
                    await self.store.delete(
                        r, m.get("namespace", ""), m["name"], storemod.DeleteOptions()
                    )
            if any(True for _ in rc.items()):
                return  # objects with finalizers remain; come back on their deletion
        self._unserve(name)

        def mutate(cur: Obj) -> Obj:
            fins = [f for f in cur["metadata"].get("finalizers") or [] if f != CRD_FINALIZER]
            cur["metadata"]["finalizers"] = fins
            return cur

        await self.store.guaranteed_update(CRDS, "", name, mutate)
