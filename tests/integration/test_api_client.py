"""The PyPI `kubernetes` client against a real `kybern server`: CRUD on several kinds, the
`Watch` helper, pagination on a consistent snapshot, optimistic concurrency, collection deletes,
generateName, generation, the status subresource, finalizers, namespace lifecycle, dry runs,
pods (defaults and binding) and custom resources."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Server, unique, wait_for
from kubernetes import client as k8s
from kubernetes import watch

Obj = dict[str, Any]


def status_of(e: k8s.ApiException) -> Obj:
    body: Obj = json.loads(e.body)
    return body


def expect_error(code: int, reason: str, fn: Any, *args: Any, **kwargs: Any) -> Obj:
    """Call `fn`, which must fail with an HTTP `code` and a Status of `reason`."""
    with pytest.raises(k8s.ApiException) as info:
        fn(*args, **kwargs)
    st = status_of(info.value)
    assert (info.value.status, st.get("kind"), st.get("reason")) == (code, "Status", reason), st
    assert st["code"] == code
    return st


def cm(name: str = "", labels: dict[str, str] | None = None, **data: str) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=k8s.V1ObjectMeta(name=name or None, labels=labels),
        data=data or None,
    )


def deployment(name: str, replicas: int = 1, image: str = "busybox:1") -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image=image)]),
            ),
        ),
    )


def pod(name: str, image: str = "busybox:latest") -> k8s.V1Pod:
    return k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodSpec(
            containers=[
                k8s.V1Container(name="main", image=image),
                k8s.V1Container(name="pinned", image="busybox:1.36"),
            ]
        ),
    )


@pytest.fixture
def core(api: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api)


@pytest.fixture
def apps(api: k8s.ApiClient) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(api)


# ---- CRUD -----------------------------------------------------------------------------------


def test_configmap_crud(core: k8s.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, cm("conf", {"a": "b"}, k="v"))
    meta = created.metadata
    assert meta.name == "conf" and meta.namespace == ns
    assert meta.uid and meta.resource_version and meta.creation_timestamp
    got = core.read_namespaced_config_map("conf", ns)
    assert got.data == {"k": "v"}
    assert got.metadata.uid == meta.uid
    assert got.metadata.resource_version == meta.resource_version
    got.data["k2"] = "v2"
    updated = core.replace_namespaced_config_map("conf", ns, got)
    assert updated.data == {"k": "v", "k2": "v2"}
    assert int(updated.metadata.resource_version) > int(meta.resource_version)
    assert updated.metadata.creation_timestamp == meta.creation_timestamp
    patched = core.patch_namespaced_config_map("conf", ns, {"data": {"k": None, "k3": "v3"}})
    assert patched.data == {"k2": "v2", "k3": "v3"}
    listed = core.list_namespaced_config_map(ns)
    assert [i.metadata.name for i in listed.items] == ["conf"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    expect_error(409, "AlreadyExists", core.create_namespaced_config_map, ns, cm("conf"))
    # this client version returns most deletes untyped
    status = core.delete_namespaced_config_map("conf", ns)
    assert (status["kind"], status["status"]) == ("Status", "Success")
    assert status["details"]["uid"] == meta.uid
    st = expect_error(404, "NotFound", core.read_namespaced_config_map, "conf", ns)
    assert st["message"] == 'configmaps "conf" not found'
    assert st["details"] == {"name": "conf", "kind": "configmaps"}
    expect_error(404, "NotFound", core.delete_namespaced_config_map, "conf", ns)


def test_create_without_kind_and_api_version(core: k8s.CoreV1Api, ns: str) -> None:
    """The client leaves out `apiVersion` and `kind` unless the caller sets them, which is
    how most Python code builds objects; Kubernetes takes them from the URL."""
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="bare"), data={"x": "1"})
    created = core.create_namespaced_config_map(ns, body)
    assert created.kind == "ConfigMap" and created.api_version == "v1"
    assert created.data == {"x": "1"}
    created.data["x"] = "2"
    created.kind = created.api_version = None
    updated = core.replace_namespaced_config_map("bare", ns, created)
    assert updated.data == {"x": "2"}


def test_secret_crud(core: k8s.CoreV1Api, ns: str) -> None:
    body = k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=k8s.V1ObjectMeta(name="creds"),
        data={"user": base64.b64encode(b"admin").decode()},
        string_data={"password": "s3cret"},
    )
    created = core.create_namespaced_secret(ns, body)
    assert created.type == "Opaque"
    assert created.string_data is None  # stringData is write-only: merged into data
    assert created.data == {
        "user": base64.b64encode(b"admin").decode(),
        "password": base64.b64encode(b"s3cret").decode(),
    }
    got = core.read_namespaced_secret("creds", ns)
    assert base64.b64decode(got.data["password"]) == b"s3cret"
    bad = k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=k8s.V1ObjectMeta(name="bad"),
        data={"x": "not base64!"},
    )
    expect_error(400, "BadRequest", core.create_namespaced_secret, ns, bad)
    core.delete_namespaced_secret("creds", ns)
    expect_error(404, "NotFound", core.read_namespaced_secret, "creds", ns)


def test_deployment_crud(apps: k8s.AppsV1Api, ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    assert created.metadata.generation == 1
    spec = created.spec
    assert spec.replicas == 2
    # the defaults Kubernetes applies to a Deployment
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.strategy.rolling_update.max_unavailable == "25%"
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    tmpl = spec.template.spec
    assert tmpl.restart_policy == "Always"
    assert tmpl.dns_policy == "ClusterFirst"
    assert tmpl.containers[0].image_pull_policy == "IfNotPresent"
    listed = apps.list_namespaced_deployment(ns, label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]
    all_ns = apps.list_deployment_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert [d.metadata.name for d in all_ns.items] == ["web"]
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    assert scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3
    bad = deployment("mismatch")
    bad.spec.selector = k8s.V1LabelSelector(match_labels={"app": "other"})
    st = expect_error(422, "Invalid", apps.create_namespaced_deployment, ns, bad)
    assert any(c["field"] == "spec.template.metadata.labels" for c in st["details"]["causes"])
    apps.delete_namespaced_deployment("web", ns)
    expect_error(404, "NotFound", apps.read_namespaced_deployment, "web", ns)


def test_service_cluster_ip_and_node_port(core: k8s.CoreV1Api, ns: str) -> None:
    cidr = ipaddress.ip_network("10.96.0.0/12")

    def service(name: str, **spec: Any) -> k8s.V1Service:
        return k8s.V1Service(
            api_version="v1",
            kind="Service",
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1ServiceSpec(
                selector={"app": name},
                ports=[k8s.V1ServicePort(name="http", port=80, target_port=8080)],
                **spec,
            ),
        )

    a = core.create_namespaced_service(ns, service("a"))
    b = core.create_namespaced_service(ns, service("b"))
    assert a.spec.type == "ClusterIP"
    assert a.spec.session_affinity == "None"
    assert a.spec.ports[0].protocol == "TCP"
    for s in (a, b):
        assert ipaddress.ip_address(s.spec.cluster_ip) in cidr
        assert s.spec.cluster_ips == [s.spec.cluster_ip]
        assert s.spec.ports[0].node_port is None
    assert a.spec.cluster_ip != b.spec.cluster_ip
    kube = core.read_namespaced_service("kubernetes", "default")
    assert kube.spec.cluster_ip == "10.96.0.1"
    assert a.spec.cluster_ip != kube.spec.cluster_ip

    np = core.create_namespaced_service(ns, service("np", type="NodePort"))
    node_port = np.spec.ports[0].node_port
    assert 30000 <= node_port <= 32767
    assert ipaddress.ip_address(np.spec.cluster_ip) in cidr
    assert np.spec.external_traffic_policy == "Cluster"
    # a requested nodePort that is taken is refused
    taken = service("np2", type="NodePort")
    taken.spec.ports[0].node_port = node_port
    st = expect_error(422, "Invalid", core.create_namespaced_service, ns, taken)
    assert any(c["field"] == "spec.ports[0].nodePort" for c in st["details"]["causes"])
    # a requested clusterIP is honoured, and a taken one refused
    wanted = str(cidr.network_address + 4000)
    fixed = core.create_namespaced_service(ns, service("fixed", cluster_ip=wanted))
    assert fixed.spec.cluster_ip == wanted
    again = service("fixed2", cluster_ip=wanted)
    st = expect_error(422, "Invalid", core.create_namespaced_service, ns, again)
    assert any(c["field"] == "spec.clusterIPs" for c in st["details"]["causes"])
    outside = service("outside", cluster_ip="192.168.0.10")
    expect_error(422, "Invalid", core.create_namespaced_service, ns, outside)
    headless = core.create_namespaced_service(ns, service("headless", cluster_ip="None"))
    assert headless.spec.cluster_ip == "None"
    # the allocation survives an update that does not mention it
    np.spec.cluster_ip = None
    np.spec.cluster_ips = None
    np.metadata.labels = {"touched": "yes"}
    updated = core.replace_namespaced_service("np", ns, np)
    assert updated.spec.ports[0].node_port == node_port
    assert updated.spec.cluster_ip != ""
    core.delete_namespaced_service("np", ns)


def _gone(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except k8s.ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


# ---- watch ------------------------------------------------------------------------------------


def test_watch_helper_sees_changes_in_order(core: k8s.CoreV1Api, ns: str) -> None:
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("w", a="1"))
    core.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    core.create_namespaced_config_map(ns, cm("other"))
    core.delete_namespaced_config_map("w", ns)
    w = watch.Watch()
    seen: list[tuple[str, str, str]] = []
    for event in w.stream(
        core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=30
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("a", "")))
        if event["type"] == "DELETED":
            w.stop()
    assert seen == [
        ("ADDED", "w", "1"),
        ("MODIFIED", "w", "2"),
        ("ADDED", "other", ""),
        ("DELETED", "w", "2"),
    ]


def test_watch_live_with_label_selector(core: k8s.CoreV1Api, ns: str) -> None:
    """A watch from "now" sees later changes only, filtered by its selector; a change that
    takes an object out of the selection arrives as DELETED."""
    core.create_namespaced_config_map(ns, cm("old", {"w": "yes"}))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("in", {"w": "yes"}))
    core.create_namespaced_config_map(ns, cm("out", {"w": "no"}))
    core.patch_namespaced_config_map("in", ns, {"metadata": {"labels": {"w": "no"}}})
    core.patch_namespaced_config_map("out", ns, {"metadata": {"labels": {"w": "yes"}}})
    w = watch.Watch()
    seen = []
    for event in w.stream(
        core.list_namespaced_config_map,
        ns,
        label_selector="w=yes",
        resource_version=rv,
        timeout_seconds=30,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "in"), ("DELETED", "in"), ("ADDED", "out")]


def test_watch_timeout_seconds_ends_stream(core: k8s.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, cm("quiet"))
    w = watch.Watch()
    # without a resourceVersion the watch starts with the current state, then ends by itself
    events = [
        (e["type"], e["object"].metadata.name)
        for e in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=1)
    ]
    assert events == [("ADDED", "quiet")]


# ---- lists --------------------------------------------------------------------------------


def test_pagination_is_a_consistent_snapshot(core: k8s.CoreV1Api, ns: str) -> None:
    created = {
        core.create_namespaced_config_map(ns, cm(f"p{i:02d}")).metadata.name for i in range(25)
    }
    first = core.list_namespaced_config_map(ns, limit=10)
    seen = [i.metadata.name for i in first.items]
    assert len(seen) == 10
    assert first.metadata._continue
    assert first.metadata.remaining_item_count == 15
    snapshot_rv = first.metadata.resource_version
    token = first.metadata._continue
    pages = 1
    extra = 0
    while token:
        # writes between pages, into the part not listed yet: not in this listing
        core.create_namespaced_config_map(ns, cm(f"p{18 + extra}x"))
        core.delete_namespaced_config_map(f"p{22 + extra}", ns)
        extra += 1
        page = core.list_namespaced_config_map(ns, limit=10, _continue=token)
        assert page.metadata.resource_version == snapshot_rv
        seen += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == created
    assert seen == sorted(seen)
    # a fresh list sees the writes made in between
    now = {i.metadata.name for i in core.list_namespaced_config_map(ns).items}
    assert {"p18x", "p19x"} <= now
    assert not {"p22", "p23"} & now
    st = expect_error(
        400, "BadRequest", core.list_namespaced_config_map, ns, limit=10, _continue="garbage"
    )
    assert "continue" in st["message"]


def test_list_at_exact_resource_version(core: k8s.CoreV1Api, ns: str) -> None:
    """A list at an older revision is that revision's snapshot (the store is a log)."""
    core.create_namespaced_config_map(ns, cm("a", v="1"))
    rv1 = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("b"))
    core.patch_namespaced_config_map("a", ns, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("a", ns)
    old = core.list_namespaced_config_map(ns, resource_version=rv1, resource_version_match="Exact")
    assert old.metadata.resource_version == rv1
    assert [(i.metadata.name, i.data) for i in old.items] == [("a", {"v": "1"})]
    now = core.list_namespaced_config_map(ns, resource_version="0")
    assert [i.metadata.name for i in now.items] == ["b"]
    newer = core.list_namespaced_config_map(
        ns, resource_version=rv1, resource_version_match="NotOlderThan"
    )
    assert [i.metadata.name for i in newer.items] == ["b"]
    assert int(newer.metadata.resource_version) > int(rv1)
    # an Exact list needs a resourceVersion
    expect_error(
        400,
        "BadRequest",
        core.list_namespaced_config_map,
        ns,
        resource_version_match="Exact",
    )


def test_list_selectors(core: k8s.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, cm("a", {"env": "prod", "tier": "web"}))
    core.create_namespaced_config_map(ns, cm("b", {"env": "dev", "tier": "web"}))
    core.create_namespaced_config_map(ns, cm("c", {"env": "prod"}))

    def names(**kw: Any) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(ns, **kw).items)

    assert names(label_selector="env=prod") == ["a", "c"]
    assert names(label_selector="env in (prod,dev),tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(label_selector="env=prod", field_selector="metadata.name!=a") == ["c"]
    expect_error(400, "BadRequest", core.list_namespaced_config_map, ns, label_selector="a in (")
    expect_error(400, "BadRequest", core.list_namespaced_config_map, ns, field_selector="data.x=1")


def test_stale_update_conflicts(core: k8s.CoreV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(ns, cm("c409", v="0"))
    stale = core.read_namespaced_config_map("c409", ns)
    fresh = core.read_namespaced_config_map("c409", ns)
    fresh.data["v"] = "1"
    core.replace_namespaced_config_map("c409", ns, fresh)
    stale.data["v"] = "2"
    st = expect_error(409, "Conflict", core.replace_namespaced_config_map, "c409", ns, stale)
    assert "the object has been modified" in st["message"]
    assert st["details"]["name"] == "c409"
    assert core.read_namespaced_config_map("c409", ns).data == {"v": "1"}
    # a patch carrying a stale resourceVersion is a precondition too
    old = first.metadata.resource_version
    patch = {"metadata": {"resourceVersion": old}, "data": {"v": "3"}}
    expect_error(409, "Conflict", core.patch_namespaced_config_map, "c409", ns, patch)
    # a delete with a stale resourceVersion precondition
    opts = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(resource_version=old))
    expect_error(409, "Conflict", core.delete_namespaced_config_map, "c409", ns, body=opts)


def test_delete_collection_with_label_selector(core: k8s.CoreV1Api, ns: str) -> None:
    for i in range(6):
        core.create_namespaced_config_map(ns, cm(f"dc{i}", {"batch": "odd" if i % 2 else "even"}))
    core.delete_collection_namespaced_config_map(ns, label_selector="batch=odd")
    left = sorted(i.metadata.name for i in core.list_namespaced_config_map(ns).items)
    assert left == ["dc0", "dc2", "dc4"]
    core.delete_collection_namespaced_config_map(ns)
    assert core.list_namespaced_config_map(ns).items == []


def test_generate_name(core: k8s.CoreV1Api, ns: str) -> None:
    body = cm()
    body.metadata.generate_name = "gen-"
    a = core.create_namespaced_config_map(ns, body)
    b = core.create_namespaced_config_map(ns, body)
    for o in (a, b):
        assert o.metadata.name.startswith("gen-") and len(o.metadata.name) == 9
        assert o.metadata.generate_name == "gen-"
    assert a.metadata.name != b.metadata.name
    bad = cm()
    bad.metadata.generate_name = "Bad_"
    expect_error(422, "Invalid", core.create_namespaced_config_map, ns, bad)


# ---- strategy: generation, status ------------------------------------------------------------


def test_generation_bumps_on_spec_changes_only(apps: k8s.AppsV1Api, ns: str) -> None:
    d = apps.create_namespaced_deployment(ns, deployment("gen"))
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"annotations": {"a": "b"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 4}})
    assert d.metadata.generation == 2
    d.spec.template.spec.containers[0].image = "busybox:2"
    d = apps.replace_namespaced_deployment("gen", ns, d)
    assert d.metadata.generation == 3
    # an update that changes nothing changes neither generation nor resourceVersion
    same = apps.replace_namespaced_deployment("gen", ns, d)
    assert same.metadata.generation == 3
    assert same.metadata.resource_version == d.metadata.resource_version
    st = apps.patch_namespaced_deployment_status("gen", ns, {"status": {"replicas": 4}})
    assert st.metadata.generation == 3


