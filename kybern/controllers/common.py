"""What every controller shares: the resources they watch, the `Context` the manager hands them
(client, shared informer factory, event broadcaster, options, an injectable wall clock), the
`Base` class that wires a reconcile `Controller` to a work queue, and the Kubernetes helpers
controllers use everywhere — controller references and claiming (adopt/orphan), expectations,
pod readiness and availability, pod creation from templates, deletion ranking and conditions."""

from __future__ import annotations

import copy
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kybern.api import errors, registry, selectors
from kybern.client import events, informer, reconcile, rest

log = logging.getLogger("kybern.controllers")
Obj = dict[str, Any]
Clock = Callable[[], float]
REG = registry.Registry()
Result = reconcile.Result


def _res(group: str, version: str, plural: str) -> registry.Resource:
    r = REG.lookup(group, version, plural)
    assert r is not None, plural
    return r


NAMESPACES = _res("", "v1", "namespaces")
PODS = _res("", "v1", "pods")
NODES = _res("", "v1", "nodes")
SERVICES = _res("", "v1", "services")
ENDPOINTS = _res("", "v1", "endpoints")
SERVICEACCOUNTS = _res("", "v1", "serviceaccounts")
CONFIGMAPS = _res("", "v1", "configmaps")
PVCS = _res("", "v1", "persistentvolumeclaims")
RCS = _res("", "v1", "replicationcontrollers")
DEPLOYMENTS = _res("apps", "v1", "deployments")
REPLICASETS = _res("apps", "v1", "replicasets")
STATEFULSETS = _res("apps", "v1", "statefulsets")
DAEMONSETS = _res("apps", "v1", "daemonsets")
REVISIONS = _res("apps", "v1", "controllerrevisions")
JOBS = _res("batch", "v1", "jobs")
CRONJOBS = _res("batch", "v1", "cronjobs")
LEASES = _res("coordination.k8s.io", "v1", "leases")
SLICES = _res("discovery.k8s.io", "v1", "endpointslices")
CSRS = _res("certificates.k8s.io", "v1", "certificatesigningrequests")


@dataclass
class Options:
    """Tunables of the controllers (Kubernetes' defaults; tests shorten the timeouts)."""

    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    default_toleration_seconds: float = 300.0  # DefaultTolerationSeconds for not-ready/unreachable
    job_backoff_base: float = 10.0
    job_backoff_max: float = 360.0
    namespace_requeue: float = 1.0
    gc_resync_period: float = 30.0
    workers: int = 2
    signing_ca: tuple[bytes, bytes] | None = None  # (cert, key) PEM for csrsigning; None: off


@dataclass
class Context:
    client: rest.Client
    factory: informer.InformerFactory
    broadcaster: events.EventBroadcaster
    options: Options = field(default_factory=Options)
    clock: Clock = time.time


# ---- indexers shared by name, so one informer carries each index once ---------------------


def _ns_index(o: Obj) -> list[str]:
    return [o["metadata"].get("namespace", "")]


def _controller_index(o: Obj) -> list[str]:
    ref = controller_ref(o)
    return [ref["uid"]] if ref and ref.get("uid") else []


