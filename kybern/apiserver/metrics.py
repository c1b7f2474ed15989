"""The API server's Prometheus metrics at `/metrics`, named and labelled as kube-apiserver 1.32
names them: `apiserver_request_total`, `apiserver_request_duration_seconds`,
`apiserver_longrunning_requests`, `apiserver_current_inflight_requests`,
`apiserver_storage_objects` and the process collector's `process_*`. The request path only
counts: a path maps (through a bounded cache) to an interned `Shape` (group, version, resource,
subresource, item or collection, namespaced), a (shape, method, flags) to a `Variant`, and a
request's end adds to its variant's plain list for its code. Verbs, scopes and label values
are worked out at scrape time from a copy of the counters, which `prometheus_client` encodes in
a thread, in the format `choose_encoder` picks from Accept (text 0.0.4, or OpenMetrics)."""

from __future__ import annotations

import asyncio
import gzip
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter

from aiohttp import web
from prometheus_client import ProcessCollector
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kybern.api import registry as registrymod

PATH = "/metrics"
COMPONENT = "apiserver"
# kube's apiserver_request_duration_seconds buckets (endpoints/metrics), and their `le` as Go
# prints them
BUCKETS = tuple(
    float(b)
    for b in "0.005 0.025 0.05 0.1 0.2 0.4 0.6 0.8 1 1.25 1.5 2 3 4 5 6 8 10 15 20 30 45 60".split()
)
_LE = (*(format(b, "g") for b in BUCKETS), "+Inf")
FIRST_BUCKET = BUCKETS[0]
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})  # counted as kube counts them
PATH_CACHE_MAX = 8192  # paths remembered; the cache is emptied when it grows past this

# request flags, from the query and headers
WATCH = 1  # GET with a true `watch` parameter
APPLY = 2  # PATCH with Content-Type application/apply-patch+yaml
DRY_ALL = 4  # dryRun=All
DRY_INVALID = 8  # a dryRun other than All
APPLY_TYPE = "application/apply-patch+yaml"
_CONNECT = frozenset({"log", "exec", "portforward", "attach", "proxy"})
_NS_SUBRESOURCES = frozenset({"status", "finalize"})
_VERBS = frozenset(
    "APPLY CONNECT CREATE DELETE DELETECOLLECTION GET LIST PATCH POST PROXY PUT UPDATE WATCH "
    "WATCHLIST".split()
)
_READ, _MUTATE, _LONG = 0, 1, 2

_H_TOTAL = (
    "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, "
    "version, resource, scope, component, and HTTP response code."
)
_H_DURATION = (
    "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, "
    "version, resource, subresource, scope and component."
)
_H_LONG = (
    "[STABLE] Gauge of all active long-running apiserver requests broken out by verb, group, "
    "version, resource, scope and component. Not all requests are tracked this way."
)
_H_INFLIGHT = (
    "[STABLE] Maximal number of currently used inflight request limit of this apiserver per "
    "request kind in last second."
)
_H_OBJECTS = (
    "[STABLE] Number of stored objects at the time of last check split by kind. In case of a "
    "fetching error, the value will be -1."
)
# label names in the order kube's exposition prints them (sorted)
_TOTAL_LABELS = (
    "code",
    "component",
    "dry_run",
    "group",
    "resource",
    "scope",
    "subresource",
    "verb",
    "version",
)
_DURATION_LABELS = _TOTAL_LABELS[1:]
_LONG_LABELS = ("component", "group", "resource", "scope", "subresource", "verb", "version")


