"""Serving custom resources the CRD way: each CRD version's schema compiled once (per CRD
resourceVersion) with its CEL rules; request bodies pruned and defaulted (`normalize`, with
`fieldValidation` reporting), objects validated (`validate`: schema, then CEL unless the schema
errors block it); versions converted — on write to the storage version, on read to the
requested one (conversion `None` rewrites apiVersion, `Webhook` sends a `ConversionReview` v1
over HTTPS trusting the `caBundle`, to a URL or to a service resolved through its Endpoints) —
and defaults applied on read; the scale subresource's paths; deprecation warnings. The read
side (`view`, `view_many`, `watch_view`) also serves the built-in kinds served in a version
they are not stored in (`Resource.storage_version`), converted by `kybern.api.conversion`
once per object revision; their writes are converted early (`stored_form`, `served`), since
the store validates and compares them in their storage version as kube does its internal one."""

from __future__ import annotations

import base64
import collections
import copy
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from kybern.api import (
    cel,
    conversion,
    crdschema,
    crdschema_apply,
    defaults,
    errors,
    registry,
    schema,
)
from kybern.apiserver import cache as cachemod

Obj = dict[str, Any]
log = logging.getLogger("kybern.apiserver")
MAX_DEPTH = 128  # JSON nesting a custom resource may have
WEBHOOK_TIMEOUT = 10.0
_CRDS = next(r for r in registry.BUILTIN if r.kind == "CustomResourceDefinition")
_ENDPOINTS = next(r for r in registry.BUILTIN if r.kind == "Endpoints")
_SERVICES = next(r for r in registry.BUILTIN if r.kind == "Service")
_VIEW_CACHE = 20000
_INCOMPLETE = (
    "some validation rules were not checked because the object was invalid; correct the "
    "existing errors to complete validation"
)
WARNINGS_KEY = "kybern.crd.warnings"


@dataclass
class Version:
    name: str
    node: crdschema.Node | None
    served: bool
    storage: bool
    deprecated: bool
    warning: str
    scale: Obj | None
    meta_name: crdschema.Node | None = None


@dataclass
class Compiled:
    name: str
    rv: str
    group: str
    kind: str
    versions: dict[str, Version]
    storage: str
    conversion: Obj = field(default_factory=dict)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}"


