"""Admission webhooks, as kube-apiserver calls them: the store asks `Admission` to run the
mutating webhooks of a write (CREATE, UPDATE, DELETE, and CREATE of `pods/binding` and
`pods/eviction` from the handlers) after defaulting and before validation, and the validating
webhooks after its own validation and before storage. Each matching webhook gets an
`admission.k8s.io/v1` AdmissionReview over HTTPS (a URL, or a Service resolved to a ready
endpoint as the aggregator does, verified with `caBundle`); JSONPatch answers are applied,
denials become the webhook's Status, warnings become `Warning` headers, and call failures
follow `failurePolicy`. Configurations are compiled once and rebuilt when the watch cache shows
a change of either configuration resource, so a write with no webhook costs one comparison.
Which hooks match a request is `admission_match`'s business."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import logging
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from kybern.api import defaults, errors, patch, registry, schema
from kybern.apiserver import admission_match as match
from kybern.apiserver import aggregator_transport as transport
from kybern.apiserver import codec, strategy

if TYPE_CHECKING:
    from kybern.apiserver import store as storemod

log = logging.getLogger("kybern.apiserver.admission")
Obj = dict[str, Any]
Resolver = Callable[[str, str, int], tuple[str, int]]  # (namespace, service, port) -> ip, port
WARNINGS_KEY = "kybern.admission.warnings"
REVIEW_VERSION = "admission.k8s.io/v1"
# internal writes (no HTTP request): kube's loopback identity
LOOPBACK_USER: Obj = {"username": "system:apiserver", "groups": ["system:masters"]}
# subresources whose object is not the resource's own kind: admitted by the handlers
_OWN_KIND_ONLY = frozenset({"scale", "binding", "eviction", "token"})
_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar(
    "kybern_admission_request", default=None
)


def _resource(group: str, kind: str) -> registry.Resource:
    return next(r for r in registry.BUILTIN if r.group == group and r.kind == kind)


MUTATING = _resource(match.GROUP, match.MUTATING)
VALIDATING = _resource(match.GROUP, match.VALIDATING)
NAMESPACES = _resource("", "Namespace")


# ---- the HTTP request a write belongs to --------------------------------------------------------


def begin(request: web.Request) -> None:
    """Note the request being served (its user, options and warnings list)."""
    _REQUEST.set(request)


def with_warnings(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Add the webhooks' warnings of this request to a response not yet sent."""
    warnings = request.get(WARNINGS_KEY)
    if warnings and not resp.prepared:
        for w in warnings:
            resp.headers.add("Warning", '299 - "%s"' % w.replace("\\", "\\\\").replace('"', '\\"'))
    return resp


def _user(request: web.Request | None) -> Obj:
    if request is None:
        return dict(LOOPBACK_USER)
    name, groups = request.get(codec.USER) or ("", [])
    out: Obj = {"username": name, "groups": list(groups)}
    extra: Mapping[str, Sequence[str]] = request.get("user_extra") or {}
    if extra:
        out["extra"] = {k: list(v) for k, v in extra.items()}
    return out


def _options(kind: str, request: web.Request | None, dry_run: bool, extra: Obj | None) -> Obj:
    out: Obj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if dry_run:
        out["dryRun"] = ["All"]
    if request is not None and kind != "DeleteOptions":
        for q in ("fieldManager", "fieldValidation"):
            if request.query.get(q):
                out[q] = request.query[q]
    out.update(extra or {})
    return out


# ---- one admission request ----------------------------------------------------------------------


