"""The OpenAPI documents of kube-apiserver, built from the registry and the Kubernetes 1.32
definitions (`kybern.api.definitions`): the `/openapi/v3` index, one `/openapi/v3/<api/v1 |
apis/g/v>` document per served group-version (OpenAPI 3.0: every path and verb of its resources
with `x-kubernetes-action`, `x-kubernetes-group-version-kind` and their query parameters, and in
`components.schemas` the types reachable from its kinds plus the meta types), and `/openapi/v2`
(Swagger 2.0, everything in one document). Custom resources are described by their CRD's
`openAPIV3Schema`, wrapped with apiVersion/kind/metadata. Documents are built lazily in a worker
thread, one group-version at a time, and cached as bytes until that group-version's resources
or CRDs change; they are served with kube-apiserver's caching rules (ETag = SHA-512, a `?hash=`
URL is immutable, a stale hash redirects). `/openapi/v2` is also served as gnostic protobuf
(`openapi_v2proto`, encoded lazily from the JSON, same ETag); v3 protobuf is answered with 406."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from kybern.api import definitions, errors, registry
from kybern.apiserver import openapi_v2proto
from kybern.apiserver import store as storemod

Obj = dict[str, Any]
GV = tuple[str, str]
CRDSource = Callable[[], Iterable[Obj]]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS, _DELETE_OPTIONS, _PATCH = _META + "Status", _META + "DeleteOptions", _META + "Patch"
_WATCH_EVENT, _RESOURCE_LIST = _META + "WatchEvent", _META + "APIResourceList"
_PATCH_TYPES = tuple(
    f"application/{t}"
    for t in (
        "apply-patch+yaml",
        "json-patch+json",
        "merge-patch+json",
        "strategic-merge-patch+json",
    )
)
_BUILTIN_TYPES = ("application/json", "application/vnd.kubernetes.protobuf", "application/yaml")
_CRD_TYPES = ("application/json", "application/yaml")
_WATCH_TYPES = ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
_PROTO = (
    "com.github.proto-openapi.spec.{}@v1.0+protobuf",
    "com.github.proto-openapi.spec.{}.v1.0+protobuf",
)
_BEARER = {"in": "header", "name": "authorization", "type": "apiKey"}
_SECURITY = {"BearerToken": {"description": "Bearer Token authentication", **_BEARER}}
# Query parameters: name -> (type, description).
_PARAMS: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "namespace": ("string", "object name and auth scope, such as for teams and projects"),
    "allowWatchBookmarks": ("boolean", "Ask for watch events of type BOOKMARK."),
    "continue": ("string", "The continue token of a previous paginated list call."),
    "fieldSelector": ("string", "A selector on the objects' fields. Defaults to everything."),
    "labelSelector": ("string", "A selector on the objects' labels. Defaults to everything."),
    "limit": ("integer", "The maximum number of items to return in one list call."),
    "resourceVersion": ("string", "Which resource versions the request may be served from."),
    "resourceVersionMatch": ("string", "How resourceVersion applies to list calls."),
    "sendInitialEvents": ("boolean", "Start a watch with synthetic events for the current state."),
    "timeoutSeconds": ("integer", "Timeout of the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources."),
    "dryRun": ("string", "When present (All), modifications are not persisted."),
    "fieldManager": ("string", "The name of the actor or entity making these changes."),
    "fieldValidation": ("string", "Unknown or duplicate fields: Ignore, Warn or Strict."),
    "force": ("boolean", "Force apply requests: re-acquire fields owned by other managers."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted; 0 deletes now."),
    "ignoreStoreReadErrorWithClusterBreakingPotential": ("boolean", "Delete a corrupt object."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy."),
    "propagationPolicy": ("string", "Garbage collection policy: Orphan, Background or Foreground."),
}
_LIST = tuple(
    "allowWatchBookmarks continue fieldSelector labelSelector limit resourceVersion "
    "resourceVersionMatch sendInitialEvents timeoutSeconds watch".split()
)
_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_DELETE = tuple(
    "dryRun gracePeriodSeconds ignoreStoreReadErrorWithClusterBreakingPotential "
    "orphanDependents propagationPolicy".split()
)
_DELETE_COLLECTION = tuple(sorted({*_LIST, *_DELETE} - {"watch", "allowWatchBookmarks"}))
_CREATED = (("200", "OK"), ("201", "Created"), ("202", "Accepted"))
_DELETED = (("200", "OK"), ("202", "Accepted"))
# verb -> (on the item path?, HTTP method, x-kubernetes-action, operationId and description)
_VERBS = {
    "list": (False, "get", "list", "list{gv}{ns}{k}", "list or watch objects of kind {k}"),
    "create": (False, "post", "post", "create{gv}{ns}{k}", "create a {k}"),
    "deletecollection": (
        False, "delete", "deletecollection", "delete{gv}Collection{ns}{k}", "delete a set of {k}"
    ),
    "get": (True, "get", "get", "read{gv}{ns}{k}", "read the specified {k}"),
    "update": (True, "put", "put", "replace{gv}{ns}{k}", "replace the specified {k}"),
    "patch": (True, "patch", "patch", "patch{gv}{ns}{k}", "partially update the specified {k}"),
    "delete": (True, "delete", "delete", "delete{gv}{ns}{k}", "delete a {k}"),
}  # fmt: skip
# Subresources: name -> (HTTP methods, the group/version/kind they speak, None = the parent's).
_SUBRESOURCES: dict[str, tuple[tuple[str, ...], tuple[str, str, str] | None]] = {
    "status": (("get", "put", "patch"), None),
    "scale": (("get", "put", "patch"), ("autoscaling", "v1", "Scale")),
    "ephemeralcontainers": (("get", "put", "patch"), None),
    "resize": (("get", "put", "patch"), None),
    "approval": (("get", "put", "patch"), None),
    "finalize": (("put",), None),
    "binding": (("post",), ("", "v1", "Binding")),
    "eviction": (("post",), ("policy", "v1", "Eviction")),
    "token": (("post",), ("authentication.k8s.io", "v1", "TokenRequest")),
}
_SUB_VERB = {"get": "read", "put": "replace", "patch": "patch", "post": "create"}


def _camel(group: str) -> str:
    """`rbac.authorization.k8s.io` -> `RbacAuthorization`, as in kube's operation ids."""
    parts = group.removesuffix(".k8s.io").replace("-", ".").split(".") if group else ["core"]
    return "".join(p[:1].upper() + p[1:] for p in parts)