def compile_crd(crd: Obj) -> Compiled:
    """The serving state of a CRD: per version its compiled schema (CEL rules attached)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions: dict[str, Version] = {}
    storage = ""
    for v in spec.get("versions") or []:
        raw = ((v.get("schema") or {}).get("openAPIV3Schema")) if isinstance(v, dict) else None
        node = crdschema.compile_schema(raw) if isinstance(raw, dict) else None
        if node is not None:
            cel.compile_rules(node, "")
        meta = node.properties.get("metadata") if node is not None and node.properties else None
        name = str(v.get("name", ""))
        versions[name] = Version(
            name,
            node,
            bool(v.get("served", True)),
            bool(v.get("storage")),
            bool(v.get("deprecated")),
            str(v.get("deprecationWarning") or ""),
            (v.get("subresources") or {}).get("scale"),
            meta.child("name") if meta is not None else None,
        )
        if v.get("storage"):
            storage = name
    return Compiled(
        crd["metadata"]["name"],
        crd["metadata"].get("resourceVersion", ""),
        str(spec.get("group", "")),
        str(names.get("kind", "")),
        versions,
        storage,
        spec.get("conversion") or {},
    )


class CRDs:
    """Compiled CRDs of one store (looked up in the watch cache by `plural.group`)."""

    def __init__(self, cacher: cachemod.Cacher) -> None:
        self.cacher = cacher
        self._compiled: dict[str, Compiled] = {}
        self._views: collections.OrderedDict[tuple[str, int, str, str], cachemod.CachedObject] = (
            collections.OrderedDict()
        )
        self._ssl: dict[str, ssl.SSLContext] = {}

    def compiled(self, res: registry.Resource) -> Compiled | None:
        try:
            rc = self.cacher.get(_CRDS.key_prefix)
        except KeyError:
            return None
        o = rc.objects.get(_CRDS.key("", f"{res.plural}.{res.group}"))
        if o is None:
            return None
        return self.of(o.obj)

    def of(self, crd: Obj) -> Compiled:
        name = crd["metadata"]["name"]
        rv = crd["metadata"].get("resourceVersion", "")
        hit = self._compiled.get(name)
        if hit is None or hit.rv != rv:
            hit = self._compiled[name] = compile_crd(crd)
        return hit

    def forget(self, name: str) -> None:
        self._compiled.pop(name, None)

    def _version(self, res: registry.Resource) -> Version | None:
        c = self.compiled(res)
        return c.versions.get(res.version) if c is not None else None

    # ---- writes ------------------------------------------------------------------------

    def normalize(self, res: registry.Resource, obj: Obj, mode: str, warnings: list[str]) -> Obj:
        """Prune unknown fields (Strict: 400; Warn: warnings) and apply defaults."""
        if crdschema_apply.depth(obj, MAX_DEPTH) > MAX_DEPTH:
            raise errors.bad_request(
                f"the object is nested too deeply: more than {MAX_DEPTH} levels"
            )
        v = self._version(res)
        if v is None or v.node is None:
            return obj
        unknown = crdschema_apply.prune(v.node, obj)
        if unknown and mode == "Strict":
            raise schema.strict_error(res.version, res.kind, unknown)
        if unknown and mode == "Warn":
            warnings.extend(schema.unknown_field_warnings(unknown))
        crdschema_apply.apply_defaults(v.node, obj)
        return obj

    def validate(
        self, res: registry.Resource, obj: Obj, old: Obj | None
    ) -> list[errors.FieldError]:
        """Schema errors, then CEL rule errors (transition rules see `old`)."""
        v = self._version(res)
        if v is None or v.node is None:
            return []
        errs = crdschema.validate(v.node, obj)
        name = (obj.get("metadata") or {}).get("name")
        if v.meta_name is not None and isinstance(name, str):
            errs += crdschema.validate(v.meta_name, name, "metadata.name", root=False)
        if v.node.has_rules:
            if crdschema.blocking(errs):
                errs.append(
                    errors.FieldError(
                        "FieldValueInvalid", "<nil>", f'Invalid value: "null": {_INCOMPLETE}'
                    )
                )
            else:
                errs += cel.evaluate(v.node, obj, old)
        return errs

    # ---- versions ----------------------------------------------------------------------

    async def to_storage(self, res: registry.Resource, obj: Obj) -> Obj:
        """The object to write: converted to the storage version."""
        c = self.compiled(res)
        if c is None or not c.storage or c.storage == res.version:
            return obj
        return (await self.convert(c, [obj], c.api_version(c.storage)))[0]

    async def view(self, res: registry.Resource, o: cachemod.CachedObject) -> cachemod.CachedObject:
        """A stored object as version `res.version` serves it (converted, defaulted)."""
        return (await self.view_many(res, [o]))[0]

    async def view_many(
        self, res: registry.Resource, items: list[cachemod.CachedObject]
    ) -> list[cachemod.CachedObject]:
        if not res.crd:
            return [self.served_cached(res, o) for o in items] if res.storage_version else items
        c = self.compiled(res)
        if c is None or not items:
            return items
        v = c.versions.get(res.version)
        node = v.node if v is not None else None
        want = res.api_version
        out = list(items)
        todo: list[int] = []
        for i, o in enumerate(items):
            conv = o.obj.get("apiVersion") != want
            dflt = node is not None and crdschema_apply.lacks_defaults(node, o.obj)
            if not (conv or dflt):
                continue
            hit = self._views.get((o.key, o.revision, want, c.rv))
            if hit is not None:
                self._views.move_to_end((o.key, o.revision, want, c.rv))
                out[i] = hit
            else:
                todo.append(i)
        if not todo:
            return out
        objs = [copy.deepcopy(items[i].obj) for i in todo]
        needs = [j for j, ob in enumerate(objs) if ob.get("apiVersion") != want]
        if needs:
            converted = await self.convert(c, [objs[j] for j in needs], want)
            for j, ob in zip(needs, converted, strict=True):
                objs[j] = ob
        for i, ob in zip(todo, objs, strict=True):
            if node is not None:
                crdschema_apply.apply_defaults(node, ob)
            o = items[i]
            view = cachemod.CachedObject(o.key, ob, o.revision)
            out[i] = view
            self._views[(o.key, o.revision, want, c.rv)] = view
            while len(self._views) > _VIEW_CACHE:
                self._views.popitem(last=False)
        return out

    def watch_view(
        self, res: registry.Resource
    ) -> Callable[[cachemod.CachedObject], Awaitable[cachemod.CachedObject]] | None:
        """A converter for a watch of `res`, or None when none is needed."""
        if not res.converted:
            return None
        return lambda o: self.view(res, o)

    # ---- built-in kinds served in several versions --------------------------------------

    def served_cached(
        self, res: registry.Resource, o: cachemod.CachedObject
    ) -> cachemod.CachedObject:
        """A stored built-in object as `res.version` serves it, converted once per revision."""
        want = res.api_version
        k = (o.key, o.revision, want, "")
        hit = self._views.get(k)
        if hit is not None:
            self._views.move_to_end(k)
            return hit
        if o.obj.get("apiVersion") == want:
            return o
        hit = self._views[k] = cachemod.CachedObject(
            o.key, conversion.convert(o.obj, want), o.revision
        )
        while len(self._views) > _VIEW_CACHE:
            self._views.popitem(last=False)
        return hit

    @staticmethod
    def served(res: registry.Resource, obj: Obj) -> Obj:
        """A built-in object in its storage version as `res.version` serves it (`obj` itself for
        kinds stored as they are served); a new dict, with a metadata of its own."""
        return conversion.convert(obj, res.api_version) if res.storage_version else obj

    @staticmethod
    def stored_form(res: registry.Resource, obj: Obj) -> Obj:
        """A request's object of a built-in kind served in another version than it is stored in,
        defaulted as that version decodes it, then converted and defaulted as stored (what kube
        makes of a request body: its version's defaults, then the internal type)."""
        defaults.apply_defaults(res.kind, obj)
        out = conversion.convert(obj, res.storage_api_version)
        defaults.apply_defaults(res.kind, out)
        return out

    async def convert(self, c: Compiled, objs: list[Obj], desired: str) -> list[Obj]:
        """Convert objects to apiVersion `desired` with the CRD's strategy."""
        if (c.conversion.get("strategy") or "None") != "Webhook":
            out = []
            for o in objs:
                o = dict(o)
                o["apiVersion"] = desired
                out.append(o)
            return out
        return await self._webhook(c, objs, desired)

    async def _webhook(self, c: Compiled, objs: list[Obj], desired: str) -> list[Obj]:
        hook = c.conversion.get("webhook") or {}
        cc = hook.get("clientConfig") or {}
        url, host = self._endpoint(cc)
        review = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": str(uuid.uuid4()), "desiredAPIVersion": desired, "objects": objs},
        }
        what = f"conversion webhook for {c.group}/{c.kind}"
        try:
            ctx = self._ssl_context(str(cc.get("caBundle") or ""))
            timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(
                    url, json=review, ssl=ctx, server_hostname=host or None
                ) as resp:
                    if resp.status != 200:
                        raise ValueError(f"the server responded with status {resp.status}")
                    body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError, ssl.SSLError) as e:
            raise errors.internal(f"{what} failed: {e}") from None
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise errors.internal(f"{what} failed: the response has no `response`")
        result = response.get("result") or {}
        if result.get("status") != "Success":
            raise errors.internal(f"{what} failed: {result.get('message') or 'failed'}")
        converted = response.get("convertedObjects")
        if not isinstance(converted, list) or len(converted) != len(objs):
            raise errors.internal(
                f"{what} failed: expected {len(objs)} converted objects, got "
                f"{len(converted) if isinstance(converted, list) else 0}"
            )
        out = []
        for before, after in zip(objs, converted, strict=True):
            if not isinstance(after, dict) or after.get("apiVersion") != desired:
                raise errors.internal(
                    f"{what} failed: converted object has the wrong apiVersion (want {desired})"
                )
            meta = dict(before.get("metadata") or {})
            new_meta = after.get("metadata") or {}
            for k in ("labels", "annotations"):  # the only metadata a webhook may change
                if k in new_meta:
                    meta[k] = new_meta[k]
            after["metadata"] = meta
            after["kind"] = before.get("kind", after.get("kind"))
            out.append(after)
        return out

    def _endpoint(self, cc: Obj) -> tuple[str, str]:
        """(URL to post to, TLS server name) of a webhook client config; a service is
        resolved through its Endpoints to a ready address (cluster IPs are not routed)."""
        if cc.get("url"):
            return str(cc["url"]), ""
        svc = cc.get("service") or {}
        ns, name = svc.get("namespace", ""), svc.get("name", "")
        port = int(svc.get("port") or 443)
        path = svc.get("path") or "/"
        target: Any = port
        service = self.cacher.get(_SERVICES.key_prefix).objects.get(_SERVICES.key(ns, name))
        port_name = ""
        if service is not None:
            for p in (service.obj.get("spec") or {}).get("ports") or []:
                if p.get("port") == port:
                    target, port_name = p.get("targetPort", port), p.get("name", "")
        eps = self.cacher.get(_ENDPOINTS.key_prefix).objects.get(_ENDPOINTS.key(ns, name))
        for subset in (eps.obj.get("subsets") or []) if eps is not None else []:
            addrs = subset.get("addresses") or []
            for p in subset.get("ports") or []:
                if addrs and (
                    p.get("name", "") == port_name
                    or (isinstance(target, int) and p.get("port") == target)
                ):
                    ip = addrs[0].get("ip")
                    host = f"[{ip}]" if ":" in str(ip) else ip
                    return f"https://{host}:{p.get('port')}{path}", f"{name}.{ns}.svc"
        raise errors.internal(
            f'conversion webhook failed: service "{ns}/{name}" has no ready endpoints'
        )

    def _ssl_context(self, ca_bundle: str) -> ssl.SSLContext:
        ctx = self._ssl.get(ca_bundle)
        if ctx is None:
            if ca_bundle:
                pem = base64.b64decode(ca_bundle).decode()
                ctx = ssl.create_default_context(cadata=pem)
            else:
                ctx = ssl.create_default_context()
            self._ssl[ca_bundle] = ctx
        return ctx

    # ---- subresources and warnings ----------------------------------------------------

    def scale_paths(self, res: registry.Resource) -> Obj | None:
        v = self._version(res)
        return v.scale if v is not None and isinstance(v.scale, dict) else None

    def warnings(self, res: registry.Resource) -> list[str]:
        v = self._version(res)
        if v is None or not v.deprecated:
            return []
        return [v.warning or f"{res.group}/{res.version} {res.kind} is deprecated"]


