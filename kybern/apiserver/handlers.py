"""The REST handlers: one entry point parses `/api/...` and `/apis/...` paths into (resource,
namespace, name, subresource), dispatches the verb to the generic store, and encodes the
answer. Every failure leaves as a `Status` object. Subresources other than the pods' streams
(status, scale, binding, eviction, finalize) are served by `handlers_subresources`; the kinds
answered without storage by `reviews`, `componentstatuses` and (legacy `bindings`)
`handlers_subresources`."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from kybern.api import errors, patch, registry, schema
from kybern.apiserver import admission as admissionmod
from kybern.apiserver import aggregator as aggregatormod
from kybern.apiserver import (
    codec,
    componentstatuses,
    crds,
    discovery,
    openapi,
    proxy,
    reviews,
    strategy,
    tables,
    tokens,
    watch,
)
from kybern.apiserver import handlers_subresources as subresources
from kybern.apiserver import store as storemod

Obj = dict[str, Any]
_NS_SUBRESOURCES = ("status", "finalize")
_RETURN_DELETED = {("", "Pod"), ("", "Service"), ("", "Namespace")}
NOT_FOUND = errors.StatusError(404, "NotFound", "the server could not find the requested resource")


class ApiHandler:
    def __init__(self, st: storemod.Store, reg: registry.Registry) -> None:
        self.store = st
        self.registry = reg
        if reg.lookup("", "v1", "pods") is not None:  # serving core/v1: its computed kinds too
            for r in registry.COMPUTED:
                if reg.lookup(r.group, r.version, r.plural) is None:
                    reg.add(r)
        # the store check of `componentstatuses`, also /readyz's `etcd` check
        self.store_health: componentstatuses.StoreCheck = componentstatuses.store_check(st.backend)
        self.discovery = discovery.Discovery(reg)
        self.openapi = openapi.OpenAPI(reg, openapi.crds_in(st))
        self.issuer: tokens.TokenIssuer  # set by the server once the PKI exists
        self.streams = proxy.PodStreams(st, reg)  # pods/log|exec|attach|portforward
        self.aggregator: aggregatormod.Aggregator | None = None  # set by the server

    async def handle(self, request: web.Request) -> web.StreamResponse:
        negotiated = codec.negotiate(request)
        admissionmod.begin(request)
        user = request.get(codec.USER)
        requester = strategy.REQUEST_USER.set(user)  # a CSR's requester
        try:
            resp = await self._dispatch(request)
            # warnings are noted on the request: nothing but the user noted, nothing to add
            if len(request) > (user is not None):
                crds.add_warnings(request, resp)  # a deprecated CRD version's warning
                return admissionmod.with_warnings(request, resp)
            return resp
        except errors.StatusError as e:
            return admissionmod.with_warnings(request, codec.status_response(e))
        finally:
            codec.reset_negotiated(negotiated)
            strategy.REQUEST_USER.reset(requester)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            raise NOT_FOUND
        if parts[0] == "api":
            if len(parts) < 2:
                return self._discovery(request, "/api")
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis":
            if len(parts) < 3:
                return self._discovery(request, "/" + "/".join(parts))
            group, version, rest = parts[1], parts[2], parts[3:]
            if self.aggregator is not None:
                remote = self.aggregator.route(group, version)
                if remote is not None:  # an extension API server's group version
                    return await self.aggregator.proxy(request, remote)
        elif parts[0] == "openapi":
            return await self.openapi.serve(request)
        else:
            raise NOT_FOUND
        if not rest:
            return self._discovery(request, request.path)
        watching = False
        if rest[0] == "watch":
            watching, rest = True, rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NS_SUBRESOURCES:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise NOT_FOUND
        res = self.registry.lookup(group, version, rest[0])
        if res is None or (namespace and not res.namespaced):
            raise NOT_FOUND
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in res.subresources:
            raise NOT_FOUND
        if res.namespaced and name and not namespace:
            raise NOT_FOUND
        codec.check_acceptable(res.api_version, res.kind)
        if res.virtual:
            return await self._virtual(request, res, namespace, name, watching)
        if res.crd:
            crds.note_warnings(request, self.store.crds.warnings(res))
        method = request.method
        if watching or (method == "GET" and codec.bool_param(request, "watch")):
            if sub or method != "GET":
                raise errors.method_not_allowed()
            if name:
                if not namespace and res.namespaced:
                    raise NOT_FOUND
                return await watch.serve(request, self.store, res, namespace, name_selector=name)
            return await watch.serve(request, self.store, res, namespace)
        if sub == "token" and method == "POST":
            sa = await self.store.get(res, namespace, name)
            body = codec.decode_object(await codec.read_body(request), codec.media_type(request))
            return codec.json_response(reviews.token_request(sa.obj, body, self.issuer), 201)
        if sub:
            return await subresources.serve(self, request, res, namespace, name, sub)
        if not name:
            if method == "GET":
                return await self._list(request, res, namespace)
            if method == "POST":
                if res.namespaced and not namespace:
                    raise errors.method_not_allowed()
                return await self._create(request, res, namespace)
            if method == "DELETE":
                return await self._delete_collection(request, res, namespace)
            raise errors.method_not_allowed()
        if method == "GET":
            as_table = table_wanted(request, res)
            o = await self.store.get(res, namespace, name)
            if as_table:
                return tables.object_response(request, self.store, res, o, as_table)
            return codec.object_response(o)
        if method == "PUT":
            return await self._update(request, res, namespace, name, "")
        if method == "PATCH":
            return await self._patch(request, res, namespace, name, "")
        if method == "DELETE":
            return await self._delete(request, res, namespace, name)
        raise errors.method_not_allowed()

    async def _virtual(
        self, request: web.Request, res: registry.Resource, namespace: str, name: str, watch: bool
    ) -> web.Response:
        """The resources answered, never stored (none has a watch path): component statuses
        (GET), the legacy bindings and the reviews (POST)."""
        if watch:
            raise NOT_FOUND
        if res.kind == "ComponentStatus":
            return await componentstatuses.serve(self, request, res, name)
        if res.kind == "Binding":
            if name or not namespace:
                raise NOT_FOUND  # kube routes POST namespaces/NS/bindings alone
            if request.method != "POST":
                raise errors.method_not_allowed()
            return await subresources.bind_legacy(self, request, res, namespace)
        if request.method != "POST" or name:
            raise errors.method_not_allowed()
        body = codec.decode_object(await codec.read_body(request), codec.media_type(request))
        user: reviews.User = request.get(codec.USER) or ("", [])
        return codec.json_response(reviews.answer(res, body, user, self.issuer), 201)

    def _discovery(self, request: web.Request, path: str) -> web.Response:
        if request.method != "GET":
            raise errors.method_not_allowed()
        version = _aggregated_version(request.headers.get("Accept", ""))
        if version:
            doc = self.discovery.aggregated(path.rstrip("/"), version)
            if doc is not None:
                return web.Response(
                    body=doc,
                    headers={
                        "Content-Type": (
                            f"application/json;g=apidiscovery.k8s.io;v={version};"
                            "as=APIGroupDiscoveryList"
                        )
                    },
                )
        doc = self.discovery.document(path)
        if doc is None:
            raise NOT_FOUND
        return codec.raw_json_response(doc)

    # ---- body handling -----------------------------------------------------------------

    def _normalize(
        self,
        request: web.Request,
        res: registry.Resource,
        obj: Obj,
        warnings: list[str],
        typed: bool = False,
    ) -> Obj:
        """Check apiVersion/kind and drop unknown fields, reporting them per fieldValidation
        (`typed`: decoded from protobuf, which holds only known fields of the right types)."""
        # like kube-apiserver's decoder, missing, null or "" apiVersion/kind default to the
        # endpoint's
        av = obj["apiVersion"] = obj.get("apiVersion") or res.api_version
        kind = obj["kind"] = obj.get("kind") or res.kind
        if av != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({av}) does not match the expected API version "
                f"({res.api_version})"
            )
        if kind != res.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
            )
        mode = codec.field_validation(request)
        if res.crd:  # pruned and defaulted by the CRD's schema
            return self.store.crds.normalize(res, obj, mode, warnings)
        if res.crd or typed or not schema.has_schema(res.group, res.version, res.kind):
            return obj
        out, unknown = schema.normalize(res.group, res.version, res.kind, obj)
        if unknown:
            if mode == "Strict":
                raise schema.strict_error(res.version, res.kind, unknown)
            if mode == "Warn":
                warnings.extend(schema.unknown_field_warnings(unknown))
        return out

    async def _read_object(
        self, request: web.Request, res: registry.Resource, warnings: list[str]
    ) -> Obj:
        body = await codec.read_body(request)
        mtype = codec.media_type(request)
        obj = codec.decode_object(body, mtype)
        return self._normalize(request, res, obj, warnings, typed=mtype == codec.PROTOBUF)

    @staticmethod
    def _reply(data: Obj, status: int, warnings: list[str]) -> web.Response:
        headers = None
        if warnings:
            headers = {
                "Warning": ", ".join(
                    '299 - "%s"' % w.replace("\\", "\\\\").replace('"', '\\"') for w in warnings
                )
            }
        return codec.json_response(data, status, headers)

    def _reply_written(
        self,
        res: registry.Resource,
        namespace: str,
        out: Obj,
        status: int,
        warnings: list[str],
        dry: bool,
    ) -> web.Response:
        """The answer to a write: the watch cache's copy of the object when it holds exactly
        this revision (its encoding is shared with every watcher of the event), else `out`
        encoded. Dry runs, warnings and the kinds stored in another version (custom resources,
        built-in kinds served in several versions) take the plain path."""
        if not dry and not warnings and not res.converted:
            meta = out.get("metadata") or {}
            rv = meta.get("resourceVersion")
            cached = self.store.peek(res, namespace, str(meta.get("name", "")))
            if cached is not None and rv is not None and str(cached.revision) == rv:
                return codec.object_response(cached, status)
        return self._reply(out, status, warnings)

    # ---- verbs -------------------------------------------------------------------------

    async def _list(
        self, request: web.Request, res: registry.Resource, namespace: str
    ) -> web.Response:
        q = request.query
        as_table = table_wanted(request, res)
        limit = codec.int_param(request, "limit") or 0
        opts = storemod.ListOptions(
            label_selector=q.get("labelSelector", ""),
            field_selector=q.get("fieldSelector", ""),
            limit=max(limit, 0),
            continue_token=q.get("continue", ""),
            resource_version=q.get("resourceVersion", ""),
            resource_version_match=q.get("resourceVersionMatch", ""),
        )
        result = await self.store.list(res, namespace, opts)
        if res.converted:  # as the requested version serves the objects
            result.items = await self.store.crds.view_many(res, result.items)
        if as_table:
            return tables.list_response(request, self.store, res, result, as_table)
        pb = codec.protobuf_list(res.api_version, res.list_kind, result)
        if pb is not None:
            return pb
        meta = b'"resourceVersion":"%d"' % result.revision
        if result.continue_token:
            meta += b',"continue":"%s"' % result.continue_token.encode()
        if result.remaining:
            meta += b',"remainingItemCount":%d' % result.remaining
        body = b'{"kind":"%s","apiVersion":"%s","metadata":{%s},"items":[%s]}' % (
            res.list_kind.encode(),
            res.api_version.encode(),
            meta,
            b",".join(o.json for o in result.items),
        )
        return codec.raw_json_response(body)

    async def _create(
        self, request: web.Request, res: registry.Resource, namespace: str
    ) -> web.Response:
        warnings: list[str] = []
        dry = codec.dry_run(request)
        manager = codec.manager_or_user_agent(request)
        obj = await self._read_object(request, res, warnings)
        body_ns = (obj.get("metadata") or {}).get("namespace")
        if res.namespaced and body_ns and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        out = await self.store.create(res, namespace, obj, dry_run=dry, field_manager=manager)
        return self._reply_written(res, namespace, out, 201, warnings, dry)

    async def _update(
        self, request: web.Request, res: registry.Resource, namespace: str, name: str, sub: str
    ) -> web.Response:
        warnings: list[str] = []
        dry = codec.dry_run(request)
        manager = codec.manager_or_user_agent(request)
        obj = await self._read_object(request, res, warnings)
        meta = obj.get("metadata") or {}
        if res.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        out = await self.store.update(
            res, namespace, name, obj, subresource=sub, dry_run=dry, field_manager=manager
        )
        return self._reply_written(res, namespace, out, 200, warnings, dry)

    def _patched(
        self,
        request: web.Request,
        res: registry.Resource,
        body: bytes,
        warnings: list[str],
        owned: bool = False,
    ) -> Any:
        """A function that applies this request's patch to an object (`owned`: the object is
        the caller's private copy, patched in place)."""
        mtype = codec.media_type(request)
        if mtype not in codec.PATCH_TYPES or mtype == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(mtype)
        doc = codec.parse(body, mtype)
        if mtype == "application/json-patch+json":
            if not isinstance(doc, list):
                raise errors.bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
        elif not isinstance(doc, dict):
            raise errors.bad_request("the patch is not a JSON object")
        meta = patch.OBJECT_META_PATCH
        if mtype == "application/strategic-merge-patch+json":
            meta = patch.strategic_patch_meta(
                res.kind, group=res.group, version=res.version, custom=res.crd
            )

        def apply(current: Obj) -> Obj:
            if mtype == "application/json-patch+json":
                out = patch.apply_json_patch(current, doc)
            elif mtype == "application/merge-patch+json":
                out = patch.apply_merge_patch(current, doc, owned=owned)
            else:
                out = patch.apply_strategic_merge_patch(current, doc, meta, owned=owned)
            if not isinstance(out, dict):
                raise errors.bad_request("the patch result is not an object")
            warnings.clear()
            return self._normalize(request, res, out, warnings)

        return apply

    async def _patch(
        self, request: web.Request, res: registry.Resource, namespace: str, name: str, sub: str
    ) -> web.Response:
        warnings: list[str] = []
        dry = codec.dry_run(request)
        if codec.media_type(request) == "application/apply-patch+yaml":
            return await self._apply(request, res, namespace, name, sub)
        manager = codec.manager_or_user_agent(request)
        # guaranteed_update hands `apply` a private copy of the current object
        apply = self._patched(request, res, await codec.read_body(request), warnings, owned=True)
        out = await self.store.guaranteed_update(
            res, namespace, name, apply, subresource=sub, dry_run=dry, field_manager=manager
        )
        return self._reply_written(res, namespace, out, 200, warnings, dry)

    async def _apply(
        self, request: web.Request, res: registry.Resource, namespace: str, name: str, sub: str
    ) -> web.Response:
        """Server-side apply (`application/apply-patch+yaml`): merged by `kybern.api.apply`,
        the object created when it does not exist yet (201), 409 on conflicts unless
        `force=true`."""
        warnings: list[str] = []
        dry, manager = codec.dry_run(request), codec.field_manager(request)
        if not manager:
            required = errors.required("fieldManager", "is required for apply patch")
            raise errors.invalid("PatchOptions", "meta.k8s.io", "", [required])
        force = codec.bool_param(request, "force")
        config = codec.parse(await codec.read_body(request), "application/apply-patch+yaml")
        if not isinstance(config, dict) or not isinstance(config.get("metadata", {}), dict):
            raise errors.bad_request("error decoding YAML: the apply patch is not an object")
        meta = config.get("metadata") or {}
        if meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if res.namespaced and meta.get("namespace", namespace) not in (namespace, ""):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        fm = self.store.field_manager(res)
        codec.field_validation(request)
        if not res.crd:  # kube's typed conversion refuses them whatever fieldValidation says
            unknown = schema.normalize(res.group, res.version, res.kind, config)[1]
            if unknown:
                gv = res.api_version if res.group else "/" + res.api_version
                what = "\n".join(f".{u}: field not declared in schema" for u in unknown)
                raise errors.StatusError(
                    500,
                    "",
                    f"failed to create typed patch object ({namespace}/{name}; {gv}, "
                    f"Kind={res.kind}): " + (what if len(unknown) == 1 else "errors:\n" + what),
                )

        def merged(current: Obj | None) -> Obj:
            out = fm.apply(current, config, manager, force, sub)
            out.setdefault("metadata", {})["name"] = name
            return self._normalize(request, res, out, warnings)

        for _ in range(storemod.MAX_CONFLICT_RETRIES):  # created or deleted meanwhile: again
            await self.store.consistent()
            if self.store.peek(res, namespace, name) is not None or sub:
                try:
                    out = await self.store.guaranteed_update(
                        res,
                        namespace,
                        name,
                        merged,
                        subresource=sub,
                        dry_run=dry,
                        field_manager=None,
                    )
                except errors.StatusError as e:
                    if e.code != 404 or sub or e.kind != res.plural:
                        raise
                    continue
                return self._reply(out, 200, warnings)
            try:
                out = await self.store.create(
                    res, namespace, merged(None), dry_run=dry, field_manager=None
                )
            except errors.StatusError as e:
                if e.reason != "AlreadyExists":
                    raise
                continue
            return self._reply(out, 201, warnings)
        raise errors.conflict(res.plural, res.group, name, "the object keeps changing")

    async def _delete_options(self, request: web.Request) -> storemod.DeleteOptions:
        opts = storemod.DeleteOptions(dry_run=codec.dry_run(request))
        opts.grace_period = codec.int_param(request, "gracePeriodSeconds")
        opts.propagation = request.query.get("propagationPolicy", "")
        body = await codec.read_body(request)
        if body.strip():
            doc = codec.parse(body, codec.media_type(request))
            if not isinstance(doc, dict):
                raise errors.bad_request("the body of a delete must be a DeleteOptions object")
            if doc.get("gracePeriodSeconds") is not None:
                opts.grace_period = int(doc["gracePeriodSeconds"])
            pre = doc.get("preconditions") or {}
            opts.precondition_uid = pre.get("uid") or ""
            opts.precondition_rv = pre.get("resourceVersion") or ""
            opts.propagation = doc.get("propagationPolicy") or opts.propagation
            if doc.get("orphanDependents") is not None and not opts.propagation:
                opts.propagation = "Orphan" if doc["orphanDependents"] else "Background"
            if doc.get("dryRun"):
                opts.dry_run = doc["dryRun"] == ["All"]
        if opts.propagation and opts.propagation not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                "",
                [
                    errors.not_supported(
                        "propagationPolicy",
                        opts.propagation,
                        ["Foreground", "Background", "Orphan"],
                    )
                ],
            )
        return opts

    async def _delete(
        self, request: web.Request, res: registry.Resource, namespace: str, name: str
    ) -> web.Response:
        opts = await self._delete_options(request)
        obj, _ = await self.store.delete(res, namespace, name, opts)
        if (res.group, res.kind) in _RETURN_DELETED:
            return codec.json_response(obj)
        return codec.json_response(
            codec.success_status(
                {
                    "name": name,
                    "group": res.group,
                    "kind": res.plural,
                    "uid": obj["metadata"].get("uid", ""),
                }
                if res.group
                else {"name": name, "kind": res.plural, "uid": obj["metadata"].get("uid", "")}
            )
        )

    async def _delete_collection(
        self, request: web.Request, res: registry.Resource, namespace: str
    ) -> web.Response:
        opts = await self._delete_options(request)
        q = request.query
        listed = await self.store.list(
            res,
            namespace,
            storemod.ListOptions(
                label_selector=q.get("labelSelector", ""), field_selector=q.get("fieldSelector", "")
            ),
        )
        out: list[Obj] = []
        for o in listed.items:
            m = o.obj["metadata"]
            try:
                obj, _ = await self.store.delete(res, m.get("namespace", ""), m["name"], opts)
                out.append(obj)
            except errors.StatusError as e:
                if e.code != 404:
                    raise
        return codec.json_response(
            {
                "kind": res.list_kind,
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(self.store.cacher.revision)},
                "items": out,
            }
        )


def table_wanted(request: web.Request, res: registry.Resource) -> str:
    """`tables.wanted`, with the negotiation of the Accept header remembered (clients send the
    same few headers, and parsing one costs more than the rest of a GET)."""
    version = _table_version(request.headers.get("Accept", ""), res.crd)
    if version is None:  # not acceptable: as `tables.wanted` says it
        return tables.wanted(request, res)
    if version:
        tables.include_object(request)  # a Table request's options are checked every time
    return version


@functools.lru_cache(maxsize=256)
def _table_version(accept: str, crd: bool) -> str | None:
    """`tables.negotiate`, None for its 406."""
    try:
        return tables.negotiate(accept, crd=crd)
    except errors.StatusError:
        return None


def _aggregated_version(accept: str) -> str:
    """The apidiscovery version the client asks for first in `Accept`, or ""."""
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if (
            params.get("g") == "apidiscovery.k8s.io"
            and params.get("as") == "APIGroupDiscoveryList"
            and params.get("v") in ("v2", "v2beta1")
        ):
            return params["v"]
        if part.split(";")[0].strip() in ("application/json", "*/*"):
            return ""
    return ""