@dataclass(frozen=True)
class Inputs:
    """Everything one group-version's document depends on; equal inputs, equal documents."""

    group: str
    version: str
    resources: tuple[registry.Resource, ...]
    crd_versions: tuple[tuple[str, str], ...] = ()  # (CRD name, resourceVersion)
    crd_schemas: Mapping[str, Obj] = field(default_factory=dict, compare=False, hash=False)

    @property
    def rel(self) -> str:
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    @property
    def tag(self) -> str:
        camel = _camel(self.group)
        return f"{camel[:1].lower()}{camel[1:]}_{self.version}"


@dataclass
class _Op:
    method: str
    action: str
    op_id: str
    description: str
    gvk: Obj
    params: tuple[str, ...] = ()
    body: str = ""  # schema name of the request body
    body_types: tuple[str, ...] = ("*/*",)
    responses: tuple[tuple[str, str], ...] = (("200", "OK"),)
    schema: str = ""  # schema name of the responses
    produces: tuple[str, ...] = _BUILTIN_TYPES


@dataclass
class _Path:
    path: str
    params: list[tuple[str, str, str]]  # (name, in, description; "" = the usual one)
    ops: list[_Op]


def _gvk(group: str, version: str, kind: str) -> Obj:
    return {"group": group, "kind": kind, "version": version}