@dataclass
class Attrs:
    """What the webhooks are told about the request."""

    res: registry.Resource
    operation: str
    namespace: str
    name: str
    subresource: str
    dry_run: bool
    options: Obj
    kind: Obj  # {group, version, kind} of the object sent
    request: web.Request | None
    key: match.Request

    def review(self, uid: str, obj: Obj | None, old: Obj | None) -> Obj:
        res = self.res
        resource = {"group": res.group, "version": res.version, "resource": res.plural}
        req: Obj = {
            "uid": uid,
            "kind": self.kind,
            "resource": resource,
            "requestKind": self.kind,
            "requestResource": resource,
            "operation": self.operation,
            "userInfo": _user(self.request),
            "object": obj,
            "oldObject": old,
            "dryRun": self.dry_run,
            "options": self.options,
        }
        if self.subresource:
            req["subResource"] = req["requestSubResource"] = self.subresource
        if self.name:
            req["name"] = self.name
        if self.namespace:
            req["namespace"] = self.namespace
        return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "request": req}


def attrs(
    res: registry.Resource,
    operation: str,
    namespace: str,
    name: str,
    *,
    subresource: str = "",
    dry_run: bool = False,
    options: Obj | None = None,
    kind: Obj | None = None,
) -> Attrs:
    request = _REQUEST.get()
    opt_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(
        operation, "DeleteOptions"
    )
    if res.group == "" and res.kind == "Namespace" and not subresource:
        namespace = name  # kube's request attributes name the namespace itself
    return Attrs(
        res=res,
        operation=operation,
        namespace=namespace,
        name=name,
        subresource=subresource,
        dry_run=dry_run,
        options=_options(opt_kind, request, dry_run, options),
        kind=kind or {"group": res.group, "version": res.version, "kind": res.kind},
        request=request,
        key=match.Request(operation, res.group, res.version, res.plural, subresource, namespace),
    )


class CallError(Exception):
    """A webhook could not be called or answered nonsense: `failurePolicy` decides."""


# ---- the dispatcher -----------------------------------------------------------------------------


