"""JSON patch (RFC 6902 appendix examples, kube-apiserver error shapes), JSON merge patch (RFC
7386 appendix vectors, `create_merge_patch` round trip) and strategic merge patch (kubectl-style
patches: `$setElementOrder`, `$patch` directives, keyed merges, `$retainKeys`,
`$deleteFromPrimitiveList`, replaced lists) plus the built-in patch metadata table."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybern.api import errors
from kybern.api.patch import (
    BUILTIN_PATCH_META,
    OBJECT_META_PATCH,
    PatchMeta,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    create_merge_patch,
    json_equal,
    merge_patch_value,
    strategic_patch_meta,
)

POD = BUILTIN_PATCH_META["Pod"]
DEPLOYMENT = BUILTIN_PATCH_META["Deployment"]


def status_error(fn: Any, *args: Any) -> errors.StatusError:
    with pytest.raises(errors.StatusError) as info:
        fn(*args)
    return info.value


# --- RFC 6902 ---------------------------------------------------------------------------------


def op(kind: str, path: str, **fields: Any) -> dict[str, Any]:
    return {"op": kind, "path": path, **fields}


def move(kind: str, src: str, path: str) -> dict[str, Any]:
    return {"op": kind, "from": src, "path": path}


RFC6902_EXAMPLES = [
    ({"foo": "bar"}, [op("add", "/baz", value="qux")], {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [op("add", "/foo/1", value="qux")], {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [op("remove", "/baz")], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [op("remove", "/foo/1")], {"foo": ["bar", "baz"]}),
    (
        {"baz": "qux", "foo": "bar"},
        [op("replace", "/baz", value="boo")],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [move("move", "/foo/waldo", "/qux/thud")],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        {"foo": ["all", "grass", "cows", "eat"]},
        [move("move", "/foo/1", "/foo/3")],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [op("test", "/baz", value="qux"), op("test", "/foo/1", value=2)],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        {"foo": 1},
        [op("add", "/child", value={"grandchild": {}})],
        {"foo": 1, "child": {"grandchild": {}}},
    ),
    ({"foo": "bar"}, [op("add", "/baz", value="qux", xyz=123)], {"foo": "bar", "baz": "qux"}),
    ({"/": 9, "~1": 10}, [op("test", "/~01", value=10)], {"/": 9, "~1": 10}),
    (
        {"foo": ["bar"]},
        [op("add", "/foo/-", value=["abc", "def"])],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    # beyond the appendix: copy, the root, negative indices (evanphx/json-patch accepts them)
    ({"a": {"b": 1}}, [move("copy", "/a", "/c")], {"a": {"b": 1}, "c": {"b": 1}}),
    ({"a": 1}, [op("replace", "", value={"b": 2})], {"b": 2}),
    ({"a": 1}, [op("add", "", value={"c": 3})], {"c": 3}),
    ({"a": [1, 2, 3]}, [op("remove", "/a/-1")], {"a": [1, 2]}),
    ({"a": [1, 2]}, [op("add", "/a/-1", value=9)], {"a": [1, 2, 9]}),
    ({"a": [1, 2]}, [op("replace", "/a/-1", value=9)], {"a": [1, 9]}),
    ({"a": [1, 2]}, [op("add", "/a/2", value=3)], {"a": [1, 2, 3]}),
    ({"a": {"b": 1}}, [move("move", "/a", "/a")], {"a": {"b": 1}}),
    ({"a": {"": 1}}, [op("replace", "/a/", value=2)], {"a": {"": 2}}),
]


@pytest.mark.parametrize(("doc", "ops", "expected"), RFC6902_EXAMPLES)
def test_json_patch_examples(doc: dict[str, Any], ops: list[Any], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert apply_json_patch(doc, ops) == expected
    assert doc == before


MISSING_KEY = "operation does not apply: doc is missing key:"
FAILURES = [
    ({"baz": "qux"}, op("test", "/baz", value="bar"), "testing value /baz failed: test failed"),
    ({"~1": 10}, op("test", "/~01", value="10"), "testing value /~01 failed: test failed"),
    ({"a": True}, op("test", "/a", value=1), "testing value /a failed: test failed"),
    ({}, op("add", "/b/c", value=1), 'add operation does not apply: doc is missing path: "/b/c"'),
    ({"a": 1}, op("remove", "/b"), f"remove {MISSING_KEY} /b"),
    ({"a": 1}, op("replace", "/b", value=1), f"replace {MISSING_KEY} /b"),
    ({"a": [1]}, op("remove", "/a/-"), f"remove {MISSING_KEY} /a/-"),
    ({"a": 1}, op("remove", ""), f"remove {MISSING_KEY} "),
    (
        {"a": [1]},
        op("add", "/a/5", value=1),
        "error in add for path: '/a/5': "
        "Unable to access invalid index: 5: invalid index referenced",
    ),
    (
        {},
        op("move", "/y", **{"from": "/x"}),
        "move operation does not apply: doc is missing from path: /x",
    ),
    (
        {"a": {}},
        move("move", "/a", "/a/b"),
        'move operation does not apply: doc is missing path: "/a/b"',
    ),
    ({"a": 1}, op("frobnicate", "/a"), "Unexpected kind: frobnicate"),
    ({"a": 1}, {"path": "/a"}, "Unexpected kind: unknown"),
    ({"a": 1}, op("add", "/b"), "add operation missing value: missing value"),
    ({"a": 1}, op("add", "b", value=1), "add operation failed to decode path: missing value"),
]


@pytest.mark.parametrize(("doc", "operation", "detail"), FAILURES)
def test_json_patch_failures_are_422(doc: dict[str, Any], operation: Any, detail: str) -> None:
    err = status_error(apply_json_patch, doc, [operation])
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.message == "the server rejected our request due to an error in our request"
    assert [c.message for c in err.causes] == [detail]


def test_json_patch_malformed_documents() -> None:
    err = status_error(apply_json_patch, {}, {"op": "add"})
    assert (err.code, err.message) == (
        400,
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
    )
    err = status_error(apply_json_patch, {}, ["add"])
    assert (err.code, err.message) == (
        400,
        "json: cannot unmarshal string into Go value of type jsonpatch.Operation",
    )
    err = status_error(apply_json_patch, {}, [{"op": "test", "path": "/a", "value": 1}] * 10001)
    assert (err.code, err.reason) == (413, "RequestEntityTooLarge")
    err = status_error(apply_json_patch, {"a": 1}, [{"op": "replace", "path": "", "value": [1]}])
    assert err.code == 400


def test_json_patch_is_atomic_and_copies_values() -> None:
    doc = {"a": {"b": [1]}}
    value = {"x": [1]}
    out = apply_json_patch(doc, [{"op": "add", "path": "/c", "value": value}])
    out["c"]["x"].append(2)
    out["a"]["b"].append(2)
    assert value == {"x": [1]}
    assert doc == {"a": {"b": [1]}}
    with pytest.raises(errors.StatusError):
        apply_json_patch(
            doc, [{"op": "remove", "path": "/a"}, {"op": "test", "path": "/a", "value": 1}]
        )
    assert doc == {"a": {"b": [1]}}


# --- JSON values for hypothesis ---------------------------------------------------------------

SCALARS = st.booleans() | st.integers(-5, 5) | st.text(alphabet="xyz", max_size=2)
KEYS = st.text(alphabet="abc", max_size=2)
NO_NULLS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)
WITH_NULLS = st.recursive(
    SCALARS | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)
DOCS = st.dictionaries(KEYS, WITH_NULLS, max_size=4)


@given(DOCS, KEYS.map(lambda k: "/new" + k), NO_NULLS)
def test_json_patch_add_test_remove_restores(doc: dict[str, Any], path: str, value: Any) -> None:
    if path[1:] in doc:
        return
    ops = [
        {"op": "add", "path": path, "value": value},
        {"op": "test", "path": path, "value": value},
        {"op": "remove", "path": path},
    ]
    assert json_equal(apply_json_patch(doc, ops), doc)


def test_json_equal() -> None:
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal(True, 1)
    assert not json_equal({"a": False}, {"a": 0})
    assert not json_equal([1], [1, 1])
    assert not json_equal("1", 1)


# --- RFC 7386 ---------------------------------------------------------------------------------

RFC7386_VECTORS = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_VECTORS)
def test_merge_patch_vectors(target: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy(target)
    assert merge_patch_value(target, patch) == expected
    assert target == before
    if isinstance(target, dict) and isinstance(patch, dict):
        assert apply_merge_patch(target, patch) == expected


def test_merge_patch_rejects_non_objects() -> None:
    assert status_error(apply_merge_patch, {"a": 1}, ["x"]).code == 400
    assert status_error(apply_merge_patch, {"a": 1}, None).message == "Invalid JSON Patch"


def test_merge_patch_does_not_share_structure() -> None:
    doc = {"a": {"b": [1]}, "c": 1}
    patch = {"d": {"e": [2]}}
    out = apply_merge_patch(doc, patch)
    out["a"]["b"].append(3)
    out["d"]["e"].append(3)
    assert doc == {"a": {"b": [1]}, "c": 1}
    assert patch == {"d": {"e": [2]}}


@given(DOCS, st.dictionaries(KEYS, NO_NULLS, max_size=4))
def test_create_merge_patch_round_trip(original: dict[str, Any], target: dict[str, Any]) -> None:
    before = copy.deepcopy(original)
    patch = create_merge_patch(original, target)
    assert json_equal(apply_merge_patch(original, patch), target)
    assert json_equal(original, before)
    assert create_merge_patch(target, target) == {}


@given(DOCS, st.dictionaries(KEYS, WITH_NULLS, max_size=4))
def test_strategic_without_metadata_is_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any]
) -> None:
    expected = apply_merge_patch(doc, patch)
    assert json_equal(apply_strategic_merge_patch(doc, patch, PatchMeta()), expected)


# --- strategic merge patch --------------------------------------------------------------------


def deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": containers, **spec}}},
    }


def pod_template(patch_spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": patch_spec}}}


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in items]


def test_new_container_goes_first_and_tolerations_are_replaced() -> None:
    # the kubernetes.io "Update API Objects in Place Using kubectl patch" walkthrough
    doc = deployment(
        [{"name": "patch-demo-ctr", "image": "nginx"}],
        tolerations=[{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
    )
    before = copy.deepcopy(doc)
    out = apply_strategic_merge_patch(
        doc,
        pod_template({"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}),
        DEPLOYMENT,
    )
    spec = out["spec"]["template"]["spec"]
    assert spec["containers"] == [
        {"name": "patch-demo-ctr-2", "image": "redis"},
        {"name": "patch-demo-ctr", "image": "nginx"},
    ]
    out = apply_strategic_merge_patch(
        doc,
        pod_template(
            {"tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}
        ),
        DEPLOYMENT,
    )
    assert out["spec"]["template"]["spec"]["tolerations"] == [
        {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}
    ]
    assert doc == before


def test_set_element_order_like_kubectl_apply() -> None:
    doc = deployment(
        [
            {"name": "a", "image": "a:1"},
            {"name": "istio-proxy", "image": "proxy"},
            {"name": "b", "image": "b:1"},
        ]
    )
    patch = pod_template(
        {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
            "containers": [{"name": "a", "image": "a:2"}, {"name": "c", "image": "c:1"}],
        }
    )
    containers = apply_strategic_merge_patch(doc, patch, DEPLOYMENT)["spec"]["template"]["spec"][
        "containers"
    ]
    # server-only items keep their place relative to the others; the rest follow the order list
    assert names(containers) == ["istio-proxy", "b", "a", "c"]
    assert containers[2]["image"] == "a:2"
    # an order list alone reorders
    patch = pod_template(
        {"$setElementOrder/containers": [{"name": "b"}, {"name": "istio-proxy"}, {"name": "a"}]}
    )
    out = apply_strategic_merge_patch(doc, patch, DEPLOYMENT)
    assert names(out["spec"]["template"]["spec"]["containers"]) == ["b", "istio-proxy", "a"]


def test_set_element_order_must_match_patch_list() -> None:
    patch = pod_template(
        {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "z", "image": "z"}],
        }
    )
    err = status_error(apply_strategic_merge_patch, deployment([]), patch, DEPLOYMENT)
    assert err.code == 400 and "doesn't match $setElementOrder list" in err.message


def test_delete_container_with_patch_directive() -> None:
    doc = deployment([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])
    patch = pod_template({"containers": [{"name": "a", "$patch": "delete"}]})
    out = apply_strategic_merge_patch(doc, patch, DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "b", "image": "b"}]


def test_replace_list_and_map_directives() -> None:
    doc = deployment([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])
    doc["metadata"]["labels"] = {"x": "1", "y": "2"}
    patch = {
        "metadata": {"labels": {"$patch": "replace", "z": "3"}},
        **pod_template({"containers": [{"$patch": "replace"}, {"name": "c", "image": "c"}]}),
    }
    out = apply_strategic_merge_patch(doc, patch, DEPLOYMENT)
    assert out["metadata"]["labels"] == {"z": "3"}
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "c"}]
    out = apply_strategic_merge_patch(
        doc, {"metadata": {"labels": {"$patch": "delete"}}}, DEPLOYMENT
    )
    assert out["metadata"]["labels"] == {}
    out = apply_strategic_merge_patch(
        doc, {"metadata": {"labels": {"$patch": "merge", "q": "4"}}}, DEPLOYMENT
    )
    assert out["metadata"]["labels"] == {"x": "1", "y": "2", "q": "4"}


def test_env_and_ports_merge_by_key_inside_containers() -> None:
    doc = deployment(
        [
            {
                "name": "app",
                "image": "app",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"name": "v", "mountPath": "/data"}],
            }
        ]
    )
    patch = pod_template(
        {
            "containers": [
                {
                    "name": "app",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                    "volumeMounts": [{"name": "v", "mountPath": "/data", "readOnly": True}],
                }
            ]
        }
    )
    (container,) = apply_strategic_merge_patch(doc, patch, DEPLOYMENT)["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == "app"
    assert container["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert container["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"},
        {"containerPort": 443},
    ]
    assert container["volumeMounts"] == [{"name": "v", "mountPath": "/data", "readOnly": True}]


def test_retain_keys() -> None:
    doc = deployment([], strategy=None)
    doc["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert apply_strategic_merge_patch(doc, patch, DEPLOYMENT)["spec"]["strategy"] == {
        "type": "Recreate"
    }
    bad = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}
    err = status_error(apply_strategic_merge_patch, doc, bad, DEPLOYMENT)
    assert (err.code, err.message) == (400, "invalid patch format of retainKeys")


def test_primitive_lists_union_and_delete() -> None:
    doc = {"metadata": {"name": "p", "finalizers": ["a", "b"]}}
    out = apply_strategic_merge_patch(doc, {"metadata": {"finalizers": ["c", "a"]}}, POD)
    assert out["metadata"]["finalizers"] == ["c", "a", "b"]
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["c"]}}
    assert apply_strategic_merge_patch(doc, patch, POD)["metadata"]["finalizers"] == ["c", "a"]
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    assert apply_strategic_merge_patch({"metadata": {}}, patch, POD) == {"metadata": {}}


def test_nulls_delete_and_unmatched_nulls_are_ignored() -> None:
    doc = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeName": "n"}}
    patch = {"metadata": {"labels": {"a": None, "zzz": None}}, "spec": {"nodeName": None}}
    assert apply_strategic_merge_patch(doc, patch, POD) == {
        "metadata": {"labels": {"b": "2"}},
        "spec": {},
    }


def test_status_conditions_and_owner_references() -> None:
    doc = {
        "metadata": {"ownerReferences": [{"uid": "1", "name": "rs-a"}]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "Scheduled", "status": "True"},
            ]
        },
    }
    patch = {
        "metadata": {"ownerReferences": [{"uid": "2", "name": "rs-b"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    out = apply_strategic_merge_patch(doc, patch, POD)
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["2", "1"]
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Scheduled", "status": "True"},
    ]


def test_service_ports_and_node_addresses() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = apply_strategic_merge_patch(
        svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, BUILTIN_PATCH_META["Service"]
    )
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
    patch = {"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}
    out = apply_strategic_merge_patch(node, patch, BUILTIN_PATCH_META["Node"])
    assert [a["type"] for a in out["status"]["addresses"]] == ["Hostname", "InternalIP"]


def spec(**fields: Any) -> dict[str, Any]:
    return {"spec": fields}


SMP_ERRORS = [
    (
        spec(containers=[{"image": "x"}]),
        "map: map[image:x] does not contain declared merge key: name",
    ),
    (
        spec(containers=[{"name": "a", "$patch": "merge"}]),
        "merging lists cannot yet be specified in the patch",
    ),
    (
        spec(containers=[{"name": "a", "$patch": "x"}]),
        "unknown patch type: x in map: map[$patch:x name:a]",
    ),
    (spec(**{"$patch": "bogus"}), "unknown patch type: bogus in map: map[$patch:bogus]"),
    (spec(**{"$setElementOrder/containers": {}}), "invalid patch format of setElementOrder list"),
    (spec(**{"$retainKeys": "nodeName"}), "invalid patch format of retainKeys"),
    (spec(**{"$deleteFromPrimitiveList/x": "a"}), "invalid patch format of primitive list"),
    (
        spec(containers=[{"name": "a"}, "b"]),
        "list element types are not identical: [[] [map[name:a] b]]",
    ),
]


@pytest.mark.parametrize(("patch", "message"), SMP_ERRORS)
def test_strategic_merge_patch_errors(patch: dict[str, Any], message: str) -> None:
    err = status_error(apply_strategic_merge_patch, {"spec": {}}, patch, POD)
    assert (err.code, err.message) == (400, message)


def test_strategic_merge_patch_body_must_be_an_object() -> None:
    err = status_error(apply_strategic_merge_patch, {}, [1], POD)
    assert err.code == 400
    assert err.message.startswith("json: cannot unmarshal array into Go value of type map")


def test_patch_meta_table() -> None:
    assert DEPLOYMENT.lookup(("spec", "template", "spec", "containers")) == ("merge", "name")
    assert DEPLOYMENT.lookup(("spec", "template", "spec", "containers", "env")) == ("merge", "name")
    assert DEPLOYMENT.lookup(("spec", "strategy")) == ("retainKeys", "")
    assert DEPLOYMENT.lookup(("spec", "template", "spec", "tolerations")) == ("", "")
    cron = BUILTIN_PATCH_META["CronJob"]
    path = ("spec", "jobTemplate", "spec", "template", "spec", "initContainers", "ports")
    assert cron.lookup(path) == ("merge", "containerPort")
    assert POD.lookup(("spec", "volumes")) == ("merge,retainKeys", "name")
    assert POD.lookup(("spec", "hostAliases")) == ("merge", "ip")
    assert POD.lookup(("metadata", "finalizers")) == ("merge", "")
    kinds = "Pod Deployment ReplicaSet StatefulSet DaemonSet Job CronJob ReplicationController"
    for kind in (kinds + " PodTemplate Service Node Endpoints").split():
        assert BUILTIN_PATCH_META[kind].lookup(("metadata", "ownerReferences")) == ("merge", "uid")
    assert BUILTIN_PATCH_META["Node"].fields["status.addresses"] == ("merge", "type")
    assert strategic_patch_meta("ConfigMap") is BUILTIN_PATCH_META["ConfigMap"]
    assert strategic_patch_meta("SomethingBuiltinButNew") is OBJECT_META_PATCH
    err = status_error(lambda: strategic_patch_meta("Widget", custom=True))
    assert (err.code, err.reason) == (415, "UnsupportedMediaType")


NAMES = st.lists(st.sampled_from("abcdefg"), unique=True, max_size=6)


@given(NAMES, NAMES, st.integers(0, 9))
def test_apply_style_patch_reaches_the_desired_order(
    current: list[str], desired: list[str], tag: int
) -> None:
    doc = {"spec": {"containers": [{"name": n, "image": f"{n}:old"} for n in current]}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": n} for n in desired],
            "containers": [{"name": n, "image": f"{n}:{tag}"} for n in desired]
            + [{"name": n, "$patch": "delete"} for n in current if n not in desired],
        }
    }
    out = apply_strategic_merge_patch(doc, patch, POD)["spec"]["containers"]
    assert out == [{"name": n, "image": f"{n}:{tag}"} for n in desired]


@given(NAMES, NAMES)
def test_keyed_merge_is_a_union(current: list[str], patched: list[str]) -> None:
    doc = {"spec": {"volumes": [{"name": n, "emptyDir": {}} for n in current]}}
    patch = {"spec": {"volumes": [{"name": n, "hostPath": {"path": "/" + n}} for n in patched]}}
    out = apply_strategic_merge_patch(doc, patch, POD)["spec"]["volumes"]
    assert sorted(names(out)) == sorted(set(current) | set(patched))
    for v in out:
        assert ("emptyDir" in v) is (v["name"] in current)
        assert ("hostPath" in v) is (v["name"] in patched)
    # patch items keep the patch order, server-only items keep the server order
    assert [n for n in names(out) if n in patched] == patched
    assert [n for n in names(out) if n not in patched] == [n for n in current if n not in patched]