class Builder:
    """Turns `Inputs` into OpenAPI v3 and v2 documents (plain dicts)."""

    def __init__(self, defs: definitions.Definitions) -> None:
        self.defs = defs

    def _custom(self, r: registry.Resource) -> bool:
        """Described by a CRD schema (or by none: a built-in kind the definitions lack)."""
        return r.crd or self.defs.name_of(r.group, r.version, r.kind) is None

    def _names(self, r: registry.Resource) -> tuple[str, str]:
        if self._custom(r):
            name = definitions.crd_schema_name
            return name(r.group, r.version, r.kind), name(r.group, r.version, r.list_kind)
        kind = self.defs.name_of(r.group, r.version, r.kind) or ""
        return kind, self.defs.name_of(r.group, r.version, r.list_kind) or ""

    def schemas(self, inp: Inputs, v3: bool) -> dict[str, Obj]:
        """The custom resources' schemas, and the definitions reachable from the kinds of
        `inp`, from those schemas and from the meta types the operations use."""
        out: dict[str, Obj] = {}
        roots = {_STATUS, _DELETE_OPTIONS, _WATCH_EVENT, _PATCH, _RESOURCE_LIST}
        for r in inp.resources:
            if self._custom(r):
                gvk = (r.group, r.version, r.kind)
                schema = inp.crd_schemas.get(r.kind)
                out |= definitions.custom_resource_schemas(self.defs, gvk, r.list_kind, schema, v3)
            else:
                roots.update(self._names(r))
            for sub in r.subresources:
                sub_gvk = _SUBRESOURCES.get(sub, ((), None))[1]
                if sub_gvk is not None:
                    roots.add(self.defs.name_of(*sub_gvk) or "")
        definitions.refs(out, roots)
        for n in self.defs.closure(roots):
            out[n] = self.defs.v3_schema(n) if v3 else self.defs.schemas[n]
        return dict(sorted(out.items()))

    def paths(self, inp: Inputs) -> list[_Path]:
        g, v = inp.group, inp.version
        root = f"/apis/{g}/{v}" if g else f"/api/{v}"
        gv = _camel(g) + v[:1].upper() + v[1:]
        discovery = _Op("get", "", f"get{gv}APIResources", "get available resources", {})
        discovery.schema = _RESOURCE_LIST
        out = [_Path(root + "/", [], [discovery])]
        for r in sorted(inp.resources, key=lambda r: r.plural):
            out.extend(self._resource_paths(r, root, gv))
        return [p for p in out if p.ops]

    def _resource_paths(self, r: registry.Resource, root: str, gv: str) -> list[_Path]:
        kind_name, list_name = self._names(r)
        types = _CRD_TYPES if r.crd else _BUILTIN_TYPES
        streams = (*types, *_WATCH_TYPES[: 1 if r.crd else 2])
        patch_types = _PATCH_TYPES[:3] if r.crd else _PATCH_TYPES  # no strategic merge for CRs
        gvk, k, ns = _gvk(r.group, r.version, r.kind), r.kind, "Namespaced" if r.namespaced else ""
        scope = [("namespace", "path", "")] if r.namespaced else []
        named = [("name", "path", f"name of the {k}"), *scope]
        in_ns = f"namespaces/{{namespace}}/{r.plural}" if r.namespaced else r.plural
        base, watch = f"{root}/{in_ns}", f"{root}/watch/{in_ns}"
        writes = {"params": _WRITE, "body": kind_name}
        patches = {"params": (*_WRITE, "force"), "body": _PATCH, "body_types": patch_types}
        deletes = {"body": _DELETE_OPTIONS, "schema": _STATUS}
        extra: dict[str, Obj] = {
            "list": {"params": _LIST, "schema": list_name, "produces": streams},
            "create": {**writes, "responses": _CREATED},
            "deletecollection": {"params": _DELETE_COLLECTION, **deletes},
            "update": {**writes, "responses": _CREATED[:2]},
            "patch": {**patches, "responses": _CREATED[:2]},
            "delete": {"params": _DELETE, "responses": _DELETED, **deletes},
        }

        def op(method: str, action: str, op_id: str, doc: str, **kw: Any) -> _Op:
            kw = {"schema": kind_name, "produces": types, "gvk": gvk, **kw}
            fmt = {"gv": gv, "ns": ns, "k": k}
            return _Op(method, action, op_id.format(**fmt), doc.format(**fmt), **kw)

        collection: list[_Op] = []
        item: list[_Op] = []
        for verb, (on_item, method, action, op_id, doc) in _VERBS.items():
            if verb in r.verbs:
                (item if on_item else collection).append(
                    op(method, action, op_id, doc, **extra.get(verb, {}))
                )
        out = [_Path(base, scope, collection), _Path(base + "/{name}", named, item)]
        if "list" in r.verbs and r.namespaced:
            everywhere = op("get", "list", "list{gv}{k}ForAllNamespaces", _VERBS["list"][4])
            everywhere.params, everywhere.schema, everywhere.produces = _LIST, list_name, streams
            out.append(_Path(f"{root}/{r.plural}", [], [everywhere]))
        if "watch" in r.verbs:
            w: Obj = {"params": _LIST, "schema": _WATCH_EVENT, "produces": streams}
            many, one = "watch changes to a list of {k}", "watch changes to an object of kind {k}"
            out.append(
                _Path(watch, scope, [op("get", "watchlist", "watch{gv}{ns}{k}List", many, **w)])
            )
            out.append(
                _Path(watch + "/{name}", named, [op("get", "watch", "watch{gv}{ns}{k}", one, **w)])
            )
            if r.namespaced:
                all_ns = op("get", "watchlist", "watch{gv}{k}ListForAllNamespaces", many, **w)
                out.append(_Path(f"{root}/watch/{r.plural}", [], [all_ns]))
        for sub in sorted(r.subresources):
            methods, sub_gvk = _SUBRESOURCES.get(sub, ((), None))
            sub_kind, sub_name, sub_ext = k, kind_name, gvk
            if sub_gvk is not None:
                sub_kind, sub_name = sub_gvk[2], self.defs.name_of(*sub_gvk) or ""
                sub_ext = _gvk(*sub_gvk)
            ops = []
            for m in methods if sub_name else ():
                kw: Obj = {"gvk": sub_ext, "schema": sub_name}
                if m == "patch":
                    kw |= {**patches, "responses": _CREATED[:2]}
                elif m != "get":
                    kw |= {"params": _WRITE, "body": sub_name}
                    kw["responses"] = _CREATED if m == "post" else _CREATED[:2]
                op_id = _SUB_VERB[m] + "{gv}{ns}{k}" + sub[:1].upper() + sub[1:]
                ops.append(op(m, m, op_id, f"{_SUB_VERB[m]} {sub} of the specified {{k}}", **kw))
            params = [("name", "path", f"name of the {sub_kind}"), *scope]
            out.append(_Path(f"{base}/{{name}}/{sub}", params, ops))
        return out

    def v3(self, inp: Inputs) -> Obj:
        paths: Obj = {}
        for p in self.paths(inp):
            item: Obj = {m.method: _op_v3(m, inp.tag) for m in p.ops}
            item["parameters"] = [_param(n, w, d, True) for n, w, d in [*p.params, _PRETTY]]
            paths[p.path] = item
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": self.defs.version},
            "paths": paths,
            "components": {"schemas": self.schemas(inp, v3=True), "securitySchemes": _SECURITY},
            "security": [{"BearerToken": []}],
        }

    def v2(self, inputs: Iterable[Inputs]) -> Obj:
        paths: Obj = {}
        schemas: Obj = {}
        for inp in inputs:
            for p in self.paths(inp):
                item: Obj = {m.method: _op_v2(m, inp.tag) for m in p.ops}
                item["parameters"] = [_param(n, w, d, False) for n, w, d in [*p.params, _PRETTY]]
                paths[p.path] = item
            schemas.update(self.schemas(inp, v3=False))
        return {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": self.defs.version},
            "paths": paths,
            "definitions": schemas,
            "securityDefinitions": _SECURITY,
            "security": [{"BearerToken": []}],
        }