def _orphan_index(o: Obj) -> list[str]:
    """The namespace of an object without a controller reference (one a controller may adopt)."""
    for ref in o["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return []
    return [o["metadata"].get("namespace", "")]


def _node_index(o: Obj) -> list[str]:
    n = (o.get("spec") or {}).get("nodeName")
    return [n] if n else []


def shared(ctx: Context, res: registry.Resource) -> informer.Informer:
    """The shared informer of `res` with the `namespace`, `controller` and `orphan` indices."""
    inf = ctx.factory.informer(res)
    if not getattr(inf, "_kybern_indexed", False):
        inf.add_indexer("namespace", _ns_index)
        inf.add_indexer("controller", _controller_index)
        inf.add_indexer("orphan", _orphan_index)
        if res is PODS:
            inf.add_indexer("node", _node_index)
        inf._kybern_indexed = True  # type: ignore[attr-defined]
    return inf


class Base:
    """A controller: informer handlers enqueue keys, workers call `reconcile(key)`."""

    name: ClassVar[str] = ""
    component: ClassVar[str] = ""  # events' source.component; default `<name>-controller`

    def __init__(self, ctx: Context, *, workers: int = 0) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.clock = ctx.clock
        self.options = ctx.options
        self.recorder = ctx.broadcaster.new_recorder(self.component or f"{self.name}-controller")
        self.controller = reconcile.Controller(
            self.name, self.reconcile, workers=workers or ctx.options.workers
        )
        self.queue = self.controller.queue

    async def reconcile(self, key: str) -> reconcile.Result | None:
        raise NotImplementedError

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(informer.key_of(obj))

    def start(self) -> None:
        self.controller.start()

    async def stop(self) -> None:
        await self.controller.stop()


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


# ---- time -----------------------------------------------------------------------------------


def format_time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---- owner references -----------------------------------------------------------------------


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controller_uid(obj: Obj) -> str | None:
    """The uid of `obj`'s controller reference (None without one), read in place: what
    `controller_ref` answers, without copying the reference, for loops over many objects."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid") or ""
    return None


def new_controller_ref(owner: Obj, res: registry.Resource) -> Obj:
    m = owner["metadata"]
    return {
        "apiVersion": res.api_version,
        "kind": res.kind,
        "name": m["name"],
        "uid": m["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def resolve_owner(inf: informer.Informer, kind: str, namespace: str, obj: Obj) -> Obj | None:
    """The owner in `inf` that `obj`'s controller reference names (kind and uid must match)."""
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") != kind:
        return None
    owner = inf.get(ref.get("name", ""), namespace)
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return None
    return owner


def deleting(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


async def claim(
    client: rest.Client,
    res: registry.Resource,
    owner: Obj,
    owner_res: registry.Resource,
    selector: selectors.LabelSelector,
    candidates: Iterable[Obj],
    can_adopt: Callable[[], Awaitable[bool]],
) -> list[Obj]:
    """ControllerRefManager.Claim: the candidates `owner` controls after adopting matching
    orphans and releasing owned objects that no longer match."""
    out: list[Obj] = []
    uid = owner["metadata"]["uid"]
    adopt_ok: bool | None = None
    for obj in candidates:
        labels = obj["metadata"].get("labels") or {}
        ref_uid = controller_uid(obj)
        if ref_uid is not None:
            if ref_uid != uid:
                continue
            if selector.matches(labels):
                out.append(obj)
            elif not deleting(owner) and not deleting(obj):
                await _set_refs(client, res, obj, [r for r in _refs(obj) if r.get("uid") != uid])
            continue
        if deleting(owner) or deleting(obj) or not selector.matches(labels):
            continue
        if adopt_ok is None:
            adopt_ok = await can_adopt()
        if not adopt_ok:
            continue
        adopted = await _set_refs(
            client, res, obj, [*_refs(obj), new_controller_ref(owner, owner_res)]
        )
        if adopted is not None:
            out.append(adopted)
    return out


def claim_candidates(inf: informer.Informer, owner: Obj) -> list[Obj]:
    """What `claim` can keep or adopt for `owner` among the objects of its namespace in `inf`
    (a `shared` informer): those it controls and the orphans. `claim` skips the objects
    another controller controls, so passing these instead of the whole namespace gives the
    same answer without walking the siblings' objects (with ten ReplicaSets of 1,000 pods in a
    namespace, a sync of one looked at all 10,000 pods)."""
    m = owner["metadata"]
    ns = m.get("namespace", "")
    # the uid index spans namespaces: a reference from another namespace is not the owner's
    out = [
        o for o in inf.by_index("controller", m["uid"]) if o["metadata"].get("namespace", "") == ns
    ]
    out += inf.by_index("orphan", ns)
    return out


def _refs(obj: Obj) -> list[Obj]:
    return list(obj["metadata"].get("ownerReferences") or [])


async def _set_refs(
    client: rest.Client, res: registry.Resource, obj: Obj, refs: list[Obj]
) -> Obj | None:
    m = obj["metadata"]
    patch = {"metadata": {"ownerReferences": refs or None, "resourceVersion": m["resourceVersion"]}}
    try:
        return await client.patch(res, m["name"], patch, m.get("namespace", ""))
    except errors.StatusError as e:
        if e.code in (404, 422):
            return None
        raise


def adopt_check(
    client: rest.Client, res: registry.Resource, owner: Obj
) -> Callable[[], Awaitable[bool]]:
    """The fresh read before adopting (RecheckDeletionTimestamp): same uid, not deleting."""

    async def check() -> bool:
        m = owner["metadata"]
        try:
            fresh = await client.get(res, m["name"], m.get("namespace", ""))
        except errors.StatusError as e:
            if e.code == 404:
                return False
            raise
        return fresh["metadata"].get("uid") == m["uid"] and not deleting(fresh)

    return check


# ---- expectations ---------------------------------------------------------------------------


@dataclass
class _Expectation:
    adds: int
    deletes: set[str]
    at: float


class Expectations:
    """ControllerExpectations with UID-tracked deletions: a controller does not act on a key
    while creations or deletions it made are not yet seen in its informers (so a slow watch
    never leads to over-creation); an expectation older than `ttl` is treated as met."""

    TTL = 300.0

    def __init__(self, clock: Clock = time.monotonic, ttl: float = TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self._e: dict[str, _Expectation] = {}

    def expect(self, key: str, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        self._e[key] = _Expectation(adds, set(deletes), self.clock())

    def creation_observed(self, key: str) -> None:
        e = self._e.get(key)
        if e is not None:
            e.adds -= 1

    def lower(self, key: str, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        """Creations/deletions that failed and will not be observed."""
        e = self._e.get(key)
        if e is not None:
            e.adds -= adds
            e.deletes.difference_update(deletes)

    def deletion_observed(self, key: str, uid: str) -> None:
        e = self._e.get(key)
        if e is not None:
            e.deletes.discard(uid)

    def satisfied(self, key: str) -> bool:
        e = self._e.get(key)
        if e is None:
            return True
        if e.adds <= 0 and not e.deletes:
            return True
        return self.clock() - e.at > self.ttl

    def pending(self, key: str) -> tuple[int, int]:
        e = self._e.get(key)
        return (max(e.adds, 0), len(e.deletes)) if e else (0, 0)

    def forget(self, key: str) -> None:
        self._e.pop(key, None)


# ---- pods -----------------------------------------------------------------------------------


def pod_condition(pod: Obj, typ: str) -> Obj | None:
    c = _condition(pod, typ)
    return None if c is None else dict(c)


def _condition(pod: Obj, typ: str) -> Obj | None:
    """The pod's condition of type `typ` in place (not a copy): for read-only checks."""
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == typ:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = _condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    return ready_and_available(pod, min_ready_seconds, now)[1]


def ready_and_available(pod: Obj, min_ready_seconds: int, now: float) -> tuple[bool, bool]:
    """(`is_pod_ready`, `is_pod_available`) from one look at the Ready condition."""
    c = _condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return False, False
    if min_ready_seconds <= 0:
        return True, True
    since = parse_time(c.get("lastTransitionTime"))
    return True, since is not None and since + min_ready_seconds <= now


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


_TERMINAL_PHASES = frozenset(("Succeeded", "Failed"))


def is_pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in _TERMINAL_PHASES


def is_pod_active(pod: Obj) -> bool:
    """FilterActivePods: not terminal and not being deleted."""
    return (pod.get("status") or {}).get("phase") not in _TERMINAL_PHASES and not pod[
        "metadata"
    ].get("deletionTimestamp")


def pod_from_template(
    template: Obj,
    owner: Obj,
    owner_res: registry.Resource,
    *,
    name: str = "",
    generate_name: str = "",
    labels: dict[str, str] | None = None,
) -> Obj:
    tmeta = template.get("metadata") or {}
    meta: Obj = {
        "namespace": owner["metadata"].get("namespace", ""),
        "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
        "ownerReferences": [new_controller_ref(owner, owner_res)],
    }
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or owner["metadata"]["name"] + "-"
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj, rank: int = 0) -> tuple[Any, ...]:
    """ActivePodsWithRanks: sorting ascending by this puts the pods to delete first —
    unassigned before assigned, Pending < Unknown < Running, not ready before ready, more
    co-located siblings (`rank`) first, ready for less time first, more restarts first, newer
    first."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ready = is_pod_ready(pod)
    ready_since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    restarts = max(
        (int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []),
        default=0,
    )
    created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
    return (
        1 if spec.get("nodeName") else 0,
        _PHASE_ORDER.get(pod_phase(pod), 0),
        1 if ready else 0,
        -rank,
        -(ready_since or 0.0) if ready else 0.0,
        -restarts,
        -created,
    )


def rank_for_deletion(pods: list[Obj], related: Iterable[Obj] = ()) -> list[Obj]:
    """Pods in the order they should be deleted; `related` are the pods whose co-location on a
    node raises a pod's rank (the pods of the owner and its siblings)."""
    per_node: dict[str, int] = {}
    for p in related:
        n = (p.get("spec") or {}).get("nodeName")
        if n and is_pod_active(p):
            per_node[n] = per_node.get(n, 0) + 1
    return sorted(
        pods,
        key=lambda p: deletion_rank(p, per_node.get((p.get("spec") or {}).get("nodeName", ""), 0)),
    )


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """Batch sizes 1, 2, 4, ... that add up to `count` (slowStartBatch)."""
    out: list[int] = []
    size = initial
    while count > 0:
        n = min(size, count)
        out.append(n)
        count -= n
        size *= 2
    return out


# ---- conditions -----------------------------------------------------------------------------


def get_condition(status: Obj, typ: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def set_condition(
    status: Obj,
    typ: str,
    value: str,
    reason: str,
    message: str,
    now: str,
    *,
    update_time: bool = False,
    force: bool = False,
) -> None:
    """Sets a condition as Kubernetes does: nothing changes when status and reason are the
    same (unless `force`), and `lastTransitionTime` is kept while the status stays; with
    `update_time` the condition carries `lastUpdateTime` (Deployment conditions)."""
    conds: list[Obj] = list(status.get("conditions") or [])
    old = next((c for c in conds if c.get("type") == typ), None)
    if old is not None and not force and old.get("status") == value and old.get("reason") == reason:
        return
    new: Obj = {"type": typ, "status": value}
    if update_time:
        new["lastUpdateTime"] = now
    same = old is not None and old.get("status") == value and old.get("lastTransitionTime")
    new["lastTransitionTime"] = old["lastTransitionTime"] if same and old else now
    new["reason"] = reason
    new["message"] = message
    status["conditions"] = [c for c in conds if c.get("type") != typ] + [new]


def remove_condition(status: Obj, typ: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != typ]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


async def ignore_not_found(aw: Awaitable[Any]) -> Any:
    try:
        return await aw
    except errors.StatusError as e:
        if e.code != 404:
            raise
        return None
