"""CEL validation rules (`x-kubernetes-validations`): compiling, evaluating with `self` typed by
the schema, transition rules (`oldSelf`, `optionalOldSelf`), messages, reasons and field paths,
Kubernetes' library functions, the static cost estimate and the runtime iteration budget."""

from __future__ import annotations

from typing import Any

import pytest

from kybern.api import cel, cel_cost, crdschema

Obj = dict[str, Any]


def compiled(spec_schema: Obj) -> crdschema.Node:
    node = crdschema.compile_schema({"type": "object", "properties": {"spec": spec_schema}})
    errs, _ = cel.compile_rules(node, "root")
    assert errs == [], [e.text() for e in errs]
    return node


def run(spec_schema: Obj, spec: Any, old: Any = None) -> list[str]:
    node = compiled(spec_schema)
    old_obj = {"spec": old} if old is not None else None
    return [e.text() for e in cel.evaluate(node, {"spec": spec}, old_obj)]


def rule(r: str, **kw: Any) -> list[Obj]:
    return [{"rule": r, **kw}]


NUMS = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}


def test_rule_pass_and_fail() -> None:
    schema = {**NUMS, "x-kubernetes-validations": rule("self.a <= self.b")}
    assert run(schema, {"a": 1, "b": 2}) == []
    assert run(schema, {"a": 3, "b": 2}) == [
        'spec: Invalid value: "object": failed rule: self.a <= self.b'
    ]


def test_message_message_expression_reason_field_path() -> None:
    schema = {
        **NUMS,
        "x-kubernetes-validations": [
            {"rule": "!has(self.a) || self.a < 10", "message": "a is too big"},
            {"rule": "self.b < 10", "messageExpression": "'b is ' + string(self.b)"},
            {
                "rule": "has(self.a)",
                "reason": "FieldValueRequired",
                "fieldPath": ".a",
                "message": "set a",
            },
            {"rule": "self.b != 13", "reason": "FieldValueForbidden", "message": "unlucky"},
        ],
    }
    assert run(schema, {"b": 13}) == [
        'spec: Invalid value: "object": b is 13',
        "spec.a: Required value: set a",
        "spec: Forbidden: unlucky",
    ]
    assert run(schema, {"a": 11, "b": 1}) == ['spec: Invalid value: "object": a is too big']


MACROS = [
    ("self.all(x, x > 0)", [1, 2], [1, 0]),
    ("self.exists(x, x == 3)", [3], [1]),
    ("self.exists_one(x, x == 3)", [3, 1], [3, 3]),
    ("self.map(x, x * 2) == [2, 4]", [1, 2], [1, 3]),
    ("self.filter(x, x > 1).size() == 1", [1, 2], [2, 3]),
    ("self.isSorted()", [1, 2, 2], [2, 1]),
    ("self.sum() == 6", [1, 2, 3], [1]),
    ("self.min() == 1 && self.max() == 3", [3, 1, 2], [0, 3]),
    ("self.indexOf(2) == 1 && self.lastIndexOf(2) == 2", [1, 2, 2], [2, 1]),
]


@pytest.mark.parametrize(("expr", "good", "bad"), MACROS, ids=[m[0] for m in MACROS])
def test_list_macros_and_library(expr: str, good: list[int], bad: list[int]) -> None:
    schema = {
        "type": "array",
        "maxItems": 100,
        "items": {"type": "integer"},
        "x-kubernetes-validations": rule(expr),
    }
    assert run(schema, good) == []
    assert len(run(schema, bad)) == 1


