"""The `lightkube` client against a `kybern server` (API only): CRUD, the three patch types
(JSON, merge, strategic), server-side apply with a conflict and `force`, and `Client.wait`.

lightkube reads the kubeconfig the server writes (embedded client certificate); the
environment's CA bundle variables are removed so that only the kubeconfig's CA is trusted.
Nothing runs controllers here: `wait` is released by setting the status by hand."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Server, unique, wait_for
from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

CA_VARS = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")


@pytest.fixture
def client(server: Server, ns: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for var in CA_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
    c = Client(config=KubeConfig.from_env(), namespace=ns, field_manager="lightkube-test")
    yield c
    c.close()


def deployment(name: str, containers: list[tuple[str, str]]) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, labels=labels),
        spec=DeploymentSpec(
            replicas=1,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name=n, image=i) for n, i in containers]),
            ),
        ),
    )


def test_crud(client: Client, ns: str) -> None:
    name = unique("cm")
    created = client.create(
        ConfigMap(metadata=ObjectMeta(name=name, labels={"suite": "lk"}), data={"a": "1"})
    )
    assert created.metadata is not None and created.metadata.uid
    assert created.metadata.namespace == ns
    got = client.get(ConfigMap, name)
    assert got.data == {"a": "1"} and got.metadata is not None
    assert got.metadata.resourceVersion == created.metadata.resourceVersion

    names = [cm.metadata.name for cm in client.list(ConfigMap, labels={"suite": "lk"})]
    assert names == [name]

    got.data = {"a": "2"}
    replaced = client.replace(got)
    assert replaced.data == {"a": "2"}
    assert replaced.metadata is not None
    assert replaced.metadata.resourceVersion != created.metadata.resourceVersion

    # a stale resourceVersion is a 409 Conflict
    got.data = {"a": "3"}
    with pytest.raises(ApiError) as e:
        client.replace(got)
    assert e.value.status.code == 409 and e.value.status.reason == "Conflict"

    client.delete(ConfigMap, name)
    with pytest.raises(ApiError) as e:
        client.get(ConfigMap, name)
    assert e.value.status.code == 404 and e.value.status.reason == "NotFound"
    assert e.value.status.message == f'configmaps "{name}" not found'


def test_three_patch_types(client: Client) -> None:
    name = unique("dep")
    client.create(deployment(name, [("web", "nginx:1.25"), ("side", "busybox:1.36")]))

    # strategic: containers merge by name, the other container stays
    patched = client.patch(
        Deployment,
        name,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}},
        patch_type=PatchType.STRATEGIC,
    )
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [
        ("web", "nginx:1.26"),
        ("side", "busybox:1.36"),
    ]

    # merge: a list is replaced as a whole, maps merge
    patched = client.patch(
        Deployment,
        name,
        {"metadata": {"labels": {"tier": "front"}}, "spec": {"replicas": 3}},
        patch_type=PatchType.MERGE,
    )
    assert patched.metadata.labels == {"app": name, "tier": "front"}
    assert patched.spec.replicas == 3

    # json: operations by path, and a failing test operation is rejected
    patched = client.patch(
        Deployment,
        name,
        [
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "remove", "path": "/metadata/labels/tier"},
        ],
        patch_type=PatchType.JSON,
    )
    assert patched.spec.replicas == 2 and patched.metadata.labels == {"app": name}
    with pytest.raises(ApiError) as e:
        client.patch(
            Deployment,
            name,
            [{"op": "test", "path": "/spec/replicas", "value": 5}],
            patch_type=PatchType.JSON,
        )
    assert e.value.status.code == 422


def managers(obj: Any) -> dict[str, str]:
    return {m.manager: m.operation for m in obj.metadata.managedFields}


def test_server_side_apply_conflict_and_force(client: Client) -> None:
    name = unique("ssa")

    def cm(value: str) -> ConfigMap:
        return ConfigMap(metadata=ObjectMeta(name=name), data={"key": value})

    applied = client.apply(cm("alice"), field_manager="alice")
    assert applied.data == {"key": "alice"}
    assert managers(applied) == {"alice": "Apply"}

    # the same value from another manager is no conflict: both own it
    assert client.apply(cm("alice"), field_manager="carol").data == {"key": "alice"}

    with pytest.raises(ApiError) as e:
        client.apply(cm("bob"), field_manager="bob")
    status = e.value.status
    assert status.code == 409 and status.reason == "Conflict"
    assert status.details is not None and status.details.causes
    assert any(c.field == ".data.key" for c in status.details.causes), status.details.causes
    assert status.message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n- .data.key\n'
        'conflicts with "carol":\n- .data.key'
    )
    assert client.get(ConfigMap, name).data == {"key": "alice"}

    forced = client.apply(cm("bob"), field_manager="bob", force=True)
    assert forced.data == {"key": "bob"}
    # bob took the field: alice and carol no longer own anything and drop out
    assert managers(forced) == {"bob": "Apply"}

    # alice applies without the field now: nothing of hers left, no conflict
    client.apply(
        ConfigMap(metadata=ObjectMeta(name=name, labels={"x": "y"})), field_manager="alice"
    )
    final = client.get(ConfigMap, name)
    assert final.data == {"key": "bob"} and final.metadata.labels == {"x": "y"}


def test_wait_for_condition(client: Client) -> None:
    name = unique("wait")
    client.create(deployment(name, [("web", "nginx:1.25")]))
    result: dict[str, Any] = {}

    def waiter() -> None:
        try:
            result["obj"] = client.wait(Deployment, name, for_conditions=["Available"])
        except BaseException as e:  # reported to the test below
            result["error"] = e

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    wait_for(lambda: client.get(Deployment, name), 10, message="the deployment")
    condition = {
        "type": "Available",
        "status": "True",
        "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
        "lastUpdateTime": "2024-01-01T00:00:00Z",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    client.patch(
        Deployment.Status, name, {"status": {"conditions": [condition]}}, patch_type=PatchType.MERGE
    )
    thread.join(60)
    assert not thread.is_alive(), "Client.wait did not return"
    assert "error" not in result, result.get("error")
    conditions = result["obj"].status.conditions
    assert [(c.type, c.status) for c in conditions] == [("Available", "True")]