def test_status_subresource(apps: k8s.AppsV1Api, ns: str) -> None:
    d = apps.create_namespaced_deployment(ns, deployment("st", replicas=1))
    # PUT .../status: the status changes, spec changes in the body are ignored
    d.spec.replicas = 7
    d.status = k8s.V1DeploymentStatus(replicas=1, ready_replicas=1, observed_generation=1)
    out = apps.replace_namespaced_deployment_status("st", ns, d)
    assert out.spec.replicas == 1
    assert out.status.replicas == 1 and out.status.ready_replicas == 1
    assert out.metadata.generation == 1
    # PUT on the main resource: the spec changes, status changes in the body are ignored
    out.spec.replicas = 2
    out.status.ready_replicas = 99
    main = apps.replace_namespaced_deployment("st", ns, out)
    assert main.spec.replicas == 2
    assert main.status.ready_replicas == 1
    assert main.metadata.generation == 2
    # the same split for a patch
    patched = apps.patch_namespaced_deployment("st", ns, {"status": {"replicas": 50}})
    assert patched.status.replicas == 1
    patched = apps.patch_namespaced_deployment_status("st", ns, {"spec": {"replicas": 50}})
    assert patched.spec.replicas == 2
    got = apps.read_namespaced_deployment_status("st", ns)
    assert got.status.replicas == 1