STRINGS = [
    ("self.matches('^[a-z]+$')", "abc", "aBc"),
    ("self.find('[0-9]+') == '42'", "a42b7", "ab"),
    ("self.findAll('[0-9]').size() == 2", "a4b2", "a4"),
    ("self.startsWith('a') && self.endsWith('z') && self.contains('m')", "amz", "mz"),
    ("self.lowerAscii() == 'abc' && self.upperAscii() == 'ABC'", "aBc", "abd"),
    ("self.split(',').size() == 2 && self.indexOf(',') == 1", "a,b", "a,b,c"),
    ("self.replace('-', '') == 'ab' && self.substring(1) == '-b'", "a-b", "ab"),
    ("self.trim() == 'x' && ['a', 'b'].join('-') == 'a-b'", " x ", "y"),
    ("isURL(self) && url(self).getHost() == 'example.com:8080'", "https://example.com:8080/p", "x"),
    (
        "url(self).getHostname() == 'example.com' && url(self).getPort() == '8080'",
        "https://example.com:8080",
        "https://example.com",
    ),
    (
        "url(self).getScheme() == 'https' && url(self).getQuery()['a'] == ['1']",
        "https://h/p?a=1",
        "http://h/?a=1",
    ),
    ("quantity(self).isLessThan(quantity('1Gi'))", "512Mi", "2Gi"),
    ("isQuantity(self) && quantity(self).asInteger() == 1000", "1k", "1Ki"),
    ("quantity(self).add(quantity('500m')).compareTo(quantity('1')) == 0", "500m", "1"),
    ("sets.contains(['a', 'b'], [self])", "a", "c"),
    ("self.size() == 3", "äöü", "ab"),
]


@pytest.mark.parametrize(("expr", "good", "bad"), STRINGS, ids=[s[0] for s in STRINGS])
def test_string_library(expr: str, good: str, bad: str) -> None:
    schema = {"type": "string", "x-kubernetes-validations": rule(expr)}
    assert run(schema, good) == []
    assert len(run(schema, bad)) == 1


def test_values_are_typed_by_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ratio": {"type": "number"},
            "when": {"type": "string", "format": "date-time"},
            "timeout": {"type": "string", "format": "duration"},
            "blob": {"type": "string", "format": "byte"},
            "port": {"x-kubernetes-int-or-string": True},
            "dash-name": {"type": "integer"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "x-kubernetes-validations": rule(
            "self.ratio + 0.5 == 1.5 && self.when > timestamp('2020-01-01T00:00:00Z') "
            "&& self.timeout == duration('90s') && size(self.blob) == 2 "
            "&& (type(self.port) == int || type(self.port) == string) "
            "&& self.dash__dash__name == 1 && self.__namespace__ == 'ns' "
            "&& self.labels['a.b/c'] == 'x'"
        ),
    }
    spec = {
        "ratio": 1,
        "when": "2024-05-01T10:00:00Z",
        "timeout": "1m30s",
        "blob": "aGk=",
        "port": "http",
        "dash-name": 1,
        "namespace": "ns",
        "labels": {"a.b/c": "x"},
    }
    assert run(schema, spec) == []


def test_transition_rules() -> None:
    schema = {
        "type": "object",
        "properties": {
            "immutable": {
                "type": "string",
                "x-kubernetes-validations": rule("self == oldSelf", message="is immutable"),
            },
            "grow": {
                "type": "integer",
                "x-kubernetes-validations": [
                    {
                        "rule": "!oldSelf.hasValue() || self >= oldSelf.value()",
                        "optionalOldSelf": True,
                        "message": "may only grow",
                    }
                ],
            },
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
                    "x-kubernetes-validations": rule("self.size >= oldSelf.size"),
                },
            },
        },
    }
    assert run(schema, {"immutable": "a", "grow": 1}) == []  # create: no old values
    assert run(schema, {"immutable": "a", "grow": 2}, {"immutable": "a", "grow": 1}) == []
    assert run(schema, {"immutable": "b", "grow": 0}, {"immutable": "a", "grow": 1}) == [
        'spec.immutable: Invalid value: "string": is immutable',
        'spec.grow: Invalid value: "integer": may only grow',
    ]
    old = {"items": [{"name": "x", "size": 5}, {"name": "y", "size": 1}]}
    new = {"items": [{"name": "y", "size": 2}, {"name": "x", "size": 4}, {"name": "z", "size": 0}]}
    assert run(schema, new, old) == [
        'spec.items[1]: Invalid value: "object": failed rule: self.size >= oldSelf.size'
    ]


