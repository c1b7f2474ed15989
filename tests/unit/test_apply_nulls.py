"""Server-side apply of configurations with explicit nulls, as structured-merge-diff merges
them: `null` is a valid (empty) map or list, so over a live granular map or list it keeps
what is there (the applier then owns nothing below it, and what it owned before is pruned),
over a scalar, an atomic value or nothing it is the applied value; a null item of a keyed
list or a set is refused as kube refuses it (a `StatusError`). And no JSON a client can send
as an applied configuration, over any live object, raises anything but a `StatusError`
(hypothesis)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybern.api import apply, defaults, errors
from kybern.api import managedfields as mf

T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z"
Obj = dict[str, Any]


def fm_cm() -> apply.FieldManager:
    return apply.FieldManager.for_kind("", "v1", "ConfigMap", False)


def fm_deploy() -> apply.FieldManager:
    return apply.FieldManager.for_kind("apps", "v1", "Deployment", True)


def cm(**fields: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, **fields}


def fields_of(obj: Obj) -> dict[str, Any]:
    return {e["manager"]: e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


def test_null_over_an_owned_map_prunes_what_the_applier_owned() -> None:
    fm = fm_cm()
    live = fm.apply(None, cm(data={"a": "1", "b": "2"}), "m", when=T0)
    out = fm.apply(live, cm(data=None), "m", when=T1)
    assert "data" not in out
    assert "managedFields" not in out["metadata"]  # nothing owned any more


def test_null_over_a_map_another_manager_owns_keeps_it() -> None:
    fm = fm_cm()
    live = fm.apply(None, cm(data={"a": "1"}), "m", when=T0)
    out = fm.apply(live, cm(data=None), "other", when=T1)
    assert out["data"] == {"a": "1"}  # merged: null is an empty map, nothing to change
    assert fields_of(out) == {"m": {"f:data": {"f:a": {}}}}  # and "other" owns nothing
    both = fm.apply(out, cm(data=None, binaryData={"k": "eA=="}), "other", when=T2)
    assert both["data"] == {"a": "1"} and both["binaryData"] == {"k": "eA=="}
    assert fields_of(both)["other"] == {"f:binaryData": {"f:k": {}}}


def test_null_over_a_granular_list_keeps_its_items() -> None:
    fm = fm_deploy()
    cfg: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    live = fm.apply(None, cfg, "m", when=T0)
    defaults.apply_defaults("Deployment", live)
    nulled = copy.deepcopy(cfg)
    nulled["spec"]["template"]["spec"]["containers"] = None
    out = fm.apply(live, nulled, "other", when=T1)
    assert (
        out["spec"]["template"]["spec"]["containers"]
        == live["spec"]["template"]["spec"]["containers"]
    )
    other = fields_of(out)["other"]["f:spec"]["f:template"]
    assert "f:spec" not in other  # a null granular list: nothing owned, not even itself


def test_null_over_a_scalar_is_the_applied_value() -> None:
    fm = fm_deploy()
    base: Obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    live = fm.apply(None, {**base, "spec": {"replicas": 3}}, "m", when=T0)
    out = fm.apply(live, {**base, "spec": {"replicas": None}}, "m", when=T1)
    assert out["spec"] == {"replicas": None}  # the typed object then drops it
    assert fields_of(out)["m"] == {"f:spec": {"f:replicas": {}}}
    with pytest.raises(errors.StatusError) as e:  # someone else's: a conflict like any value
        fm.apply(live, {**base, "spec": {"replicas": None}}, "other", when=T1)
    assert e.value.code == 409


def test_null_items_of_keyed_lists_and_sets_are_refused() -> None:
    fm = fm_deploy()
    base: Obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    spec = {"template": {"spec": {"containers": [None]}}}
    with pytest.raises(errors.StatusError) as e:
        fm.apply(None, {**base, "spec": spec}, "m", when=T0)
    assert e.value.code == 500
    assert "associative list with keys may not have a null element" in e.value.message
    with pytest.raises(errors.StatusError) as e:
        fm.apply(None, {**base, "metadata": {"name": "web", "finalizers": ["a", None]}}, "m")
    assert e.value.code == 500
    assert "associative list without keys has an element that's an explicit null" in (
        e.value.message
    )


# ---- any JSON: StatusError or a result ---------------------------------------------------------

NAMES = (
    "spec metadata labels annotations data binaryData replicas template containers name image "
    "ports containerPort protocol env value selector matchLabels finalizers status items id "
    "tags v x conditions type"
).split()
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "b", "TCP"])
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)
    ),
    max_leaves=12,
)
CRD_SCHEMA = {
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
                "tags": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
                "x": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}
KINDS = {
    "ConfigMap": lambda: fm_cm(),
    "Deployment": lambda: fm_deploy(),
    "Pod": lambda: apply.FieldManager.for_kind("", "v1", "Pod", True),
    "Thing": lambda: apply.FieldManager.for_custom("example.com/v1", "Thing", CRD_SCHEMA, True),
    "Untyped": lambda: apply.FieldManager.for_custom("example.com/v1", "Untyped", None, False),
}


@st.composite
def configs(draw: st.DrawFn, fm: apply.FieldManager) -> Obj:
    body = draw(st.dictionaries(st.sampled_from(NAMES), JSON, max_size=4))
    meta = draw(st.dictionaries(st.sampled_from(NAMES), JSON, max_size=3))
    meta.pop("managedFields", None)
    return {**body, "apiVersion": fm.api_version, "kind": fm.kind, "metadata": meta}


def _ok(fm: apply.FieldManager, live: Obj | None, cfg: Obj, manager: str, force: bool) -> Obj:
    try:
        out = fm.apply(live, cfg, manager, force, when=T1)
    except errors.StatusError:
        return live or {}
    orjson.dumps(out)
    mf.decode(out["metadata"].get("managedFields"))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_configs_with_nulls_raise_only_status_errors(data: st.DataObject) -> None:
    fm = KINDS[data.draw(st.sampled_from(sorted(KINDS)))]()
    live = _ok(fm, None, data.draw(configs(fm)), "a", False) or None
    if live is not None and data.draw(st.booleans()):
        changed = copy.deepcopy(live)
        changed.update(data.draw(st.dictionaries(st.sampled_from(NAMES), JSON, max_size=2)))
        changed["apiVersion"], changed["kind"] = fm.api_version, fm.kind
        if not isinstance(changed.get("metadata"), dict):
            changed["metadata"] = {}
        fm.update(live, changed, "updater", when=T0)
        live = changed
    for manager in ("a", "b"):
        cfg = data.draw(configs(fm))
        live = _ok(fm, live, cfg, manager, data.draw(st.booleans())) or None