def test_finalizers_hold_deletion(core: k8s.CoreV1Api, ns: str) -> None:
    body = cm("held")
    body.metadata.finalizers = ["example.com/hold"]
    core.create_namespaced_config_map(ns, body)
    core.delete_namespaced_config_map("held", ns)
    got = core.read_namespaced_config_map("held", ns)
    assert got.metadata.deletion_timestamp is not None
    assert got.metadata.deletion_grace_period_seconds == 0
    assert got.metadata.finalizers == ["example.com/hold"]
    # a second delete changes nothing; the object can still be updated
    core.delete_namespaced_config_map("held", ns)
    again = core.read_namespaced_config_map("held", ns)
    assert again.metadata.deletion_timestamp == got.metadata.deletion_timestamp
    core.patch_namespaced_config_map("held", ns, {"data": {"k": "v"}})
    # adding a finalizer while deleting is refused
    st = expect_error(
        422,
        "Invalid",
        core.patch_namespaced_config_map,
        "held",
        ns,
        {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}},
    )
    assert any(c["field"] == "metadata.finalizers" for c in st["details"]["causes"])
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    expect_error(404, "NotFound", core.read_namespaced_config_map, "held", ns)


# ---- namespaces -----------------------------------------------------------------------------


def test_create_in_missing_namespace(core: k8s.CoreV1Api) -> None:
    st = expect_error(404, "NotFound", core.create_namespaced_config_map, "no-such-ns", cm("x"))
    assert st["message"] == 'namespaces "no-such-ns" not found'
    assert st["details"] == {"name": "no-such-ns", "kind": "namespaces"}