_PRETTY = ("pretty", "query", "")


def _param(name: str, where: str, description: str, v3: bool) -> Obj:
    typ, doc = _PARAMS.get(name, ("string", ""))
    p: Obj = {"description": description or doc, "in": where, "name": name}
    if v3:
        p["schema"] = {"type": typ, "uniqueItems": True}
    else:
        p |= {"type": typ, "uniqueItems": True}
    if where == "path":
        p["required"] = True
    return p


def _op_common(m: _Op, tag: str, v3: bool) -> Obj:
    op: Obj = {"description": m.description, "operationId": m.op_id, "tags": [tag]}
    if m.action:
        op["x-kubernetes-action"] = m.action
    if m.gvk:
        op["x-kubernetes-group-version-kind"] = m.gvk
    if m.params:
        op["parameters"] = [_param(n, "query", "", v3) for n in m.params]
    return op


def _op_v3(m: _Op, tag: str) -> Obj:
    op = _op_common(m, tag, True)
    ref = {"$ref": definitions.V3_REF_PREFIX + m.schema}
    content = {t: {"schema": ref} for t in m.produces}
    op["responses"] = {c: {"content": content, "description": d} for c, d in m.responses}
    op["responses"]["401"] = {"description": "Unauthorized"}
    if m.body:
        body = {"schema": {"$ref": definitions.V3_REF_PREFIX + m.body}}
        op["requestBody"] = {"content": dict.fromkeys(m.body_types, body)}
        if m.method != "delete":
            op["requestBody"]["required"] = True
    return op


