"""The PVC protection controller (kube's `pvc-protection`): every claim carries the finalizer
`kubernetes.io/pvc-protection` (added here, since no admission plugin adds it), and a claim being
deleted keeps it while any scheduled, non-terminated pod uses the claim — directly or as the
claim of a generic ephemeral volume — so its volume is not pulled out from under a running pod.
Before removing the finalizer it lists the claim's namespace from the API server rather than
trusting the informer. Fed by the claim and pod informers."""

from __future__ import annotations

from typing import Any

from kybern.client import informer
from kybern.controllers import common

Obj = dict[str, Any]
FINALIZER = "kubernetes.io/pvc-protection"


def claims_of(pod: Obj) -> set[str]:
    """Names of the claims a pod's volumes use (generic ephemeral ones included)."""
    out = set()
    name = pod["metadata"]["name"]
    for v in (pod.get("spec") or {}).get("volumes") or ():
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            out.add(claim)
        elif v.get("ephemeral"):
            out.add(f"{name}-{v.get('name', '')}")
    return out


def uses(pod: Obj, claim: str) -> bool:
    """kube's `podUsesPVC`: the pod is scheduled, not terminated, and names the claim."""
    if not (pod.get("spec") or {}).get("nodeName") or common.is_pod_terminal(pod):
        return False
    return claim in claims_of(pod)


class PVCProtectionController(common.Base):
    name = "pvc-protection"
    component = "persistentvolumeclaim-protection-controller"

    def __init__(self, ctx: common.Context) -> None:
        super().__init__(ctx)
        self.claims = common.shared(ctx, common.PVCS)
        self.pods = common.shared(ctx, common.PODS)
        self.claims.add_handlers(
            informer.Handlers(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))
        )
        self.pods.add_handlers(
            informer.Handlers(
                on_add=self._pod, on_update=lambda o, n: self._pod(n), on_delete=self._pod
            )
        )

    def _pod(self, pod: Obj) -> None:
        ns = pod["metadata"].get("namespace", "")
        for claim in claims_of(pod):
            pvc = self.claims.get(claim, ns)
            if pvc is not None and common.deleting(pvc):
                self.queue.add(f"{ns}/{claim}")

    async def reconcile(self, key: str) -> common.Result | None:
        ns, name = common.split_key(key)
        pvc = self.claims.get(name, ns)
        if pvc is None:
            return None
        finalizers = list(pvc["metadata"].get("finalizers") or [])
        if not common.deleting(pvc):
            if FINALIZER not in finalizers:
                await self._set(pvc, [*finalizers, FINALIZER])
            return None
        if FINALIZER not in finalizers:
            return None
        if any(uses(p, name) for p in self.pods.by_index("namespace", ns)):
            return None
        live = await self.client.list(common.PODS, ns)
        if any(uses(p, name) for p in live.get("items") or ()):
            return None
        await self._set(pvc, [f for f in finalizers if f != FINALIZER])
        return None

    async def _set(self, pvc: Obj, finalizers: list[str]) -> None:
        m = pvc["metadata"]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": m["resourceVersion"]}}
        await common.ignore_not_found(
            self.client.patch(common.PVCS, m["name"], patch, m["namespace"])
        )
