"""The API server's Prometheus metrics: the labels kube-apiserver 1.32 gives a request (verb,
scope, group, version, resource, subresource, dry_run), the item shapes derived from a cached
collection equal to a full parse, in-flight peaks and long-running gauges, the duration
buckets as Go prints them, the exposition formats, and `APIServer._handle` counting what the
API answers (and not what authentication refuses)."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path
from time import perf_counter
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import HttpVersion11, web
from aiohttp.http import RawRequestMessage
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from kybern.api import errors, registry
from kybern.apiserver import metrics, server

REG = registry.Registry()
Labels = dict[str, str]


_PROTOCOL: Any = SimpleNamespace(ssl_context=None, peername=None, sockname=None, transport=None)


def request(method: str, target: str, headers: dict[str, str] | None = None) -> web.Request:
    """A request as aiohttp's server makes it (aiohttp's mocked requests cost ms each)."""
    path, _, query = target.partition("?")
    url = URL.build(path=path, query_string=query, encoded=True)
    h = CIMultiDictProxy(CIMultiDict(headers or {}))
    msg = RawRequestMessage(method, target, HttpVersion11, h, (), False, None, False, False, url)
    return web.Request(msg, None, _PROTOCOL, None, None, None)  # type: ignore[arg-type]


def new_metrics(objects: list[tuple[str, int]] | None = None) -> metrics.ApiMetrics:
    return metrics.ApiMetrics(REG, (lambda: objects) if objects is not None else None)


def count(m: metrics.ApiMetrics, method: str, target: str, code: int = 200, **h: str) -> bool:
    """One request through begin/end; whether it was counted."""
    req = request(method, target, h)
    track = m.begin(req, req.path)
    if track is not None:
        m.end(track, code)
    return track is not None


def samples(m: metrics.ApiMetrics, name: str) -> list[tuple[Labels, float]]:
    text = generate_latest(m.snapshot()).decode()
    return [
        (dict(s.labels), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


def labels_of(method: str, target: str, **headers: str) -> Labels | None:
    """The apiserver_request_total labels of one request (None: not counted)."""
    m = new_metrics()
    if not count(m, method, target, **headers):
        return None
    ((labels, n),) = samples(m, "apiserver_request_total")
    assert n == 1
    return labels


def short(labels: Labels | None) -> tuple[str, ...] | None:
    if labels is None:
        return None
    keys = ("verb", "scope", "group", "version", "resource", "subresource", "dry_run")
    return tuple(labels[k] for k in keys)


APPLY = {"Content-Type": "application/apply-patch+yaml"}
NS_PODS = "/api/v1/namespaces/d/pods"


@pytest.mark.parametrize(
    ("method", "target", "headers", "want"),
    [
        ("POST", NS_PODS, {}, ("POST", "resource", "", "v1", "pods", "", "")),
        ("GET", NS_PODS, {}, ("LIST", "namespace", "", "v1", "pods", "", "")),
        ("GET", "/api/v1/pods?limit=500", {}, ("LIST", "cluster", "", "v1", "pods", "", "")),
        ("GET", NS_PODS + "/p", {}, ("GET", "resource", "", "v1", "pods", "", "")),
        ("HEAD", NS_PODS + "/p", {}, ("GET", "resource", "", "v1", "pods", "", "")),
        ("PUT", NS_PODS + "/p/status", {}, ("PUT", "resource", "", "v1", "pods", "status", "")),
        ("DELETE", NS_PODS, {}, ("DELETE", "namespace", "", "v1", "pods", "", "")),
        ("GET", NS_PODS + "?watch=true", {}, ("WATCH", "namespace", "", "v1", "pods", "", "")),
        ("GET", NS_PODS + "?watch=1&watch=0", {}, ("WATCH", "namespace", "", "v1", "pods", "", "")),
        ("GET", NS_PODS + "?watch=False", {}, ("LIST", "namespace", "", "v1", "pods", "", "")),
        ("GET", NS_PODS + "?watch=0", {}, ("LIST", "namespace", "", "v1", "pods", "", "")),
        ("GET", "/api/v1/watch/pods", {}, ("WATCH", "cluster", "", "v1", "pods", "", "")),
        (
            "GET",
            "/api/v1/watch/namespaces/d/pods/p",
            {},
            ("WATCH", "resource", "", "v1", "pods", "", ""),
        ),
        ("GET", NS_PODS + "/p/log", {}, ("CONNECT", "resource", "", "v1", "pods", "log", "")),
        ("POST", NS_PODS + "/p/exec", {}, ("CONNECT", "resource", "", "v1", "pods", "exec", "")),
        (
            "POST",
            NS_PODS + "/p/eviction",
            {},
            ("POST", "resource", "", "v1", "pods", "eviction", ""),
        ),
        ("PATCH", NS_PODS + "/p", {}, ("PATCH", "resource", "", "v1", "pods", "", "")),
        (
            "PATCH",
            NS_PODS + "/p?fieldManager=m",
            APPLY,
            ("APPLY", "resource", "", "v1", "pods", "", ""),
        ),
        ("POST", NS_PODS + "?dryRun=All", {}, ("POST", "resource", "", "v1", "pods", "", "All")),
        (
            "POST",
            NS_PODS + "?dryRun=All&dryRun=All",
            {},
            ("POST", "resource", "", "v1", "pods", "", "All"),
        ),
        (
            "POST",
            NS_PODS + "?dryRun=Some",
            {},
            ("POST", "resource", "", "v1", "pods", "", "invalid"),
        ),
        ("GET", "/api/v1/namespaces", {}, ("LIST", "cluster", "", "v1", "namespaces", "", "")),
        ("GET", "/api/v1/namespaces/d", {}, ("GET", "resource", "", "v1", "namespaces", "", "")),
        (
            "PUT",
            "/api/v1/namespaces/d/finalize",
            {},
            ("PUT", "resource", "", "v1", "namespaces", "finalize", ""),
        ),
        (
            "GET",
            "/apis/apps/v1/deployments",
            {},
            ("LIST", "cluster", "apps", "v1", "deployments", "", ""),
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/d/deployments/x/scale",
            {},
            ("PUT", "resource", "apps", "v1", "deployments", "scale", ""),
        ),
        ("GET", "/api/v1/nodes/n", {}, ("GET", "resource", "", "v1", "nodes", "", "")),
        ("OPTIONS", "/api/v1/nodes/n", {}, ("other", "resource", "", "v1", "nodes", "", "")),
        # no route in kube (nor in kybern): not counted
        ("GET", "/api", {}, None),
        ("GET", "/apis/apps/v1", {}, None),
        ("GET", "/openapi/v2", {}, None),
        ("GET", "/api/v1/foos", {}, None),
        ("GET", "/api/v1/pods/p", {}, None),
        ("GET", "/api/v1/namespaces/d/nodes", {}, None),
        ("GET", NS_PODS + "/p/nosuch", {}, None),
        ("GET", NS_PODS + "/p/log/more", {}, None),
    ],
)
def test_labels_as_kube_reports_them(
    method: str, target: str, headers: dict[str, str], want: tuple[str, ...] | None
) -> None:
    got = labels_of(method, target, **headers)
    assert short(got) == want
    if got is not None:
        assert got["component"] == "apiserver" and got["code"] == "200"


def test_repeated_requests_add_up() -> None:
    m = new_metrics()
    cases = [
        ("GET", NS_PODS + "/p", {}),
        ("HEAD", NS_PODS + "/p", {}),
        ("GET", NS_PODS + "?limit=1", {}),
        ("PATCH", NS_PODS + "/p", {}),
        ("PATCH", NS_PODS + "/p", APPLY),
        ("POST", NS_PODS + "?dryRun=All", {}),
        ("GET", NS_PODS + "?watch=1", {}),
        ("DELETE", NS_PODS + "/p", {}),
    ]
    for _ in range(3):
        for method, target, headers in cases:
            assert count(m, method, target, **headers)
    totals = [v for _, v in samples(m, "apiserver_request_total")]
    assert len(totals) == 7 and sum(totals) == 3 * len(cases)  # GET and HEAD: one series
    assert len(m.variants) == len(cases)


def test_items_derived_from_a_cached_collection_equal_a_full_parse() -> None:
    m = new_metrics()
    for res in REG.all():
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        colls = [f"{base}/{res.plural}", f"{base}/watch/{res.plural}"]
        if res.namespaced:
            colls += [
                f"{base}/namespaces/ns1/{res.plural}",
                f"{base}/watch/namespaces/a/{res.plural}",
            ]
        for coll in colls:
            for path in (coll, coll + "/name-1", coll + "/status", coll + "/"):
                m.begin(request("GET", path), path)  # items after their collection: derived
                got = m._paths[path]
                full = metrics.parse_path(path, REG)
                assert full is not None
                if full is metrics.NOT_COUNTED:
                    assert got is metrics.NOT_COUNTED, path
                else:
                    assert got.key() == full.key(), path
    # an item first: its collection is remembered from it
    m = new_metrics()
    m.begin(request("GET", NS_PODS + "/p"), NS_PODS + "/p")
    assert m._paths[NS_PODS].key() == metrics.parse_path(NS_PODS, REG).key()  # type: ignore[union-attr]


def test_path_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "PATH_CACHE_MAX", 10)
    m = new_metrics()
    for i in range(50):
        assert count(m, "GET", f"{NS_PODS}/p{i}")
    assert len(m._paths) <= 11
    assert len(m.variants) == 1  # one shape for every item


def test_inflight_peaks_and_long_running() -> None:
    m = new_metrics()
    a, b = request("GET", NS_PODS), request("POST", NS_PODS)
    w = request("GET", NS_PODS + "?watch=1")
    ta, tb, tw = m.begin(a, a.path), m.begin(b, b.path), m.begin(w, w.path)
    assert ta and tb and tw
    m.end(ta, 200)
    m.end(tb, 201)
    inflight = dict(
        (s["request_kind"], v) for s, v in samples(m, "apiserver_current_inflight_requests")
    )
    assert inflight == {"readOnly": 1, "mutating": 1}  # the peaks; the watch is not counted
    inflight = dict(
        (s["request_kind"], v) for s, v in samples(m, "apiserver_current_inflight_requests")
    )
    assert inflight == {"readOnly": 0, "mutating": 0}  # a scrape starts the peaks again
    long = samples(m, "apiserver_longrunning_requests")
    assert long == [
        (
            {
                "component": "apiserver",
                "group": "",
                "resource": "pods",
                "scope": "namespace",
                "subresource": "",
                "verb": "WATCH",
                "version": "v1",
            },
            1.0,
        )
    ]
    m.abandon(tw)  # the client went away: gone from the gauge, not counted as answered
    assert samples(m, "apiserver_longrunning_requests")[0][1] == 0
    assert not [s for s, _ in samples(m, "apiserver_request_total") if s["verb"] == "WATCH"]


def test_durations_fill_kube_buckets_as_go_prints_them() -> None:
    m = new_metrics()
    req = request("GET", NS_PODS + "/p")
    for took in (0.001, 0.3, 0.3, 7.0, 100.0):
        track = m.begin(req, req.path)
        assert track is not None
        m.end((track[0], track[1], perf_counter() - took, track[3]), 200)
    buckets = {s["le"]: v for s, v in samples(m, "apiserver_request_duration_seconds_bucket")}
    assert list(buckets) == [format(b, "g") for b in metrics.BUCKETS] + ["+Inf"]
    assert list(buckets)[:3] == ["0.005", "0.025", "0.05"] and "1" in buckets and "60" in buckets
    assert (buckets["0.005"], buckets["0.2"], buckets["0.4"], buckets["8"]) == (1, 1, 3, 4)
    assert (buckets["60"], buckets["+Inf"]) == (4, 5)
    ((_, total),) = samples(m, "apiserver_request_duration_seconds_sum")
    assert total == pytest.approx(107.601, abs=0.01)


def test_health_checks_and_storage_objects() -> None:
    m = new_metrics([("pods", 3), ("deployments.apps", -1)])
    m.health_check("/readyz", 200, perf_counter())
    ((labels, n),) = samples(m, "apiserver_request_total")
    assert (labels["component"], labels["subresource"], labels["verb"], n) == (
        "",
        "/readyz",
        "GET",
        1,
    )
    objects = {s["resource"]: v for s, v in samples(m, "apiserver_storage_objects")}
    assert objects == {"pods": 3, "deployments.apps": -1}
    counts = dict(metrics.object_counts(REG, lambda prefix: 7 if "/pods/" in prefix else None))
    assert counts["pods"] == 7 and counts["deployments.apps"] == -1
    assert "events" in counts and "events.events.k8s.io" in counts  # one per group, as kube
    assert not [r for r in counts if r.startswith("selfsubjectreviews")]  # answered, not stored


async def test_serve_negotiates_the_format() -> None:
    m = new_metrics()
    count(m, "GET", NS_PODS)
    resp = await m.serve(request("GET", "/metrics"))
    assert resp.content_type == "text/plain" and resp.charset == "utf-8"
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert resp.body is not None and b"apiserver_request_total{" in bytes(resp.body)  # type: ignore[arg-type]
    assert b"process_cpu_seconds_total" in bytes(resp.body)  # type: ignore[arg-type]
    om = await m.serve(
        request(
            "GET", "/metrics", {"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"}
        )
    )
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(bytes(om.body)).endswith(b"# EOF\n")  # type: ignore[arg-type]


# ---- through APIServer._handle ---------------------------------------------------------------


@pytest.fixture
def api_server() -> Any:
    srv = server.APIServer(
        server.Config(data_dir=Path(tempfile.mkdtemp()), datastore_endpoint="memory://")
    )
    srv.authenticate = lambda r: ("admin", ["system:masters"])  # type: ignore[method-assign]
    return srv


async def test_handle_counts_what_the_api_answers(api_server: Any) -> None:
    async def answer(req: web.Request) -> web.StreamResponse:
        if req.path.endswith("/missing"):
            raise errors.StatusError(404, "NotFound", "nope")
        if req.path.endswith("/boom"):
            raise RuntimeError("boom")
        return web.Response(status=201 if req.method == "POST" else 200)

    api_server.api.handle = answer
    for method, path, code in (
        ("POST", NS_PODS, 201),
        ("GET", NS_PODS + "/missing", 404),
        ("GET", NS_PODS + "/boom", 500),
        ("GET", "/apis", 200),
    ):
        resp = await api_server._handle(request(method, path))
        assert resp.status == code
    got = {
        (s["verb"], s["code"]): v
        for s, v in samples(api_server.metrics, "apiserver_request_total")
        if s["component"]
    }
    assert got == {("POST", "201"): 1, ("GET", "404"): 1, ("GET", "500"): 1}
    scraped = await api_server._handle(request("GET", "/metrics"))
    assert scraped.status == 200 and b"apiserver_request_total" in bytes(scraped.body)
    health = await api_server._handle(request("GET", "/healthz"))
    assert health.status == 200
    assert [
        s
        for s, _ in samples(api_server.metrics, "apiserver_request_total")
        if s["subresource"] == "/healthz"
    ]


async def test_handle_refuses_unauthenticated_and_does_not_count_it(api_server: Any) -> None:
    api_server.authenticate = lambda r: None
    resp = await api_server._handle(request("GET", "/metrics"))
    assert resp.status == 401
    resp = await api_server._handle(request("GET", NS_PODS))
    assert resp.status == 401
    assert samples(api_server.metrics, "apiserver_request_total") == []