def test_system_namespaces_exist(core: k8s.CoreV1Api) -> None:
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


# ---- dry run ---------------------------------------------------------------------------------


def test_dry_run_changes_nothing(core: k8s.CoreV1Api, ns: str) -> None:
    out = core.create_namespaced_config_map(ns, cm("dry", a="1"), dry_run="All")
    assert out.metadata.name == "dry"
    assert out.data == {"a": "1"}
    expect_error(404, "NotFound", core.read_namespaced_config_map, "dry", ns)
    # dry-run validation still happens
    expect_error(422, "Invalid", core.create_namespaced_config_map, ns, cm("Dry_"), dry_run="All")
    real = core.create_namespaced_config_map(ns, cm("real", a="1"))
    out = core.patch_namespaced_config_map("real", ns, {"data": {"a": "2"}}, dry_run="All")
    assert out.data == {"a": "2"}
    assert core.read_namespaced_config_map("real", ns).data == {"a": "1"}
    core.delete_namespaced_config_map("real", ns, dry_run="All")
    got = core.read_namespaced_config_map("real", ns)
    assert got.metadata.resource_version == real.metadata.resource_version
    core.delete_collection_namespaced_config_map(ns, dry_run="All")
    assert [i.metadata.name for i in core.list_namespaced_config_map(ns).items] == ["real"]
    got = core.read_namespaced_config_map("real", ns)
    assert got.metadata.resource_version == real.metadata.resource_version
    assert got.data == {"a": "1"}
    expect_error(400, "BadRequest", core.create_namespaced_config_map, ns, cm("x"), dry_run="Some")


