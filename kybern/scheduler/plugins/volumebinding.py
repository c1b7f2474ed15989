"""`VolumeBinding` (kube-scheduler's plugin of that name, without capacity scoring): a pod's
claims must exist and not be deleting; a claim bound to a volume confines the pod to the
volume's node affinity (volume topology), an unbound claim of an `Immediate` class keeps the pod
pending until it is bound, and an unbound claim of a `WaitForFirstConsumer` class is satisfied on
a node by a fitting available volume whose node affinity allows the node, or by dynamic
provisioning when the class's provisioner can serve the node (its `allowedTopologies`, and the
node's CSINode listing a CSI driver that other nodes list). At pre-bind it pre-binds the chosen
volumes (`claimRef`) or annotates claims `volume.kubernetes.io/selected-node`, then waits for the
PV controller and provisioner to bind them before the pod is bound. Claims, volumes, classes and
CSINodes come from informers in the scheduler's factory; their changes requeue pods."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from kybern.api import errors, registry, selectors, validation
from kybern.client import informer
from kybern.scheduler import framework as fw
from kybern.scheduler.nodeinfo import NodeInfo, PodInfo

Obj = dict[str, Any]
PVCS, PVS, CLASSES, CSINODES = (
    next(r for r in registry.BUILTIN if r.kind == kind)
    for kind in ("PersistentVolumeClaim", "PersistentVolume", "StorageClass", "CSINode")
)
STATE_KEY = "PreFilterVolumeBinding"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
ERR_AFFINITY = "node(s) had volume node affinity conflict"
ERR_BIND = "node(s) didn't find available persistent volumes to bind"
ERR_DRIVER = "node(s) did not have the claim's CSI driver installed"
ERR_TOPOLOGY = "node(s) didn't match the storage class's allowed topologies"
BIND_TIMEOUT = 600.0


def _quantity(v: Any) -> Decimal:
    try:
        return validation.parse_quantity(v)
    except (TypeError, ValueError):
        return Decimal(0)


def _req_ok(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = req.get("key") or "", req.get("operator"), req.get("values") or []
    if op == "In":
        return labels.get(key) in values if key in labels else False
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def affinity_ok(pv: Obj, node: NodeInfo) -> bool:
    """The PV's required node affinity admits the node (terms ORed, requirements ANDed)."""
    req = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    terms = req.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": node.name}
    return any(
        (t.get("matchExpressions") or t.get("matchFields"))
        and all(_req_ok(e, node.labels) for e in t.get("matchExpressions") or ())
        and all(_req_ok(f, fields) for f in t.get("matchFields") or ())
        for t in terms
    )


def _topologies_ok(sc: Obj, node: NodeInfo) -> bool:
    terms = sc.get("allowedTopologies") or []
    if not terms:
        return True
    for term in terms:
        exprs = term.get("matchLabelExpressions") or []
        if all(node.labels.get(e.get("key", "")) in (e.get("values") or []) for e in exprs):
            return True
    return False


def claim_names(pod: PodInfo) -> list[str]:
    out = []
    for v in pod.spec.get("volumes") or ():
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            out.append(claim)
        elif v.get("ephemeral"):
            out.append(f"{pod.name}-{v.get('name', '')}")
    return out


@dataclass
class _State:
    bound: list[Obj] = field(default_factory=list)  # PVs of bound claims
    delayed: list[Obj] = field(default_factory=list)  # unbound WaitForFirstConsumer claims
    # node -> claim key -> PV name to pre-bind ("" = provision)
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)

    def clone(self) -> _State:
        return self


