"""The REST handlers of subresources other than the pods' streams: `serve` routes
`.../NAME/SUB` for status and approval (GET, PUT, PATCH through the handler's update and patch
verbs), scale (the `autoscaling/v1` Scale view of workloads and of custom resources with a scale
subresource), a pod's binding and eviction, and a namespace's finalize. Each write is a
`guaranteed_update` (or a delete) of the parent object, so the result and managedFields are those
of the main resource path in `kybern.apiserver.handlers`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from kybern.api import errors, objects, registry
from kybern.apiserver import codec, crds, proxy
from kybern.apiserver import store as storemod

if TYPE_CHECKING:
    from kybern.apiserver.handlers import ApiHandler

Obj = dict[str, Any]


async def serve(
    api: ApiHandler,
    request: web.Request,
    res: registry.Resource,
    namespace: str,
    name: str,
    sub: str,
) -> web.StreamResponse:
    """Answer `api`'s request on subresource `sub` of `res` NAME."""
    method = request.method
    if sub in proxy.SUBRESOURCES and res.kind == "Pod" and not res.group:
        return await api.streams.serve(request, namespace, name, sub)
    if sub in ("status", "approval"):  # approval: certificatesigningrequests
        if method == "GET":
            return codec.object_response(await api.store.get(res, namespace, name))
        if method == "PUT":
            return await api._update(request, res, namespace, name, sub)
        if method == "PATCH":
            return await api._patch(request, res, namespace, name, sub)
    elif sub == "scale":
        return await _scale(api, request, res, namespace, name)
    elif sub == "binding" and method == "POST":
        return await _bind(api, request, res, namespace, name)
    elif sub == "eviction" and method == "POST":
        return await _evict(api, request, res, namespace, name)
    elif sub == "finalize" and method == "PUT":
        return await _finalize(api, request, res, name)
    raise errors.method_not_allowed()


async def _scale(
    api: ApiHandler, request: web.Request, res: registry.Resource, namespace: str, name: str
) -> web.Response:
    method = request.method
    paths = api.store.crds.scale_paths(res) if res.crd else None
    scale_of = (lambda o: crds.to_scale(o, paths)) if paths is not None else to_scale
    if method == "GET":
        return codec.json_response(scale_of((await api.store.get(res, namespace, name)).obj))
    if method not in ("PUT", "PATCH"):
        raise errors.method_not_allowed()
    dry = codec.dry_run(request)
    body = await codec.read_body(request)
    if method == "PUT":
        scale = codec.decode_object(body, codec.media_type(request))

        def desired(_: Obj) -> Obj:
            return scale
    else:
        desired = api._patched(request, _SCALE_RES, body, [])

    def mutate(current: Obj) -> Obj:
        s = desired(scale_of(current))
        replicas = (s.get("spec") or {}).get("replicas", 0)  # omitted when scaled to 0
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                name,
                [
                    errors.invalid_value(
                        "spec.replicas", replicas, "must be greater than or equal to 0"
                    )
                ],
            )
        crds.set_replicas(current, paths, replicas)
        rv = (s.get("metadata") or {}).get("resourceVersion")
        if rv:
            current["metadata"]["resourceVersion"] = rv
        return current

    manager = codec.manager_or_user_agent(request)
    out = await api.store.guaranteed_update(
        res, namespace, name, mutate, dry_run=dry, field_manager=manager, managed_as="scale"
    )
    return codec.json_response(scale_of(out))


async def _bind(
    api: ApiHandler, request: web.Request, res: registry.Resource, namespace: str, name: str
) -> web.Response:
    binding = codec.decode_object(await codec.read_body(request), codec.media_type(request))
    node = (binding.get("target") or {}).get("name")
    if not node:
        raise errors.invalid("Binding", "", name, [errors.required("target.name")])

    adm = api.store.admitting()
    if adm is not None:
        kind = {"group": "", "version": "v1", "kind": "Binding"}
        dry = codec.dry_run(request)
        binding = await adm.admit_create(res, namespace, name, "binding", binding, kind, dry)
    bmeta = binding.get("metadata") or {}

    def mutate(pod: Obj) -> Obj:
        spec = pod.setdefault("spec", {})
        meta = pod["metadata"]
        if bmeta.get("uid") and bmeta["uid"] != meta.get("uid"):
            raise errors.conflict(
                "pods",
                "",
                name,
                f"Precondition failed: UID in precondition: {bmeta['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if meta.get("deletionTimestamp"):
            raise errors.conflict("pods", "", name, "pod is being deleted")
        if spec.get("nodeName"):
            raise errors.conflict(
                "pods", "", name, f'pod {name} is already assigned to node "{spec["nodeName"]}"'
            )
        spec["nodeName"] = node
        if bmeta.get("annotations"):
            meta["annotations"] = {**(meta.get("annotations") or {}), **bmeta["annotations"]}
        status = pod.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        status["conditions"] = [
            *conds,
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": objects.now_rfc3339(),
            },
        ]
        return pod

    await api.store.guaranteed_update(  # the binding's fields are nobody's (as in kube)
        res,
        namespace,
        name,
        mutate,
        subresource="binding",
        dry_run=codec.dry_run(request),
        field_manager=None,
    )
    return codec.json_response(codec.success_status(code=201), 201)


async def _evict(
    api: ApiHandler, request: web.Request, res: registry.Resource, namespace: str, name: str
) -> web.Response:
    ev = codec.decode_object(await codec.read_body(request), codec.media_type(request))
    opts = storemod.DeleteOptions(dry_run=codec.dry_run(request))
    adm = api.store.admitting()
    if adm is not None:
        kind = {"group": "policy", "version": "v1", "kind": "Eviction"}
        ev = await adm.admit_create(res, namespace, name, "eviction", ev, kind, opts.dry_run)
    dopts = ev.get("deleteOptions") or {}
    if dopts.get("gracePeriodSeconds") is not None:
        opts.grace_period = int(dopts["gracePeriodSeconds"])
    await api.store.delete(res, namespace, name, opts)
    return codec.json_response(codec.success_status(code=201), 201)


async def _finalize(
    api: ApiHandler, request: web.Request, res: registry.Resource, name: str
) -> web.Response:
    ns = codec.decode_object(await codec.read_body(request), codec.media_type(request))
    finalizers = (ns.get("spec") or {}).get("finalizers") or []

    def mutate(current: Obj) -> Obj:
        current.setdefault("spec", {})["finalizers"] = list(finalizers)
        if not finalizers:
            current["spec"].pop("finalizers")
        return current

    manager = codec.manager_or_user_agent(request)
    out = await api.store.guaranteed_update(
        res, "", name, mutate, field_manager=manager, managed_as="finalize"
    )
    return codec.json_response(out)


_SCALE_RES = registry.Resource(
    group="autoscaling",
    version="v1",
    kind="Scale",
    plural="scale",
    namespaced=True,
)


def to_scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    status = obj.get("status") or {}
    sel = (obj.get("spec") or {}).get("selector") or {}
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    selector = status.get("selector") or ",".join(
        f"{k}={v}" for k, v in sorted(labels.items()) if isinstance(v, str)
    )
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector},
    }
