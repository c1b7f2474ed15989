"""kybern.ext without sockets: the front-proxy authenticator (front-proxy CA and allowed name
required, users from the request headers, cluster client certificates refused unless allowed),
the ConfigMap's settings, MemoryStore watches (initial ADDED, resume, 410), selectors in
Context, Tables, ages, OpenAPI, serving certificates and the registration objects."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from kybern import ext
from kybern.api import errors, selectors
from kybern.apiserver import aggregator_loop, certs
from kybern.ext import openapi, registration
from kybern.ext.server import human_age, wants_table

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Pki:
    p = certs.ensure_pki(tmp_path_factory.mktemp("pki"), hosts=[])
    certs.ensure_front_proxy(p)
    return p


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def signed_by(ca_cert: Path, ca_key: Path, cn: str) -> bytes:
    """DER of a client certificate for `cn` from the CA in those files."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key: Any = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def authenticator(pki: certs.Pki, **kw: Any) -> ext.Authenticator:
    data = aggregator_loop.authentication_data(
        pki.ca_cert.read_text(), pki.front_proxy_ca_cert.read_text()
    )
    return ext.Authenticator(ext.AuthConfig.from_data(data), **kw)


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def test_config_from_configmap_data(pki: certs.Pki) -> None:
    cfg = authenticator(pki).cfg
    assert cfg.allowed_names == ("front-proxy-client",)
    assert cfg.username_headers == ("X-Remote-User",)
    assert cfg.group_headers == ("X-Remote-Group",)
    assert cfg.extra_prefixes == ("X-Remote-Extra-",)
    assert "BEGIN CERTIFICATE" in cfg.requestheader_ca and cfg.client_ca != cfg.requestheader_ca
    assert cfg.trusted_cas().count("BEGIN CERTIFICATE") == 2


def test_front_proxy_user_from_headers(pki: certs.Pki) -> None:
    auth = authenticator(pki)
    proxy = der(pki.front_proxy_client_cert.read_bytes())
    user = auth.authenticate(
        proxy,
        headers(
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "devs"),
            ("x-remote-group", "qa"),
            ("X-Remote-Extra-Scopes", "view"),
            ("X-Remote-Extra-example.org%2Ffoo", "bar"),
        ),
    )
    assert user.name == "alice"
    assert user.groups == ("devs", "qa", "system:authenticated")
    assert dict(user.extra) == {"scopes": ("view",), "example.org/foo": ("bar",)}


def test_refusals(pki: certs.Pki) -> None:
    auth = authenticator(pki)
    spoofed = headers(("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters"))
    with pytest.raises(ext.AuthError, match="front proxy"):
        auth.authenticate(None, spoofed)
    admin = der(pki.admin_cert.read_bytes())  # the cluster CA's, presented directly
    with pytest.raises(ext.AuthError, match="must come through"):
        auth.authenticate(admin, spoofed)
    other_cn = signed_by(pki.front_proxy_ca_cert, pki.front_proxy_ca_key, "mallory")
    with pytest.raises(ext.AuthError, match="not an allowed name"):
        auth.authenticate(other_cn, spoofed)
    proxy = der(pki.front_proxy_client_cert.read_bytes())
    with pytest.raises(ext.AuthError, match="no user name"):
        auth.authenticate(proxy, headers(("X-Remote-Group", "g")))


def test_direct_client_certificates_when_accepted(pki: certs.Pki) -> None:
    auth = authenticator(pki, accept_client_certs=True)
    cert_pem, _ = certs.issue_client_cert(pki, "bob", ["ops"])
    user = auth.authenticate(der(cert_pem), headers(("X-Remote-User", "ignored")))
    assert (user.name, user.groups) == ("bob", ("ops", "system:authenticated"))


# ---- MemoryStore and Context ---------------------------------------------------------------


def thing(name: str, ns: str = "a", **labels: str) -> Obj:
    return {
        "apiVersion": "x.io/v1",
        "kind": "Thing",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
    }


def ctx(namespace: str = "", labels: str = "", fields: str = "") -> ext.Context:
    return ext.Context(
        None,  # type: ignore[arg-type]  # handlers here do not look at the request
        ext.User("u"),
        namespace,
        selectors.parse_labels(labels),
        selectors.parse_fields(fields),
    )


def test_context_selects() -> None:
    o = thing("one", "a", tier="web")
    assert ctx("a", "tier=web").matches(o)
    assert not ctx("b").matches(o)
    assert not ctx("", "tier!=web").matches(o)
    assert ctx("", "", "metadata.name=one").matches(o)
    assert not ctx("", "", "metadata.namespace=b").matches(o)