def test_compile_errors() -> None:
    node = crdschema.compile_schema(
        {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.x +"},
                {"rule": "'not a bool'"},
                {"rule": "true", "optionalOldSelf": True},
                {"rule": "true", "reason": "Mystery"},
                {"rule": "true", "messageExpression": "1"},
                {"rule": "true", "fieldPath": "spec[0]"},
            ],
        }
    )
    errs = [e.text() for e in cel.compile_rules(node, "s")[0]]
    assert errs[0].startswith(
        's.x-kubernetes-validations[0].rule: Invalid value: {"rule":"self.x +"}: '
        "compilation failed: ERROR: <input>:1:9: Syntax error"
    )
    assert errs[1].endswith("compilation failed: rule must evaluate to a bool")
    assert (
        errs[2]
        == "s.x-kubernetes-validations[2].optionalOldSelf: Forbidden: may not be set if oldSelf "
        "is not used in rule"
    )
    assert errs[3].startswith('s.x-kubernetes-validations[3].reason: Unsupported value: "Mystery"')
    assert (
        errs[4]
        == 's.x-kubernetes-validations[4].messageExpression: Invalid value: "1": must evaluate '
        "to a string"
    )
    assert (
        errs[5]
        == 's.x-kubernetes-validations[5].fieldPath: Invalid value: "spec[0]": fieldPath must '
        "be a valid path"
    )


def test_runtime_errors_are_reported() -> None:
    schema = {**NUMS, "x-kubernetes-validations": rule("self.a / self.b > 0")}
    assert run(schema, {"a": 1, "b": 0}) == [
        'spec: Invalid value: "object": divide by zero evaluating rule: self.a / self.b > 0'
    ]


def test_cost_estimate_uses_schema_bounds() -> None:
    def node(max_items: int | None) -> crdschema.Node:
        lst: Obj = {"type": "array", "items": {"type": "integer"}}
        if max_items is not None:
            lst["maxItems"] = max_items
        return crdschema.compile_schema({"type": "object", "properties": {"l": lst}})

    nested = "self.l.all(x, self.l.all(y, x + y > 0))"
    assert cel_cost.estimate(nested, node(None)) > cel_cost.PER_CALL_LIMIT
    assert cel_cost.estimate(nested, node(100)) < cel_cost.PER_CALL_LIMIT
    assert cel_cost.estimate("self.l.size() > 0", node(None)) < 10


def test_runaway_rule_is_stopped_by_the_iteration_budget() -> None:
    schema = {
        "type": "object",
        "properties": {"l": {"type": "array", "maxItems": 400, "items": {"type": "integer"}}},
        "x-kubernetes-validations": rule("self.l.all(x, self.l.all(y, x + y >= 0))"),
    }
    assert run(schema, {"l": list(range(50))}) == []
    assert run(schema, {"l": list(range(400))}) == [
        'spec: Invalid value: "object": call cost exceeds limit for rule: '
        "self.l.all(x, self.l.all(y, x + y >= 0))"
    ]


def test_parser_and_old_self_detection() -> None:
    assert cel_cost.uses_old_self("self == oldSelf")
    assert not cel_cost.uses_old_self("self.oldSelfish == 'oldSelf'")
    ast = cel_cost.parse("a.b[0].c(d, e ? f : g) in {1: [2]} && !h || -i > 1.5")
    assert cel_cost.identifiers(ast) >= {"a", "d", "e", "f", "g", "h", "i"}
    with pytest.raises(cel_cost.ParseError):
        cel_cost.parse("a +")


def test_escape() -> None:
    assert cel.escape("foo-bar") == "foo__dash__bar"
    assert cel.escape("a.b/c") == "a__dot__b__slash__c"
    assert cel.escape("a__b") == "a__underscores__b"
    assert cel.escape("in") == "__in__"
    assert cel.escape("1abc") is None