# ---- pods ---------------------------------------------------------------------------------


def test_pod_defaults(core: k8s.CoreV1Api, ns: str) -> None:
    p = core.create_namespaced_pod(ns, pod("defaults"))
    spec = p.spec
    assert spec.restart_policy == "Always"
    assert spec.dns_policy == "ClusterFirst"
    assert spec.termination_grace_period_seconds == 30
    assert spec.scheduler_name == "default-scheduler"
    assert spec.enable_service_links is True
    pull = {c.name: c.image_pull_policy for c in spec.containers}
    assert pull == {"main": "Always", "pinned": "IfNotPresent"}
    c = spec.containers[0]
    assert c.termination_message_path == "/dev/termination-log"
    assert c.termination_message_policy == "File"
    assert p.status.phase == "Pending"
    assert p.status.qos_class == "BestEffort"
    assert spec.node_name is None


def test_pod_binding_sets_node_name(core: k8s.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod("bind-me"))
    binding = k8s.V1Binding(
        api_version="v1",
        kind="Binding",
        metadata=k8s.V1ObjectMeta(name="bind-me"),
        target=k8s.V1ObjectReference(api_version="v1", kind="Node", name="node-a"),
    )
    # the generated client cannot read the Status a binding answers with, so the raw response
    resp = core.create_namespaced_pod_binding("bind-me", ns, binding, _preload_content=False)
    assert resp.status == 201
    assert json.loads(resp.data)["status"] == "Success"
    assert core.read_namespaced_pod("bind-me", ns).spec.node_name == "node-a"
    listed = core.list_namespaced_pod(ns, field_selector="spec.nodeName=node-a")
    assert [p.metadata.name for p in listed.items] == ["bind-me"]
    with pytest.raises(k8s.ApiException) as info:
        core.create_namespaced_pod_binding("bind-me", ns, binding, _preload_content=False)
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "Conflict"
    # spec.nodeName is immutable through an ordinary update
    st = expect_error(
        422,
        "Invalid",
        core.patch_namespaced_pod,
        "bind-me",
        ns,
        {"spec": {"nodeName": "node-b"}},
    )
    assert st["details"]["causes"]


