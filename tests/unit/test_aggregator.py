"""The aggregator's pure parts and its index over the memory store: request-header building
(spoofed identity headers dropped, groups repeated, extras escaped), APIService parsing,
routing of service-backed group versions only, endpoint resolution (Endpoints, EndpointSlices,
and why not), priority and version ordering, and how discovery merges remote groups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from kybern import storage
from kybern.api import registry
from kybern.apiserver import aggregator as agg
from kybern.apiserver import aggregator_loop, cache, discovery, strategy
from kybern.apiserver import store as storemod

Obj = dict[str, Any]
REG = registry.Registry()
NS = registry.BUILTIN[0]  # namespaces


def apiservice(
    version: str,
    group: str,
    *,
    service: tuple[str, str] | None = ("kube-system", "ext"),
    gp: int = 100,
    vp: int = 100,
    available: bool | None = None,
) -> Obj:
    spec: Obj = {
        "group": group,
        "version": version,
        "groupPriorityMinimum": gp,
        "versionPriority": vp,
    }
    if service is not None:
        spec["service"] = {"namespace": service[0], "name": service[1], "port": 443}
        spec["caBundle"] = "Zm9v"
    obj: Obj = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{version}.{group}"},
        "spec": spec,
    }
    if available is not None:
        obj["status"] = {
            "conditions": [
                {"type": "Available", "status": "True" if available else "False", "reason": "X"}
            ]
        }
    return obj


# ---- headers ---------------------------------------------------------------------------


def test_proxy_headers_replace_identity_and_drop_framing() -> None:
    incoming = [
        ("Host", "api:6443"),
        ("Authorization", "Bearer secret"),
        ("X-Remote-User", "mallory"),
        ("x-remote-group", "system:masters"),
        ("X-Remote-Extra-Scopes", "all"),
        ("Impersonate-User", "root"),
        ("Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Accept", "application/json"),
        ("User-Agent", "kubectl/v1.32"),
    ]
    out = agg.proxy_headers(
        incoming, "alice", ["devs", "system:authenticated"], {"scopes": ["view", "edit"]}
    )
    assert out == [
        ("Accept", "application/json"),
        ("User-Agent", "kubectl/v1.32"),
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "devs"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-scopes", "view"),
        ("X-Remote-Extra-scopes", "edit"),
    ]


def test_proxy_headers_keep_upgrade_only_when_upgrading() -> None:
    incoming = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "k")]
    plain = agg.proxy_headers(incoming, "u", [])
    assert [k for k, _ in plain] == ["Sec-WebSocket-Key", "X-Remote-User"]
    up = agg.proxy_headers(incoming, "u", [], upgrade=True)
    assert [k for k, _ in up] == ["Connection", "Upgrade", "Sec-WebSocket-Key", "X-Remote-User"]


def test_extra_keys_are_percent_escaped() -> None:
    assert agg.escape_extra_key("scopes") == "scopes"
    assert agg.escape_extra_key("example.org/foo") == "example.org%2Ffoo"
    assert agg.escape_extra_key("100%") == "100%25"
    assert agg.escape_extra_key("a b:c") == "a%20b%3Ac"
    assert agg.escape_extra_key("ü") == "%C3%BC"


# ---- parsing and ordering ----------------------------------------------------------------


def test_parse_entry() -> None:
    e = agg.parse_entry(apiservice("v1beta1", "metrics.k8s.io", available=True))
    assert e is not None and not e.local and e.available
    assert (e.namespace, e.service, e.port, e.server_name) == (
        "kube-system",
        "ext",
        443,
        "ext.kube-system.svc",
    )
    local = agg.parse_entry(apiservice("v1", "", service=None))
    assert local is not None and local.local and local.name == "v1."
    wrong = apiservice("v1", "a.io")
    wrong["metadata"]["name"] = "v2.a.io"
    assert agg.parse_entry(wrong) is None


def test_version_order_is_kube_aware() -> None:
    versions = ["v1alpha1", "foo10", "v1", "v11alpha2", "v1beta2", "v2", "foo1", "v1beta1"]
    assert sorted(versions, key=agg.version_key) == [
        "v2", "v1", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "foo1", "foo10",
    ]  # fmt: skip


def test_versions_by_priority_then_version() -> None:
    entries = [
        agg.parse_entry(apiservice("v1", "x.io", vp=10)),
        agg.parse_entry(apiservice("v2", "x.io", vp=10)),
        agg.parse_entry(apiservice("v1beta1", "x.io", vp=50)),
    ]
    ordered = agg.order_versions(e for e in entries if e is not None)
    assert [e.version for e in ordered] == ["v1beta1", "v2", "v1"]


def test_index_routes_only_service_backed_versions() -> None:
    a = agg.Aggregator(None)  # type: ignore[arg-type]  # the store is only used to resolve
    a.observe(apiservice("v1", "apps", service=None, gp=17800, vp=15))
    a.observe(apiservice("v1beta1", "metrics.k8s.io"))
    a.observe(apiservice("v1", "x.io", gp=500, vp=5))
    a.observe(apiservice("v2", "x.io", gp=600, vp=20))
    assert a.route("apps", "v1") is None
    route = a.route("metrics.k8s.io", "v1beta1")
    assert route is not None and route.name == "v1beta1.metrics.k8s.io"
    assert a.remote_versions() == {"metrics.k8s.io": ["v1beta1"], "x.io": ["v2", "v1"]}
    assert a.group_priority("x.io") == 600  # the highest of its versions
    assert a.group_priority("apps") == 17800
    assert a.group_priority("batch") == 17400  # built-in without an APIService yet
    assert a.group_priority("example.com") == 1000  # a CRD group
    before = a.generation
    a.forget("v2.x.io")
    assert a.generation > before and a.remote_versions()["x.io"] == ["v1"]


def test_observe_reports_spec_changes_and_keeps_cached_discovery() -> None:
    a = agg.Aggregator(None)  # type: ignore[arg-type]
    entry, changed = a.observe(apiservice("v1", "x.io", available=True))
    assert entry is not None and changed
    a.set_result(entry, agg.CheckResult(True, "Passed", "ok", [{"name": "things"}]))
    again, changed = a.observe(apiservice("v1", "x.io", available=False))
    assert again is not None and not changed and not again.available
    assert again.resources == [{"name": "things"}]  # status from elsewhere; cache kept
    assert a.remote_resources("x.io", "v1") == ([{"name": "things"}], False)
    moved = apiservice("v1", "x.io", service=("other", "ext"))
    entry, changed = a.observe(moved)
    assert entry is not None and changed and entry.resources is None


# ---- resolution over the memory store ------------------------------------------------------


@pytest.fixture
async def st() -> AsyncIterator[storemod.Store]:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    s = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    await s.create(NS, "", ns)
    yield s
    cacher.stop()
    await backend.close()


def service(port_name: str = "https") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ext"},
        "spec": {"ports": [{"name": port_name, "port": 443, "targetPort": 8443}]},
    }


async def test_resolve_explains_what_is_missing(st: storemod.Store) -> None:
    a = agg.Aggregator(st)
    entry, _ = a.observe(apiservice("v1", "x.io"))
    assert entry is not None
    with pytest.raises(agg.Unresolved) as e:
        a.resolve(entry)
    assert e.value.reason == "ServiceNotFound"
    assert e.value.message == 'service/ext in "kube-system" is not present'
    await st.create(agg.SERVICES, "kube-system", service())
    with pytest.raises(agg.Unresolved) as e:
        a.resolve(entry)
    assert e.value.reason == "EndpointsNotFound"
    eps: Obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "ext"},
        "subsets": [
            {"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "https", "port": 8443}]}
        ],
    }
    await st.create(agg.ENDPOINTS, "kube-system", eps)
    with pytest.raises(agg.Unresolved) as e:
        a.resolve(entry)
    assert e.value.reason == "MissingEndpoints"
    assert 'have no addresses with port name "https"' in e.value.message
    eps["subsets"][0]["addresses"] = [{"ip": "127.0.0.1"}]
    await st.guaranteed_update(
        agg.ENDPOINTS, "kube-system", "ext", lambda o: {**o, **eps, "metadata": o["metadata"]}
    )
    assert a.resolve(entry) == ("127.0.0.1", 8443)
    other = apiservice("v1", "y.io")
    other["spec"]["service"]["port"] = 9999
    entry2, _ = a.observe(other)
    assert entry2 is not None
    with pytest.raises(agg.Unresolved) as e:
        a.resolve(entry2)
    assert e.value.reason == "ServicePortError"


async def test_resolve_falls_back_to_endpoint_slices(st: storemod.Store) -> None:
    a = agg.Aggregator(st)
    entry, _ = a.observe(apiservice("v1", "x.io"))
    assert entry is not None
    await st.create(agg.SERVICES, "kube-system", service())
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "ext-abc", "labels": {"kubernetes.io/service-name": "ext"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": False}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": True}},
        ],
        "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
    }
    await st.create(agg.ENDPOINTSLICES, "kube-system", slice_)
    assert a.resolve(entry) == ("10.0.0.2", 8443)


# ---- discovery merge -----------------------------------------------------------------


def test_discovery_lists_remote_groups_by_priority() -> None:
    reg = registry.Registry()
    a = agg.Aggregator(None)  # type: ignore[arg-type]
    d = discovery.Discovery(reg)
    d.remote = a
    for g, v in sorted({(r.group, r.version) for r in reg.all()}):
        a.observe(aggregator_loop.local_apiservice(g, v))
    low = a.observe(apiservice("v1beta1", "metrics.k8s.io", gp=100))[0]
    high = a.observe(apiservice("v1", "zz.io", gp=20000, available=True))[0]
    assert low is not None and high is not None
    groups = [g["name"] for g in orjson.loads(d.document("/apis") or b"")["groups"]]
    assert groups[0] == "zz.io" and groups[-1] == "metrics.k8s.io"
    assert groups[1:3] == ["apiregistration.k8s.io", "apps"]  # 17800 both: by name
    assert d.document("/apis/zz.io/v1") is None  # served by the backend, not here
    group = orjson.loads(d.document("/apis/zz.io") or b"")
    assert group["preferredVersion"] == {"groupVersion": "zz.io/v1", "version": "v1"}
    # aggregated: listed once discovered, Stale while unavailable
    names = [
        i["metadata"].get("name") for i in orjson.loads(d.aggregated("/apis", "v2") or b"")["items"]
    ]
    assert "zz.io" not in names
    a.set_result(
        high,
        agg.CheckResult(
            True,
            "Passed",
            "",
            [
                {"name": "things", "kind": "Thing", "namespaced": True, "verbs": ["get"]},
                {"name": "things/status", "kind": "Thing", "verbs": ["get"]},
            ],
        ),
    )
    a.set_result(
        low,
        agg.CheckResult(
            False,
            "FailedDiscoveryCheck",
            "down",
            [{"name": "nodes", "kind": "NodeMetrics", "verbs": ["get", "list"]}],
        ),
    )
    items = {
        i["metadata"].get("name"): i
        for i in orjson.loads(d.aggregated("/apis", "v2") or b"")["items"]
    }
    zz = items["zz.io"]["versions"][0]
    assert zz["freshness"] == "Current"
    assert zz["resources"] == [
        {
            "resource": "things",
            "responseKind": {"group": "zz.io", "version": "v1", "kind": "Thing"},
            "scope": "Namespaced",
            "singularResource": "thing",
            "verbs": ["get"],
            "subresources": [
                {
                    "subresource": "status",
                    "responseKind": {"group": "zz.io", "version": "v1", "kind": "Thing"},
                    "verbs": ["get"],
                }
            ],
        }
    ]
    assert items["metrics.k8s.io"]["versions"][0]["freshness"] == "Stale"
    assert next(iter(items)) == "zz.io"


def test_authentication_configmap_data() -> None:
    data = aggregator_loop.authentication_data("CLIENT", "PROXY")
    assert data == {
        "client-ca-file": "CLIENT",
        "requestheader-client-ca-file": "PROXY",
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }


def test_local_apiservices_carry_kube_priorities() -> None:
    core = aggregator_loop.local_apiservice("", "v1")
    assert core["metadata"]["name"] == "v1."
    assert core["spec"]["groupPriorityMinimum"] == 18000
    apps = aggregator_loop.local_apiservice("apps", "v1")
    assert apps["metadata"]["labels"] == {"kube-aggregator.kubernetes.io/automanaged": "onstart"}
    assert (apps["spec"]["groupPriorityMinimum"], apps["spec"]["versionPriority"]) == (17800, 15)
    assert "service" not in apps["spec"]