async def test_memory_store_watch_from_now_and_resume() -> None:
    store = ext.MemoryStore()
    first = store.put(thing("one"))
    assert first["metadata"]["resourceVersion"] == "1" and first["metadata"]["uid"]
    events = store.watch_handler(ctx("a"), "")
    assert await anext(events) == ("ADDED", first)
    store.put(thing("two"))
    store.put(thing("one", tier="db"))
    store.delete("two", "a")
    kinds = [(await anext(events)) for _ in range(3)]
    assert [(k, o["metadata"]["name"]) for k, o in kinds] == [
        ("ADDED", "two"),
        ("MODIFIED", "one"),
        ("DELETED", "two"),
    ]
    assert kinds[1][1]["metadata"]["uid"] == first["metadata"]["uid"]
    await events.aclose()  # type: ignore[attr-defined]
    resumed = store.watch_handler(ctx("a"), "2")
    replay = [(await anext(resumed))[0] for _ in range(2)]
    assert replay == ["MODIFIED", "DELETED"]
    await resumed.aclose()  # type: ignore[attr-defined]


async def test_memory_store_watch_too_old_is_gone() -> None:
    store = ext.MemoryStore()
    for i in range(1100):  # more than the event window
        store.put(thing(f"t{i % 3}"))
    events = store.watch_handler(ctx(), "5")
    with pytest.raises(errors.StatusError) as e:
        await anext(events)
    assert e.value.code == 410


async def test_resource_backed_by_store_lists_with_version() -> None:
    store = ext.MemoryStore()
    store.put(thing("one"))
    res = ext.Resource.backed_by(store, "things", "Thing")
    assert res.verbs == ["get", "list", "watch"]
    assert res.resource_version is not None and res.resource_version() == "1"
    assert [o["metadata"]["name"] for o in await res.list(ctx("a"))] == ["one"]
    assert res.get is not None and await res.get(ctx("b"), "one") is None


# ---- documents and helpers --------------------------------------------------------------


def test_wants_table() -> None:
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    assert wants_table(kubectl)
    assert not wants_table("application/json")
    assert not wants_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io")


def test_human_age() -> None:
    now = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    def ago(**kw: float) -> str:
        return (now - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert human_age(ago(seconds=5), now) == "5s"
    assert human_age(ago(seconds=150), now) == "2m30s"
    assert human_age(ago(minutes=30), now) == "30m"
    assert human_age(ago(hours=5), now) == "5h"
    assert human_age(ago(days=3), now) == "3d"
    assert human_age("", now) == "<unknown>"


def test_server_table_and_discovery() -> None:
    res = ext.Resource(
        "things",
        "Thing",
        ctx_list,
        columns=(ext.Column("Tier", lambda o: o["metadata"]["labels"].get("tier", "")),),
    )
    server = ext.Server("x.io", "v1", [res])
    table = server._table(res, [thing("one", tier="web")], "7")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Tier", "Age"]
    assert table["rows"][0]["cells"][:2] == ["one", "web"]
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "a"
    assert table["metadata"] == {"resourceVersion": "7"}
    rl = server._resource_list()
    assert rl["groupVersion"] == "x.io/v1"
    assert rl["resources"] == [
        {
            "name": "things",
            "singularName": "thing",
            "namespaced": True,
            "kind": "Thing",
            "verbs": ["get", "list"],
        }
    ]


async def ctx_list(c: ext.Context) -> list[Obj]:
    return []


def test_openapi_document() -> None:
    res = ext.Resource("nodes", "NodeMetrics", ctx_list, namespaced=False)
    doc = openapi.document("metrics.k8s.io", "v1beta1", [res])
    assert set(doc["paths"]) == {
        "/apis/metrics.k8s.io/v1beta1/nodes",
        "/apis/metrics.k8s.io/v1beta1/nodes/{name}",
    }
    schema = doc["components"]["schemas"]["io.k8s.metrics.v1beta1.NodeMetrics"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "metrics.k8s.io", "version": "v1beta1", "kind": "NodeMetrics"}
    ]
    get = doc["paths"]["/apis/metrics.k8s.io/v1beta1/nodes/{name}"]["get"]
    assert get["x-kubernetes-action"] == "get"


def test_self_signed_serving_certificate() -> None:
    cert = ext.self_signed([*ext.service_names("kube-system", "hello"), "10.0.0.7"])
    leaf = x509.load_pem_x509_certificate(cert.cert_pem)
    ca = x509.load_pem_x509_certificate(cert.ca_pem)
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "hello.kube-system.svc" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.0.0.7") in sans.get_values_for_type(x509.IPAddress)


def test_registration_objects() -> None:
    reg = ext.Registration("metrics.k8s.io", "v1beta1", "127.0.0.1", 4443, b"PEM")
    assert reg.service_name == "metrics" and reg.apiservice_name == "v1beta1.metrics.k8s.io"
    svc, eps, aps = registration.objects_of(reg)
    assert "selector" not in svc["spec"]
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 4443}
    ]
    assert eps["subsets"] == [
        {
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": 4443, "protocol": "TCP"}],
        }
    ]
    assert aps["spec"]["service"] == {"namespace": "kube-system", "name": "metrics", "port": 443}
    assert base64.b64decode(aps["spec"]["caBundle"]) == b"PEM"
    assert (aps["spec"]["groupPriorityMinimum"], aps["spec"]["versionPriority"]) == (100, 100)