def test_pod_binding_answers_as_kube(core: k8s.CoreV1Api, ns: str) -> None:
    """Every error answer of a binding, as kube-apiserver v1.32 words it."""

    def binding(name: str, node: str | None = "node-a", **meta: Any) -> k8s.V1Binding:
        return k8s.V1Binding(
            api_version="v1",
            kind="Binding",
            metadata=k8s.V1ObjectMeta(name=name, **meta),
            target=k8s.V1ObjectReference(kind="Node", name=node),
        )

    def bind(name: str, body: Any) -> Any:
        return core.create_namespaced_pod_binding(name, ns, body, _preload_content=False)

    def fails(code: int, name: str, body: Any) -> Obj:
        with pytest.raises(k8s.ApiException) as info:
            bind(name, body)
        st = status_of(info.value)
        assert (info.value.status, st["code"], st["status"]) == (code, code, "Failure")
        return st

    uid = core.create_namespaced_pod(ns, pod("b1")).metadata.uid
    st = fails(500, "b1", binding("b1", None))  # kube: not a Status error, no reason
    assert st["message"] == "target.name: Required value" and "reason" not in st
    bad_kind = {"kind": "Binding", "metadata": {"name": "b1"}, "target": {"kind": "Pod"}}
    st = fails(500, "b1", bad_kind)
    assert st["message"] == (
        '[target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>", '
        "target.name: Required value]"
    )
    st = fails(400, "b1", binding("other"))
    assert (st["reason"], st["message"]) == (
        "BadRequest",
        "name in URL does not match name in Binding object",
    )
    st = fails(409, "b1", binding("b1", uid="wrong"))
    assert st["reason"] == "Conflict" and st["details"] == {"name": "b1", "kind": "pods"}
    assert st["message"].startswith('Operation cannot be fulfilled on pods "b1": StorageError: ')
    assert st["message"].endswith(
        f"Precondition failed: UID in precondition: wrong, UID in object meta: {uid}"
    )
    st = fails(404, "nope", binding("nope"))
    assert (st["reason"], st["message"]) == ("NotFound", 'pods "nope" not found')
    before = core.read_namespaced_pod("b1", ns)
    resp = bind("b1", binding("b1", uid=uid, annotations={"x": "y"}))
    assert resp.status == 201
    after = core.read_namespaced_pod("b1", ns)
    assert after.spec.node_name == "node-a" and after.metadata.annotations == {"x": "y"}
    assert after.metadata.generation == before.metadata.generation + 1
    assert after.metadata.managed_fields == before.metadata.managed_fields
    [cond] = [c for c in after.status.conditions if c.type == "PodScheduled"]
    assert cond.status == "True" and cond.reason is None
    st = fails(409, "b1", binding("b1", "node-b"))
    assert st["reason"] == "Conflict" and st["details"] == {"name": "b1", "kind": "pods/binding"}
    assert st["message"] == (
        'Operation cannot be fulfilled on pods/binding "b1": pod b1 is already assigned to '
        'node "node-a"'
    )
    doomed = pod("b2")
    doomed.metadata.finalizers = ["example.com/hold"]
    core.create_namespaced_pod(ns, doomed)
    core.delete_namespaced_pod("b2", ns)
    st = fails(409, "b2", binding("b2"))
    assert st["message"] == (
        'Operation cannot be fulfilled on pods/binding "b2": pod b2 is being deleted, cannot be '
        "assigned to a host"
    )
    core.patch_namespaced_pod("b2", ns, {"metadata": {"finalizers": None}})


