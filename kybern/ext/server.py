"""The extension API server: one group version of `Resource`s served over TLS with its own
certificate, behind the front-proxy authentication of `kybern.ext.auth` (401 for anything that
did not come through the aggregator; an optional `authorize` hook answers 403). It serves the
discovery documents the aggregator and kubectl read (`/apis`, `/apis/<group>`,
`/apis/<group>/<version>`), a minimal OpenAPI v3 (`/openapi/v3` and the group version's
document), get and list with label and field selectors (JSON, or the `meta.k8s.io` Table that
`kubectl get` asks for), watch when the resource has a watch handler, and unauthenticated
`/healthz`, `/livez`, `/readyz`. `extra_routes` adds plain aiohttp handlers (authenticated like
the rest), e.g. for a connect-style subresource that upgrades to WebSocket. Errors are `Status`
objects."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kybern.api import errors, selectors
from kybern.ext import openapi
from kybern.ext.auth import AuthConfig, Authenticator, AuthError, User
from kybern.ext.resources import Context, Obj, Resource
from kybern.ext.tls import ServingCert

log = logging.getLogger("kybern.ext")
Authorizer = Callable[[User, str, Resource, Context], Awaitable[bool]]  # (user, verb, ...)
USER_KEY = web.RequestKey("user", User)  # request[USER_KEY]: who is asking
_PUBLIC = frozenset({"/healthz", "/livez", "/readyz"})
_NOT_FOUND = errors.StatusError(404, "NotFound", "the server could not find the requested resource")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _status(e: errors.StatusError) -> web.Response:
    return _json(e.status(), e.code)


def wants_table(accept: str) -> bool:
    """Does `Accept` ask for a meta.k8s.io Table first (as `kubectl get` does)?"""
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io":
            return True
        if part.split(";")[0].strip() in ("application/json", "*/*"):
            return False
    return False


def human_age(created: str, now: dt.datetime | None = None) -> str:
    """kubectl's short age (`5s`, `3m12s`, `2d`) of an RFC 3339 timestamp; `<unknown>`."""
    try:
        then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    s = max(0, int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds()))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    return f"{h // 24}d"