class Shape:
    """What the metrics need of a request's path; one interned instance per distinct value (so
    that it hashes by identity). `named`: its variant for `<path>/<name>`, when the path is a
    collection whose items are served there."""

    __slots__ = (
        "connect",
        "group",
        "in_namespace",
        "long",
        "name",
        "named",
        "plain",
        "resource",
        "skip",
        "special",
        "subresource",
        "version",
        "watch",
    )

    def __init__(
        self,
        group: str,
        version: str,
        resource: str,
        subresource: str,
        name: bool,
        in_namespace: bool,
        watch: bool,
    ) -> None:
        self.group, self.version, self.resource = group, version, resource
        self.subresource, self.name, self.in_namespace = subresource, name, in_namespace
        self.watch = watch  # the legacy /watch/ path
        self.connect = subresource in _CONNECT
        self.long = watch or self.connect  # long-running whatever the query says
        self.named: Shape | None = None
        self.skip = False  # not counted (NOT_COUNTED)
        self.special = self.long  # skip or long: `begin` takes the long way
        self.plain: dict[str, Variant] = {}  # method -> its variant with no flags

    def key(self) -> tuple[str, str, str, str, bool, bool, bool]:
        return (
            self.group,
            self.version,
            self.resource,
            self.subresource,
            self.name,
            self.in_namespace,
            self.watch,
        )


NOT_COUNTED = Shape("", "", "", "", False, False, False)  # discovery, openapi, unknown paths
NOT_COUNTED.skip = NOT_COUNTED.special = True


class Variant:
    """The counters of one (shape, method, flags): answers per code, long-running ones active.
    `codes`: code -> [count per bucket (last: +Inf)..., sum of seconds]."""

    __slots__ = ("active", "codes", "flags", "kind", "method", "shape")

    def __init__(self, shape: Shape, method: str, flags: int) -> None:
        self.shape, self.method, self.flags = shape, method, flags
        self.codes: dict[int, list[float]] = {}
        self.active = 0
        self.kind = _MUTATE  # or _READ, _LONG


# one counted request under way: (its variant's codes, kind, start, its variant)
Track = tuple[dict[int, list[float]], int, float, Variant]