def test_pod_delete_with_grace_period(core: k8s.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod("graceful"))
    # an unscheduled pod goes at once, as in Kubernetes
    core.delete_namespaced_pod("graceful", ns)
    expect_error(404, "NotFound", core.read_namespaced_pod, "graceful", ns)
    on_node = pod("bound")
    on_node.spec.node_name = "node-a"  # created bound, without the binding subresource
    core.create_namespaced_pod(ns, on_node)
    # a pod on a node gets a deletionTimestamp and waits for its kubelet (or grace 0)
    out = core.delete_namespaced_pod("bound", ns)  # the client types this one as a Pod
    assert out.metadata.deletion_timestamp is not None
    assert out.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("bound", ns).metadata.deletion_timestamp
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    expect_error(404, "NotFound", core.read_namespaced_pod, "bound", ns)


# ---- custom resources -----------------------------------------------------------------------


@pytest.fixture
def crd(api: k8s.ApiClient) -> Iterator[tuple[str, str]]:
    """A namespaced CRD `widgets.<unique>.example.com`, Established; (group, plural)."""
    ext = k8s.ApiextensionsV1Api(api)
    group = f"{unique('g')}.example.com"
    plural = "widgets"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wdg"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(body)

    def established() -> bool:
        got = ext.read_custom_resource_definition(f"{plural}.{group}")
        conds = {c.type: c.status for c in (got.status.conditions or [])}
        return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"

    wait_for(established, message="the CRD to be Established")
    yield group, plural
    try:
        ext.delete_custom_resource_definition(f"{plural}.{group}")
    except k8s.ApiException as e:
        if e.status != 404:
            raise


