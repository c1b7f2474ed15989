"""`componentstatuses` (`kubectl get cs`; core/v1 ComponentStatus, cluster-scoped, get and list
only, deprecated since 1.19): computed on every GET and LIST as kube-apiserver computes it by
probing its components, never stored nor watched. kybern judges its components by what the API
shows of them, so the answer is the same whether they run in the server's process (`kybern
server`, `kybern up`) or in another one (a separate scheduler, as the benchmarks run it):
`scheduler` and `controller-manager` are healthy while an instance holds their leader-election
Lease (`kube-system/kybern-scheduler`, `kube-system/kybern-controller-manager`) and renewed it
within its `leaseDurationSeconds` — a running component leads, a stopped one releases its Lease
or lets it lapse, and one not started (`--disable-scheduler`, `--disable-controllers=*`) has
none; `etcd-0` is the store, whichever backend (k3s names its kine store the same), healthy when
it answers the readiness check of `/readyz` (a read of its current revision within 2 s).
Healthy is kube's `{type: Healthy, status: "True", message: "ok"}`; unhealthy is status "False"
with the reason in `message` (a component, as kube's HTTP probe reports a refused connection)
or in `error` (the store, as kube's etcd probe). Like kube-apiserver: every answer to a GET
(errors too) carries the `Warning: 299 - "v1 ComponentStatus is deprecated in v1.19+"` header,
other methods are a 405 without it, the list takes label and field selectors (`metadata.name`,
`metadata.namespace`; other fields are a 400) and ignores paging, `?watch` is 405, and an
unknown name is a plain 500 `Component not found: NAME` (kube's REST returns an untyped
error)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from kybern import storage
from kybern.api import errors, registry, selectors
from kybern.apiserver import codec, printers, tables
from kybern.apiserver import store as storemod
from kybern.apiserver.handlers_subresources import UnknownError

if TYPE_CHECKING:
    from kybern.apiserver.handlers import ApiHandler

Obj = dict[str, Any]
StoreCheck = Callable[[], Awaitable[str]]  # "" when the store is healthy, else why not

WARNING = "v1 ComponentStatus is deprecated in v1.19+"
_WARNING_HEADER = f'299 - "{WARNING}"'
LEASE_NAMESPACE = "kube-system"
# component -> the Lease its leader holds (the names kybern's scheduler and controller manager use)
LEASES: dict[str, str] = {
    "scheduler": "kybern-scheduler",
    "controller-manager": "kybern-controller-manager",
}
ETCD = "etcd-0"
NAMES = ("scheduler", "controller-manager", ETCD)  # the order of a list
STORE_TIMEOUT = 2.0  # seconds, as the `/readyz` store check waits
_LEASE_RESOURCE = next(r for r in registry.BUILTIN if r.kind == "Lease")
_FIELDS = ("metadata.name", "metadata.namespace")


def healthy() -> Obj:
    return {"type": "Healthy", "status": "True", "message": "ok"}


def lease_condition(lease_name: str, lease: Obj | None, now: float) -> Obj:
    """The Healthy condition of a component whose leader holds Lease `lease_name` (`lease` is
    that object, None when there is none), at `now` (seconds since the epoch)."""
    where = f"{LEASE_NAMESPACE}/{lease_name}"
    spec = (lease or {}).get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if lease is None:
        problem = f"no leader: lease {where} not found"
    elif not holder:
        problem = f"no leader: lease {where} is not held"
    else:
        renewed = printers.parse_time(str(spec.get("renewTime") or ""))
        duration = spec.get("leaseDurationSeconds")
        seconds = duration if isinstance(duration, int | float) else 0
        if renewed and now <= renewed + seconds:
            return healthy()
        problem = (
            f"no leader: lease {where} of {holder} expired "
            f"(renewTime {spec.get('renewTime') or '<none>'}, leaseDurationSeconds {seconds})"
        )
    return {"type": "Healthy", "status": "False", "message": problem}


def store_condition(problem: str) -> Obj:
    """The Healthy condition of the store from its check's answer ("" is healthy)."""
    if not problem:
        return healthy()
    return {"type": "Healthy", "status": "False", "error": problem}


def store_check(backend: storage.Backend) -> StoreCheck:
    """The `/readyz` store check of `backend`: a read of its current revision."""

    async def check() -> str:
        try:
            await asyncio.wait_for(backend.latest_revision(), STORE_TIMEOUT)
        except TimeoutError:
            return "timed out"
        except storage.StorageError as e:
            return str(e) or type(e).__name__
        return ""

    return check


def component_status(name: str, condition: Obj) -> Obj:
    return {
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name, "creationTimestamp": None},
        "conditions": [condition],
    }


async def status_of(st: storemod.Store, check: StoreCheck, name: str) -> Obj:
    """The ComponentStatus `name` now (KeyError when no component has that name)."""
    if name == ETCD:
        return component_status(name, store_condition(await check()))
    lease_name = LEASES[name]
    cached = st.peek(_LEASE_RESOURCE, LEASE_NAMESPACE, lease_name)
    lease = cached.obj if cached is not None else None
    return component_status(name, lease_condition(lease_name, lease, time.time()))


def matcher(label_selector: str, field_selector: str) -> Callable[[Obj], bool]:
    """kube's predicate of a ComponentStatus list: labels (a component has none) and the
    default fields of a cluster-scoped object; any other field is a 400."""
    lsel = selectors.parse_labels(label_selector) if label_selector else None
    fsel = selectors.parse_fields(field_selector) if field_selector else None
    for field, _, _ in fsel.requirements if fsel is not None else ():
        if field not in _FIELDS:
            raise errors.bad_request(
                f'{errors.go_quote(field)} is not a known field selector: only "metadata.name", '
                '"metadata.namespace"'
            )

    def match(obj: Obj) -> bool:
        meta = obj["metadata"]
        if lsel is not None and not lsel.matches(meta.get("labels") or {}):
            return False
        return fsel is None or fsel.matches({"metadata.name": meta["name"]})

    return match


async def serve(
    api: ApiHandler, request: web.Request, res: registry.Resource, name: str
) -> web.Response:
    """GET (`name`) or LIST `componentstatuses`; the deprecation warning on every answer of
    those two routes (other methods have no route: a 405 without it)."""
    if request.method != "GET":
        raise errors.method_not_allowed()
    try:
        resp = await _answer(api, request, res, name)
    except errors.StatusError as e:
        resp = codec.status_response(e)
    resp.headers.add("Warning", _WARNING_HEADER)
    return resp


async def _answer(
    api: ApiHandler, request: web.Request, res: registry.Resource, name: str
) -> web.Response:
    table = tables.wanted(request, res)
    if name:
        if name not in NAMES:
            raise UnknownError(500, "", f"Component not found: {name}")
        items = [await status_of(api.store, api.store_health, name)]
    else:
        if codec.bool_param(request, "watch"):
            raise errors.StatusError(
                405,
                "MethodNotAllowed",
                f'watch is not supported on resources of kind "{res.plural}"',
                kind=res.plural,
            )
        q = request.query
        match = matcher(q.get("labelSelector", ""), q.get("fieldSelector", ""))
        found = await asyncio.gather(*(status_of(api.store, api.store_health, n) for n in NAMES))
        items = [o for o in found if match(o)]
    if table:
        t = tables.table(
            res, items, include_object=tables.include_object(request), list_meta={}, version=table
        )
        return codec.raw_json_response(orjson.dumps(t))
    if name:
        return codec.json_response(items[0])
    return codec.json_response(
        {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": {},
            "items": [{"metadata": o["metadata"], "conditions": o["conditions"]} for o in items],
        }
    )
