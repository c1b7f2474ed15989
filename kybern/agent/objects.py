"""The API objects the agent's pods refer to, watched rather than fetched: configMaps and
secrets through one informer per namespace that has pods on this node referring to any (started
when the first such pod arrives, stopped when the last goes), and services cluster-wide (for the
service link variables). Implements `env.Lookup` on the informers' caches; a change of a watched
configMap or secret is reported to `on_change(kind, namespace, name)` so the volumes that
project it are rewritten."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kybern.agent import common
from kybern.client import informer, rest

log = logging.getLogger("kybern.agent")
Obj = common.Obj
OnChange = Callable[[str, str, str], None]
SYNC_TIMEOUT = 30.0


class ObjectStore:
    def __init__(self, client: rest.Client, on_change: OnChange | None = None) -> None:
        self.client = client
        self.on_change = on_change
        self._informers: dict[tuple[str, str], informer.Informer] = {}
        self._users: dict[str, set[str]] = {}  # namespace -> pod uids
        self.services = informer.Informer(client, common.SERVICES)

    def start(self) -> None:
        self.services.start()

    async def stop(self) -> None:
        await self.services.stop()
        for inf in self._informers.values():
            await inf.stop()
        self._informers.clear()
        self._users.clear()

    def _informer(self, kind: str, namespace: str) -> informer.Informer:
        key = (kind, namespace)
        inf = self._informers.get(key)
        if inf is None:
            res = common.CONFIGMAPS if kind == "configmap" else common.SECRETS
            inf = informer.Informer(self.client, res, namespace=namespace)
            inf.add_handlers(self._handlers(kind))
            self._informers[key] = inf
            inf.start()
        return inf

    def _handlers(self, kind: str) -> informer.Handlers:
        def updated(old: Obj, new: Obj) -> None:
            self._changed(kind, new)

        return informer.Handlers(on_update=updated, on_delete=lambda obj: self._changed(kind, obj))

    def _changed(self, kind: str, obj: Obj) -> None:
        if self.on_change is not None:
            m = common.meta(obj)
            self.on_change(kind, str(m.get("namespace", "")), str(m.get("name", "")))

    async def use(self, uid: str, namespace: str) -> None:
        """Pod `uid` refers to configMaps or secrets of `namespace`: make sure they are watched
        and the caches synced."""
        self._users.setdefault(namespace, set()).add(uid)
        infs = [self._informer(k, namespace) for k in ("configmap", "secret")]
        await asyncio.gather(*(i.wait_synced(SYNC_TIMEOUT) for i in infs))

    async def release(self, uid: str) -> None:
        """Pod `uid` is gone: stop watching namespaces no pod needs any more."""
        for ns in [ns for ns, users in self._users.items() if uid in users]:
            users = self._users[ns]
            users.discard(uid)
            if not users:
                del self._users[ns]
                for kind in ("configmap", "secret"):
                    inf = self._informers.pop((kind, ns), None)
                    if inf is not None:
                        await inf.stop()

    # ---- env.Lookup ---------------------------------------------------------------------------

    def configmap(self, namespace: str, name: str) -> Obj | None:
        inf = self._informers.get(("configmap", namespace))
        return inf.get(name, namespace) if inf is not None else None

    def secret(self, namespace: str, name: str) -> Obj | None:
        inf = self._informers.get(("secret", namespace))
        return inf.get(name, namespace) if inf is not None else None

    def service_list(self) -> list[Obj]:
        return self.services.list()