def widget(group: str, name: str, **spec: Any) -> Obj:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_custom_resource_crud(
    api: k8s.ApiClient, server: Server, crd: tuple[str, str], ns: str
) -> None:
    group, plural = crd
    co = k8s.CustomObjectsApi(api)
    created = co.create_namespaced_custom_object(
        group, "v1", ns, plural, widget(group, "w1", size=3, nested={"any": ["thing"]})
    )
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    got = co.get_namespaced_custom_object(group, "v1", ns, plural, "w1")
    assert got["spec"] == {"size": 3, "nested": {"any": ["thing"]}}
    got["spec"]["size"] = 4
    updated = co.replace_namespaced_custom_object(group, "v1", ns, plural, "w1", got)
    assert updated["spec"]["size"] == 4 and updated["metadata"]["generation"] == 2
    patched = co.patch_namespaced_custom_object(
        group, "v1", ns, plural, "w1", {"metadata": {"labels": {"color": "red"}}}
    )
    assert patched["metadata"]["labels"] == {"color": "red"}
    assert patched["metadata"]["generation"] == 2
    st = co.patch_namespaced_custom_object_status(
        group, "v1", ns, plural, "w1", {"status": {"ready": True}, "spec": {"size": 100}}
    )
    assert st["status"] == {"ready": True} and st["spec"]["size"] == 4
    co.create_namespaced_custom_object(group, "v1", ns, plural, widget(group, "w2"))
    listed = co.list_namespaced_custom_object(group, "v1", ns, plural, label_selector="color")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
    assert listed["kind"] == "WidgetList"
    # kubectl sees the new kind, by plural and by short name
    out = server.kubectl_json("-n", ns, "get", plural)
    assert sorted(i["metadata"]["name"] for i in out["items"]) == ["w1", "w2"]
    out = server.kubectl_json("-n", ns, "get", "wdg/w1")
    assert out["spec"]["size"] == 4
    resources = server.kubectl("api-resources", f"--api-group={group}", "-o", "name").stdout
    assert resources.split() == [f"{plural}.{group}"]
    with pytest.raises(k8s.ApiException) as info:
        co.create_namespaced_custom_object(group, "v1", ns, plural, widget(group, "Bad_Name"))
    assert info.value.status == 422
    co.delete_namespaced_custom_object(group, "v1", ns, plural, "w2")
    expect_error(404, "NotFound", co.get_namespaced_custom_object, group, "v1", ns, plural, "w2")


def test_deleting_crd_removes_custom_resources(
    api: k8s.ApiClient, server: Server, crd: tuple[str, str], ns: str
) -> None:
    group, plural = crd
    co = k8s.CustomObjectsApi(api)
    for i in range(3):
        co.create_namespaced_custom_object(group, "v1", ns, plural, widget(group, f"x{i}"))
    ext = k8s.ApiextensionsV1Api(api)
    ext.delete_custom_resource_definition(f"{plural}.{group}")

    def crd_gone() -> bool:
        return _gone(ext.read_custom_resource_definition, f"{plural}.{group}")

    wait_for(crd_gone, message="the CRD to be deleted")
    # the resource is no longer served...
    with pytest.raises(k8s.ApiException) as info:
        co.list_namespaced_custom_object(group, "v1", ns, plural)
    assert info.value.status == 404
    out = server.kubectl("-n", ns, "get", plural, check=False)
    assert out.returncode == 1
    # ...and its objects are gone: defining it again shows an empty list
    ext.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )

    def served_empty() -> bool:
        return co.list_namespaced_custom_object(group, "v1", ns, plural)["items"] == []

    wait_for(served_empty, message="the CRD served again, without the old objects")
