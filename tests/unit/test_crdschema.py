"""Values against CRD schemas, one keyword at a time: a table of (schema, value, expected causes)
whose expectations follow the Kubernetes API documentation's rules for structural schemas
(OpenAPI v3 value validation, `x-kubernetes-*` extensions), plus pruning and defaulting."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kybern.api import crdschema, crdschema_apply

Obj = dict[str, Any]


def obj(props: Obj, **extra: Any) -> Obj:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}


def causes(schema: Obj, spec: Any) -> list[str]:
    node = crdschema.compile_schema(schema)
    return [e.text() for e in crdschema.validate(node, {"spec": spec})]


# (id, property schema, valid values, invalid value, expected cause)
CASES: list[tuple[str, Obj, list[Any], Any, str]] = [
    (
        "type-integer",
        {"type": "integer"},
        [1, 0, -5, 2.0],
        "3",
        'spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"',
    ),
    (
        "type-number",
        {"type": "number"},
        [1, 1.5],
        True,
        'spec.x: Invalid value: "boolean": spec.x in body must be of type number: "boolean"',
    ),
    (
        "type-string",
        {"type": "string"},
        ["", "a"],
        5,
        'spec.x: Invalid value: "integer": spec.x in body must be of type string: "integer"',
    ),
    (
        "type-boolean",
        {"type": "boolean"},
        [True, False],
        "true",
        'spec.x: Invalid value: "string": spec.x in body must be of type boolean: "string"',
    ),
    (
        "type-array",
        {"type": "array", "items": {"type": "string"}},
        [[], ["a"]],
        {"a": 1},
        'spec.x: Invalid value: "object": spec.x in body must be of type array: "object"',
    ),
    (
        "type-object",
        {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        [{}, {"a": 1}],
        [1],
        'spec.x: Invalid value: "array": spec.x in body must be of type object: "array"',
    ),
    (
        "nullable",
        {"type": "string", "nullable": True},
        [None, "a"],
        3,
        'spec.x: Invalid value: "integer": spec.x in body must be of type string: "integer"',
    ),
    (
        "enum",
        {"type": "string", "enum": ["red", "blue"]},
        ["red", "blue"],
        "pink",
        'spec.x: Unsupported value: "pink": supported values: "red", "blue"',
    ),
    (
        "enum-int",
        {"type": "integer", "enum": [1, 2]},
        [1, 2],
        3,
        'spec.x: Unsupported value: 3: supported values: "1", "2"',
    ),
    (
        "maximum",
        {"type": "integer", "maximum": 10},
        [10, -1],
        11,
        "spec.x: Invalid value: 11: spec.x in body should be less than or equal to 10",
    ),
    (
        "exclusiveMaximum",
        {"type": "integer", "maximum": 10, "exclusiveMaximum": True},
        [9],
        10,
        "spec.x: Invalid value: 10: spec.x in body should be less than 10",
    ),
    (
        "minimum",
        {"type": "number", "minimum": 1.5},
        [1.5, 3],
        1,
        "spec.x: Invalid value: 1: spec.x in body should be greater than or equal to 1.5",
    ),
    (
        "exclusiveMinimum",
        {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        [1],
        0,
        "spec.x: Invalid value: 0: spec.x in body should be greater than 0",
    ),
    (
        "multipleOf",
        {"type": "integer", "multipleOf": 5},
        [0, 10, -5],
        7,
        "spec.x: Invalid value: 7: spec.x in body should be a multiple of 5",
    ),
    (
        "maxLength-runes",
        {"type": "string", "maxLength": 3},
        ["abc", "äöü"],
        "abcd",
        "spec.x: Too long: must have at most 3 bytes",
    ),
    (
        "minLength",
        {"type": "string", "minLength": 2},
        ["ab"],
        "a",
        'spec.x: Invalid value: "a": spec.x in body should be at least 2 chars long',
    ),
    (
        "pattern-re2",
        {"type": "string", "pattern": "^[a-z]+$"},
        ["abc"],
        "ABC",
        "spec.x: Invalid value: \"ABC\": spec.x in body should match '^[a-z]+$'",
    ),
    (
        "pattern-unanchored",
        {"type": "string", "pattern": "b+"},
        ["abba"],
        "ac",
        "spec.x: Invalid value: \"ac\": spec.x in body should match 'b+'",
    ),
    (
        "maxItems",
        {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
        [[], [1, 2]],
        [1, 2, 3],
        "spec.x: Too many: 3: must have at most 2 items",
    ),
    (
        "minItems",
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        [[1]],
        [],
        "spec.x: Invalid value: 0: spec.x in body should have at least 1 items",
    ),
    (
        "items",
        {"type": "array", "items": {"type": "integer", "minimum": 0}},
        [[0, 1]],
        [1, -1],
        "spec.x[1]: Invalid value: -1: spec.x[1] in body should be greater than or equal to 0",
    ),
    (
        "maxProperties",
        {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1},
        [{"a": "b"}],
        {"a": "b", "c": "d"},
        "spec.x: Too many: 2: must have at most 1 items",
    ),
    (
        "minProperties",
        {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
        [{"a": "b"}],
        {},
        "spec.x: Invalid value: 0: spec.x in body should have at least 1 properties",
    ),
    (
        "required",
        {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
        [{"a": ""}],
        {},
        "spec.x.a: Required value",
    ),
    (
        "properties",
        {"type": "object", "properties": {"a": {"type": "integer"}}},
        [{"a": 1}, {}],
        {"a": "1"},
        'spec.x.a: Invalid value: "string": spec.x.a in body must be of type integer: "string"',
    ),
    (
        "additionalProperties",
        {"type": "object", "additionalProperties": {"type": "integer"}},
        [{"any": 1}],
        {"k": "v"},
        'spec.x.k: Invalid value: "string": spec.x.k in body must be of type integer: "string"',
    ),
    (
        "int-or-string",
        {"x-kubernetes-int-or-string": True},
        [1, "50%"],
        1.5,
        'spec.x: Invalid value: "number": spec.x in body must be of type integer,string: "number"',
    ),
    (
        "allOf",
        {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]},
        [1, 5],
        6,
        "spec.x: Invalid value: 6: spec.x in body should be less than or equal to 5",
    ),
    (
        "anyOf",
        {"type": "integer", "anyOf": [{"maximum": 1}, {"minimum": 10}]},
        [0, 10],
        5,
        "spec.x: Invalid value: 5: must validate at least one schema (anyOf)",
    ),
    (
        "oneOf-none",
        {"type": "integer", "oneOf": [{"maximum": 1}, {"minimum": 10}]},
        [0, 11],
        5,
        "spec.x: Invalid value: 5: must validate one and only one schema (oneOf). Found none valid",
    ),
    (
        "oneOf-two",
        {"type": "integer", "oneOf": [{"minimum": 1}, {"minimum": 2}]},
        [1],
        3,
        "spec.x: Invalid value: 3: must validate one and only one schema (oneOf). "
        "Found 2 valid alternatives",
    ),
    (
        "not",
        {"type": "string", "not": {"enum": ["forbidden"]}},
        ["ok"],
        "forbidden",
        'spec.x: Invalid value: "forbidden": must not validate the schema (not)',
    ),
    (
        "list-type-set",
        {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        [["a", "b"]],
        ["a", "b", "a"],
        'spec.x[2]: Duplicate value: "a"',
    ),
    (
        "list-type-map",
        {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
            },
        },
        [[{"name": "a", "port": 1}, {"name": "b", "port": 1}]],
        [{"name": "a", "port": 1}, {"name": "a", "port": 2}],
        'spec.x[1]: Duplicate value: {"name":"a"}',
    ),
    (
        "embedded-resource",
        {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "x-kubernetes-preserve-unknown-fields": True,
        },
        [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}],
        {"apiVersion": "v1", "metadata": {"name": "p"}},
        "spec.x.kind: Required value: must not be empty",
    ),
    (
        "embedded-resource-name",
        {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "x-kubernetes-preserve-unknown-fields": True,
        },
        [{"apiVersion": "v1", "kind": "Pod"}],
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}},
        'spec.x.metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain',
    ),
]

FORMATS: list[tuple[str, list[str], str]] = [
    ("date", ["2024-02-29"], "2023-02-29"),
    ("date-time", ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00.5+02:00"], "yesterday"),
    ("duration", ["1h30m", "250ms", "3 days"], "soon"),
    ("byte", ["aGVsbG8="], "not base64!"),
    ("uri", ["https://example.com/x", "/path"], "not a uri"),
    ("email", ["a@example.com"], "a@"),
    ("hostname", ["example.com", "a-b"], "-bad-"),
    ("ipv4", ["10.0.0.1"], "10.0.0.256"),
    ("ipv6", ["::1", "fe80::1"], "10.0.0.1"),
    ("cidr", ["10.0.0.0/8", "fd00::/64"], "10.0.0.1"),
    ("mac", ["00:11:22:33:44:55"], "00:11:22"),
    ("uuid", ["123e4567-e89b-12d3-a456-426614174000"], "123"),
    ("uuid4", ["123e4567-e89b-42d3-a456-426614174000"], "123e4567-e89b-12d3-a456-426614174000"),
    ("isbn10", ["0306406152"], "0306406153"),
    ("creditcard", ["4111111111111111"], "4111111111111112"),
    ("hexcolor", ["#fff", "#a0b0c0"], "#ggg"),
    ("rgbcolor", ["rgb(1, 2, 3)"], "rgb(1,2)"),
    ("ssn", ["123-45-6789"], "12-345-6789"),
]


@pytest.mark.parametrize(("name", "prop", "good", "bad", "want"), CASES, ids=[c[0] for c in CASES])
def test_keyword(name: str, prop: Obj, good: list[Any], bad: Any, want: str) -> None:
    schema = obj({"x": prop})
    for value in good:
        assert causes(schema, {"x": value}) == [], value
    got = causes(schema, {"x": bad})
    assert any(g.startswith(want) for g in got), got


@pytest.mark.parametrize(("fmt", "good", "bad"), FORMATS, ids=[f[0] for f in FORMATS])
def test_format(fmt: str, good: list[str], bad: str) -> None:
    schema = obj({"x": {"type": "string", "format": fmt}})
    for value in good:
        assert causes(schema, {"x": value}) == [], value
    got = causes(schema, {"x": bad})
    assert got == [f'spec.x: Invalid value: "{bad}": spec.x in body must be of type {fmt}: "{bad}"']


def test_unknown_format_is_not_checked() -> None:
    assert causes(obj({"x": {"type": "string", "format": "kybern-thing"}}), {"x": "?"}) == []


def test_numeric_formats_are_not_checked() -> None:
    assert causes(obj({"x": {"type": "integer", "format": "int32"}}), {"x": 2**40}) == []


def test_null_in_non_nullable_field() -> None:
    got = causes(obj({"x": {"type": "array", "items": {"type": "string"}}}), {"x": [None]})
    assert got == [
        'spec.x[0]: Invalid value: "null": spec.x[0] in body must be of type string: "null"'
    ]


def test_max_items_does_not_look_at_every_item() -> None:
    prop = {"type": "array", "maxItems": 10, "items": {"type": "integer", "minimum": 0}}
    got = causes(obj({"x": prop}), {"x": [-1] * 10_000})
    assert got == ["spec.x: Too many: 10000: must have at most 10 items"]


def test_blocking_errors() -> None:
    node = crdschema.compile_schema(obj({"x": {"type": "integer", "maximum": 1}}))
    assert crdschema.blocking(crdschema.validate(node, {"spec": {"x": "a"}}))
    assert not crdschema.blocking(crdschema.validate(node, {"spec": {"x": 2}}))


# ---- pruning and defaulting --------------------------------------------------------------------


def test_prune_reports_unknown_fields() -> None:
    schema = obj({"a": {"type": "object", "properties": {"b": {"type": "string"}}}})
    schema["properties"]["spec"]["properties"]["list"] = {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
    }
    value = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n", "bogus": 1},
        "spec": {"a": {"b": "c", "d": 1}, "list": [{"k": "v", "z": 2}], "top": True},
        "other": 1,
    }
    unknown = crdschema_apply.prune(crdschema.compile_schema(schema), value)
    assert sorted(unknown) == sorted(
        ["metadata.bogus", "spec.a.d", "spec.list[0].z", "spec.top", "other"]
    )
    assert value == {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n"},
        "spec": {"a": {"b": "c"}, "list": [{"k": "v"}]},
    }


def test_preserve_unknown_fields_keeps_everything_below() -> None:
    schema = obj({"free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}})
    value = {"spec": {"free": {"any": {"thing": [1, 2]}}}}
    before = copy.deepcopy(value)
    assert crdschema_apply.prune(crdschema.compile_schema(schema), value) == []
    assert value == before


def test_embedded_resource_metadata_is_pruned() -> None:
    schema = obj(
        {
            "tpl": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            }
        }
    )
    value = {"spec": {"tpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "y": 2}}}
    assert crdschema_apply.prune(crdschema.compile_schema(schema), value) == ["spec.tpl.metadata.x"]


def test_non_nullable_null_is_defaulted() -> None:
    node = crdschema.compile_schema(obj({"a": {"type": "string", "default": "d"}}))
    value: Obj = {"spec": {"a": None}}
    crdschema_apply.prune(node, value)
    crdschema_apply.apply_defaults(node, value)
    assert value == {"spec": {"a": "d"}}


def test_defaults_nested_and_in_lists_and_maps() -> None:
    schema = obj(
        {
            "replicas": {"type": "integer", "default": 1},
            "tpl": {
                "type": "object",
                "default": {},
                "properties": {"image": {"type": "string", "default": "busybox"}},
            },
            "ports": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"protocol": {"type": "string", "default": "TCP"}},
                },
            },
            "labels": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"v": {"type": "integer", "default": 0}},
                },
            },
        }
    )
    node = crdschema.compile_schema(schema)
    value: Obj = {"spec": {"ports": [{}, {"protocol": "UDP"}], "labels": {"a": {}}}}
    assert crdschema_apply.lacks_defaults(node, value)
    crdschema_apply.apply_defaults(node, value)
    assert value == {
        "spec": {
            "replicas": 1,
            "tpl": {"image": "busybox"},
            "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],
            "labels": {"a": {"v": 0}},
        }
    }
    assert not crdschema_apply.lacks_defaults(node, value)


def test_paths_and_depth() -> None:
    o: Obj = {"spec": {"a": {"b": 3}}}
    assert crdschema_apply.at_path(o, ".spec.a.b") == 3
    assert crdschema_apply.at_path(o, ".spec.x") is crdschema.MISSING
    crdschema_apply.set_path(o, ".spec.n.m", 1)
    assert o["spec"]["n"] == {"m": 1}
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    assert crdschema_apply.depth(deep, 128) == 129
    assert crdschema_apply.depth({"a": [1, {"b": 2}]}, 128) == 3