class ApiMetrics:
    """The counters of one API server and the registry they are scraped from."""

    def __init__(
        self,
        reg: registrymod.Registry,
        object_counts: Callable[[], Iterable[tuple[str, int]]] | None = None,
        process: bool = True,
    ) -> None:
        self.registry = reg
        self.object_counts = object_counts
        self._paths: dict[str, Shape] = {}
        self._interned: dict[tuple[str, str, str, str, bool, bool, bool], Shape] = {}
        self._path_shape = self._paths.get
        self.variants: dict[tuple[Shape, str, int], Variant] = {}
        self.health: dict[tuple[str, int], list[float]] = {}  # (path, code) -> as Variant.codes
        self.reading = self.mutating = 0
        self.peak_reading = self.peak_mutating = 0
        self._labels: dict[tuple[Variant, bool], tuple[str, ...]] = {}
        self.process = ProcessCollector(registry=None) if process else None

    # ---- the request path ----------------------------------------------------------------

    def begin(self, request: web.Request, path: str) -> Track | None:
        """Note a request (whose `request.path` is `path`) the API handler is about to serve;
        None if it is not counted. A request with no query, no PATCH, whose variant exists takes
        the short way."""
        shape = self._path_shape(path) or self._shape(path)
        if shape.special or "?" in request.raw_path:
            return self._begin_more(request, shape)
        v = shape.plain.get(request.method)
        if v is None:
            return self._begin_more(request, shape)
        if v.kind == _READ:
            n = self.reading = self.reading + 1
            if n > self.peak_reading:
                self.peak_reading = n
            return (v.codes, _READ, perf_counter(), v)
        n = self.mutating = self.mutating + 1
        if n > self.peak_mutating:
            self.peak_mutating = n
        return (v.codes, _MUTATE, perf_counter(), v)

    def _begin_more(self, request: web.Request, shape: Shape) -> Track | None:
        """`begin` the long way (first of a variant, a query, a PATCH, a long-running shape or a
        path not counted): flags from the query (kube's metrics rules: WATCH for a GET
        whose first `watch` parameter is neither 0 nor false, DRY_ALL or DRY_INVALID for a
        dryRun of only `All` or of anything else) and the Content-Type of a PATCH."""
        if shape.skip:
            return None
        method: str = request.method
        raw: str = request.raw_path
        flags = 0
        if "?" in raw:
            if method == "GET" and "watch" in raw:
                values = request.query.getall("watch", ())
                if values and values[0].lower() not in ("0", "false"):
                    flags = WATCH
            if "dryRun" in raw:
                values = request.query.getall("dryRun", ())
                if values:
                    flags |= DRY_ALL if all(v == "All" for v in values) else DRY_INVALID
        if method == "PATCH" and request.headers.get("Content-Type") == APPLY_TYPE:
            flags |= APPLY
        if flags or method == "PATCH":
            v = self.variants.get((shape, method, flags)) or self._variant(shape, method, flags)
        else:
            v = shape.plain.get(method) or self._variant(shape, method, flags)
        if v.kind == _LONG:
            v.active += 1
            return (v.codes, _LONG, perf_counter(), v)
        if v.kind == _READ:
            n = self.reading = self.reading + 1
            if n > self.peak_reading:
                self.peak_reading = n
            return (v.codes, _READ, perf_counter(), v)
        n = self.mutating = self.mutating + 1
        if n > self.peak_mutating:
            self.peak_mutating = n
        return (v.codes, _MUTATE, perf_counter(), v)

    def _variant(self, shape: Shape, method: str, flags: int) -> Variant:
        v = self.variants[(shape, method, flags)] = Variant(shape, method, flags)
        if flags & WATCH or shape.long:
            v.kind = _LONG
        elif method == "GET" or method == "HEAD":
            v.kind = _READ
        if not flags and method != "PATCH":  # (a PATCH may be an APPLY)
            shape.plain[method] = v  # the short way of `begin`
        return v

    def end(self, track: Track, code: int) -> None:
        """The request of `track` was answered with `code`."""
        codes, kind, start, v = track
        elapsed = perf_counter() - start
        if kind == _READ:
            self.reading -= 1
        elif kind == _MUTATE:
            self.mutating -= 1
        else:
            v.active -= 1
        rec = codes.get(code) or _new_rec(codes, code)
        rec[0 if elapsed <= FIRST_BUCKET else bisect_left(BUCKETS, elapsed)] += 1
        rec[-1] += elapsed

    def abandon(self, track: Track) -> None:
        """The request of `track` ended without an answer (the client went away)."""
        _, kind, _, v = track
        if kind == _READ:
            self.reading -= 1
        elif kind == _MUTATE:
            self.mutating -= 1
        else:
            v.active -= 1

    def health_check(self, path: str, code: int, start: float) -> None:
        """A GET of /healthz, /livez or /readyz answered with `code` (kube counts them with an
        empty component and the path as the subresource)."""
        elapsed = perf_counter() - start
        rec = self.health.get((path, code))
        if rec is None:
            rec = self.health[(path, code)] = [0.0] * (len(BUCKETS) + 2)
        rec[bisect_left(BUCKETS, elapsed)] += 1
        rec[-1] += elapsed

    def _shape(self, path: str) -> Shape:
        """The shape of a path not in the cache: its parent collection's item shape when the
        path is `<collection>/<name>`, else parsed as the API handler parses it (an item's
        collection is then remembered too, for its siblings). Unknown resources are not
        remembered (a CRD may serve them later)."""
        paths = self._paths
        if len(paths) >= PATH_CACHE_MAX:
            paths.clear()
        head, _, tail = path.rpartition("/")
        parent = paths.get(head) if tail else None
        if parent is not None and parent.named is not None:
            paths[path] = parent.named
            return parent.named
        parsed = parse_path(path, self.registry)
        if parsed is None:
            return NOT_COUNTED
        shape = paths[path] = NOT_COUNTED if parsed is NOT_COUNTED else self._intern(parsed)
        if shape.name and not shape.subresource and tail and head not in paths:
            collection = Shape(
                shape.group,
                shape.version,
                shape.resource,
                "",
                False,
                shape.in_namespace,
                shape.watch,
            )
            paths[head] = self._intern(collection)
        return shape

    def _intern(self, shape: Shape) -> Shape:
        found = self._interned.get(shape.key())
        if found is not None:
            return found
        self._interned[shape.key()] = shape
        if not shape.name and not shape.subresource:
            named = Shape(
                shape.group,
                shape.version,
                shape.resource,
                "",
                True,
                shape.in_namespace,
                shape.watch,
            )
            res = self.registry.lookup(shape.group, shape.version, shape.resource)
            # a namespaced resource's items are served under a namespace only
            if res is not None and (shape.in_namespace or not res.namespaced):
                shape.named = self._intern(named)
        return shape

    # ---- scrape time -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The counters as they are now, copied (on the event loop) for encoding anywhere; the
        in-flight peaks start again from the current counts."""
        variants = list(self.variants.values())
        snap = Snapshot(
            self,
            [(v, code, list(rec)) for v in variants for code, rec in v.codes.items()],
            [(v, v.active) for v in variants if v.kind == _LONG],
            [(path, code, list(rec)) for (path, code), rec in self.health.items()],
            (self.peak_mutating, self.peak_reading),
            sorted(self.object_counts()) if self.object_counts is not None else [],
        )
        self.peak_mutating, self.peak_reading = self.mutating, self.reading
        return snap

    def label_values(self, v: Variant, long: bool) -> tuple[str, ...]:
        """(component, dry_run, group, resource, scope, subresource, verb, version) of a
        variant's requests, or for `long` (longrunning gauge) the same without dry_run, whose
        verb ignores the legacy /watch/ path as kube's does."""
        key = (v, long)
        found = self._labels.get(key)
        if found is not None:
            return found
        shape, flags = v.shape, v.flags
        scope = request_scope(shape, v.method)
        verb = request_verb(shape, v.method, flags, scope, not long)
        dry = "All" if flags & DRY_ALL else "invalid" if flags & DRY_INVALID else ""
        out: tuple[str, ...] = (COMPONENT, dry, shape.group, shape.resource, scope)
        out += (shape.subresource, verb, shape.version)
        if long:
            out = out[:1] + out[2:]
        self._labels[key] = out
        return out

    async def serve(self, request: web.Request) -> web.Response:
        """`GET /metrics`: every family, as the client's Accept asks (text 0.0.4 by default,
        OpenMetrics on request), gzipped when Accept-Encoding allows. The counters are copied
        here; formatting them (`prometheus_client`'s, ~30 us a sample) runs in a thread."""
        self.reading += 1  # the scrape is a read-only request in flight, as in kube
        self.peak_reading = max(self.peak_reading, self.reading)
        try:
            snap = self.snapshot()
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            gz = gzip_accepted(request.headers.get("Accept-Encoding", ""))
            body = await asyncio.to_thread(_encode, encoder, snap, gz)
        finally:
            self.reading -= 1
        headers = {"Content-Type": content_type}
        if gz:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)


