"""Label and field selectors: parsing, canonical rendering, Kubernetes error messages, matching
(examples plus hypothesis properties against a reference evaluator), metav1.LabelSelector
conversion, field selector escaping, field label validation and object field extraction."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybern.api import errors
from kybern.api.selectors import (
    DOES_NOT_EXIST,
    DOUBLE_EQUALS,
    EQUALS,
    EXISTS,
    GREATER_THAN,
    IN,
    LESS_THAN,
    NOT_EQUALS,
    NOT_IN,
    FieldSelector,
    LabelSelector,
    Requirement,
    escape_field_value,
    from_label_selector_object,
    object_fields,
    parse_fields,
    parse_labels,
    selector_from_set,
    unescape_field_value,
    validate_fields,
)

QNAME_HELP = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def bad(fn: object, *args: object) -> str:
    with pytest.raises(errors.StatusError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    return info.value.message


# --- label selector parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a in (y,x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("a", "a"),
        ("!a", "!a"),
        ("a>1,b<2", "a>1,b<2"),
        ("  z = 1 , a in ( x , y ) ", "a in (x,y),z=1"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("a=", "a="),
        ("a in (b,b)", "a in (b)"),
        ("in in (in,notin)", "in in (in,notin)"),
        ("example.com/app=web", "example.com/app=web"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_parse_and_render(text: str, canonical: str) -> None:
    sel = parse_labels(text)
    assert str(sel) == canonical
    assert format(sel) == canonical
    assert parse_labels(str(sel)) == sel


def test_parsed_structure() -> None:
    sel = parse_labels("tier notin (cache),app in (web,api),!legacy,env")
    assert sel.requirements == (
        Requirement("app", IN, ("api", "web")),
        Requirement("env", EXISTS),
        Requirement("legacy", DOES_NOT_EXIST),
        Requirement("tier", NOT_IN, ("cache",)),
    )
    assert not sel.empty
    assert parse_labels("").empty
    assert LabelSelector.everything().empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("x=a,", "found '', expected: identifier after ','"),
        (",", "found ',', expected: !, identifier, or 'end of string'"),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('"),
        ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        (
            "app:monolith",
            'unable to parse requirement: <nil>: Invalid value: "app:monolith": name part '
            + QNAME_HELP,
        ),
        (
            "a/b/c ?=? def",
            'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name '
            + QNAME_HELP
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
        (
            "app.kubernetes_io/name=x",
            'unable to parse requirement: <nil>: Invalid value: "app.kubernetes_io/name": prefix '
            "part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        (
            "a=b_",
            'unable to parse requirement: values[0][a]: Invalid value: "b_": a valid label must '
            "be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
            "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            "a=" + "x" * 64,
            'unable to parse requirement: values[0][a]: Invalid value: "'
            + "x" * 64
            + '": must be no more than 63 characters',
        ),
        (
            "a>b",
            'unable to parse requirement: values[0]: Invalid value: "b": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "/a",
            'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be '
            "non-empty",
        ),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    assert bad(parse_labels, text) == message


def test_exact_value() -> None:
    sel = parse_labels("a=1,b in (2),c in (3,4),d!=5")
    assert sel.exact_value("a") == "1"
    assert sel.exact_value("b") == "2"
    assert sel.exact_value("c") is None
    assert sel.exact_value("d") is None
    assert sel.exact_value("zzz") is None


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a=", {}, False),
        ("a=", {"a": ""}, True),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a notin (x,y)", {}, True),
        ("a notin (x,y)", {"a": "y"}, False),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("!a", {"b": "1"}, True),
        ("a>5", {"a": "6"}, True),
        ("a>5", {"a": "5"}, False),
        ("a<5", {"a": "-7"}, True),
        ("a<5", {"a": "x"}, False),
        ("a<5", {}, False),
        ("a=b,c", {"a": "b"}, False),
        ("", {}, True),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_labels(text).matches(labels) is expected


# --- metav1.LabelSelector ---------------------------------------------------------------------


def test_label_selector_object_nil_and_empty() -> None:
    assert from_label_selector_object(None).matches({}) is False
    assert from_label_selector_object(None).matches({"a": "b"}) is False
    assert from_label_selector_object(None).matches_nothing
    assert not from_label_selector_object(None).empty
    assert from_label_selector_object({}).empty
    assert from_label_selector_object({"matchLabels": {}, "matchExpressions": []}).matches({})


def test_label_selector_object() -> None:
    sel = from_label_selector_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert str(sel) == "app=web,env notin (prod),!legacy,team,tier in (a,b)"
    assert sel.matches({"app": "web", "tier": "a", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "legacy": "1"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "env": "prod"})
    assert sel == parse_labels(str(sel))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Foo"}]},
            '"Foo" is not a valid label selector operator',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't "
            "be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'values: Invalid value: []string{"x"}: values set must be empty for exists and does '
            "not exist",
        ),
        ({"matchLabels": {"a b": "c"}}, 'key: Invalid value: "a b": name part ' + QNAME_HELP),
    ],
)
def test_label_selector_object_errors(obj: dict[str, object], message: str) -> None:
    assert bad(from_label_selector_object, obj) == message


def test_label_selector_object_wrong_types() -> None:
    assert bad(from_label_selector_object, {"matchLabels": ["a"]}).startswith(
        "invalid label selector"
    )
    assert bad(from_label_selector_object, {"matchLabels": {"a": 1}}).startswith(
        "invalid label selector"
    )


def test_selector_from_set() -> None:
    assert selector_from_set(None).empty
    assert selector_from_set({}).matches({"x": "y"})
    sel = selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})


# --- label selector properties ----------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "app", "in", "notin", "example.com/tier", "x.y_z-1"])
VALUES = st.sampled_from(["", "x", "y", "web", "in", "1", "10", "A.b-c_d"])
NUMBERS = st.integers(min_value=0, max_value=20).map(str)
LABEL_SETS = st.dictionaries(KEYS, VALUES | NUMBERS, max_size=5)
ALL_OPS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, EXISTS, DOES_NOT_EXIST)
ALL_OPS += (GREATER_THAN, LESS_THAN)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key = draw(KEYS)
    op = draw(st.sampled_from(ALL_OPS))
    if op in (EXISTS, DOES_NOT_EXIST):
        values: list[str] = []
    elif op in (GREATER_THAN, LESS_THAN):
        values = [draw(NUMBERS)]
    elif op in (IN, NOT_IN):
        values = draw(st.lists(VALUES, min_size=1, max_size=3))
    else:
        values = [draw(VALUES)]
    return Requirement(key, op, tuple(sorted(set(values))))


def reference_match(req: Requirement, labels: Mapping[str, str]) -> bool:
    """apimachinery's Requirement.Matches, written out case by case."""
    has = req.key in labels
    value = labels.get(req.key)
    if req.operator in (IN, EQUALS, DOUBLE_EQUALS):
        return has and value in req.values
    if req.operator in (NOT_IN, NOT_EQUALS):
        return not has or value not in req.values
    if req.operator == EXISTS:
        return has
    if req.operator == DOES_NOT_EXIST:
        return not has
    if not has or value is None:
        return False
    try:
        have, want = int(value), int(req.values[0])
    except ValueError:
        return False
    return have > want if req.operator == GREATER_THAN else have < want


