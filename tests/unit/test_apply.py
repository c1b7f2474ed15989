"""Server-side apply and managedFields on plain objects (no server): what a create or update
records (kube's shape: `.` where a map, list or item appears, key defaults such as
`protocol: TCP`), apply create and no-op re-apply, conflicts and `force`, shared ownership,
pruning of fields an applier stops specifying, associative lists merged by key, the status
subresource, the 10-updater cap, `before-first-apply`, kubectl's client-side-apply migration and
custom resources typed by their CRD schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kybern.api import apply, defaults, errors
from kybern.api import managedfields as mf

T0, T1 = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"
Obj = dict[str, Any]


def fm_deploy() -> apply.FieldManager:
    return apply.FieldManager.for_kind("apps", "v1", "Deployment", True)


def deployment(replicas: int = 1, image: str = "nginx:1", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "d", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}
                    ]
                },
            },
            **spec,
        },
    }


def entries(obj: Obj) -> dict[tuple[str, str, str], Obj]:
    return {
        (e["manager"], e["operation"], e.get("subresource", "")): e
        for e in obj["metadata"]["managedFields"]
    }


def created(manager: str = "kubectl-create") -> Obj:
    obj = deployment()
    defaults.apply_defaults("Deployment", obj)
    fm_deploy().update(None, obj, manager, when=T0)
    return obj


def test_create_records_what_kube_records() -> None:
    obj = created()
    (e,) = obj["metadata"]["managedFields"]
    assert {k: v for k, v in e.items() if k != "fieldsV1"} == {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    f = e["fieldsV1"]
    assert f["f:metadata"] == {"f:labels": {"f:app": {}, ".": {}}}  # no name/namespace
    spec = f["f:spec"]
    assert "." not in spec and "." not in spec["f:template"]  # Go value structs
    assert spec["f:selector"] == {} and spec["f:replicas"] == {}  # atomic selector
    assert spec["f:strategy"]["f:rollingUpdate"]["."] == {}  # a pointer: appears
    containers = spec["f:template"]["f:spec"]["f:containers"]
    assert "." not in containers  # a required (non-omitempty) list
    c = containers['k:{"name":"nginx"}']
    assert c["."] == {} and "f:imagePullPolicy" in c and c["f:resources"] == {}
    assert c["f:ports"] == {
        'k:{"containerPort":80,"protocol":"TCP"}': {
            "f:containerPort": {},
            "f:protocol": {},
            ".": {},
        },
        ".": {},
    }


def test_update_takes_changed_fields_and_merges_the_entry() -> None:
    fm = fm_deploy()
    live = created()
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 5
    fm.update(live, new, "kubectl-scale", when=T1)
    got = entries(new)
    assert got["kubectl-scale", "Update", ""]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in got["kubectl-create", "Update", ""]["fieldsV1"]["f:spec"]
    # unchanged object: managedFields and times untouched
    again = copy.deepcopy(new)
    fm.update(new, again, "someone", when="2030-01-01T00:00:00Z")
    assert again["metadata"]["managedFields"] == new["metadata"]["managedFields"]
    # status through the subresource: its own entry, only status
    st = copy.deepcopy(new)
    st["status"] = {"replicas": 5, "conditions": [{"type": "Available", "status": "True"}]}
    fm.update(new, st, "kube-controller-manager", "status", when=T1)
    e = entries(st)["kube-controller-manager", "Update", "status"]
    assert e["subresource"] == "status" and list(e) == [
        "manager",
        "operation",
        "apiVersion",
        "time",
        "fieldsType",
        "fieldsV1",
        "subresource",
    ]
    assert e["fieldsV1"] == {
        "f:status": {
            "f:conditions": {
                'k:{"type":"Available"}': {"f:status": {}, "f:type": {}, ".": {}},
                ".": {},
            },
            "f:replicas": {},
        }
    }
    # status written through the main resource is reset: nobody owns it
    main = copy.deepcopy(new)
    main["status"] = {"replicas": 7}
    fm.update(new, main, "x", when=T1)
    assert ("x", "Update", "") not in entries(main)


def test_removed_fields_leave_every_manager_and_reset_requests() -> None:
    fm = fm_deploy()
    live = created()
    new = copy.deepcopy(live)
    del new["metadata"]["labels"]
    fm.update(live, new, "kubectl-edit", when=T1)
    assert "f:metadata" not in entries(new)["kubectl-create", "Update", ""]["fieldsV1"]
    assert ("kubectl-edit", "Update", "") not in entries(new)  # removing owns nothing
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = []
    reset["spec"]["replicas"] = 2
    fm.update(live, reset, "kubectl-edit", when=T1)
    assert "managedFields" not in reset["metadata"]  # untracked until the first apply


def test_update_managers_are_capped_at_ten() -> None:
    cm = apply.FieldManager.for_kind("", "v1", "ConfigMap", False)
    obj: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    cm.update(None, obj, "m0", when="2024-01-01T00:00:00Z")
    for i in range(1, 13):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        cm.update(obj, new, f"m{i}", when=f"2024-01-01T00:00:{i:02d}Z")
        obj = new
    got = entries(obj)
    assert len(got) == 10 and ("ancient-changes", "Update", "") in got
    ancient = got["ancient-changes", "Update", ""]["fieldsV1"]["f:data"]
    assert set(ancient) == {".", "f:k1", "f:k2", "f:k3"}  # m0 .. m3; m0 owned the empty map


def test_apply_creates_then_is_a_no_op() -> None:
    fm = fm_deploy()
    cfg = deployment()
    out = fm.apply(None, cfg, "kubectl", when=T0)
    (e,) = out["metadata"]["managedFields"]
    assert (e["manager"], e["operation"], e["time"]) == ("kubectl", "Apply", T0)
    assert e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"nginx"}': {
            "f:image": {},
            "f:name": {},
            "f:ports": {
                'k:{"containerPort":80,"protocol":"TCP"}': {"f:containerPort": {}, ".": {}}
            },
            ".": {},
        }
    }
    assert "f:name" not in e["fieldsV1"]["f:metadata"]
    again = fm.apply(copy.deepcopy(out), cfg, "kubectl", when=T1)
    assert again == out  # same object, times untouched: no write


def test_conflict_force_and_shared_ownership() -> None:
    fm = fm_deploy()
    live = created("kubectl-client-side-apply")
    with pytest.raises(errors.StatusError) as e:
        fm.apply(live, deployment(replicas=3), "other", when=T1)
    assert e.value.code == 409
    assert e.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert [(c.reason, c.field) for c in e.value.causes] == [
        ("FieldManagerConflict", ".spec.replicas")
    ]
    # the same values: shared
    shared = fm.apply(live, deployment(replicas=1), "other", when=T1)
    got = entries(shared)
    assert "f:replicas" in got["other", "Apply", ""]["fieldsV1"]["f:spec"]
    assert "f:replicas" in got["kubectl-client-side-apply", "Update", ""]["fieldsV1"]["f:spec"]
    # forced: ownership moves
    forced = fm.apply(shared, deployment(replicas=3), "other", force=True, when=T1)
    got = entries(forced)
    assert forced["spec"]["replicas"] == 3
    assert "f:replicas" not in got["kubectl-client-side-apply", "Update", ""]["fieldsV1"]["f:spec"]
    with pytest.raises(errors.StatusError) as e2:
        fm.apply(forced, deployment(replicas=4, image="nginx:2"), "kubectl", when=T1)
    image = '.spec.template.spec.containers[name="nginx"].image'
    assert e2.value.message == (
        'Apply failed with 3 conflicts: conflicts with "kubectl-client-side-apply" using '
        f'apps/v1:\n- {image}\nconflicts with "other":\n- .spec.replicas\n- {image}'
    )


def test_prune_what_the_applier_stopped_specifying() -> None:
    fm = fm_deploy()
    cfg = deployment(minReadySeconds=5)
    cfg["metadata"]["labels"]["tier"] = "front"
    out = fm.apply(None, cfg, "a", when=T0)
    out = fm.apply(out, deployment(), "a", when=T1)  # drops minReadySeconds and the label
    assert "minReadySeconds" not in out["spec"] and out["metadata"]["labels"] == {"app": "web"}
    # a field another applier also owns stays
    out = fm.apply(out, deployment(minReadySeconds=5), "a", when=T1)
    out = fm.apply(out, {**deployment(minReadySeconds=5), "spec": {"minReadySeconds": 5}}, "b")
    out = fm.apply(out, deployment(), "a", when=T1)
    assert out["spec"]["minReadySeconds"] == 5
    got = entries(out)
    assert "f:minReadySeconds" not in got["a", "Apply", ""]["fieldsV1"]["f:spec"]
    assert got["b", "Apply", ""]["fieldsV1"]["f:spec"] == {"f:minReadySeconds": {}}


def test_associative_lists_merge_by_key() -> None:
    fm = fm_deploy()
    out = fm.apply(None, deployment(), "a", when=T0)
    side = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "envoy"},
                        {"name": "nginx", "ports": [{"containerPort": 443, "protocol": "TCP"}]},
                    ]
                }
            }
        },
    }
    out = fm.apply(out, side, "b", when=T1)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["sidecar", "nginx"]  # b's order for shared items
    assert cs[1]["image"] == "nginx:1"  # a's fields kept
    assert [p["containerPort"] for p in cs[1]["ports"]] == [80, 443]
    # a drops nothing it shares; b stops applying the sidecar: it goes away
    side["spec"]["template"]["spec"]["containers"] = side["spec"]["template"]["spec"]["containers"][
        1:
    ]
    out = fm.apply(out, side, "b", when=T1)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_before_first_apply_and_kubectl_migration() -> None:
    fm = fm_deploy()
    untracked = deployment()
    out = fm.apply(untracked, deployment(replicas=2), "other", force=True, when=T1)
    assert ("before-first-apply", "Update", "") in entries(out)
    # client-side apply then server-side apply by kubectl: values of last-applied are taken over
    csa = deployment()
    csa["metadata"]["annotations"] = {
        apply.LAST_APPLIED: mf.go_json(deployment()) + "\n",
    }
    fm.update(None, csa, "kubectl-client-side-apply", when=T0)
    out = fm.apply(csa, deployment(replicas=3), "kubectl", when=T1)
    got = entries(out)
    assert out["spec"]["replicas"] == 3
    assert "f:replicas" in got["kubectl", "Apply", ""]["fieldsV1"]["f:spec"]
    assert '"replicas":3' in out["metadata"]["annotations"][apply.LAST_APPLIED]
    with pytest.raises(errors.StatusError):  # another manager gets no such pass
        fm.apply(csa, deployment(replicas=3), "someone-else", when=T1)


def test_apply_refusals() -> None:
    fm = fm_deploy()
    with pytest.raises(errors.StatusError, match="invalid object type: apps/v1, Kind=Pod"):
        fm.apply(None, {"apiVersion": "apps/v1", "kind": "Pod"}, "a")
    bad = deployment()
    bad["metadata"]["managedFields"] = []
    with pytest.raises(errors.StatusError, match=r"metadata\.managedFields must be nil"):
        fm.apply(None, bad, "a")
    nokey = deployment()
    del nokey["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(errors.StatusError) as e:
        fm.apply(None, nokey, "a")
    assert e.value.code == 500 and 'omits key field "name"' in e.value.message


def test_custom_resource_types_from_the_crd_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["id"],
                        "items": {
                            "type": "object",
                            "properties": {"id": {"type": "string"}, "v": {"type": "integer"}},
                        },
                    },
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    }
    fm = apply.FieldManager.for_custom("example.com/v1", "Thing", schema, False)
    cfg = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t", "labels": {"a": "b"}},
        "spec": {"items": [{"id": "x", "v": 1}], "tags": ["p", "q"]},
    }
    out = fm.apply(None, cfg, "a", when=T0)
    f = out["metadata"]["managedFields"][0]["fieldsV1"]
    assert f["f:spec"] == {
        "f:items": {'k:{"id":"x"}': {"f:id": {}, "f:v": {}, ".": {}}},
        "f:tags": {},  # lists are atomic unless the schema says otherwise
    }
    assert f["f:metadata"] == {"f:labels": {"f:a": {}}}
    untyped = apply.FieldManager.for_custom("example.com/v1", "Thing", None, False)
    out = untyped.apply(None, cfg, "a", when=T0)
    assert out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:tags"] == {}


def test_client_times_in_another_format_change_nothing() -> None:
    live = created()
    echoed = copy.deepcopy(live)  # as the Python client sends it back
    echoed["metadata"]["managedFields"][0]["time"] = "2024-01-01T00:00:00+00:00"
    fm_deploy().update(live, echoed, "OpenAPI-Generator", when=T1)
    assert echoed == live
