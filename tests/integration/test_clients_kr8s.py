"""The `kr8s` client (its asyncio API) against a `kybern server` (API only): CRUD, the three
patch types, server-side apply with a conflict and `force`, and `APIObject.wait` for a
condition, a JSONPath value and deletion.

kr8s's object API patches with JSON and merge patches only; the strategic merge patch and
server-side apply go through its own `Api.call_api`. kr8s reads the kubeconfig the server
writes (embedded client certificate); the environment's CA bundle variables are removed.
Nothing runs controllers here: the waits are released by changing the objects by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import kr8s
import kr8s.asyncio
import pytest
from conftest import Server, unique
from kr8s.asyncio.objects import ConfigMap, Deployment

CA_VARS = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")
DEADLINE = 60  # seconds; a deadline for waits, not a timing expectation


@pytest.fixture
async def api(
    server: Server, ns: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[kr8s.asyncio.Api]:
    for var in CA_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    a = await kr8s.asyncio.api(kubeconfig=str(server.kubeconfig), namespace=ns)
    yield a
    if a._session is not None:
        await a._session.aclose()


def deployment_spec(name: str, containers: list[tuple[str, str]]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": n, "image": i} for n, i in containers]},
            },
        },
    }


async def raw_patch(
    api: kr8s.asyncio.Api,
    version: str,
    url: str,
    namespace: str,
    body: dict[str, Any],
    content_type: str,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    async with api.call_api(
        "PATCH",
        version=version,
        url=url,
        namespace=namespace,
        content=json.dumps(body),
        headers={"Content-Type": content_type},
        params=params or {},
    ) as resp:
        out: dict[str, Any] = resp.json()
        return out


async def test_crud(api: kr8s.asyncio.Api, ns: str) -> None:
    name = unique("cm")
    cm = await ConfigMap(
        {"metadata": {"name": name, "labels": {"suite": "kr8s"}}, "data": {"a": "1"}}, api=api
    )
    await cm.create()
    assert cm.metadata.uid and cm.namespace == ns
    got = await ConfigMap.get(name, namespace=ns, api=api)
    assert got.raw["data"] == {"a": "1"}
    listed = [o.name async for o in api.async_get("configmaps", label_selector={"suite": "kr8s"})]
    assert listed == [name]
    assert await got.exists()

    await got.patch({"data": {"a": "2"}})
    await cm.refresh()
    assert cm.raw["data"] == {"a": "2"}

    await cm.delete()
    assert not await cm.exists()
    with pytest.raises(kr8s.NotFoundError):
        await ConfigMap.get(name, namespace=ns, api=api)


async def test_three_patch_types(api: kr8s.asyncio.Api, ns: str) -> None:
    name = unique("dep")
    dep = await Deployment(
        deployment_spec(name, [("web", "nginx:1.25"), ("side", "busybox:1.36")]), api=api
    )
    await dep.create()

    # merge (kr8s's default): maps merge
    await dep.patch({"metadata": {"labels": {"tier": "front"}}, "spec": {"replicas": 3}})
    assert dep.labels == {"app": name, "tier": "front"} and dep.replicas == 3

    # json
    await dep.patch(
        [
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "remove", "path": "/metadata/labels/tier"},
        ],
        type="json",
    )
    assert dep.labels == {"app": name} and dep.replicas == 2
    with pytest.raises(kr8s.ServerError) as e:
        await dep.patch([{"op": "test", "path": "/spec/replicas", "value": 5}], type="json")
    assert e.value.response is not None and e.value.response.status_code == 422

    # strategic: containers merge by name
    out = await raw_patch(
        api,
        "apps/v1",
        f"deployments/{name}",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}},
        "application/strategic-merge-patch+json",
    )
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("web", "nginx:1.26"),
        ("side", "busybox:1.36"),
    ]


async def test_server_side_apply_conflict_and_force(api: kr8s.asyncio.Api, ns: str) -> None:
    name = unique("ssa")

    async def apply(value: str, manager: str, force: bool = False) -> dict[str, Any]:
        params = {"fieldManager": manager}
        if force:
            params["force"] = "true"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        body["data"] = {"key": value}
        return await raw_patch(
            api, "v1", f"configmaps/{name}", ns, body, "application/apply-patch+yaml", params
        )

    created = await apply("alice", "alice")
    assert created["data"] == {"key": "alice"}
    assert [(m["manager"], m["operation"]) for m in created["metadata"]["managedFields"]] == [
        ("alice", "Apply")
    ]

    with pytest.raises(kr8s.ServerError) as e:
        await apply("bob", "bob")
    response = e.value.response
    assert isinstance(response, httpx.Response) and response.status_code == 409
    status = response.json()
    assert (status["kind"], status["reason"]) == ("Status", "Conflict")
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "alice": .data.key'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".data.key"}
    ]
    assert (await ConfigMap.get(name, namespace=ns, api=api)).raw["data"] == {"key": "alice"}

    forced = await apply("bob", "bob", force=True)
    assert forced["data"] == {"key": "bob"}
    assert [m["manager"] for m in forced["metadata"]["managedFields"]] == ["bob"]


async def test_wait(api: kr8s.asyncio.Api, ns: str) -> None:
    name = unique("wait")
    dep = await Deployment(deployment_spec(name, [("web", "nginx:1.25")]), api=api)
    await dep.create()

    waiter = asyncio.create_task(dep.wait("condition=Available", timeout=DEADLINE))
    condition = {
        "type": "Available",
        "status": "True",
        "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
        "lastUpdateTime": "2024-01-01T00:00:00Z",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    # (kr8s's JSONPath test fails on a missing field: status.replicas is set from the start)
    await dep.patch({"status": {"conditions": [condition], "replicas": 1}}, subresource="status")
    await waiter
    both = await Deployment.get(name, namespace=ns, api=api)
    # mode="all": both a condition and a JSONPath value
    all_waiter = asyncio.create_task(
        both.wait(
            ["condition=Available", "jsonpath='{.status.replicas}'=7"],
            mode="all",
            timeout=DEADLINE,
        )
    )
    await both.patch({"status": {"replicas": 7}}, subresource="status")
    await all_waiter

    # deletion, held by a finalizer until the waiter is running
    cm = await ConfigMap({"metadata": {"name": name, "finalizers": ["example.com/hold"]}}, api=api)
    await cm.create()
    await cm.delete()
    deleted = asyncio.create_task(cm.wait("delete", timeout=DEADLINE))
    await cm.patch([{"op": "remove", "path": "/metadata/finalizers"}], type="json")
    await deleted
    assert not await cm.exists()