@given(st.lists(requirements(), max_size=5))
def test_format_round_trips_through_parse(reqs: list[Requirement]) -> None:
    sel = LabelSelector(reqs)
    parsed = parse_labels(format(sel))
    assert parsed == sel
    assert str(parsed) == str(sel)


@given(st.lists(requirements(), max_size=5), LABEL_SETS)
def test_matches_agrees_with_reference(reqs: list[Requirement], labels: dict[str, str]) -> None:
    expected = all(reference_match(r, labels) for r in reqs)
    assert LabelSelector(reqs).matches(labels) is expected
    assert parse_labels(str(LabelSelector(reqs))).matches(labels) is expected


# --- field selectors --------------------------------------------------------------------------


def test_parse_fields() -> None:
    sel = parse_fields("status.phase==Running,metadata.name=foo,spec.nodeName!=")
    assert sel.requirements == [
        ("metadata.name", "=", "foo"),
        ("spec.nodeName", "!=", ""),
        ("status.phase", "=", "Running"),
    ]
    assert str(sel) == "metadata.name=foo,spec.nodeName!=,status.phase=Running"
    assert sel.exact_value("metadata.name") == "foo"
    assert sel.exact_value("spec.nodeName") is None
    assert sel.exact_value("metadata.namespace") is None
    assert sel.matches({"metadata.name": "foo", "spec.nodeName": "n1", "status.phase": "Running"})
    assert not sel.matches({"metadata.name": "foo", "status.phase": "Running"})
    assert parse_fields("").empty
    assert parse_fields(",,").empty
    assert FieldSelector().matches({})


