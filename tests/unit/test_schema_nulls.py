"""Tests of explicit `null`s in `kybern.api.schema.normalize`, decoded as kube-apiserver's typed Go
structs do: a null struct field is dropped at any depth (as absent: Go leaves it zero or nil), a
null list item or map value becomes the element's zero value as kube stores it (`""`, `0`, `"0"`
for a Quantity, `{}` for a struct) or stays null where that zero encodes as null (Time, JSON,
nested slices, the JSONSchemaProps unions), and free-form JSON keeps its nulls; the input is
never mutated, unchanged subtrees are shared, and clean objects still come back as themselves."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kybern.api import errors, schema


def normalized(group: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """`normalize`'s result, checking that nothing was reported and the input is untouched."""
    before = copy.deepcopy(obj)
    result, unknown = schema.normalize(group, "v1", kind, obj)
    assert unknown == []
    assert obj == before
    return result


def pod_with(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def crd_with(props: dict[str, Any]) -> dict[str, Any]:
    schema_ = {"type": "object", "properties": props}
    version = {"name": "v1", "served": True, "storage": True}
    version["schema"] = {"openAPIV3Schema": schema_}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "versions": [version], "scope": "Namespaced"},
    }


def props_of(crd: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    return out


def test_null_fields_are_dropped_at_every_depth() -> None:
    obj = json.loads(
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": null,'
        ' "annotations": null, "creationTimestamp": null, "ownerReferences": null,'
        ' "managedFields": [{"manager": "m", "fieldsV1": null, "time": null}]},'
        ' "data": null, "binaryData": null, "immutable": null}'
    )
    assert normalized("", "ConfigMap", obj) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "creationTimestamp": None, "managedFields": [{"manager": "m"}]},
    }


def test_null_times_stay_unless_the_go_field_is_a_pointer() -> None:
    # a zero metav1.Time encodes as null: kube answers `lastProbeTime: null` whatever was sent
    cond = {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": None}
    obj = pod_with(containers=[{"name": "c"}])
    obj["metadata"]["creationTimestamp"] = None
    obj["status"] = {"conditions": [cond], "containerStatuses": []}
    assert schema.normalize("", "v1", "Pod", obj) == (obj, [])
    assert schema.normalize("", "v1", "Pod", obj)[0] is obj
    event = {"metadata": {"name": "e"}, "involvedObject": {}, "eventTime": None}
    event |= {"firstTimestamp": None, "series": {"count": 2, "lastObservedTime": None}}
    assert schema.normalize("", "v1", "Event", event)[0] is event
    # *metav1.Time and *metav1.MicroTime fields: nil, so absent
    obj["metadata"]["deletionTimestamp"] = None
    obj["status"]["startTime"] = None
    out = normalized("", "Pod", obj)
    assert "deletionTimestamp" not in out["metadata"] and "startTime" not in out["status"]
    assert out["status"]["conditions"][0] is cond
    lease = {"metadata": {"name": "l"}, "spec": {"renewTime": None, "acquireTime": None}}
    assert normalized("coordination.k8s.io", "Lease", lease)["spec"] == {}
    node = {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "timeAdded": None}]}}
    assert normalized("", "Node", node)["spec"] == {"taints": [{"key": "k"}]}
    job = {"metadata": {"name": "j"}, "status": {"startTime": None, "completionTime": None}}
    assert normalized("batch", "Job", job) == {"metadata": {"name": "j"}, "status": {}}


def test_null_fields_of_every_leaf_kind_in_a_pod() -> None:
    container = {
        "name": "c",
        "image": None,  # string
        "stdin": None,  # bool
        "ports": [{"containerPort": None, "hostIP": None}],  # int32
        "resources": {"limits": None, "requests": {"cpu": "1"}},  # map
        "livenessProbe": {"httpGet": {"port": None, "path": "/"}},  # int-or-string
        "securityContext": None,  # struct
        "args": None,  # list
    }
    obj = pod_with(containers=[container], terminationGracePeriodSeconds=None)
    obj["status"] = {"startTime": None, "conditions": [{"type": "Ready", "status": "True"}]}
    assert normalized("", "Pod", obj) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "ports": [{}],
                    "resources": {"requests": {"cpu": "1"}},
                    "livenessProbe": {"httpGet": {"path": "/"}},
                }
            ]
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_top_level_nulls_are_dropped() -> None:
    obj = {"apiVersion": None, "kind": None, "metadata": None, "spec": None, "status": None}
    assert normalized("", "Pod", obj) == {}


