"""The REST handlers of subresources other than the pods' streams: `serve` routes
`.../NAME/SUB` for status and approval (GET, PUT, PATCH through the handler's update and patch
verbs), scale (the `autoscaling/v1` Scale view of workloads and of custom resources with a scale
subresource), a pod's binding (also made through the top-level `bindings` resource:
`bind_legacy`) and eviction, and a namespace's finalize. Each write is a `guaranteed_update` (or
a delete) of the parent object, so the result and managedFields are those of the main resource
path in `kybern.apiserver.handlers`; a binding, as in kube, is written straight to the pod's
storage (no pod validation, strategy or managedFields)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from kybern.api import errors, objects, registry, validation
from kybern.apiserver import admission as admissionmod
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


async def bind_legacy(
    api: ApiHandler, request: web.Request, res: registry.Resource, namespace: str
) -> web.Response:
    """`POST namespaces/NS/bindings`, kube's LegacyBindingREST: the binding of the pod the
    Binding's `metadata.name` names, exactly as `pods/NAME/binding` makes it; admission sees a
    create of `bindings` (`res`) with no subresource."""
    pods = api.registry.lookup("", "v1", "pods")
    assert pods is not None
    return await _bind(api, request, pods, namespace, "", legacy=res)


async def _bind(
    api: ApiHandler,
    request: web.Request,
    res: registry.Resource,
    namespace: str,
    name: str,
    legacy: registry.Resource | None = None,
) -> web.Response:
    """As kube's BindingREST.Create: mutating webhooks, the Binding's own checks, validating
    webhooks, then a write straight to the pod's storage (`direct`: no pod validation, strategy
    or managedFields) that sets spec.nodeName, merges the annotations and sets PodScheduled.
    `legacy`: the top-level `bindings` resource the request came by; the pod is then the one
    the Binding names (`name` is not used)."""
    binding = codec.decode_object(await codec.read_body(request), codec.media_type(request))
    dry = codec.dry_run(request)
    bns = (binding.get("metadata") or {}).get("namespace")
    if bns and bns != namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if legacy is not None:  # kube's create handler takes the name from the object
        name = str((binding.get("metadata") or {}).get("name") or "")
    adm = api.store.admitting()
    if adm is not None:
        adm_attrs = admissionmod.attrs(
            legacy or res,
            "CREATE",
            namespace,
            name,
            subresource="" if legacy is not None else "binding",
            dry_run=dry,
            kind=_BINDING_KIND,
        )
        binding = await adm.mutate(adm_attrs, binding, None) or binding
    bmeta = binding.get("metadata") or {}
    if legacy is not None:
        name = str(bmeta.get("name") or "")  # LegacyBindingREST passes the Binding's own
    elif bmeta.get("name") != name:
        raise errors.bad_request("name in URL does not match name in Binding object")
    target = binding.get("target") or {}
    errs = validate_binding(target)
    if errs:  # kube answers its aggregate of field errors as an unknown (non-Status) error
        text = ", ".join(e.text() for e in errs)
        raise UnknownError(500, "", f"[{text}]" if len(errs) > 1 else text)
    if adm is not None:
        await adm.validate(adm_attrs, binding, None)
    if legacy is not None:  # the pod's storage key, as kube's NamespaceKeyFunc checks it
        if not name:
            raise errors.bad_request("Name parameter required.")
        if problems := validation.is_path_segment_name(name):
            raise errors.bad_request(
                f"Name parameter invalid: {errors.go_quote(name)}: {';'.join(problems)}"
            )
    node = target["name"]
    uid, rv = bmeta.get("uid") or "", bmeta.get("resourceVersion") or ""
    annotations = bmeta.get("annotations")
    key = res.key(namespace, name)

    def mutate(pod: Obj) -> Obj:
        meta, spec = pod["metadata"], pod.setdefault("spec", {})
        failed = ""  # the storage's preconditions, then setPodHostAndAnnotations
        if uid and uid != meta.get("uid"):
            failed = f"UID in precondition: {uid}, UID in object meta: {meta.get('uid', '')}"
        elif rv and rv != meta.get("resourceVersion"):
            failed = (
                f"ResourceVersion in precondition: {rv}, "
                f"ResourceVersion in object meta: {meta.get('resourceVersion', '')}"
            )
        if failed:
            raise errors.conflict(
                "pods",
                "",
                name,
                f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, "
                f"AdditionalErrorMsg: Precondition failed: {failed}",
            )
        if meta.get("deletionTimestamp"):
            msg = f"pod {meta['name']} is being deleted, cannot be assigned to a host"
        elif spec.get("nodeName"):
            assigned = errors.go_quote(spec["nodeName"])
            msg = f"pod {meta['name']} is already assigned to node {assigned}"
        elif spec.get("schedulingGates"):
            msg = f"pod {meta['name']} has non-empty .spec.schedulingGates"
        else:
            msg = ""
        if msg:
            raise errors.conflict("pods/binding", "", name, msg)
        spec["nodeName"] = node
        # the spec changed: the generation moves as an update's does (kube >= 1.33 leaves it)
        meta["generation"] = int(meta.get("generation") or 0) + 1
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        set_pod_scheduled(pod.setdefault("status", {}), objects.now_rfc3339())
        return pod

    await api.store.guaranteed_update(
        res, namespace, name, mutate, subresource="binding", dry_run=dry, direct=True
    )
    return codec.json_response(codec.success_status(code=201), 201)


_BINDING_KIND = {"group": "", "version": "v1", "kind": "Binding"}


class UnknownError(errors.StatusError):
    """An error kube's apiserver did not get as a Status: reason Unknown, which is empty and
    so left out."""

    def status(self) -> dict[str, Any]:
        st = super().status()
        del st["reason"]
        return st


def validate_binding(target: Obj) -> list[errors.FieldError]:
    """kube's ValidatePodBinding (v1.32): the target is a Node, by name."""
    errs: list[errors.FieldError] = []
    kind = target.get("kind")
    if kind and kind != "Node":
        errs.append(errors.not_supported("target.kind", kind, ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(errors.required("target.name"))
    return errs


def set_pod_scheduled(status: Obj, now: str) -> None:
    """kube's UpdatePodCondition with PodScheduled=True: the first PodScheduled condition is
    replaced in place (keeping its lastTransitionTime when it was True already), else one is
    appended."""
    cond: Obj = {"type": "PodScheduled", "status": "True", "lastProbeTime": None}
    conds = status.get("conditions") or []
    for i, c in enumerate(conds):
        if isinstance(c, dict) and c.get("type") == "PodScheduled":
            cond["lastTransitionTime"] = (
                c.get("lastTransitionTime") if c.get("status") == "True" else now
            )
            conds[i] = cond
            break
    else:
        cond["lastTransitionTime"] = now
        conds.append(cond)
    status["conditions"] = conds


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
    replicas = (obj.get("spec") or {}).get("replicas", 0)
    return crds.scale_object(
        meta, replicas, {"replicas": status.get("replicas", 0), "selector": selector}
    )