class Server:
    """An aggregated API server for `group`/`version` (see the module docstring)."""

    def __init__(
        self,
        group: str,
        version: str,
        resources: Sequence[Resource],
        *,
        authorize: Authorizer | None = None,
        accept_client_certs: bool = False,
        extra_routes: Sequence[web.RouteDef] = (),
    ) -> None:
        self.group, self.version = group, version
        self.resources = {r.plural: r for r in resources}
        self.authorize = authorize
        self.accept_client_certs = accept_client_certs
        self.extra_routes = list(extra_routes)  # authenticated too; matched before resources
        self.authenticator: Authenticator | None = None
        self.port = 0
        self.host = ""
        self._runner: web.AppRunner | None = None
        self._openapi = orjson.dumps(openapi.document(group, version, list(resources)))
        self._openapi_hash = hashlib.sha512(self._openapi).hexdigest()[:32].upper()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    # ---- lifecycle --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        for path in _PUBLIC:
            app.router.add_route("GET", path, self._health)
        app.router.add_routes(self.extra_routes)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(
        self, *, auth: AuthConfig, cert: ServingCert, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Serve on host:port (0 picks a free port; `port` has it afterwards)."""
        self.authenticator = Authenticator(auth, accept_client_certs=self.accept_client_certs)
        ctx = await asyncio.to_thread(server_context, cert, auth.trusted_cas())
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ctx, reuse_address=True)
        await site.start()
        server: Any = site._server
        self.host, self.port = host, int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- HTTP -------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        try:
            if request.path not in _PUBLIC:
                request[USER_KEY] = self._authenticate(request)
            return await handler(request)
        except errors.StatusError as e:
            return _status(e)
        except (web.HTTPException, ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("request %s %s failed", request.method, request.path)
            return _status(errors.internal(str(e)))

    def _authenticate(self, request: web.Request) -> User:
        assert self.authenticator is not None
        transport = request.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        try:
            return self.authenticator.authenticate(der, request.headers)
        except AuthError as e:
            raise errors.StatusError(401, "Unauthorized", f"Unauthorized: {e}") from None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method != "GET":
            raise errors.method_not_allowed()
        if parts[:2] == ["openapi", "v3"]:
            return self._openapi_doc(parts[2:])
        if not parts or parts[0] != "apis":
            raise _NOT_FOUND
        if len(parts) == 1:
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group()]})
        if parts[1] != self.group:
            raise _NOT_FOUND
        if len(parts) == 2:
            return _json({"kind": "APIGroup", "apiVersion": "v1", **self._group()})
        if parts[2] != self.version:
            raise _NOT_FOUND
        rest = parts[3:]
        if not rest:
            return _json(self._resource_list())
        watching = rest[0] == "watch"
        if watching:
            rest = rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            raise _NOT_FOUND
        res = self.resources.get(rest[0])
        if res is None or (namespace and not res.namespaced):
            raise _NOT_FOUND
        name = rest[1] if len(rest) > 1 else ""
        if res.namespaced and name and not namespace:
            raise _NOT_FOUND
        ctx = self._context(request, res, namespace)
        watching = watching or request.query.get("watch", "") in ("1", "true", "True")
        verb = "watch" if watching else ("get" if name else "list")
        if self.authorize is not None and not await self.authorize(ctx.user, verb, res, ctx):
            what = f'{res.plural}.{self.group} "{name}"' if name else f"{res.plural}.{self.group}"
            raise errors.StatusError(
                403, "Forbidden", f'{what} is forbidden: User "{ctx.user.name}" cannot {verb}'
            )
        if watching:
            if res.watch is None:
                raise errors.method_not_allowed()
            if name:
                extra = selectors.parse_fields(f"metadata.name={name}")
                ctx.field_selector = selectors.FieldSelector(
                    [*ctx.field_selector.requirements, *extra.requirements]
                )
            return await self._watch(request, res, ctx)
        if name:
            return self._one(request, res, await self._get(res, ctx, name))
        items = [o for o in await res.list(ctx) if ctx.matches(o, res.field_selectors)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        rv = res.resource_version() if res.resource_version is not None else ""
        if wants_table(request.headers.get("Accept", "")):
            return _json(self._table(res, items, rv))
        return _json(
            {
                "kind": f"{res.kind}List",
                "apiVersion": self.group_version,
                "metadata": {"resourceVersion": rv} if rv else {},
                "items": items,
            }
        )

    def _context(self, request: web.Request, res: Resource, namespace: str) -> Context:
        labels = selectors.parse_labels(request.query.get("labelSelector", ""))
        fields = selectors.parse_fields(request.query.get("fieldSelector", ""))
        selectors.validate_fields(fields, res.field_selectors)
        return Context(request, request[USER_KEY], namespace, labels, fields)

    async def _get(self, res: Resource, ctx: Context, name: str) -> Obj:
        if res.get is not None:
            obj = await res.get(ctx, name)
        else:
            obj = next(
                (
                    o
                    for o in await res.list(ctx)
                    if o["metadata"]["name"] == name and ctx.matches(o)
                ),
                None,
            )
        if obj is None:
            raise errors.not_found(res.plural, self.group, name)
        return obj

    def _one(self, request: web.Request, res: Resource, obj: Obj) -> web.Response:
        if wants_table(request.headers.get("Accept", "")):
            return _json(self._table(res, [obj], ""))
        return _json(obj)

    async def _watch(self, request: web.Request, res: Resource, ctx: Context) -> web.StreamResponse:
        """Stream the resource's events as JSON lines until the source ends, timeoutSeconds
        passes or the client goes; an error of the source ends it with an ERROR event."""
        assert res.watch is not None
        timeout = request.query.get("timeoutSeconds", "")
        limit = float(timeout) if timeout.isdigit() and int(timeout) > 0 else None
        events = res.watch(ctx, request.query.get("resourceVersion", ""))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        as_table = wants_table(request.headers.get("Accept", ""))

        async def pump() -> None:
            first = True
            async with asyncio.timeout(limit):
                try:
                    async for kind, obj in events:
                        if not ctx.matches(obj, res.field_selectors):
                            continue
                        if as_table:  # a one-row Table per event; columns in the first only
                            obj = self._table(res, [obj], "", columns=first)
                            first = False
                        await resp.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")
                except errors.StatusError as e:
                    await resp.write(orjson.dumps({"type": "ERROR", "object": e.status()}) + b"\n")

        task = asyncio.ensure_future(pump())
        try:
            while not task.done():
                await asyncio.wait([task], timeout=1.0)
                transport = request.transport
                if not task.done() and (transport is None or transport.is_closing()):
                    break
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            with contextlib.suppress(BaseException):
                await events.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    # ---- documents --------------------------------------------------------------------

    def _group(self) -> Obj:
        gv = {"groupVersion": self.group_version, "version": self.version}
        return {"name": self.group, "versions": [gv], "preferredVersion": gv}

    def _resource_list(self) -> Obj:
        out = []
        for r in self.resources.values():
            entry: Obj = {
                "name": r.plural,
                "singularName": r.singular_name,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            out.append(entry)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": self.group_version,
            "resources": out,
        }

    def _openapi_doc(self, rest: list[str]) -> web.Response:
        rel = f"apis/{self.group}/{self.version}"
        if not rest:
            url = f"/openapi/v3/{rel}?hash={self._openapi_hash}"
            return _json({"paths": {rel: {"serverRelativeURL": url}}})
        if "/".join(rest) != rel:
            raise _NOT_FOUND
        return web.Response(
            body=self._openapi,
            content_type="application/json",
            headers={"ETag": f'"{self._openapi_hash}"'},
        )

    def _table(self, res: Resource, items: list[Obj], rv: str, *, columns: bool = True) -> Obj:
        cols = [
            {"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."},
            *({"name": c.name, "type": c.type, "format": "", "priority": 0,
               "description": c.description} for c in res.columns),
            {"name": "Age", "type": "string", "format": "", "priority": 0,
             "description": "CreationTimestamp of the object."},
        ]  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        rows = []
        for o in items:
            meta = o.get("metadata") or {}
            cells = [meta.get("name", "")]
            cells += [c.value(o) for c in res.columns]
            cells.append(human_age(str(meta.get("creationTimestamp") or ""), now))
            partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
            rows.append({"cells": cells, "object": {**partial, "metadata": meta}})
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv} if rv else {},
            "columnDefinitions": cols if columns else [],
            "rows": rows,
        }


def server_context(cert: ServingCert, client_cas: str) -> ssl.SSLContext:
    """TLS serving context: our certificate; client certificates optional, verified against
    `client_cas` (the front-proxy CA and the cluster's client CA). Blocking: run in a thread."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="kybern-ext-") as d:
        cert_file, key_file = Path(d) / "tls.crt", Path(d) / "tls.key"
        for path, data in ((cert_file, cert.cert_pem), (key_file, cert.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_file, key_file)
    if client_cas:
        ctx.load_verify_locations(cadata=client_cas)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