class Admission:
    def __init__(self, st: storemod.Store, resolve: Resolver | None = None) -> None:
        self.store = st
        self.resolve = resolve
        self.mutating: list[match.Hook] = []
        self.validating: list[match.Hook] = []
        self._stamp: tuple[int, ...] | None = None
        self._caches: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}

    # -- configurations

    def enabled(self) -> bool:
        """Whether any webhook is configured (the compiled list is rebuilt when the watch cache
        shows a change of either configuration resource)."""
        caches = self._caches
        if caches is None:
            try:
                caches = self._caches = (
                    self.store.cacher.get(MUTATING.key_prefix),
                    self.store.cacher.get(VALIDATING.key_prefix),
                )
            except KeyError:
                return False
        m, v = caches
        stamp = (
            m.events[-1].revision if m.events else m.oldest,
            len(m.objects),
            v.events[-1].revision if v.events else v.oldest,
            len(v.objects),
        )
        if stamp != self._stamp:
            self._rebuild(m, v)
            self._stamp = stamp
        return bool(self.mutating or self.validating)

    def _rebuild(self, m: Any, v: Any) -> None:
        def hooks(rc: Any) -> list[match.Hook]:
            out: list[match.Hook] = []
            for o in sorted(rc.objects.values(), key=lambda o: o.obj["metadata"]["name"]):
                out.extend(h for h in match.parse_configuration(o.obj) if h.name)
            return out

        self.mutating, self.validating = hooks(m), hooks(v)

    # -- entry points (the store and the handlers)

    async def mutate(
        self, a: Attrs, obj: Obj | None, old: Obj | None, prepare_sub: str = ""
    ) -> Obj | None:
        """Run the matching mutating webhooks on `obj` (None for DELETE); returns the object
        to go on with (a new dict when a webhook changed it)."""
        if a.res.group == match.GROUP or not self.mutating:
            return obj
        if a.subresource in _OWN_KIND_ONLY and a.kind["kind"] == a.res.kind:
            return obj
        ran: list[match.Hook] = []
        again: set[int] = set()
        for h in self.mutating:
            out, changed = await self._mutate_one(h, a, obj, old, prepare_sub)
            if out is None and changed is None:
                continue  # not matched
            if changed:
                obj = out
                again.update(id(p) for p in ran if p.reinvocation == "IfNeeded")
            ran.append(h)
        if again:  # reinvocationPolicy IfNeeded: once more, after later webhooks changed it
            for h in ran:
                if id(h) in again:
                    out, changed = await self._mutate_one(h, a, obj, old, prepare_sub)
                    if changed:
                        obj = out
        return obj

    async def validate(self, a: Attrs, obj: Obj | None, old: Obj | None) -> None:
        """Run the matching validating webhooks (in parallel); the first denial, in order,
        is raised."""
        if a.res.group == match.GROUP or not self.validating:
            return
        if a.subresource in _OWN_KIND_ONLY and a.kind["kind"] == a.res.kind:
            return
        picked = [h for h in self.validating if self._matches(h, a, obj, old)]
        if not picked:
            return
        results = await asyncio.gather(
            *(self._validate_one(h, a, obj, old) for h in picked), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def admit_delete(
        self, res: registry.Resource, namespace: str, name: str, current: Obj, opts: Any
    ) -> None:
        """DELETE: mutating webhooks may only deny, then the validating ones."""
        extra: Obj = {}
        if opts.grace_period is not None:
            extra["gracePeriodSeconds"] = opts.grace_period
        if opts.propagation:
            extra["propagationPolicy"] = opts.propagation
        pre = {
            k: v
            for k, v in (("uid", opts.precondition_uid), ("resourceVersion", opts.precondition_rv))
            if v
        }
        if pre:
            extra["preconditions"] = pre
        a = attrs(res, "DELETE", namespace, name, dry_run=opts.dry_run, options=extra)
        await self.mutate(a, None, current)
        await self.validate(a, None, current)

    async def admit_create(
        self,
        res: registry.Resource,
        namespace: str,
        name: str,
        subresource: str,
        obj: Obj,
        kind: Obj,
        dry_run: bool,
    ) -> Obj:
        """CREATE of a subresource whose object is another kind (pods/binding, pods/eviction)."""
        a = attrs(
            res, "CREATE", namespace, name, subresource=subresource, dry_run=dry_run, kind=kind
        )
        obj = await self.mutate(a, obj, None) or obj
        await self.validate(a, obj, None)
        return obj

    # -- matching

    def _namespace_labels(self, a: Attrs, obj: Obj | None, old: Obj | None) -> Obj:
        if a.res.group == "" and a.res.kind == "Namespace":
            src = obj if obj is not None else old
            return ((src or {}).get("metadata") or {}).get("labels") or {}
        ns = self.store.peek(NAMESPACES, "", a.namespace)
        return (ns.obj["metadata"].get("labels") or {}) if ns is not None else {}

    def _matches(self, h: match.Hook, a: Attrs, obj: Obj | None, old: Obj | None) -> bool:
        if not match.matches_rules(h, a.key):
            return False
        if h.namespace_selector is not None and not match.matches_namespace(
            h, a.key, self._namespace_labels(a, obj, old)
        ):
            return False
        return match.matches_object(h, obj, old)

    def _admissible(self, h: match.Hook, a: Attrs, review: Obj) -> bool:
        """matchConditions, then the dry-run rule; False: skip this webhook."""
        try:
            if not match.evaluate_conditions(h, review["request"]):
                return False
        except ValueError as e:
            if h.fail_open:
                log.warning("webhook %s: matchConditions failed, failing open: %s", h.name, e)
                return False
            raise errors.internal(f'failed calling webhook "{h.name}": {e}') from None
        if a.dry_run and not h.dry_run_safe:
            raise errors.bad_request(f'admission webhook "{h.name}" does not support dry run')
        return True

    # -- one webhook

    async def _mutate_one(
        self, h: match.Hook, a: Attrs, obj: Obj | None, old: Obj | None, prepare_sub: str
    ) -> tuple[Obj | None, bool | None]:
        if not self._matches(h, a, obj, old):
            return None, None
        review = a.review(str(uuid.uuid4()), obj, old)
        if not self._admissible(h, a, review):
            return None, None
        response = await self._guarded_call(h, a, review)
        if response is None:
            return obj, False
        raw = response.get("patch")
        if not raw:
            return obj, False
        try:
            ops = orjson.loads(base64.b64decode(raw))
        except (binascii.Error, ValueError, orjson.JSONDecodeError) as e:
            raise errors.internal(
                f"admission webhook {h.name!r} returned an invalid patch: {e}"
            ) from None
        if not ops:
            return obj, False
        if obj is None:
            raise errors.internal(
                f'admission webhook "{h.name}" attempted to modify the object, which is not '
                "supported for this operation"
            )
        try:
            out = patch.apply_json_patch(obj, ops)
        except errors.StatusError as e:
            detail = e.causes[0].message if e.causes else e.message
            raise errors.internal(detail) from None
        out = self._normalize(a, out, obj, old, prepare_sub)
        return out, out != obj

    async def _validate_one(
        self, h: match.Hook, a: Attrs, obj: Obj | None, old: Obj | None
    ) -> None:
        review = a.review(str(uuid.uuid4()), obj, old)
        if self._admissible(h, a, review):
            await self._guarded_call(h, a, review)

    def _normalize(self, a: Attrs, out: Obj, before: Obj, old: Obj | None, prepare_sub: str) -> Obj:
        """A patched object decoded again as the API would: unknown fields dropped, defaults
        applied, and the fields the server owns put back."""
        res = a.res
        if a.kind["kind"] != res.kind or not isinstance(out.get("metadata"), dict):
            return out
        if res.crd:
            out = self.store.crds.normalize(res, out, "Ignore", [])
        else:
            if schema.has_schema(res.group, res.version, res.kind):
                out = schema.normalize(res.group, res.version, res.kind, out)[0]
            if a.subresource != "status":
                defaults.apply_defaults(res.kind, out)
        if old is not None:
            return strategy.prepare_update(res, out, old, prepare_sub)
        meta, bmeta = out["metadata"], before.get("metadata") or {}
        for f in ("uid", "creationTimestamp", "generation", "namespace", "resourceVersion"):
            if f in bmeta:
                meta[f] = bmeta[f]
            else:
                meta.pop(f, None)
        return out

    async def _guarded_call(self, h: match.Hook, a: Attrs, review: Obj) -> Obj | None:
        """The webhook's response if it allowed the request (None: skipped after a failure
        with failurePolicy Ignore); a denial is raised as the webhook's Status."""
        try:
            response = await self.call(h, review)
        except CallError as e:
            if h.fail_open:
                log.warning("failed calling webhook %s, failing open: %s", h.name, e)
                return None
            raise errors.internal(f'failed calling webhook "{h.name}": {e}') from None
        warnings = response.get("warnings")
        if isinstance(warnings, list) and a.request is not None:
            a.request.setdefault(WARNINGS_KEY, []).extend(str(w) for w in warnings if w)
        if response.get("allowed") is not True:
            raise denied(h.name, response.get("status"))
        return response

    # -- the HTTP call

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        ctx = self._ssl.get(ca_bundle)
        if ctx is None:
            try:
                ctx = ssl.create_default_context(cadata=ca_bundle or None)
            except (ssl.SSLError, ValueError) as e:
                raise CallError(f"failed to call webhook: invalid caBundle: {e}") from None
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl[ca_bundle] = ctx
        return ctx

    def _target(self, h: match.Hook) -> tuple[URL, str, str]:
        """(URL dialled, URL as kube names it in errors, TLS server name or "")."""
        q = f"?timeout={h.timeout}s"
        if h.url:
            shown = h.url + q
            return URL(shown), shown, ""
        assert h.service is not None
        ns, name, path, port = h.service
        host = f"{name}.{ns}.svc"
        shown = f"https://{host}:{port}{path or ''}{q}"
        if self.resolve is None:
            raise CallError(f'failed to call webhook: Post "{shown}": no service resolver')
        try:
            ip, eport = self.resolve(ns, name, port)
        except Exception as e:
            msg = getattr(e, "message", "") or str(e)
            raise CallError(f'failed to call webhook: Post "{shown}": {msg}') from None
        hostport = f"[{ip}]:{eport}" if ":" in ip else f"{ip}:{eport}"
        return URL(f"https://{hostport}{path or '/'}{q}"), shown, host

    async def call(self, h: match.Hook, review: Obj) -> Obj:
        """POST the review to the webhook; its checked `response` (CallError otherwise)."""
        if "v1" not in h.review_versions:
            raise CallError(
                "webhook does not accept known AdmissionReview versions (kybern sends v1)"
            )
        url, shown, server_name = self._target(h)
        ctx = self._context(h.ca_bundle)
        try:
            async with self.session.post(
                url,
                data=orjson.dumps(review),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                ssl=ctx,
                server_hostname=server_name or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=h.timeout),
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise CallError(
                f'failed to call webhook: Post "{shown}": context deadline exceeded'
            ) from None
        except aiohttp.ClientConnectorCertificateError as e:
            detail = getattr(e.certificate_error, "verify_message", "") or str(e.certificate_error)
            raise CallError(
                f'failed to call webhook: Post "{shown}": tls: failed to verify certificate: '
                f"x509: {detail}"
            ) from None
        except (aiohttp.ClientError, OSError, ssl.SSLError) as e:
            raise CallError(
                f'failed to call webhook: Post "{shown}": {transport.describe(e)}'
            ) from None
        if not 200 <= status < 300:
            try:
                st = orjson.loads(body)
                msg = str(st["message"]) if isinstance(st, dict) and st.get("message") else ""
            except (orjson.JSONDecodeError, ValueError):
                msg = ""
            if not msg:
                msg = (
                    f'an error on the server ("{body.decode(errors="replace").strip()[:1024]}") '
                    "has prevented the request from succeeding"
                )
            raise CallError(f"failed to call webhook: {msg}")
        return check_response(h, review, body)


def check_response(h: match.Hook, review: Obj, body: bytes) -> Obj:
    """The `response` of a webhook's answer, checked as kube-apiserver checks it."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise CallError(f"received invalid webhook response: {e}") from None
    if not isinstance(doc, dict):
        raise CallError("received invalid webhook response: not a JSON object")
    if doc.get("apiVersion") != REVIEW_VERSION or doc.get("kind") != "AdmissionReview":
        raise CallError(
            "received invalid webhook response: expected webhook response of "
            f"admission.k8s.io/v1, Kind=AdmissionReview, got {doc.get('apiVersion', '')}, "
            f"Kind={doc.get('kind', '')}"
        )
    response = doc.get("response")
    if not isinstance(response, dict):
        raise CallError("received invalid webhook response: webhook response was absent")
    want = review["request"]["uid"]
    if response.get("uid") != want:
        raise CallError(
            f'received invalid webhook response: expected response.uid="{want}", '
            f'got "{response.get("uid", "")}"'
        )
    patch_type = response.get("patchType") or ""
    if not h.mutating and (response.get("patch") or patch_type):
        raise CallError(
            "received invalid webhook response: validating webhooks may not return patches "
            "or patchType"
        )
    if response.get("patch") and not patch_type:
        raise CallError(
            "received invalid webhook response: webhook returned response.patch but not "
            "response.patchType"
        )
    if response.get("patch") and patch_type != "JSONPatch":
        raise CallError(
            "received invalid webhook response: webhook returned invalid response.patchType "
            f'of "{patch_type}"'
        )
    return response


def denied(name: str, status: Any) -> errors.StatusError:
    """kube's ToStatusErr: the webhook's Status, code at least 400, message prefixed."""
    st = status if isinstance(status, dict) else {}
    code = st.get("code")
    code = code if isinstance(code, int) and code >= 400 else 400
    what = f'admission webhook "{name}" denied the request'
    if st.get("message"):
        message = f"{what}: {st['message']}"
    elif st.get("reason"):
        message = f"{what}: {st['reason']}"
    else:
        message = f"{what} without explanation"
    err = errors.from_status({**st, "code": code}, code)
    err.reason = str(st.get("reason") or "")
    err.message = message
    err.args = (message,)
    return err