def _op_v2(m: _Op, tag: str) -> Obj:
    op = _op_common(m, tag, False)
    op |= {"consumes": list(m.body_types), "produces": list(m.produces), "schemes": ["https"]}
    ref = {"$ref": definitions.REF_PREFIX + m.schema}
    op["responses"] = {c: {"description": d, "schema": ref} for c, d in m.responses}
    op["responses"]["401"] = {"description": "Unauthorized"}
    if m.body:
        body = {"in": "body", "name": "body", "schema": {"$ref": definitions.REF_PREFIX + m.body}}
        op["parameters"] = [{**body, "required": m.method != "delete"}, *op.get("parameters", [])]
    return op


def crds_in(st: storemod.Store) -> CRDSource:
    """The CRD objects currently in `st`'s watch cache (none before it started)."""
    crds = next(r for r in registry.BUILTIN if r.kind == "CustomResourceDefinition")

    def current() -> list[Obj]:
        try:
            return [o.obj for o in st.cacher.get(crds.key_prefix).items()]
        except KeyError:
            return []

    return current


def snapshot(reg: registry.Registry, crds: Iterable[Obj]) -> dict[GV, Inputs]:
    """The inputs of every served group-version's document, CRD schemas included."""
    schemas: dict[tuple[str, str, str], tuple[Obj, tuple[str, str]]] = {}
    for crd in crds:
        spec, meta = crd.get("spec") or {}, crd.get("metadata") or {}
        kind = (spec.get("names") or {}).get("kind", "")
        stamp = (meta.get("name", ""), meta.get("resourceVersion", ""))
        for v in spec.get("versions") or []:
            schema = (v.get("schema") or {}).get("openAPIV3Schema") or {}
            schemas[(spec.get("group", ""), v.get("name", ""), kind)] = (schema, stamp)
    by_gv: dict[GV, list[registry.Resource]] = {}
    for r in reg.all():
        by_gv.setdefault((r.group, r.version), []).append(r)
    out: dict[GV, Inputs] = {}
    for (g, v), rs in sorted(by_gv.items()):
        rs.sort(key=lambda r: (r.plural, r.kind))
        found = {r.kind: schemas[(g, v, r.kind)] for r in rs if r.crd and (g, v, r.kind) in schemas}
        stamps = tuple(sorted({stamp for _, stamp in found.values()}))
        crd_schemas = {kind: schema for kind, (schema, _) in found.items()}
        out[(g, v)] = Inputs(g, v, tuple(rs), stamps, crd_schemas)
    return out


