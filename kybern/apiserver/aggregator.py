"""API aggregation (`apiregistration.k8s.io/v1` APIService), the routing and proxy half: every
APIService is indexed by group/version; one with `spec.service` owns every request under
`/apis/<group>/<version>`, which is proxied over HTTPS to a ready endpoint of that service
(Service → Endpoints, else EndpointSlices), verified with `caBundle` (server name
`<service>.<namespace>.svc`) unless `insecureSkipTLSVerify`, and authenticated with the
front-proxy client certificate (CN `front-proxy-client`) while the user the API server
authenticated travels in `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-*` (any such
headers from the client are dropped, as is `Authorization`). Request bodies go whole, answers
are streamed (watches, logs); upgrades (exec-like subresources) are relayed byte for byte after
the backend's `101`. An APIService not `Available` answers 503 for its group only. The aggregator
also checks a backend (`check`: resolve, then `GET /apis/<group>/<version>`, whose
APIResourceList is cached for discovery) and tells discovery the groups, priorities and
resources of service-backed APIServices (the `discovery.Remote` protocol). The loop that runs
the checks and writes the `Available` condition lives in `aggregator_loop`, the TLS and relay
details in `aggregator_transport`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from kybern.api import errors, registry
from kybern.apiserver import aggregator_transport as transport
from kybern.apiserver import certs, codec
from kybern.apiserver import store as storemod
from kybern.client import upgrade

log = logging.getLogger("kybern.apiserver.aggregator")
Obj = dict[str, Any]

# kube-apiserver's priorities of its built-in group versions (its local APIServices)
BUILTIN_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (17800, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
}
OTHER_LOCAL_PRIORITY = (1000, 100)  # CRD groups, as kube-apiserver registers them
CHECK_USER, CHECK_GROUPS = "system:kube-aggregator", ("system:masters",)
CONNECT_TIMEOUT = 5.0
CHECK_TIMEOUT = 5.0
USER_HEADER, GROUP_HEADER, EXTRA_PREFIX = "X-Remote-User", "X-Remote-Group", "X-Remote-Extra-"
_DROPPED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "authorization",
        "x-remote-user",
        "x-remote-group",
        "x-remote-uid",
    }
)
_TCHAR = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")


def _resource(plural: str, group: str = "") -> registry.Resource:
    r = next(r for r in registry.BUILTIN if r.plural == plural and r.group == group)
    return r


APISERVICES = _resource("apiservices", "apiregistration.k8s.io")
SERVICES = _resource("services")
ENDPOINTS = _resource("endpoints")
ENDPOINTSLICES = _resource("endpointslices", "discovery.k8s.io")


# ---- pure helpers ---------------------------------------------------------------------------


def escape_extra_key(key: str) -> str:
    """An extra's key as a header-name suffix: bytes outside the token set, and `%`, are
    percent-encoded (kube's headerKeyEscape); the server side unescapes and lowercases."""
    out = []
    for b in key.encode():
        out.append(chr(b) if b in _TCHAR and b != ord("%") else f"%{b:02X}")
    return "".join(out)


def proxy_headers(
    incoming: Iterable[tuple[str, str]],
    user: str,
    groups: Sequence[str],
    extra: Mapping[str, Sequence[str]] | None = None,
    *,
    upgrade: bool = False,
) -> list[tuple[str, str]]:
    """The headers sent to an extension server: the client's, minus hop-by-hop framing,
    `Authorization` and any identity headers (a client must not choose who it is), plus the
    authenticated user in the request-header protocol. An upgrade keeps Connection/Upgrade."""
    out: list[tuple[str, str]] = []
    for k, v in incoming:
        low = k.lower()
        if upgrade and low in ("connection", "upgrade"):
            out.append((k, v))
        elif low not in _DROPPED and not low.startswith(("x-remote-extra-", "impersonate-")):
            out.append((k, v))
    out.append((USER_HEADER, user))
    out.extend((GROUP_HEADER, g) for g in groups)
    for key, values in (extra or {}).items():
        out.extend((EXTRA_PREFIX + escape_extra_key(key), v) for v in values)
    return out


def version_key(version: str) -> tuple[int, int, int, str]:
    """Kubernetes-aware version order as a sort key (GA > beta > alpha, higher first, then
    anything else by name): v2 < v1 < v1beta2 < v1beta1 < v1alpha1 < foo."""
    m = _VERSION_RE.match(version)
    if m is None:
        return (1, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2) or "", int(m.group(3) or 0)
    return (0, {"": 0, "beta": 1, "alpha": 2}[stage], -major * 1000 - minor, "")


@dataclass
class Entry:
    """One APIService as the aggregator uses it."""

    name: str
    group: str
    version: str
    group_priority: int
    version_priority: int
    namespace: str = ""  # of the service; "" for a local APIService
    service: str = ""
    port: int = 443
    ca_bundle: str = ""  # base64 PEM, as in the object
    insecure: bool = False
    available: bool = False
    reason: str = ""
    message: str = ""
    resources: list[Any] | None = None  # the backend's APIResourceList.resources, once fetched

    @property
    def local(self) -> bool:
        return not self.service

    @property
    def server_name(self) -> str:
        return f"{self.service}.{self.namespace}.svc"

    def spec_key(self) -> tuple[Any, ...]:
        return (
            self.group,
            self.version,
            self.group_priority,
            self.version_priority,
            self.namespace,
            self.service,
            self.port,
            self.ca_bundle,
            self.insecure,
        )


def available_condition(obj: Obj) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return dict(c)
    return None


def parse_entry(obj: Obj) -> Entry | None:
    """The Entry of an APIService object, None if it is not usable (name ≠ version.group)."""
    spec = obj.get("spec") or {}
    group, version = str(spec.get("group") or ""), str(spec.get("version") or "")
    name = obj["metadata"]["name"]
    if not version or name != f"{version}.{group}":
        return None
    svc = spec.get("service") or {}
    cond = available_condition(obj) or {}
    return Entry(
        name=name,
        group=group,
        version=version,
        group_priority=int(spec.get("groupPriorityMinimum") or 0),
        version_priority=int(spec.get("versionPriority") or 0),
        namespace=str(svc.get("namespace") or "") if svc else "",
        service=str(svc.get("name") or "") if svc else "",
        port=int(svc.get("port") or 443) if svc else 443,
        ca_bundle=str(spec.get("caBundle") or ""),
        insecure=bool(spec.get("insecureSkipTLSVerify")),
        available=cond.get("status") == "True",
        reason=str(cond.get("reason") or ""),
        message=str(cond.get("message") or ""),
    )


def order_versions(entries: Iterable[Entry]) -> list[Entry]:
    """Versions of one group as discovery lists them: versionPriority, then version order."""
    return sorted(entries, key=lambda e: (-e.version_priority, version_key(e.version)))


class Unresolved(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class CheckResult:
    available: bool
    reason: str
    message: str
    resources: list[Any] | None = None


@dataclass
class _Index:
    routes: dict[tuple[str, str], Entry] = field(default_factory=dict)
    versions: dict[str, list[str]] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)


class Aggregator:
    """APIServices by group/version, the proxy to service-backed ones, and their checks."""

    def __init__(self, st: storemod.Store) -> None:
        self.store = st
        self.entries: dict[str, Entry] = {}
        self.generation = 0
        self.pki: certs.Pki | None = None
        self.on_failure: Callable[[str], None] | None = None  # the loop re-checks soon
        self._index = _Index()
        self._ssl: dict[tuple[str, str, bool], ssl.SSLContext] = {}
        self._session: aiohttp.ClientSession | None = None

    # ---- the index (fed by the availability loop) -------------------------------------

    def observe(self, obj: Obj) -> tuple[Entry | None, bool]:
        """Take an APIService's current state; (entry, its spec changed or is new)."""
        entry = parse_entry(obj)
        name = obj["metadata"]["name"]
        old = self.entries.get(name)
        if entry is None:
            if old is not None:
                self.forget(name)
            return None, False
        changed = old is None or old.spec_key() != entry.spec_key()
        if old is not None and not changed:
            if (old.available, old.reason, old.message) == (
                entry.available,
                entry.reason,
                entry.message,
            ):
                return old, False
            entry.resources = old.resources  # another server's verdict; keep our cache
        self.entries[name] = entry
        self._reindex()
        return entry, changed

    def forget(self, name: str) -> None:
        if self.entries.pop(name, None) is not None:
            self._ssl = {k: v for k, v in self._ssl.items() if k[0] != name}
            self._reindex()

    def set_result(self, entry: Entry, result: CheckResult) -> None:
        """A check's verdict, effective at once (before the status write comes back)."""
        if self.entries.get(entry.name) is not entry:
            return
        resources = result.resources if result.resources is not None else entry.resources
        new = (result.available, result.reason, result.message, resources)
        if new != (entry.available, entry.reason, entry.message, entry.resources):
            entry.available, entry.reason, entry.message, entry.resources = new
            self._reindex()

    def _reindex(self) -> None:
        idx = _Index()
        by_group: dict[str, list[Entry]] = {}
        for e in self.entries.values():
            by_group.setdefault(e.group, []).append(e)
            idx.priorities[e.group] = max(idx.priorities.get(e.group, 0), e.group_priority)
        for g, entries in by_group.items():
            remote = [e for e in order_versions(entries) if not e.local]
            if remote and g:
                idx.versions[g] = [e.version for e in remote]
                idx.routes.update({(g, e.version): e for e in remote})
        self._index = idx
        self.generation += 1

    def route(self, group: str, version: str) -> Entry | None:
        """The service-backed APIService owning /apis/<group>/<version>, if any."""
        return self._index.routes.get((group, version))

    # ---- discovery.Remote -------------------------------------------------------------

    def group_priority(self, group: str) -> int | None:
        prio = self._index.priorities.get(group)
        if prio is not None:
            return prio
        builtin = [p for (g, _), (p, _) in BUILTIN_PRIORITIES.items() if g == group]
        return max(builtin) if builtin else OTHER_LOCAL_PRIORITY[0]

    def remote_versions(self) -> dict[str, list[str]]:
        return self._index.versions

    def remote_resources(self, group: str, version: str) -> tuple[list[Any], bool] | None:
        e = self._index.routes.get((group, version))
        if e is None or e.resources is None:
            return None
        return e.resources, e.available

    # ---- endpoints and TLS ------------------------------------------------------------

    def resolve(self, e: Entry) -> tuple[str, int]:
        """A ready (address, port) of the APIService's service (Unresolved says why not)."""
        where = f'service/{e.service} in "{e.namespace}"'
        svc = self.store.peek(SERVICES, e.namespace, e.service)
        if svc is None:
            raise Unresolved("ServiceNotFound", f"{where} is not present")
        spec = svc.obj.get("spec") or {}
        if spec.get("type") == "ExternalName" and spec.get("externalName"):
            return str(spec["externalName"]), e.port
        sp = next((p for p in spec.get("ports") or [] if p.get("port") == e.port), None)
        if sp is None:
            raise Unresolved("ServicePortError", f"{where} is not listening on port {e.port}")
        port_name, target = str(sp.get("name") or ""), sp.get("targetPort", e.port)
        candidates: list[tuple[str, int]] = []
        eps = self.store.peek(ENDPOINTS, e.namespace, e.service)
        for subset in (eps.obj.get("subsets") or []) if eps is not None else []:
            ports = [p for p in subset.get("ports") or [] if str(p.get("name") or "") == port_name]
            if not ports and isinstance(target, int):
                ports = [p for p in subset.get("ports") or [] if p.get("port") == target]
            for p in ports[:1]:
                for a in subset.get("addresses") or []:
                    candidates.append((str(a.get("ip")), int(p["port"])))
        if eps is None:
            candidates = self._slice_candidates(e, port_name)
            if not candidates and not self._has_slices(e):
                raise Unresolved("EndpointsNotFound", f"cannot find endpoints for {where}")
        if not candidates:
            raise Unresolved(
                "MissingEndpoints",
                f'endpoints for {where} have no addresses with port name "{port_name}"',
            )
        return random.choice(candidates)

    def _slices(self, e: Entry) -> list[Obj]:
        rc = self.store.cacher.get(ENDPOINTSLICES.key_prefix)
        label = "kubernetes.io/service-name"
        return [
            o.obj
            for o in rc.items(e.namespace)
            if (o.obj["metadata"].get("labels") or {}).get(label) == e.service
        ]

    def _has_slices(self, e: Entry) -> bool:
        return bool(self._slices(e))

    def _slice_candidates(self, e: Entry, port_name: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for s in self._slices(e):
            port = next(
                (p.get("port") for p in s.get("ports") or [] if (p.get("name") or "") == port_name),
                None,
            )
            if port is None:
                continue
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready", True) is not False:
                    out.extend((str(a), int(port)) for a in ep.get("addresses") or [])
        return out

    async def client_context(self, e: Entry) -> ssl.SSLContext:
        """TLS towards one APIService's backend: its caBundle (or none to verify, when
        insecure), presenting the front-proxy client certificate."""
        key = (e.name, e.ca_bundle, e.insecure)
        ctx = self._ssl.get(key)
        if ctx is None:
            if self.pki is None:
                raise errors.service_unavailable("the API server has no PKI yet")
            ctx = await asyncio.to_thread(
                transport.client_context, self.pki, e.ca_bundle, e.insecure
            )
            self._ssl[key] = ctx
        return ctx

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the proxy --------------------------------------------------------------------

    def _failed(self, e: Entry) -> None:
        if self.on_failure is not None:
            self.on_failure(e.name)

    async def proxy(self, request: web.Request, e: Entry) -> web.StreamResponse:
        """Serve `request` from the APIService's backend (503 while it is unavailable)."""
        if not e.available:
            detail = f": {e.reason}: {e.message}" if e.reason else ""
            raise errors.service_unavailable(
                f"the server is currently unable to handle the request "
                f"(apiservice {e.name} is not available{detail})"
            )
        try:
            host, port = self.resolve(e)
        except Unresolved as u:
            self._failed(e)
            raise errors.service_unavailable(f"service unavailable: {u.message}") from None
        user, groups = request.get(codec.USER) or ("", [])
        extra: Mapping[str, Sequence[str]] = request.get("user_extra") or {}
        ctx = await self.client_context(e)
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if "upgrade" in request.headers.get("Connection", "").lower():
            headers = proxy_headers(request.headers.items(), user, groups, extra, upgrade=True)
            try:
                up = await transport.dial_upgrade(
                    host, port, ctx, e.server_name, request.method, request.raw_path, headers
                )
            except upgrade.UpgradeError as err:
                self._failed(e)
                raise errors.service_unavailable(
                    f"error trying to reach service: {transport.describe(err)}"
                ) from None
            return await upgrade.pass_through(request, up)
        headers = proxy_headers(request.headers.items(), user, groups, extra)
        body = await request.read() if request.body_exists else None
        url = URL(f"https://{hostport}{request.raw_path}", encoded=True)
        retries = 1 if request.method in _IDEMPOTENT else 0
        while True:
            try:
                resp = await self.session.request(
                    request.method,
                    url,
                    headers=CIMultiDict(headers),
                    data=body,
                    ssl=ctx,
                    server_hostname=None if e.insecure else e.server_name,
                    allow_redirects=False,
                    skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                )
                break
            except aiohttp.ServerDisconnectedError:
                if retries:  # a pooled connection the backend had closed: once more
                    retries -= 1
                    continue
                self._failed(e)
                raise errors.service_unavailable(
                    "error trying to reach service: the server closed the connection"
                ) from None
            except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as err:
                self._failed(e)
                raise errors.service_unavailable(
                    f"error trying to reach service: {transport.describe(err)}"
                ) from None
        async with resp:
            return await transport.respond(request, resp)

    # ---- availability -----------------------------------------------------------------

    async def check(self, e: Entry) -> CheckResult:
        """Can the backend be reached, and does it serve its discovery document?"""
        try:
            host, port = self.resolve(e)
        except Unresolved as u:
            return CheckResult(False, u.reason, u.message)
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        url = f"https://{hostport}/apis/{e.group}/{e.version}"
        headers = proxy_headers([("Accept", "application/json")], CHECK_USER, CHECK_GROUPS)
        try:
            ctx = await self.client_context(e)
            async with self.session.get(
                url,
                headers=CIMultiDict(headers),
                ssl=ctx,
                server_hostname=None if e.insecure else e.server_name,
                timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT),
            ) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as err:
            return CheckResult(
                False,
                "FailedDiscoveryCheck",
                f"failing or missing response from {url}: {transport.describe(err)}",
            )
        if not 200 <= resp.status < 300:
            return CheckResult(
                False,
                "FailedDiscoveryCheck",
                f"failing or missing response from {url}: bad status from {url}: {resp.status}",
            )
        resources: list[Any] | None = None
        with contextlib.suppress(ValueError):
            doc = orjson.loads(body)
            if isinstance(doc, dict) and isinstance(doc.get("resources"), list):
                resources = doc["resources"]
        return CheckResult(True, "Passed", "all checks passed", resources)
