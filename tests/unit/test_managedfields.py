"""Field sets as structured-merge-diff has them: path-element serialization and order, the
`fieldsV1` JSON (with `.` for members that have children), set algebra (hypothesis: union and
difference laws, intersection, JSON round trip), managedFields entries (decode errors, kube's
sort order) and the exact wording of apply conflicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.api import managedfields as mf
from kybern.api.managedfields import FieldSet, Manager, Owned


def test_path_elements_serialize_as_kube() -> None:
    assert mf.key_pe({"protocol": "TCP", "containerPort": 80}) == (
        'k:{"containerPort":80,"protocol":"TCP"}'
    )
    assert mf.value_pe("a<b") == 'v:"a\\u003cb"'
    assert mf.value_pe(1.0) == "v:1" and mf.value_pe(True) == "v:true"
    assert mf.index_pe(3) == "i:3"
    path = ("f:spec", 'k:{"name":"c"}', "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}')
    assert mf.path_string(path) == '.spec[name="c"].ports[containerPort=80,protocol="TCP"]'
    assert mf.path_string(("f:finalizers", 'v:"a"', "i:0")) == '.finalizers[="a"][0]'


def test_order_fields_keys_values_indexes() -> None:
    pes = [
        "i:2",
        'v:"aa"',
        "v:true",
        "v:3",
        'k:{"name":"b"}',
        "f:b",
        "f:a",
        "i:10",
        'k:{"name":"a"}',
    ]
    assert sorted(pes, key=mf.pe_order) == [
        "f:a",
        "f:b",
        'k:{"name":"a"}',
        'k:{"name":"b"}',
        "v:3",
        'v:"aa"',
        "v:true",
        "i:2",
        "i:10",
    ]


def test_fields_v1_round_trip_and_dot() -> None:
    doc = {
        "f:metadata": {"f:labels": {"f:app": {}, ".": {}}},
        "f:spec": {
            "f:containers": {'k:{"name":"c"}': {"f:image": {}, ".": {}}},
            "f:replicas": {},
        },
    }
    s = FieldSet.from_json(doc)
    assert s.has(("f:metadata", "f:labels"))  # `.`: a member with children
    assert not s.has(("f:metadata",))  # only children
    assert s.has(("f:spec", "f:containers", 'k:{"name":"c"}', "f:image"))
    assert s.to_json() == doc
    assert list(s.to_json()["f:metadata"]["f:labels"]) == ["f:app", "."]  # `.` comes last
    assert FieldSet.from_json({"f:a": {}, "r:unknown": {}}).to_json() == {"f:a": {}}
    with pytest.raises(ValueError):
        FieldSet.from_json({"f:a": []})
    with pytest.raises(ValueError):
        FieldSet.from_json({"x": {}})


def test_difference_keeps_children_of_a_removed_parent() -> None:
    s = FieldSet.of(("f:a", "f:b"), ("f:c",))
    parent = FieldSet.of(("f:a",))
    assert s.difference(parent) == s  # parent - child semantics of fieldpath.Set
    assert s.recursive_difference(parent) == FieldSet.of(("f:c",))
    assert s.intersection(FieldSet.of(("f:a", "f:b"), ("f:d",))) == FieldSet.of(("f:a", "f:b"))
    assert [mf.path_string(p) for p in s.paths()] == [".c", ".a.b"]


# ---- properties --------------------------------------------------------------------------------

_pe = st.one_of(
    st.sampled_from(["a", "b", "c", "spec", "x.y"]).map(lambda n: "f:" + n),
    st.sampled_from(["n1", "n2"]).map(lambda n: mf.key_pe({"name": n})),
    st.one_of(st.integers(-3, 3), st.sampled_from(["u", "v"]), st.booleans()).map(mf.value_pe),
    st.integers(0, 3).map(mf.index_pe),
)
_paths = st.lists(st.lists(_pe, min_size=1, max_size=4).map(tuple), max_size=12)
_sets = _paths.map(lambda ps: FieldSet.of(*ps))


def _members(s: FieldSet) -> set[tuple[str, ...]]:
    return set(s.paths())


@settings(max_examples=150, deadline=None)
@given(_sets, _sets, _sets)
def test_set_laws(a: FieldSet, b: FieldSet, c: FieldSet) -> None:
    assert _members(a.union(b)) == _members(a) | _members(b)
    assert a.union(b) == b.union(a)
    assert a.union(b).union(c) == a.union(b.union(c))
    assert a.union(a) == a
    assert _members(a.intersection(b)) == _members(a) & _members(b)
    assert _members(a.difference(b)) == _members(a) - _members(b)
    assert a.difference(a).empty()
    assert a.union(b).difference(b) == a.difference(b)
    assert a.difference(b).intersection(b).empty()
    rd = _members(a.recursive_difference(b))
    assert rd == {
        p for p in _members(a) if not any(p[:i] in _members(b) for i in range(1, 1 + len(p)))
    }


@settings(max_examples=150, deadline=None)
@given(_sets)
def test_json_round_trip(a: FieldSet) -> None:
    assert FieldSet.from_json(a.to_json()) == a
    assert (
        FieldSet.from_json(mf.orjson.loads(mf.orjson.dumps(a.to_json()))).to_json() == a.to_json()
    )


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "port", "protocol"]),
        st.one_of(st.integers(), st.text(max_size=5)),
        min_size=1,
    )
)
def test_key_path_elements_parse_back(keys: dict[str, Any]) -> None:
    pe = mf.key_pe(keys)
    assert mf.pe_order(pe)[0] == 1
    assert FieldSet.from_json({pe: {}}).members == {pe}


# ---- entries and conflicts ---------------------------------------------------------------------


def _entry(manager: str, op: str, time: str, **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": op,
        "apiVersion": "apps/v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
        **extra,
    }


def test_entries_decode_encode_sorted_as_kube() -> None:
    entries = [
        _entry("b", "Update", "2024-01-01T00:00:02Z"),
        _entry("z", "Apply", "2024-01-01T00:00:09Z"),
        _entry("a", "Update", "2024-01-01T00:00:02Z", subresource="status"),
        _entry("c", "Update", "2024-01-01T00:00:01Z"),
    ]
    managed = mf.decode(entries)
    assert Manager("z", "Apply") in managed  # appliers are one entry whatever the version
    assert Manager("a", "Update", "apps/v1", "status") in managed
    out = mf.encode(managed)
    assert out is not None
    assert [(e["manager"], e["operation"]) for e in out] == [
        ("z", "Apply"),
        ("c", "Update"),
        ("a", "Update"),
        ("b", "Update"),
    ]
    assert out[2] == entries[2] and list(out[2]) == list(entries[2])
    assert mf.encode({}) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"operation": "Patch"}, "operation must be `Apply` or `Update`"),
        ({"apiVersion": ""}, "apiVersion must not be empty"),
        ({"fieldsType": ""}, "missing fieldsType in managed fields entry 0"),
        ({"fieldsType": "FieldsV2"}, 'invalid fieldsType "FieldsV2" in managed fields entry 0'),
    ],
)
def test_decode_refuses_what_kube_refuses(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("`", ".").replace("(", ".")):
        mf.decode([{**_entry("m", "Update", "2024-01-01T00:00:00Z"), **entry}])
    assert mf.is_reset([]) and mf.is_reset([{}]) and not mf.is_reset(None)


def test_conflict_status_one_and_many() -> None:
    csa = Manager("kubectl-client-side-apply", "Update", "apps/v1")
    err = mf.conflict_error({csa: FieldSet.of(("f:spec", "f:replicas"))})
    st_ = err.status()
    assert err.code == 409 and st_["reason"] == "Conflict"
    assert st_["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert st_["details"] == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }
    status = Manager("ctl", "Update", "apps/v1", "status")
    many = mf.conflict_error(
        {
            Manager("kubectl", "Apply"): FieldSet.of(("f:spec", "f:replicas"), ("f:data", "f:a")),
            status: FieldSet.of(("f:status", "f:x")),
        }
    )
    assert many.message == (
        'Apply failed with 3 conflicts: conflicts with "ctl" with subresource "status" using '
        'apps/v1:\n- .status.x\nconflicts with "kubectl":\n- .data.a\n- .spec.replicas'
    )
    assert [c.field for c in many.causes] == [".status.x", ".data.a", ".spec.replicas"]
    assert Owned(FieldSet(), "v1", True).time is None