@dataclass(frozen=True)
class Document:
    inputs: Any
    body: bytes
    etag: str  # SHA-512 of the body, upper-case hex, as kube-apiserver computes it

    @staticmethod
    def of(inputs: Any, doc: Obj) -> Document:
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        return Document(inputs, body, hashlib.sha512(body).hexdigest().upper())


def negotiate(accept: str, spec: str, protobuf: bool = False) -> str | None:
    """kube-openapi's negotiation: clauses by preference (q, then specificity, then order);
    "json" for `application/json`, `application/*`, `*/*` or no Accept header, "protobuf" for
    a protobuf rendering of `spec` if `protobuf` (served), else that clause is skipped."""
    if not accept.strip():
        return "json"
    proto = {p.format(spec) for p in _PROTO}
    clauses = []
    for i, part in enumerate(accept.split(",")):
        mtype, *params = (x.strip() for x in part.split(";"))
        q = 1.0
        for prm in params:
            if prm.startswith("q="):
                try:
                    q = float(prm[2:])
                except ValueError:
                    q = 0.0
        if mtype and q > 0:
            t, _, sub = mtype.partition("/")
            clauses.append((-q, t == "*", sub == "*", i, t, sub))
    for *_, t, sub in sorted(clauses):
        if t in ("application", "*") and sub in ("json", "*"):
            return "json"
        if protobuf and t == "application" and sub in proto:
            return "protobuf"
    return None


def accepts_json(accept: str, spec: str) -> bool:
    """Whether JSON is served for `accept` when no protobuf rendering is (see `negotiate`)."""
    return negotiate(accept, spec) == "json"