def to_scale(obj: Obj, paths: Obj) -> Obj:
    """The autoscaling/v1 Scale of a custom resource, read through the CRD's paths."""
    meta = obj["metadata"]
    spec = crdschema_apply.at_path(obj, str(paths.get("specReplicasPath") or ""))
    status = crdschema_apply.at_path(obj, str(paths.get("statusReplicasPath") or ""))
    sel = crdschema_apply.at_path(obj, str(paths.get("labelSelectorPath") or ""))
    out_status: Obj = {"replicas": status if isinstance(status, int) else 0}
    if isinstance(sel, str) and sel:
        out_status["selector"] = sel
    return scale_object(meta, spec if isinstance(spec, int) else 0, out_status)


def scale_object(meta: Obj, replicas: Any, status: Obj) -> Obj:
    """An autoscaling/v1 Scale of the object with metadata `meta` (its identity fields)."""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": replicas},
        "status": status,
    }


def set_replicas(obj: Obj, paths: Obj | None, replicas: int) -> None:
    if paths is None:
        obj.setdefault("spec", {})["replicas"] = replicas
    else:
        crdschema_apply.set_path(
            obj, str(paths.get("specReplicasPath") or ".spec.replicas"), replicas
        )


def note_warnings(request: web.Request, warnings: list[str]) -> None:
    if warnings:
        request[WARNINGS_KEY] = warnings


def add_warnings(request: web.Request, resp: web.StreamResponse) -> None:
    """Add the deprecation warnings noted for this request to a response not yet sent."""
    warnings = request.get(WARNINGS_KEY)
    if warnings and not resp.prepared:
        for w in warnings:
            resp.headers.add("Warning", '299 - "%s"' % w.replace("\\", "\\\\").replace('"', '\\"'))


async def convert_event(
    view: Callable[[cachemod.CachedObject], Awaitable[cachemod.CachedObject]],
    ev: cachemod.WatchEvent,
) -> cachemod.WatchEvent:
    """A watch event with its object as the watched version serves it. A failed conversion
    ends the watch (the client lists again and sees the error)."""
    try:
        obj = await view(ev.obj)
    except errors.StatusError as e:
        log.warning("watch ended: %s", e.message)
        raise ConnectionResetError(e.message) from None
    if obj is ev.obj:
        return ev
    return cachemod.WatchEvent(ev.type, obj, ev.prev, ev.revision)
