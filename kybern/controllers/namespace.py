"""The namespace controller: when a namespace is deleted (it carries a deletionTimestamp and the
`kubernetes` finalizer in spec.finalizers), delete everything in it — every namespaced kind
the server serves, found by discovery, CRDs included — reporting progress in the namespace's
status conditions (NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsing-
Failure, NamespaceDeletionContentFailure, NamespaceContentRemaining, NamespaceFinalizers-
Remaining), and once nothing is left, remove the finalizer through the `finalize`
subresource so the API server lets the namespace go."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import errors, registry
from kybern.client import informer
from kybern.controllers import common, discovery

Obj = dict[str, Any]
FINALIZER = "kubernetes"
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})


def conditions(
    failed_discovery: dict[str, str],
    failures: list[str],
    remaining: dict[str, int],
    finalizers: dict[str, int],
) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of the five namespace deletion conditions."""
    out = []
    if failed_discovery:
        msg = "Discovery failed for some groups, %d failing: %s" % (
            len(failed_discovery),
            "; ".join(f"{k}: {v}" for k, v in sorted(failed_discovery.items())),
        )
        out.append(("NamespaceDeletionDiscoveryFailure", "True", "DiscoveryFailed", msg))
    else:
        out.append(
            (
                "NamespaceDeletionDiscoveryFailure",
                "False",
                "ResourcesDiscovered",
                "All resources successfully discovered",
            )
        )
    out.append(
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        )
    )
    if failures:
        out.append(
            (
                "NamespaceDeletionContentFailure",
                "True",
                "ContentDeletionFailed",
                "Failed to delete all resource types, %d remaining: %s"
                % (len(failures), ", ".join(sorted(failures))),
            )
        )
    else:
        out.append(
            (
                "NamespaceDeletionContentFailure",
                "False",
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            )
        )
    if remaining:
        msg = "Some resources are remaining: " + ", ".join(
            f"{k} has {v} resource instances" for k, v in sorted(remaining.items())
        )
        out.append(("NamespaceContentRemaining", "True", "SomeResourcesRemain", msg))
    else:
        out.append(
            (
                "NamespaceContentRemaining",
                "False",
                "ContentRemoved",
                "All content successfully removed",
            )
        )
    if finalizers:
        msg = "Some content in the namespace has finalizers remaining: " + ", ".join(
            f"{k} in {v} resource instances" for k, v in sorted(finalizers.items())
        )
        out.append(("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", msg))
    else:
        out.append(
            (
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            )
        )
    return out


class NamespaceController(common.Base):
    name = "namespace"

    def __init__(self, ctx: common.Context, disco: discovery.Discovery) -> None:
        super().__init__(ctx)
        self.discovery = disco
        self.namespaces = common.shared(ctx, common.NAMESPACES)
        self.namespaces.add_handlers(
            informer.Handlers(on_add=self._maybe, on_update=lambda old, new: self._maybe(new))
        )
        self._attempts: dict[str, int] = {}

    def _maybe(self, ns: Obj) -> None:
        if common.deleting(ns):
            self.enqueue(ns)

    async def reconcile(self, key: str) -> common.Result | None:
        cached = self.namespaces.get(key)
        if cached is None or not common.deleting(cached):
            self._attempts.pop(key, None)
            return None
        try:
            ns = await self.client.get(common.NAMESPACES, key)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise
        if not common.deleting(ns) or FINALIZER not in (
            (ns.get("spec") or {}).get("finalizers") or []
        ):
            return None
        found = await self.discovery.resources(fresh=key not in self._attempts)
        failures: list[str] = []
        remaining: dict[str, int] = {}
        fins: dict[str, int] = {}
        for res in found.resources:
            if not res.namespaced or (res.group, res.plural) in IGNORED:
                continue
            if not all(v in res.verbs for v in ("list", "delete")):
                continue
            try:
                left = await self._delete_all(res, key)
            except errors.StatusError as e:
                if e.code in (404, 405):
                    continue
                failures.append(f"{res.qualified}: {e.message}")
                continue
            if left:
                remaining[res.qualified] = len(left)
                for o in left:
                    for f in o["metadata"].get("finalizers") or []:
                        fins[f] = fins.get(f, 0) + 1
        await self._set_conditions(ns, conditions(found.failed, failures, remaining, fins))
        if failures or remaining or found.failed:
            n = self._attempts.get(key, 0)
            self._attempts[key] = n + 1
            delay = min(self.options.namespace_requeue * (2 ** min(n, 5)), 30.0)
            return common.Result(requeue_after=delay)
        self._attempts.pop(key, None)
        await self._finalize(key)
        return None

    async def _delete_all(self, res: registry.Resource, namespace: str) -> list[Obj]:
        """Delete what is in `namespace`; returns what is still there afterwards."""
        items = (await self.client.list(res, namespace)).get("items") or []
        if not items:
            return []
        left = []
        for o in items:
            m = o["metadata"]
            if m.get("deletionTimestamp"):
                left.append(o)
                continue
            try:
                await self.client.delete(
                    res, m["name"], namespace, propagation="Background", uid=m.get("uid", "")
                )
            except errors.StatusError as e:
                if e.code in (404, 409):
                    continue
                raise
        if len(left) == len(items):
            return left
        return (await self.client.list(res, namespace)).get("items") or []

    async def _set_conditions(self, ns: Obj, conds: list[tuple[str, str, str, str]]) -> None:
        status = copy.deepcopy(ns.get("status") or {})
        now = common.format_time(self.clock())
        for typ, value, reason, message in conds:
            common.set_condition(status, typ, value, reason, message, now)
            c = common.get_condition(status, typ)
            if c is not None and c.get("message") != message:
                c["message"] = message
        if status == (ns.get("status") or {}):
            return
        new = dict(ns)
        new["status"] = status
        try:
            await self.client.update_status(common.NAMESPACES, new)
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise

    async def _finalize(self, name: str) -> None:
        try:
            ns = await self.client.get(common.NAMESPACES, name)
        except errors.StatusError as e:
            if e.code == 404:
                return
            raise
        spec = dict(ns.get("spec") or {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
        ns["spec"] = spec
        try:
            await self.client.update(common.NAMESPACES, ns, subresource="finalize")
        except errors.StatusError as e:
            if e.code != 404:
                raise