def test_null_map_values_become_zero_values() -> None:
    obj = pod_with(
        containers=[{"name": "c", "resources": {"limits": {"cpu": None, "memory": "1Gi"}}}],
        nodeSelector={"disk": None, "zone": "a"},
    )
    obj["metadata"]["labels"] = {"a": None, "b": "x"}
    out = normalized("", "Pod", obj)
    assert out["metadata"]["labels"] == {"a": "", "b": "x"}  # map[string]string
    assert out["spec"]["nodeSelector"] == {"disk": "", "zone": "a"}
    assert out["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "0", "memory": "1Gi"}
    secret = {"metadata": {"name": "s"}, "data": {"k": None, "j": "eA=="}}
    assert normalized("", "Secret", secret)["data"] == {"k": "", "j": "eA=="}  # []byte
    cm = {"metadata": {"name": "c"}, "binaryData": {"k": None}, "data": {"d": None}}
    assert normalized("", "ConfigMap", cm) == {
        "metadata": {"name": "c"},
        "binaryData": {"k": ""},
        "data": {"d": ""},
    }


def test_null_list_items_become_zero_values() -> None:
    obj = pod_with(
        containers=[None, {"name": "c", "args": [None, "x"], "command": [None]}],
        securityContext={"supplementalGroups": [None, 5]},  # []int64
        imagePullSecrets=[None],
    )
    obj["metadata"]["finalizers"] = [None]
    out = normalized("", "Pod", obj)
    assert out["spec"]["containers"] == [{}, {"name": "c", "args": ["", "x"], "command": [""]}]
    assert out["spec"]["securityContext"] == {"supplementalGroups": [0, 5]}
    assert out["spec"]["imagePullSecrets"] == [{}]
    assert out["metadata"]["finalizers"] == [""]
    items = out["spec"]["containers"]
    assert items[0] is not normalized("", "Pod", obj)["spec"]["containers"][0]  # a fresh dict


def test_nulls_whose_zero_encodes_as_null_are_kept() -> None:
    pdb = {"metadata": {"name": "b"}, "status": {"disruptedPods": {"p": None}}}  # metav1.Time
    assert schema.normalize("policy", "v1", "PodDisruptionBudget", pdb) == (pdb, [])
    csr = {"metadata": {"name": "c"}, "spec": {"extra": {"k": None}}}  # map[string]ExtraValue
    assert schema.normalize("certificates.k8s.io", "v1", "CertificateSigningRequest", csr)[0] == csr


def test_free_form_json_keeps_its_nulls() -> None:
    rev = {"metadata": {"name": "r"}, "revision": 1, "data": {"a": None, "b": [None]}}
    assert schema.normalize("apps", "v1", "ControllerRevision", rev) == (rev, [])
    meta = {"name": "c", "managedFields": [{"manager": "m", "fieldsV1": {"f:data": None}}]}
    cm = {"metadata": meta}
    assert schema.normalize("", "v1", "ConfigMap", cm) == (cm, [])
    rev_null = {"metadata": {"name": "r"}, "revision": 1, "data": None}
    assert normalized("apps", "ControllerRevision", rev_null) == {
        "metadata": {"name": "r"},
        "revision": 1,
    }


def test_crd_schema_nulls() -> None:
    crd = crd_with(
        {
            "a": {"type": "string", "default": None, "example": None, "enum": ["x", None]},
            "b": None,  # map[string]JSONSchemaProps: a zero JSONSchemaProps
            "c": {"type": "object", "default": {"k": None}, "additionalProperties": None},
            "d": {"type": "array", "items": [None], "allOf": [None]},
            "e": {"type": "object", "dependencies": {"x": None}, "items": None},
        }
    )
    assert props_of(normalized("apiextensions.k8s.io", "CustomResourceDefinition", crd)) == {
        "a": {"type": "string", "enum": ["x", None]},  # a null default is no default
        "b": {},
        "c": {"type": "object", "default": {"k": None}},
        "d": {"type": "array", "items": [{}], "allOf": [{}]},
        "e": {"type": "object", "dependencies": {"x": None}},
    }


def test_unchanged_subtrees_are_shared() -> None:
    keep = {"name": "keep", "image": "i", "env": [{"name": "A", "value": "1"}]}
    volumes = [{"name": "v", "emptyDir": {}}]
    obj = pod_with(containers=[{"name": "c", "image": None}, keep], volumes=volumes)
    obj["metadata"]["labels"] = {"a": "b"}
    out = normalized("", "Pod", obj)
    assert out["spec"]["containers"][0] == {"name": "c"}
    assert out["spec"]["containers"][1] is keep
    assert out["spec"]["volumes"] is volumes
    assert out["metadata"] is obj["metadata"]
    assert out is not obj and out["spec"] is not obj["spec"]


def test_clean_check_refuses_nulls_it_would_change() -> None:
    node = schema._KIND_NODES["/v1/Pod"]
    for spec in (
        {"containers": [{"name": "c", "image": None}]},  # a leaf field
        {"containers": [{"name": "c"}], "securityContext": None},  # a struct field
        {"containers": [None]},  # a struct item
        {"containers": [{"name": "c", "args": [None]}]},  # a leaf item
        {"containers": [{"name": "c"}], "nodeSelector": {"a": None}},  # a map value
    ):
        assert not schema._clean_struct(node, {"spec": spec}), spec
    assert schema._clean_struct(node, {"spec": {"containers": [{"name": "c", "args": ["x"]}]}})
    pdb = schema._KIND_NODES["policy/v1/PodDisruptionBudget"]
    assert schema._clean_struct(pdb, {"status": {"disruptedPods": {"p": None}}})


def test_unknown_null_fields_are_still_reported() -> None:
    obj = pod_with(containers=[{"name": "c", "bogus": None}], nodeSelector=None)
    result, unknown = schema.normalize("", "v1", "Pod", obj)
    assert unknown == ["spec.containers[0].bogus"]
    assert result["spec"] == {"containers": [{"name": "c"}]}
    assert schema.strict_error("v1", "Pod", unknown).message.endswith(
        'strict decoding error: unknown field "spec.containers[0].bogus"'
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"containers": [None, {"name": 5}]},
            "json: cannot unmarshal number into Go struct field Container.spec.containers.name "
            "of type string",
        ),
        (
            {"nodeSelector": {"a": None, "b": 1}},
            "json: cannot unmarshal number into Go struct field PodSpec.spec.nodeSelector of "
            "type string",
        ),
        (
            {"hostname": None, "containers": [{"name": "c", "args": [None, True]}]},
            "json: cannot unmarshal bool into Go struct field Container.spec.containers.args "
            "of type string",
        ),
    ],
)
def test_type_errors_beside_nulls_are_still_raised(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.StatusError) as err:
        schema.normalize("", "v1", "Pod", pod_with(**spec))
    assert err.value.code == 400
    assert err.value.message == 'Pod in version "v1" cannot be handled as a Pod: ' + message


def test_pointer_times_are_the_proto_descriptors_pointer_times() -> None:
    """The metav1.Time/MicroTime fields whose Go field is a pointer (a null one is dropped) are
    exactly those kubectl's embedded protobuf descriptors mark as pointers, for stored kinds."""
    data = json.loads(Path(schema.__file__).with_name("proto_data.json").read_text())
    times = {f"k8s.io.apimachinery.pkg.apis.meta.v1.{t}" for t in ("Time", "MicroTime")}
    pointers = set()
    for message, fields in data["messages"].items():
        *_, version, name = message.split(".")
        for field in fields:
            if field[4] in times and field[6]:  # [json name, ..., message type, map, pointer, ...]
                pointers.add(f"{version.capitalize()}{name}.{field[0]}")
    not_stored = {"V1PodLogOptions.sinceTime", "V1HorizontalPodAutoscalerStatus.lastScaleTime"}
    assert pointers - not_stored == schema._POINTER_TIMES
