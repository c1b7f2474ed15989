"""API aggregation, the loop half: at start-up `bootstrap` registers a local APIService
(`v1.`, `v1.apps`, ...; no service, label `kube-aggregator.kubernetes.io/automanaged: onstart`)
for every built-in group version, with kube-apiserver's priorities, and publishes the
`kube-system/extension-apiserver-authentication` ConfigMap that extension servers read to
authenticate the aggregator (the client CA, the front-proxy CA, its allowed name and the
request-header names). `AvailabilityLoop` then keeps the aggregator's index in step with the
APIService objects and maintains each one's `Available` condition: `Local` for local ones;
for service-backed ones a check (service, endpoints, then the backend's discovery document)
when the APIService, its Service, Endpoints or EndpointSlices change, when a proxied request
failed, and periodically (every `interval` seconds while available, sooner with backoff while
not)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from kybern.api import errors, objects, registry
from kybern.apiserver import aggregator as agg
from kybern.apiserver import cache as cachemod
from kybern.apiserver import certs, controllers
from kybern.apiserver import store as storemod

log = logging.getLogger("kybern.apiserver.aggregator")
Obj = dict[str, Any]
AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
CONFIGMAPS = next(r for r in registry.BUILTIN if r.plural == "configmaps")
CHECK_INTERVAL = 10.0  # seconds between checks of an available backend
RETRY_MIN, RETRY_MAX = 0.5, 5.0  # backoff of the checks of an unavailable one
LOCAL = ("Local", "Local APIServices are always available")


def local_apiservice(group: str, version: str) -> Obj:
    gp, vp = agg.BUILTIN_PRIORITIES.get((group, version), agg.OTHER_LOCAL_PRIORITY)
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{version}.{group}", "labels": {AUTOMANAGED: "onstart"}},
        "spec": {
            "group": group,
            "version": version,
            "groupPriorityMinimum": gp,
            "versionPriority": vp,
        },
    }


def authentication_data(client_ca: str, front_proxy_ca: str) -> dict[str, str]:
    """The ConfigMap's data, in kube-apiserver's keys and JSON-list values."""
    return {
        "client-ca-file": client_ca,
        "requestheader-client-ca-file": front_proxy_ca,
        "requestheader-allowed-names": orjson.dumps([certs.FRONT_PROXY_CLIENT]).decode(),
        "requestheader-username-headers": orjson.dumps([agg.USER_HEADER]).decode(),
        "requestheader-group-headers": orjson.dumps([agg.GROUP_HEADER]).decode(),
        "requestheader-extra-headers-prefix": orjson.dumps([agg.EXTRA_PREFIX]).decode(),
    }


async def bootstrap(st: storemod.Store, reg: registry.Registry, pki: certs.Pki) -> None:
    """Local APIServices for the built-in group versions, and the authentication ConfigMap."""
    gvs = sorted({(r.group, r.version) for r in reg.all() if not r.crd})

    async def ensure(group: str, version: str) -> None:
        if st.peek(agg.APISERVICES, "", f"{version}.{group}") is None:
            with contextlib.suppress(errors.StatusError):  # another server made it
                await st.create(agg.APISERVICES, "", local_apiservice(group, version))

    await asyncio.gather(*(ensure(g, v) for g, v in gvs))
    client_ca, front_ca = await asyncio.to_thread(
        lambda: (pki.ca_cert.read_text(), pki.front_proxy_ca_cert.read_text())
    )
    data = authentication_data(client_ca, front_ca)
    ns, name = AUTH_CONFIGMAP
    current = st.peek(CONFIGMAPS, ns, name)
    if current is None:
        with contextlib.suppress(errors.StatusError):
            await st.create(
                CONFIGMAPS,
                ns,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data},
            )
    elif current.obj.get("data") != data:

        def mutate(cm: Obj) -> Obj:
            cm["data"] = data
            return cm

        await st.guaranteed_update(CONFIGMAPS, ns, name, mutate)


class AvailabilityLoop(controllers.Loop):
    """Feeds the aggregator's index and keeps `Available` conditions (see the module doc)."""

    def __init__(
        self, st: storemod.Store, aggregator: agg.Aggregator, interval: float = CHECK_INTERVAL
    ) -> None:
        super().__init__(st, agg.APISERVICES)
        self.aggregator = aggregator
        self.interval = interval
        aggregator.on_failure = self.kick
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        super().start()
        self._tasks = [asyncio.create_task(self._tick())]
        for res in (agg.SERVICES, agg.ENDPOINTS, agg.ENDPOINTSLICES):
            self._tasks.append(asyncio.create_task(self._follow(res)))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._checks.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks, self._checks = [], {}
        await super().stop()

    async def reconcile(self, obj: Obj, deleted: bool) -> None:
        name = obj["metadata"]["name"]
        if deleted:
            self.aggregator.forget(name)
            self._due.pop(name, None)
            self._failures.pop(name, None)
            return
        entry, changed = self.aggregator.observe(obj)
        if entry is None:
            return
        if entry.local:
            await self._write(name, agg.CheckResult(True, *LOCAL))
        elif changed:
            self.kick(name)

    def kick(self, name: str) -> None:
        """Check `name` now (or right after the check under way)."""
        running = self._checks.get(name)
        if running is not None and not running.done():
            self._again.add(name)
            return
        self._checks[name] = asyncio.create_task(self._check(name))

    async def _check(self, name: str) -> None:
        while True:
            entry = self.aggregator.entries.get(name)
            if entry is None or entry.local:
                return
            try:
                result = await self.aggregator.check(entry)
            except errors.StatusError as e:
                result = agg.CheckResult(False, "FailedDiscoveryCheck", e.message)
            self.aggregator.set_result(entry, result)
            fails = 0 if result.available else self._failures.get(name, 0) + 1
            self._failures[name] = fails
            delay = self.interval if not fails else min(RETRY_MIN * 2 ** (fails - 1), RETRY_MAX)
            self._due[name] = time.monotonic() + delay
            try:
                await self._write(name, result)
            except Exception:
                log.exception("apiservice %s: status update failed", name)
            if name not in self._again:
                return
            self._again.discard(name)

    async def _write(self, name: str, result: agg.CheckResult) -> None:
        """Set condition Available as `result` says, unless it already does."""
        current = self.store.peek(agg.APISERVICES, "", name)
        if current is None:
            return
        want = {
            "type": "Available",
            "status": "True" if result.available else "False",
            "reason": result.reason,
            "message": result.message,
        }
        old = agg.available_condition(current.obj) or {}
        if all(old.get(k) == v for k, v in want.items()):
            return
        if not result.available:
            log.info("apiservice %s unavailable: %s: %s", name, result.reason, result.message)

        def mutate(o: Obj) -> Obj:
            status = o.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "Available"]
            prev = agg.available_condition(o) or {}
            same = prev.get("status") == want["status"] and prev.get("lastTransitionTime")
            when = prev["lastTransitionTime"] if same else objects.now_rfc3339()
            status["conditions"] = [*conds, {**want, "lastTransitionTime": when}]
            return o

        with contextlib.suppress(errors.StatusError):  # deleted meanwhile
            await self.store.guaranteed_update(
                agg.APISERVICES, "", name, mutate, subresource="status"
            )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for name, entry in list(self.aggregator.entries.items()):
                if not entry.local and self._due.get(name, now + 1) <= now:
                    self._due[name] = now + self.interval  # until the check sets it
                    self.kick(name)

    async def _follow(self, res: registry.Resource) -> None:
        """Re-check the APIServices whose service changed (Service, Endpoints or slices)."""
        rc = self.store.cacher.get(res.key_prefix)
        watcher = cachemod.Watcher("", None)
        rc.watchers.add(watcher)
        try:
            while True:
                ev = await watcher.queue.get()
                if ev is None:
                    watcher = cachemod.Watcher("", None)
                    rc.watchers.add(watcher)
                    self._kick_matching(None)
                    continue
                meta = ev.obj.obj["metadata"]
                svc = meta["name"]
                if res is agg.ENDPOINTSLICES:
                    svc = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
                self._kick_matching((meta.get("namespace", ""), svc))
        finally:
            rc.watchers.discard(watcher)

    def _kick_matching(self, service: tuple[str, str] | None) -> None:
        for name, e in list(self.aggregator.entries.items()):
            if not e.local and (service is None or service == (e.namespace, e.service)):
                self.kick(name)
