"""The OpenAPI documents (`kybern.apiserver.openapi`) without a server: the v3 document of a
group-version checked the way kubectl reads it (the PATCH operation of each kind carries
`fieldValidation` and says whether strategic merge patch is accepted; every `$ref` resolves;
`x-kubernetes-group-version-kind` finds the kind's schema), custom resources from their CRD
schema, the Swagger 2.0 document, and the HTTP behaviour (ETag, `?hash=`, 304, 406)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kybern.api import definitions, errors, registry
from kybern.apiserver import openapi

Obj = dict[str, Any]
BUILDER = openapi.Builder(definitions.load())
CRONTABS = registry.Resource(
    group="stable.example.com",
    version="v1",
    kind="CronTab",
    plural="crontabs",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
    crd=True,
)


def crd_object(rv: str = "5", extra: Obj | None = None) -> Obj:
    spec_props = {"cronSpec": {"type": "string", "description": "The schedule."}, **(extra or {})}
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": spec_props}},
    }
    return {
        "metadata": {"name": "crontabs.stable.example.com", "resourceVersion": rv},
        "spec": {
            "group": "stable.example.com",
            "names": {"kind": "CronTab", "plural": "crontabs"},
            "versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}],
        },
    }


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            elif k == "properties":  # JSONSchemaProps has a property called "$ref"
                for x in v.values():
                    yield from refs(x)
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for x in node:
            yield from refs(x)


def v3_doc(group: str, version: str, crds: list[Obj] | None = None) -> Obj:
    reg = registry.Registry()
    if crds:
        reg.add(CRONTABS)
    inputs = openapi.snapshot(reg, crds or [])
    doc: Obj = json.loads(openapi.Document.of(None, BUILDER.v3(inputs[(group, version)])).body)
    return doc


def patch_op(doc: Obj, gvk: Obj) -> list[Obj]:
    """Every PATCH operation for `gvk` (kubectl looks at the first one it meets)."""
    return [
        item["patch"]
        for item in doc["paths"].values()
        if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk
    ]


@pytest.mark.parametrize("gv", sorted({(r.group, r.version) for r in registry.BUILTIN}))
def test_every_builtin_group_version_as_kubectl_reads_it(gv: tuple[str, str]) -> None:
    doc = v3_doc(*gv)
    assert doc["openapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for r in registry.Registry().resources_in(*gv):
        gvk = {"group": r.group, "kind": r.kind, "version": r.version}
        found = [s for s in schemas.values() if gvk in s.get("x-kubernetes-group-version-kind", [])]
        assert len(found) == 1, r.kind  # kubectl explain finds the schema by its GVK
        ops = patch_op(doc, gvk)
        assert ops, r.kind
        for op in ops:  # fieldValidation on each => kubectl validates server-side (Strict)
            names = {p["name"] for p in op["parameters"]}
            assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= names
            assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]


def test_deployments_paths_and_operations() -> None:
    doc = v3_doc("apps", "v1")
    paths = doc["paths"]
    base = "/apis/apps/v1/namespaces/{namespace}/deployments"
    for p in (
        base,
        base + "/{name}",
        base + "/{name}/status",
        base + "/{name}/scale",
        "/apis/apps/v1/deployments",
        "/apis/apps/v1/watch/namespaces/{namespace}/deployments",
        "/apis/apps/v1/watch/deployments",
        "/apis/apps/v1/",
    ):
        assert p in paths, p
    coll, item = paths[base], paths[base + "/{name}"]
    assert set(coll) == {"get", "post", "delete", "parameters"}
    assert set(item) == {"get", "put", "patch", "delete", "parameters"}
    actions = {
        m: op["x-kubernetes-action"] for m, op in {**coll, **item}.items() if m != "parameters"
    }
    assert actions == {
        "get": "get",
        "post": "post",
        "delete": "delete",
        "put": "put",
        "patch": "patch",
    }
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
    assert coll["get"]["operationId"] == "listAppsV1NamespacedDeployment"
    assert item["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    list_params = {p["name"] for p in coll["get"]["parameters"]}
    assert {"labelSelector", "fieldSelector", "limit", "continue", "watch"} <= list_params
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    ok = coll["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentList"}
    scale = paths[base + "/{name}/scale"]["put"]
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "kind": "Scale",
        "version": "v1",
    }
    assert scale["operationId"] == "replaceAppsV1NamespacedDeploymentScale"
    schemas = doc["components"]["schemas"]
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas
    assert "io.k8s.api.batch.v1.Job" not in schemas  # only what apps/v1 reaches
    strategy = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"


def test_core_subresources_and_cluster_scope() -> None:
    paths = v3_doc("", "v1")["paths"]
    binding = paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
    assert binding["x-kubernetes-group-version-kind"]["kind"] == "Binding"
    eviction = paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
    assert eviction["operationId"] == "createCoreV1NamespacedPodEviction"
    nodes = paths["/api/v1/nodes/{name}"]
    assert nodes["get"]["operationId"] == "readCoreV1Node"
    assert [p["name"] for p in nodes["parameters"]] == ["name", "pretty"]
    assert "/api/v1/namespaces/{name}/finalize" in paths


def test_custom_resource_document() -> None:
    doc = v3_doc("stable.example.com", "v1", [crd_object()])
    schemas = doc["components"]["schemas"]
    cron = schemas["com.example.stable.v1.CronTab"]
    assert cron["properties"]["spec"]["properties"]["cronSpec"]["description"] == "The schedule."
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas
    item = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
    content = item["patch"]["requestBody"]["content"]
    assert "application/strategic-merge-patch+json" not in content  # as kube-apiserver
    assert "application/merge-patch+json" in content
    assert "application/vnd.kubernetes.protobuf" not in item["get"]["responses"]["200"]["content"]
    assert item["patch"]["operationId"] == "patchStableExampleComV1NamespacedCronTab"


def test_builtin_kind_without_definition() -> None:
    reg = registry.Registry()
    reg.add(
        registry.Resource(
            group="example.io", version="v1", kind="Gadget", plural="gadgets", namespaced=False
        )
    )
    inputs = openapi.snapshot(reg, [])[("example.io", "v1")]
    doc = json.loads(openapi.Document.of(None, BUILDER.v3(inputs)).body)
    gadget = doc["components"]["schemas"]["io.example.v1.Gadget"]
    assert gadget["x-kubernetes-preserve-unknown-fields"] is True
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


def test_v2_document() -> None:
    reg = registry.Registry()
    reg.add(CRONTABS)
    inputs = openapi.snapshot(reg, [crd_object()])
    doc = json.loads(openapi.Document.of(None, BUILDER.v2(inputs.values())).body)
    assert doc["swagger"] == "2.0"
    for ref in refs(doc):
        assert ref.removeprefix("#/definitions/") in doc["definitions"], ref
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["parameters"][0] == {
        "in": "body",
        "name": "body",
        "required": True,
        "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"},
    }
    assert {"name": "fieldValidation", "type": "string"}.items() <= patch["parameters"][3].items()
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert "com.example.stable.v1.CronTab" in doc["definitions"]
    assert "/api/v1/namespaces/{namespace}/pods" in doc["paths"]


@pytest.mark.parametrize(
    ("accept", "json_ok"),
    [
        ("", True),
        ("application/json", True),
        ("*/*", True),
        ("application/json, */*", True),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", False),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json", True),
        ("application/json;q=0", False),
        ("text/html", False),
    ],
)
def test_accept_negotiation(accept: str, json_ok: bool) -> None:
    assert openapi.accepts_json(accept, "v2") is json_ok


def test_definitions_not_loaded_on_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> definitions.Definitions:
        raise AssertionError("loaded too early")

    monkeypatch.setattr(definitions, "load", boom)
    oa = openapi.OpenAPI(registry.Registry())
    assert oa.current()  # inputs need no definitions


def request(path: str, method: str = "GET", **headers: str) -> web.Request:
    return make_mocked_request(method, path, headers=headers)


async def test_serving_and_caching() -> None:
    crds = [crd_object("5")]
    reg = registry.Registry()
    reg.add(CRONTABS)
    oa = openapi.OpenAPI(reg, lambda: crds)
    index = await oa.serve(request("/openapi/v3"))
    assert index.headers["Cache-Control"] == "no-cache, private"
    urls = json.loads(index.body)["paths"]  # type: ignore[attr-defined]
    assert {"api/v1", "apis/apps/v1", "apis/stable.example.com/v1"} <= set(urls)
    url = urls["apis/stable.example.com/v1"]["serverRelativeURL"]
    first = await oa.serve(request(url))
    assert first.status == 200 and first.headers["Cache-Control"] == "public, immutable"
    etag = first.headers["ETag"]
    assert etag == '"' + url.partition("hash=")[2] + '"'
    same = await oa.serve(request(url, **{"If-None-Match": etag}))
    assert same.status == 304
    # a CRD change (no registry change) makes a new document, and the old hash redirects
    crds[0] = crd_object("6", {"suspend": {"type": "boolean"}})
    with pytest.raises(web.HTTPMovedPermanently) as moved:
        await oa.serve(request(url))
    new_url = moved.value.location
    assert new_url != url and new_url.startswith("/openapi/v3/apis/stable.example.com/v1?hash=")
    doc = json.loads((await oa.serve(request(new_url))).body)  # type: ignore[attr-defined]
    spec = doc["components"]["schemas"]["com.example.stable.v1.CronTab"]["properties"]["spec"]
    assert "suspend" in spec["properties"]
    apps = await oa.v3_document(("apps", "v1"))
    assert apps is await oa.v3_document(("apps", "v1"))  # unrelated documents stay cached


async def test_serving_errors() -> None:
    oa = openapi.OpenAPI(registry.Registry())
    proto = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
    for path, method, headers, code in (
        ("/openapi/v3/apis/apps/v1", "GET", {"Accept": proto}, 406),
        ("/openapi/v3/apis/nope/v1", "GET", {}, 404),
        ("/openapi/v3/apis/apps", "GET", {}, 404),
        ("/openapi/v4", "GET", {}, 404),
        ("/openapi/v3", "POST", {}, 405),
    ):
        with pytest.raises(errors.StatusError) as e:
            await oa.serve(request(path, method, **headers))
        assert e.value.code == code, path
    v2 = await oa.serve(request("/openapi/v2", Accept="application/json"))
    assert json.loads(v2.body)["swagger"] == "2.0"  # type: ignore[attr-defined]