class Snapshot(Collector):
    """A copy of the counters, as `prometheus_client` metric families (`collect`)."""

    def __init__(
        self,
        m: ApiMetrics,
        requests: list[tuple[Variant, int, list[float]]],
        long: list[tuple[Variant, int]],
        health: list[tuple[str, int, list[float]]],
        inflight: tuple[int, int],
        objects: list[tuple[str, int]],
    ) -> None:
        self.m, self.requests, self.long, self.health = m, requests, long, health
        self.inflight, self.objects = inflight, objects

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "apiserver_current_inflight_requests", _H_INFLIGHT, labels=("request_kind",)
        )
        gauge.add_metric(("mutating",), self.inflight[0])
        gauge.add_metric(("readOnly",), self.inflight[1])
        yield gauge
        gauge = GaugeMetricFamily("apiserver_longrunning_requests", _H_LONG, labels=_LONG_LABELS)
        active: dict[tuple[str, ...], float] = {}
        for v, n in self.long:
            labels = self.m.label_values(v, True)
            active[labels] = active.get(labels, 0) + n
        for labels, value in sorted(active.items()):
            gauge.add_metric(labels, value)
        yield gauge
        counts: dict[tuple[str, ...], float] = {}
        hists: dict[tuple[str, ...], list[float]] = {}
        rows = [(self.m.label_values(v, False), code, rec) for v, code, rec in self.requests]
        rows += [
            (("", "", "", "", "", path, "GET", ""), code, rec) for path, code, rec in self.health
        ]
        for labels, code, rec in rows:
            key = (str(code), *labels)
            counts[key] = counts.get(key, 0) + sum(rec[:-1])
            hist = hists.get(labels)
            if hist is None:
                hists[labels] = list(rec)
            else:
                for i, value in enumerate(rec):
                    hist[i] += value
        duration = HistogramMetricFamily(
            "apiserver_request_duration_seconds", _H_DURATION, labels=_DURATION_LABELS
        )
        for labels, hist in sorted(hists.items()):
            cumulative, buckets = 0.0, []
            for le, in_bucket in zip(_LE, hist, strict=False):
                cumulative += in_bucket
                buckets.append((le, cumulative))
            duration.add_metric(labels, buckets, hist[-1])
        yield duration
        total = CounterMetricFamily("apiserver_request_total", _H_TOTAL, labels=_TOTAL_LABELS)
        for key, value in sorted(counts.items()):
            total.add_metric(key, value)
        yield total
        if self.objects:
            gauge = GaugeMetricFamily("apiserver_storage_objects", _H_OBJECTS, labels=("resource",))
            for resource, n in self.objects:
                gauge.add_metric((resource,), n)
            yield gauge
        if self.m.process is not None:
            yield from self.m.process.collect()