def test_field_selector_escaping() -> None:
    sel = parse_fields(r"a=x\,y\=z\\,b!=\\")
    assert sel.requirements == [("a", "=", "x,y=z\\"), ("b", "!=", "\\")]
    assert str(sel) == r"a=x\,y\=z\\,b!=\\"
    assert escape_field_value("a,b=c\\") == r"a\,b\=c\\"
    assert unescape_field_value(r"a\,b\=c\\") == "a,b=c\\"
    assert parse_fields("a=!b").requirements == [("a", "=", "!b")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("x=1,b", "invalid selector: 'x=1,b'; can't understand 'b'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    assert bad(parse_fields, text) == message


def test_validate_fields() -> None:
    sel = parse_fields("metadata.name=a,metadata.namespace=b,spec.nodeName=c")
    validate_fields(sel, {"spec.nodeName"}, "Pod")
    message = bad(validate_fields, parse_fields("spec.foo=1"), {"spec.nodeName"}, "Pod")
    assert message == "field label not supported: spec.foo"


def test_object_fields() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1", "hostNetwork": True, "containers": [{}]},
        "status": {"phase": "Running"},
    }
    assert object_fields(pod) == {"metadata.name": "p", "metadata.namespace": "ns"}
    fields = object_fields(
        pod, ["spec.nodeName", "spec.hostNetwork", "status.podIP", "spec.containers"]
    )
    assert fields == {
        "metadata.name": "p",
        "metadata.namespace": "ns",
        "spec.nodeName": "n1",
        "spec.hostNetwork": "true",
        "status.podIP": "",
        "spec.containers": "",
    }
    assert object_fields(pod, {"phase": "status.phase"})["phase"] == "Running"
    assert object_fields({}, lambda o: {"x": "1"}) == {
        "metadata.name": "",
        "metadata.namespace": "",
        "x": "1",
    }
    assert parse_fields("spec.nodeName=n1,metadata.name=p").matches(
        object_fields(pod, ["spec.nodeName"])
    )


FIELD_NAMES = st.from_regex(r"[a-z][a-z.]{0,8}", fullmatch=True)
FIELD_REQS = st.lists(
    st.tuples(FIELD_NAMES, st.sampled_from(["=", "!="]), st.text(max_size=6)), max_size=5
)


@given(FIELD_REQS)
def test_field_selector_round_trip(reqs: list[tuple[str, str, str]]) -> None:
    parsed = parse_fields(str(FieldSelector(reqs)))
    assert sorted(parsed.requirements) == sorted(reqs)
    assert parse_fields(str(parsed)) == parsed


@given(FIELD_REQS, st.dictionaries(FIELD_NAMES, st.text(max_size=3), max_size=4))
def test_field_matches_agrees_with_reference(
    reqs: list[tuple[str, str, str]], fields: dict[str, str]
) -> None:
    expected = all((fields.get(f, "") == v) == (op == "=") for f, op, v in reqs)
    assert FieldSelector(reqs).matches(fields) is expected
    assert parse_fields(str(FieldSelector(reqs))).matches(fields) is expected


@given(st.text(max_size=10))
def test_escape_round_trip(value: str) -> None:
    assert unescape_field_value(escape_field_value(value)) == value