class OpenAPI:
    """Serves `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group-version>`. `crds` returns
    the current CRD objects (their schemas describe the custom resources)."""

    def __init__(self, reg: registry.Registry, crds: CRDSource | None = None) -> None:
        self.registry = reg
        self._crds: CRDSource = crds or (lambda: ())
        self._builder: Builder | None = None
        self._lock = asyncio.Lock()
        self._marker: Any = None
        self._inputs: dict[GV, Inputs] = {}
        self._v3: dict[GV, Document] = {}
        self._index: Document | None = None
        self._v2: Document | None = None
        self._v2_proto: Document | None = None

    def current(self) -> dict[GV, Inputs]:
        """The inputs now; recomputed only when the registry or a CRD changed."""
        crds = list(self._crds())
        stamps = [(c["metadata"].get("name"), c["metadata"].get("resourceVersion")) for c in crds]
        marker = (self.registry.generation, tuple(sorted(stamps)))
        if marker != self._marker:
            self._inputs, self._marker = snapshot(self.registry, crds), marker
        return self._inputs

    async def _build(self, fn: Callable[[Builder], Any]) -> Any:
        """Run `fn` in a worker thread (the definitions are loaded there on first use)."""

        def run() -> Any:
            if self._builder is None:
                self._builder = Builder(definitions.load())
            return fn(self._builder)

        return await asyncio.to_thread(run)

    async def v3_documents(self) -> dict[GV, Document]:
        """The current document of every group-version, building those whose inputs changed."""
        async with self._lock:
            inputs = self.current()
            stale = [
                i for gv, i in inputs.items() if gv not in self._v3 or self._v3[gv].inputs != i
            ]
            if stale:
                built = await self._build(lambda b: [Document.of(i, b.v3(i)) for i in stale])
                self._v3.update({(d.inputs.group, d.inputs.version): d for d in built})
            self._v3 = {gv: d for gv, d in self._v3.items() if gv in inputs}
            return dict(self._v3)

    async def v3_document(self, gv: GV) -> Document | None:
        async with self._lock:
            inp = self.current().get(gv)
            if inp is None:
                return None
            doc = self._v3.get(gv)
            if doc is None or doc.inputs != inp:
                doc = self._v3[gv] = await self._build(lambda b: Document.of(inp, b.v3(inp)))
            return doc

    async def index(self) -> Document:
        docs = await self.v3_documents()
        rel = {d.inputs.rel: f"/openapi/v3/{d.inputs.rel}?hash={d.etag}" for d in docs.values()}
        key = tuple(sorted(rel.values()))
        if self._index is None or self._index.inputs != key:
            paths = {k: {"serverRelativeURL": url} for k, url in rel.items()}
            self._index = Document.of(key, {"paths": paths})
        return self._index

    async def v2(self) -> Document:
        async with self._lock:
            inputs = tuple(self.current().values())
            if self._v2 is None or self._v2.inputs != inputs:
                self._v2 = await self._build(lambda b: Document.of(inputs, b.v2(inputs)))
            return self._v2

    async def v2_protobuf(self) -> Document:
        """`/openapi/v2` as protobuf, encoded (in a worker thread) from the current JSON
        document; its ETag is the JSON one, as kube-openapi's (the responses vary by Accept)."""
        doc = await self.v2()
        async with self._lock:
            if self._v2_proto is None or self._v2_proto.inputs is not doc:
                body = await asyncio.to_thread(openapi_v2proto.from_json, doc.body)
                self._v2_proto = Document(doc, body, doc.etag)
            return self._v2_proto

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        path = request.path.rstrip("/")
        accept = request.headers.get("Accept", "")
        if path in ("/openapi/v2", "/openapi/v3"):
            fmt = negotiate(accept, path[-2:], protobuf=path[-1] == "2")
            if fmt is None:
                raise _not_acceptable()
            if fmt == "protobuf":
                return _respond(request, await self.v2_protobuf(), openapi_v2proto.CONTENT_TYPE)
            return _respond(request, await (self.v2() if path[-1] == "2" else self.index()))
        parts = path.split("/")[3:] if path.startswith("/openapi/v3/") else []
        gv: GV | None = None
        if len(parts) == 2 and parts[0] == "api":
            gv = ("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            gv = (parts[1], parts[2])
        doc = await self.v3_document(gv) if gv is not None else None
        if doc is None:
            raise _NOT_FOUND
        if not accepts_json(accept, "v3"):
            raise _not_acceptable()
        wanted = request.query.get("hash")
        if wanted is not None and wanted != doc.etag:
            raise web.HTTPMovedPermanently(f"/openapi/v3/{doc.inputs.rel}?hash={doc.etag}")
        return _respond(request, doc, immutable=wanted is not None)


_NOT_FOUND = errors.StatusError(404, "NotFound", "the server could not find the requested resource")


def _not_acceptable() -> errors.StatusError:
    return errors.StatusError(406, "NotAcceptable", "only application/json is served here")


def _respond(
    request: web.Request,
    doc: Document,
    content_type: str = "application/json",
    immutable: bool = False,
) -> web.Response:
    etag = f'"{doc.etag}"'
    headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "no-cache, private"}
    if immutable:  # the URL names the content: cacheable forever
        headers["Cache-Control"] = "public, immutable"
        headers["Expires"] = email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)
    match = request.headers.get("If-None-Match", "")
    if match.strip() == "*" or etag in (t.strip() for t in match.split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=doc.body, content_type=content_type, headers=headers)