class VolumeBinding:
    name: ClassVar[str] = "VolumeBinding"

    def __init__(self, handle: fw.Handle, *, bind_timeout: float = BIND_TIMEOUT) -> None:
        self.handle = handle
        self.bind_timeout = bind_timeout
        self.assumed: dict[str, str] = {}  # PV name -> pod key holding it
        self._waiters: set[asyncio.Event] = set()
        self.claims = self.volumes = self.classes = self.csinodes = None
        factory = handle.informer_factory
        if factory is not None:
            self.claims = factory.informer(PVCS)
            self.volumes = factory.informer(PVS)
            self.classes = factory.informer(CLASSES)
            self.csinodes = factory.informer(CSINODES)
            for inf, kind in (
                (self.claims, "PersistentVolumeClaim"),
                (self.volumes, "PersistentVolume"),
                (self.classes, "StorageClass"),
                (self.csinodes, "CSINode"),
            ):
                inf.add_handlers(self._handlers(kind))

    def _handlers(self, kind: str) -> informer.Handlers:
        def fire(action: fw.ActionType) -> None:
            if self.handle.on_event is not None:
                self.handle.on_event(fw.ClusterEvent(kind, action, f"{kind}Change"))
            for ev in self._waiters:
                ev.set()

        return informer.Handlers(
            on_add=lambda o: fire(fw.ActionType.ADD),
            on_update=lambda o, n: fire(fw.ActionType.UPDATE_OTHER),
        )

    def events_to_register(self) -> list[fw.ClusterEvent]:
        change = fw.ActionType.ADD | fw.ActionType.UPDATE
        return [
            fw.ClusterEvent("PersistentVolumeClaim", change),
            fw.ClusterEvent("PersistentVolume", change),
            fw.ClusterEvent("StorageClass", change),
            fw.ClusterEvent("CSINode", change),
            fw.ClusterEvent(fw.NODE, fw.ActionType.ADD | fw.ActionType.UPDATE_NODE_LABEL),
        ]

    # ---- lookups ------------------------------------------------------------------------------

    def _default_class(self) -> str:
        assert self.classes is not None
        notes = "storageclass.kubernetes.io/is-default-class"
        defaults = [
            c
            for c in self.classes.list()
            if (c["metadata"].get("annotations") or {}).get(notes) == "true"
        ]
        if not defaults:
            return ""
        return max(defaults, key=lambda c: c["metadata"].get("creationTimestamp") or "")[
            "metadata"
        ]["name"]

    def _class_of(self, pvc: Obj) -> str:
        name = (pvc.get("spec") or {}).get("storageClassName")
        return self._default_class() if name is None else str(name)

    def _fits(self, pv: Obj, pvc: Obj, cls: str, node: NodeInfo, taken: set[str]) -> bool:
        spec, cspec = pv.get("spec") or {}, pvc.get("spec") or {}
        name = pv["metadata"]["name"]
        if name in taken or pv["metadata"].get("deletionTimestamp"):
            return False
        ref = spec.get("claimRef")
        if ref and not (
            ref.get("name") == pvc["metadata"]["name"]
            and ref.get("namespace") == pvc["metadata"].get("namespace")
        ):
            return False
        if (spec.get("storageClassName") or "") != cls:
            return False
        if (spec.get("volumeMode") or "Filesystem") != (cspec.get("volumeMode") or "Filesystem"):
            return False
        if not set(cspec.get("accessModes") or ()) <= set(spec.get("accessModes") or ()):
            return False
        want = ((cspec.get("resources") or {}).get("requests") or {}).get("storage")
        if _quantity((spec.get("capacity") or {}).get("storage")) < _quantity(want or 0):
            return False
        sel = cspec.get("selector")
        if sel is not None:
            try:
                labels = pv["metadata"].get("labels") or {}
                if not selectors.from_label_selector_object(sel).matches(labels):
                    return False
            except errors.StatusError:
                return False
        return affinity_ok(pv, node)

    def _can_provision(self, sc: Obj, node: NodeInfo) -> str:
        """Why the class cannot provision for `node` ("" if it can)."""
        provisioner = sc.get("provisioner") or ""
        if not provisioner or provisioner == NO_PROVISIONER:
            return ERR_BIND
        if not _topologies_ok(sc, node):
            return ERR_TOPOLOGY
        assert self.csinodes is not None
        having = [
            c["metadata"]["name"]
            for c in self.csinodes.list()
            if any(d.get("name") == provisioner for d in (c.get("spec") or {}).get("drivers") or ())
        ]
        if having and node.name not in having:
            return ERR_DRIVER
        return ""

    # ---- extension points ---------------------------------------------------------------------

    def pre_filter(
        self, state: fw.CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> tuple[fw.PreFilterResult | None, fw.Status | None]:
        names = claim_names(pod)
        if not names or self.claims is None:
            return None, fw.SKIP
        assert self.volumes is not None and self.classes is not None
        st = _State()
        for name in names:
            pvc = self.claims.get(name, pod.namespace)
            if pvc is None:
                return None, fw.unresolvable(f'persistentvolumeclaim "{name}" not found')
            if pvc["metadata"].get("deletionTimestamp"):
                return None, fw.unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            vol = (pvc.get("spec") or {}).get("volumeName")
            if vol:
                pv = self.volumes.get(vol)
                if pv is None:
                    return None, fw.unresolvable(f'persistentvolume "{vol}" not found')
                st.bound.append(pv)
                continue
            sc = self.classes.get(self._class_of(pvc))
            if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                st.delayed.append(pvc)
            else:
                return None, fw.unresolvable(ERR_UNBOUND_IMMEDIATE)
        state.write(STATE_KEY, st)
        return None, None

    def filter(self, state: fw.CycleState, pod: PodInfo, node: NodeInfo) -> fw.Status | None:
        st: _State | None = state.get(STATE_KEY)
        if st is None:
            return None
        for bound in st.bound:
            if not affinity_ok(bound, node):
                return fw.unresolvable(ERR_AFFINITY)
        if not st.delayed:
            return None
        assert self.volumes is not None and self.classes is not None
        taken = {n for n, holder in self.assumed.items() if holder != pod.key}
        decisions: dict[str, str] = {}
        pvs = sorted(
            self.volumes.list(),
            key=lambda p: _quantity((p["spec"].get("capacity") or {}).get("storage")),
        )
        for pvc in st.delayed:
            cls = self._class_of(pvc)
            key = f"{pod.namespace}/{pvc['metadata']['name']}"
            pv: Obj | None = next((p for p in pvs if self._fits(p, pvc, cls, node, taken)), None)
            if pv is not None:
                decisions[key] = pv["metadata"]["name"]
                taken.add(pv["metadata"]["name"])
                continue
            sc = self.classes.get(cls) or {}
            why = self._can_provision(sc, node)
            if why:
                return fw.unschedulable(why)
            decisions[key] = ""
        st.decisions[node.name] = decisions
        return None

    def reserve(self, state: fw.CycleState, pod: PodInfo, node_name: str) -> fw.Status | None:
        st: _State | None = state.get(STATE_KEY)
        if st is not None:
            for pv in (st.decisions.get(node_name) or {}).values():
                if pv:
                    self.assumed[pv] = pod.key
        return None

    def unreserve(self, state: fw.CycleState, pod: PodInfo, node_name: str) -> None:
        for pv in [n for n, holder in self.assumed.items() if holder == pod.key]:
            del self.assumed[pv]

    async def pre_bind(
        self, state: fw.CycleState, pod: PodInfo, node_name: str
    ) -> fw.Status | None:
        st: _State | None = state.get(STATE_KEY)
        if st is None or not st.delayed:
            return None
        client = self.handle.client
        if client is None:
            return fw.Status(fw.Code.ERROR, "VolumeBinding has no API client")
        decisions = st.decisions.get(node_name) or {}
        try:
            for key, pv_name in decisions.items():
                ns, _, name = key.partition("/")
                if pv_name:
                    pvc = self.claims.get(name, ns) if self.claims else None
                    if pvc is None:
                        return fw.Status(fw.Code.ERROR, f"claim {key} vanished")
                    await self._prebind(client, pv_name, pvc)
                else:
                    patch = {"metadata": {"annotations": {ANN_SELECTED_NODE: node_name}}}
                    await client.patch(PVCS, name, patch, ns)
            return await self._wait_bound(list(decisions), node_name)
        except errors.StatusError as e:
            return fw.Status(fw.Code.ERROR, f"binding volumes: {e.message}", error=e)
        finally:
            self.unreserve(state, pod, node_name)

    async def _prebind(self, client: Any, pv_name: str, pvc: Obj) -> None:
        m = pvc["metadata"]
        ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": m["namespace"]}
        ref |= {"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"]}
        pv = await client.get(PVS, pv_name)
        if (pv["spec"].get("claimRef") or {}).get("uid") == m["uid"]:
            return
        pv["spec"]["claimRef"] = ref
        notes = pv["metadata"].setdefault("annotations", {}) or {}
        pv["metadata"]["annotations"] = {**notes, ANN_BOUND_BY_CONTROLLER: "yes"}
        await client.update(PVS, pv)

    async def _wait_bound(self, keys: list[str], node_name: str) -> fw.Status | None:
        """Wait until the PV controller (and provisioner) bound every claim; an error when the
        provisioner gave up on this node (it removes the selected-node annotation)."""
        assert self.claims is not None
        deadline = time.monotonic() + self.bind_timeout

        def check() -> fw.Status | bool:
            done = True
            for key in keys:
                ns, _, name = key.partition("/")
                pvc = self.claims.get(name, ns) if self.claims else None
                if pvc is None:
                    return fw.Status(fw.Code.ERROR, f"claim {key} vanished")
                notes = pvc["metadata"].get("annotations") or {}
                if (pvc.get("spec") or {}).get("volumeName") and notes.get(ANN_BIND_COMPLETED):
                    continue
                done = False
                if ANN_SELECTED_NODE in notes and notes[ANN_SELECTED_NODE] != node_name:
                    return fw.Status(fw.Code.ERROR, f"claim {key} was given to another node")
            return done

        while True:
            changed = asyncio.Event()
            self._waiters.add(changed)
            try:
                result = check()
                if result is True:
                    return None
                if isinstance(result, fw.Status):
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    return fw.Status(fw.Code.ERROR, "binding volumes: timed out waiting for claims")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, 5.0))
            finally:
                self._waiters.discard(changed)


def new_volume_binding(args: Mapping[str, Any], handle: fw.Handle) -> fw.Plugin:
    timeout = float(args.get("bindTimeoutSeconds") or BIND_TIMEOUT)
    return VolumeBinding(handle, bind_timeout=timeout)
