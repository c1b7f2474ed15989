"""The API server process: TLS and authentication in front of the REST handlers, health and
version endpoints, Prometheus metrics at `/metrics` (counted around the REST handlers), bootstrap
objects (the four system namespaces and the `kubernetes` service), the in-server loops, and an
orderly start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import platform
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from aiohttp import HttpVersion11, StreamReader, hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage

import kybern
from kybern import storage
from kybern.api import errors, registry
from kybern.apiserver import (
    admission,
    aggregator,
    aggregator_loop,
    certs,
    codec,
    controllers,
    handlers,
    metrics,
    reviews,
    strategy,
    tokens,
)
from kybern.apiserver import cache as cachemod
from kybern.apiserver import store as storemod

log = logging.getLogger("kybern.apiserver")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_PUBLIC = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})
METRICS_PATH = metrics.PATH


GC_YOUNG_THRESHOLD = 100000  # allocations between young collections (CPython's default: 700)


@dataclass
class Config:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    port: int = 6443
    datastore_endpoint: str = ""
    service_cidr: str = "10.96.0.0/12"
    advertise_hosts: tuple[str, ...] = ()
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    kubelet_certificate_authority: str = ""  # verify agents' serving certs against it ("": no)


class APIServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data_dir = cfg.data_dir
        url = cfg.datastore_endpoint or f"sqlite://{(cfg.data_dir / 'state.db').resolve()}"
        self.backend = storage.open_backend(
            url,
            etcd_cafile=cfg.etcd_cafile,
            etcd_certfile=cfg.etcd_certfile,
            etcd_keyfile=cfg.etcd_keyfile,
        )
        self.registry = registry.Registry((*registry.BUILTIN, *reviews.VIRTUAL))
        self.cacher = cachemod.Cacher(self.backend)
        self.hooks = strategy.BuiltinHooks(self.cacher, cfg.service_cidr)
        self.store = storemod.Store(self.backend, self.cacher, self.registry, self.hooks)
        self.api = handlers.ApiHandler(self.store, self.registry)
        self.aggregator = aggregator.Aggregator(self.store)
        self.api.aggregator = self.aggregator
        self.api.discovery.remote = self.aggregator
        self.admission = admission.Admission(self.store, self._resolve_service)
        self.store.admission = self.admission
        self.metrics = metrics.ApiMetrics(
            self.registry,
            lambda: metrics.object_counts(self.registry, self._object_count),
        )
        self.loops: list[controllers.Loop] = [
            controllers.CRDLoop(self.store),
            aggregator_loop.AvailabilityLoop(self.store, self.aggregator),
        ]
        self.pki: certs.Pki | None = None
        self.port = 0
        self.ready = False
        self._runner: web.ServerRunner | None = None
        # GET only (other methods on these paths go to the API handler, unauthenticated)
        self._public: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "/healthz": self._health,
            "/livez": self._health,
            "/readyz": self._ready,
            "/version": self._version,
            "/version/": self._version,  # go-restful serves both
        }

    @property
    def url(self) -> str:
        host = self.cfg.bind_address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"https://{host}:{self.port}"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        hosts = [self.cfg.bind_address, *self.cfg.advertise_hosts, socket.gethostname()]
        self.pki = await asyncio.to_thread(certs.ensure_pki, self.data_dir / "pki", hosts=hosts)
        await asyncio.to_thread(certs.ensure_front_proxy, self.pki)
        self.aggregator.pki = self.pki
        await self.backend.start()
        self.api.issuer = self.issuer = tokens.TokenIssuer(self.pki.sa_key)
        self.api.streams.pki = self.pki  # its client certificate for calling node agents
        self.api.streams.kubelet_ca = self.cfg.kubelet_certificate_authority
        await self.cacher.start(
            sorted({r.key_prefix for r in self.registry.all() if not r.virtual})
        )
        tune_gc()  # after the initial load, which then stays out of the collector's way
        await self._bootstrap()
        for loop in self.loops:
            loop.start()
        # aiohttp's low-level server: one handler for every request, no router, no
        # middleware chain (see `_handle`); the access log is off
        handler: Any = self._handle  # it gets the `web.Request`s of `_request_factory`
        server = web.Server(
            handler,
            request_factory=_request_factory(asyncio.get_running_loop()),
            access_log=None,
        )
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        ssl_ctx = self.pki.server_ssl_context()
        site = web.TCPSite(
            self._runner,
            self.cfg.bind_address,
            self.cfg.port,
            ssl_context=ssl_ctx,
            backlog=1024,
            reuse_address=True,
        )
        await site.start()
        self.port = self.cfg.port or _bound_port(site)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for loop in self.loops:
            await loop.stop()
        self.cacher.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.aggregator.close()
        await self.admission.close()
        await self.backend.close()

    async def _bootstrap(self) -> None:
        ns = controllers.NAMESPACES
        for name in SYSTEM_NAMESPACES:
            if self.store.peek(ns, "", name) is None:
                with contextlib.suppress(errors.StatusError):
                    await self.store.create(
                        ns,
                        "",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                    )
        await strategy.bootstrap(self.store)  # the system PriorityClasses
        svc = self.registry.lookup("", "v1", "services")
        assert svc is not None
        if self.store.peek(svc, "default", "kubernetes") is None:
            with contextlib.suppress(errors.StatusError):
                await self.store.create(
                    svc,
                    "default",
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {
                            "name": "kubernetes",
                            "labels": {"component": "apiserver", "provider": "kubernetes"},
                        },
                        "spec": {
                            "clusterIP": self.hooks.ips.first(),
                            "type": "ClusterIP",
                            "ports": [
                                {
                                    "name": "https",
                                    "port": 443,
                                    "protocol": "TCP",
                                    "targetPort": self.cfg.port or 6443,
                                }
                            ],
                        },
                    },
                )
        assert self.pki is not None
        await aggregator_loop.bootstrap(self.store, self.registry, self.pki)

    # ---- HTTP --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: what an aiohttp Application with the routes `GET /healthz`,
        `/livez`, `/readyz`, `/version`, `/version/`, `/metrics` and `* /{tail:.*}` (the API)
        and one authenticating middleware did, without resolving routes, building match infos
        and wrapping handlers per request. As the router did: `Expect` is answered first, the
        public routes match the path as it was sent (`%2F` not decoded) and GET only, and a
        path no route matched is aiohttp's own 404. As the middleware did: the public paths
        are exempt from authentication whatever the method, and errors become Status
        objects. The API's requests (and the health checks) are counted in `self.metrics`."""
        if request.headers.get(hdrs.EXPECT):
            await _expect(request)
        track: metrics.Track | None = None
        try:
            path = request.path
            if path in _PUBLIC:
                public = self._public.get(request.rel_url.path_safe)
                if public is not None and request.method == "GET":
                    if path not in metrics.HEALTH_PATHS:
                        return await public(request)
                    start = perf_counter()
                    health = await public(request)
                    self.metrics.health_check(path, health.status, start)
                    return health
            else:
                user = self.authenticate(request)
                if user is None:
                    raise errors.unauthorized()
                request[codec.USER] = user
            safe = request.rel_url.path_safe
            if safe[:1] != "/" or "\n" in safe:  # the API's route is `/{tail:.*}`
                raise web.HTTPNotFound()
            if path == METRICS_PATH:  # authenticated; any user may read it (no authorizer)
                return await self.metrics.serve(request)
            track = self.metrics.begin(request, path)
            resp = await self.api.handle(request)
        except errors.StatusError as e:
            resp = codec.status_response(e)
        except storage.UnavailableError as e:  # no quorum, or a write whose outcome is unknown
            resp = codec.status_response(errors.service_unavailable(f"storage: {e}"))
        except web.HTTPRequestEntityTooLarge:
            resp = codec.status_response(errors.too_large())
        except (web.HTTPException, ConnectionResetError, asyncio.CancelledError):
            if track is not None:
                self.metrics.abandon(track)
            raise
        except Exception as e:
            log.exception("request %s %s failed", request.method, request.path)
            resp = codec.status_response(errors.internal(str(e)))
        if track is not None:
            self.metrics.end(track, resp.status)
        return resp

    def authenticate(self, request: web.Request) -> tuple[str, list[str]] | None:
        """(user, groups) from a verified client certificate or the static bearer token."""
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if cert:
            return cert_user(cert)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and self.pki is not None:
            token = auth[7:].strip()
            if hmac.compare_digest(token.encode(), self.pki.token.encode()):
                return ("kybern-admin", ["system:masters", "system:authenticated"])
            if token.count(".") == 2:
                return self.issuer.verify(token)
        return None

    def _resolve_service(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """A ready endpoint of a webhook's service, found as the aggregator finds one."""
        entry = aggregator.Entry(name, "", "", 0, 0, namespace=namespace, service=name, port=port)
        try:
            return self.aggregator.resolve(entry)
        except aggregator.Unresolved as u:
            raise ValueError(u.message) from None

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=500, text="[-]informer-sync failed\nreadyz check failed")
        problem = await self.api.store_health()  # the `etcd` check, shared with componentstatuses
        if problem:
            log.warning("readyz: store check failed: %s", problem)
        etcd = "[-]etcd failed: reason withheld" if problem else "[+]etcd ok"
        status = 500 if problem else 200
        if "verbose" in request.query:
            verdict = "readyz check failed" if problem else "readyz check passed"
            text = f"[+]ping ok\n[+]log ok\n{etcd}\n[+]informer-sync ok\n{verdict}\n"
            return web.Response(status=status, text=text)
        return web.Response(status=status, text="readyz check failed" if problem else "ok")

    async def _version(self, request: web.Request) -> web.Response:
        return codec.json_response(version_info())

    def _object_count(self, prefix: str) -> int | None:
        """The objects of one key prefix in the watch cache (None: not cached)."""
        try:
            return len(self.cacher.get(prefix).objects)
        except KeyError:
            return None