def _encode(encoder: Callable[[Collector], bytes], snap: Snapshot, gz: bool) -> bytes:
    body = encoder(snap)
    return gzip.compress(body, compresslevel=1) if gz else body


def request_scope(shape: Shape, method: str) -> str:
    """kube's route scope: an item or a create is `resource`, a collection in a namespace
    `namespace`, anything else `cluster`."""
    if shape.name or method == "POST":
        return "resource"
    return "namespace" if shape.in_namespace else "cluster"


def request_verb(shape: Shape, method: str, flags: int, scope: str, route: bool = True) -> str:
    """The reported verb, as kube's metrics clean it: GET of a collection is LIST; a true
    `watch` parameter (or, for `route`, the legacy /watch/ path) WATCH; an apply patch APPLY;
    log, exec, attach, portforward and proxy CONNECT; unknown methods `other`."""
    if route and shape.watch:
        return "WATCH"
    verb = method
    if method == "GET" or method == "HEAD":
        verb = "GET" if scope == "resource" else "LIST"
    if flags & WATCH:
        verb = "WATCH"
    if flags & APPLY:
        verb = "APPLY"
    if shape.connect:
        verb = "CONNECT"
    return verb if verb in _VERBS else "other"


def parse_path(path: str, reg: registrymod.Registry) -> Shape | None:
    """The shape of an API path as the API handler routes it; NOT_COUNTED for what is no
    resource request (discovery, openapi, a malformed path), None for an unknown resource."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return NOT_COUNTED
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return NOT_COUNTED
        group, version, rest = parts[1], parts[2], parts[3:]
    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    in_namespace = False
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NS_SUBRESOURCES:
        in_namespace, rest = True, rest[2:]
    if not rest or len(rest) > 3:
        return NOT_COUNTED
    res = reg.lookup(group, version, rest[0])
    if res is None:
        return None
    if in_namespace and not res.namespaced:
        return NOT_COUNTED
    name = len(rest) > 1
    sub = rest[2] if len(rest) > 2 else ""
    if (sub and sub not in res.subresources) or (res.namespaced and name and not in_namespace):
        return NOT_COUNTED
    return Shape(group, version, res.plural, sub, name, in_namespace, watch)


def object_counts(
    reg: registrymod.Registry, counts: Callable[[str], int | None]
) -> Iterator[tuple[str, int]]:
    """(`resource.group`, objects stored) per stored resource, -1 where `counts` (a key prefix
    -> count) has none."""
    seen: set[str] = set()
    for res in reg.all():
        if res.virtual or res.qualified in seen:
            continue
        seen.add(res.qualified)
        n = counts(res.key_prefix)
        yield res.qualified, -1 if n is None else n


def _new_rec(codes: dict[int, list[float]], code: int) -> list[float]:
    rec = codes[code] = [0.0] * (len(BUCKETS) + 2)
    return rec
