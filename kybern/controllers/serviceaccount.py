"""The serviceaccount controller: every active namespace has a ServiceAccount named `default`;
it is created when a namespace appears and again when someone deletes it. Fed by the namespace
and serviceaccount informers."""

from __future__ import annotations

from typing import Any

from kybern.api import errors
from kybern.client import informer
from kybern.controllers import common

Obj = dict[str, Any]
DEFAULT = "default"


class ServiceAccountController(common.Base):
    name = "serviceaccount"
    component = "service-account-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.namespaces = common.shared(ctx, common.NAMESPACES)
        self.accounts = common.shared(ctx, common.SERVICEACCOUNTS)
        self.namespaces.add_handlers(
            informer.Handlers(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        )
        self.accounts.add_handlers(informer.Handlers(on_delete=self._deleted))

    def _deleted(self, sa: Obj) -> None:
        if sa["metadata"]["name"] == DEFAULT:
            self.queue.add(sa["metadata"].get("namespace", ""))

    async def reconcile(self, key: str) -> common.Result | None:
        ns = self.namespaces.get(key)
        if (
            ns is None
            or common.deleting(ns)
            or (ns.get("status") or {}).get("phase") == "Terminating"
        ):
            return None
        if self.accounts.get(DEFAULT, key) is not None:
            return None
        sa = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT, "namespace": key},
        }
        try:
            await self.client.create(common.SERVICEACCOUNTS, sa)
        except errors.StatusError as e:
            if e.code not in (409, 403, 404):  # exists, or the namespace is going away
                raise
        return None