# a connection's certificate (the dict its TLS transport keeps from the handshake, held here so
# that its id stays its own) -> the user it names; emptied when it grows past CERT_USERS_MAX
_cert_users: dict[int, tuple[dict[str, Any], tuple[str, list[str]] | None]] = {}
CERT_USERS_MAX = 4096


def cert_user(cert: dict[str, Any]) -> tuple[str, list[str]] | None:
    """`certs.user_from_cert(cert)`, read once per certificate dict (each request of a
    connection asks with the same one); the groups are a new list each time."""
    hit = _cert_users.get(id(cert))
    if hit is not None and hit[0] is cert:
        found = hit[1]
    else:
        found = certs.user_from_cert(cert)
        if len(_cert_users) >= CERT_USERS_MAX:
            _cert_users.clear()
        _cert_users[id(cert)] = (cert, found)
    return None if found is None else (found[0], list(found[1]))


def _request_factory(
    loop: asyncio.AbstractEventLoop,
) -> Callable[
    [RawRequestMessage, StreamReader, web.RequestHandler, AbstractStreamWriter, asyncio.Task[None]],
    web.Request,
]:
    """What makes each `web.Request`, as an Application does (with no match info: nothing
    reads one), allowing bodies up to the API's limit."""

    def make(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.Request:
        return web.Request(
            message, payload, protocol, writer, task, loop, client_max_size=codec.MAX_BODY + 1024
        )

    return make


async def _expect(request: web.Request) -> None:
    """aiohttp's default `Expect` handling (`100 Continue`, else 417), done by its router
    before any handler or middleware."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version == HttpVersion11:
        if expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the main body has not started yet
        else:
            raise web.HTTPExpectationFailed(text="Unknown Expect: %s" % expect)
    await request.writer.drain()


def _bound_port(site: web.TCPSite) -> int:
    server: Any = site._server
    port: int = server.sockets[0].getsockname()[1]
    return port


def version_info() -> dict[str, Any]:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": f"v1.32.0+kybern-{kybern.__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": f"linux/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}",
    }


def tune_gc() -> None:
    """The cache holds every object as many small dicts, and each request allocates thousands
    more: with CPython's default thresholds (a young collection every 700 allocations) the
    cyclic collector took 10-20 % of the loop's CPU under load, and at 20000 still ~3 % (each
    young collection walks everything that survived since the last). Collect the young
    generation less often (pauses of tens of milliseconds under load), and move what exists
    after the initial load (modules, the cache as listed) out of the collector's way
    (`gc.freeze`). Only raises thresholds; idempotent enough."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 and gen0 < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, max(gen1, 20), gen2)
    gc.freeze()
