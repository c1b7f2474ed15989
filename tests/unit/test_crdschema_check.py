"""CustomResourceDefinition objects themselves: structural-schema rules and the CRD-level checks
(names, versions, conversion, subresources, columns, selectable fields) with Kubernetes'
messages' meaning, as a table of broken CRDs and the cause each must produce."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kybern.api import crdschema_check

Obj = dict[str, Any]


def crd(schema: Obj | None = None, **version: Any) -> Obj:
    v: Obj = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": schema
            or {"type": "object", "properties": {"spec": {"type": "object"}}}
        },
        **version,
    }
    out = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [v],
        },
    }
    crdschema_check.default_crd(out)
    return out


def texts(c: Obj, old: Obj | None = None) -> list[str]:
    return [e.text() for e in crdschema_check.validate_crd(c, old)]


S = "spec.validation.openAPIV3Schema"


def with_spec(prop: Obj) -> Obj:
    return {"type": "object", "properties": {"spec": prop}}


SCHEMA_CASES: list[tuple[str, Obj, str]] = [
    (
        "type-missing-field",
        with_spec({"properties": {"a": {"type": "string"}}}),
        f"{S}.properties[spec].type: Required value: must not be empty for specified object fields",
    ),
    (
        "type-missing-items",
        with_spec({"type": "array", "items": {}}),
        f"{S}.properties[spec].items.type: Required value: must not be empty for specified array "
        "items",
    ),
    (
        "type-missing-root",
        {"properties": {}},
        f"{S}.type: Required value: must not be empty at the root",
    ),
    (
        "root-not-object",
        {"type": "string"},
        f'{S}.type: Invalid value: "string": must be object at the root',
    ),
    (
        "ref",
        with_spec({"$ref": "#/definitions/x"}),
        f"{S}.properties[spec].$ref: Forbidden: $ref is not supported",
    ),
    (
        "additional-and-properties",
        with_spec(
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            }
        ),
        f"{S}.properties[spec].additionalProperties: Forbidden: additionalProperties and "
        "properties are mutual exclusive",
    ),
    (
        "additional-at-root",
        {"type": "object", "additionalProperties": {"type": "string"}},
        f"{S}.additionalProperties: Forbidden: must not be used at the root",
    ),
    (
        "array-without-items",
        with_spec({"type": "array"}),
        f"{S}.properties[spec].items: Required value: must be specified",
    ),
    (
        "unique-items",
        with_spec({"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        f"{S}.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since "
        "the runtime complexity becomes quadratic",
    ),
    (
        "metadata-restricted",
        {
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}
            },
        },
        f"{S}.properties[metadata]: Forbidden: must not specify anything other than name and "
        "generateName, but metadata is implicitly specified",
    ),
    (
        "junctor-type",
        with_spec({"type": "object", "anyOf": [{"type": "object"}]}),
        f"{S}.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural",
    ),
    (
        "junctor-incomplete",
        with_spec({"type": "object", "allOf": [{"properties": {"a": {"minLength": 1}}}]}),
        f"{S}.properties[spec].properties[a]: Required value: because it is defined in "
        f"{S}.properties[spec].allOf[0].properties[a]",
    ),
    (
        "int-or-string-with-preserve",
        with_spec(
            {
                "x-kubernetes-int-or-string": True,
                "x-kubernetes-preserve-unknown-fields": True,
            }
        ),
        f"{S}.properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: true: must "
        "be false if x-kubernetes-int-or-string is true",
    ),
    (
        "preserve-false",
        with_spec({"type": "object", "x-kubernetes-preserve-unknown-fields": False}),
        f"{S}.properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: false: must "
        "be true or undefined",
    ),
    (
        "embedded-needs-object",
        with_spec({"type": "string", "x-kubernetes-embedded-resource": True}),
        f'{S}.properties[spec].type: Invalid value: "string": must be object if '
        "x-kubernetes-embedded-resource is true",
    ),
    (
        "list-type-map-without-keys",
        with_spec(
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "items": {"type": "object", "properties": {"a": {"type": "string"}}},
            }
        ),
        f"{S}.properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if "
        "x-kubernetes-list-type is map",
    ),
    (
        "list-map-key-not-required",
        with_spec(
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["a"],
                "items": {"type": "object", "properties": {"a": {"type": "string"}}},
            }
        ),
        f"{S}.properties[spec].items.properties[a].default: Required value: this property is in "
        "x-kubernetes-list-map-keys, so it must have a default or be a required property",
    ),
    (
        "list-type-unsupported",
        with_spec({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}),
        f'{S}.properties[spec].x-kubernetes-list-type: Unsupported value: "bag": supported '
        'values: "atomic", "set", "map"',
    ),
    (
        "map-type-on-string",
        with_spec({"type": "string", "x-kubernetes-map-type": "atomic"}),
        f'{S}.properties[spec].type: Invalid value: "string": must be object if '
        "x-kubernetes-map-type is specified",
    ),
    (
        "bad-pattern",
        with_spec({"type": "string", "pattern": "a(?=b)"}),
        f'{S}.properties[spec].pattern: Invalid value: "a(?=b)": must be a valid regular '
        "expression, but isn't",
    ),
    (
        "bad-default",
        with_spec({"type": "integer", "default": "one"}),
        f'{S}.properties[spec].default: Invalid value: "one": spec: Invalid value: "string"',
    ),
    (
        "default-unknown-field",
        with_spec(
            {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"b": "x"}}
        ),
        f'{S}.properties[spec].default: Invalid value: {{"b":"x"}}: must not have unknown fields',
    ),
    (
        "cel-does-not-compile",
        with_spec({"type": "object", "x-kubernetes-validations": [{"rule": "self.x >"}]}),
        f'{S}.properties[spec].x-kubernetes-validations[0].rule: Invalid value: {{"rule":'
        '"self.x >"}: compilation failed: ERROR: <input>:1:9: Syntax error',
    ),
    (
        "cel-too-expensive",
        with_spec(
            {
                "type": "object",
                "properties": {"l": {"type": "array", "items": {"type": "integer"}}},
                "x-kubernetes-validations": [
                    {"rule": "self.l.all(x, self.l.all(y, self.l.all(z, x + y + z > 0)))"}
                ],
            }
        ),
        f"{S}.properties[spec].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost "
        "exceeds budget by factor of more than 100x",
    ),
    (
        "transition-rule-in-atomic-list",
        with_spec(
            {
                "type": "array",
                "items": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf"}],
                },
            }
        ),
        f"{S}.properties[spec].items.x-kubernetes-validations[0].rule: Invalid value: "
        '"self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema',
    ),
]


@pytest.mark.parametrize(("name", "schema", "want"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_rule(name: str, schema: Obj, want: str) -> None:
    got = texts(crd(schema))
    assert any(g.startswith(want) for g in got), got


def test_valid_crd_has_no_errors() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 20}},
            },
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "m"}],
                "properties": {
                    "min": {"type": "integer", "default": 0},
                    "max": {"type": "integer", "default": 10},
                    "port": {
                        "x-kubernetes-int-or-string": True,
                        "anyOf": [{"type": "integer"}, {"type": "string"}],
                    },
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}},
                        },
                    },
                    "tpl": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": True,
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                },
            },
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        },
    }
    c = crd(
        schema,
        subresources={
            "status": {},
            "scale": {"specReplicasPath": ".spec.max", "statusReplicasPath": ".status.replicas"},
        },
        additionalPrinterColumns=[{"name": "Max", "type": "integer", "jsonPath": ".spec.max"}],
        selectableFields=[{"jsonPath": ".spec.min"}],
    )
    assert texts(c) == []
    assert c["spec"]["names"]["singular"] == "widget"
    assert c["spec"]["names"]["listKind"] == "WidgetList"
    assert c["status"]["storedVersions"] == ["v1"]


def mutate(fn: Callable[[Obj], None]) -> Obj:
    c = crd()
    fn(c)
    return c


CRD_CASES: list[tuple[str, Callable[[Obj], None], str]] = [
    (
        "name",
        lambda c: c["metadata"].update(name="other.example.com"),
        'metadata.name: Invalid value: "other.example.com": must be '
        'spec.names.plural+"."+spec.group',
    ),
    (
        "group-dot",
        lambda c: (c["spec"].update(group="example"), c["metadata"].update(name="widgets.example")),
        'spec.group: Invalid value: "example": should be a domain with at least one dot',
    ),
    (
        "scope",
        lambda c: c["spec"].update(scope="Galaxy"),
        'spec.scope: Unsupported value: "Galaxy"',
    ),
    (
        "two-storage",
        lambda c: c["spec"]["versions"].append(
            {**copy.deepcopy(c["spec"]["versions"][0]), "name": "v2"}
        ),
        "spec.versions: Invalid value: ",
    ),
    (
        "schema-required",
        lambda c: c["spec"]["versions"][0].pop("schema"),
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required",
    ),
    (
        "deprecation-warning-needs-deprecated",
        lambda c: c["spec"]["versions"][0].update(deprecationWarning="old"),
        'spec.versions[0].deprecationWarning: Invalid value: "old": can only be set for '
        "deprecated versions",
    ),
    (
        "kind-list-kind",
        lambda c: c["spec"]["names"].update(listKind="Widget"),
        'spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same',
    ),
    (
        "short-name",
        lambda c: c["spec"]["names"].update(shortNames=["Bad_Name"]),
        'spec.names.shortNames[0]: Invalid value: "Bad_Name"',
    ),
    (
        "webhook-without-config",
        lambda c: c["spec"].update(conversion={"strategy": "Webhook"}),
        "spec.conversion.webhook: Required value: required when strategy is set to Webhook",
    ),
    (
        "webhook-http",
        lambda c: c["spec"].update(
            conversion={
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": "http://x/convert"},
                    "conversionReviewVersions": ["v1"],
                },
            }
        ),
        "spec.conversion.webhook.clientConfig.url: Invalid value: \"http://x/convert\": 'https' "
        "is the only allowed URL scheme",
    ),
    (
        "scale-path",
        lambda c: c["spec"]["versions"][0].update(
            subresources={
                "scale": {"specReplicasPath": ".status.x", "statusReplicasPath": ".status.y"}
            }
        ),
        'spec.subresources.scale.specReplicasPath: Invalid value: ".status.x": should be a json '
        "path under .spec",
    ),
    (
        "column-type",
        lambda c: c["spec"]["versions"][0].update(
            additionalPrinterColumns=[{"name": "X", "type": "float", "jsonPath": ".spec.x"}]
        ),
        'spec.additionalPrinterColumns[0].type: Invalid value: "float": must be one of',
    ),
    (
        "selectable-not-in-schema",
        lambda c: c["spec"]["versions"][0].update(selectableFields=[{"jsonPath": ".spec.nope"}]),
        'spec.selectableFields[0].jsonPath: Invalid value: ".spec.nope": is an invalid path',
    ),
]


@pytest.mark.parametrize(("name", "change", "want"), CRD_CASES, ids=[c[0] for c in CRD_CASES])
def test_crd_rule(name: str, change: Callable[[Obj], None], want: str) -> None:
    got = texts(mutate(change))
    assert any(g.startswith(want) for g in got), got


def test_per_version_schemas_are_reported_per_version() -> None:
    c = crd()
    v2 = copy.deepcopy(c["spec"]["versions"][0])
    v2.update(name="v2", storage=False)
    v2["schema"]["openAPIV3Schema"] = with_spec({"properties": {}})
    c["spec"]["versions"].append(v2)
    assert texts(c) == [
        "spec.versions[1].schema.openAPIV3Schema.properties[spec].type: Required value: must not "
        "be empty for specified object fields"
    ]


def test_update_rules() -> None:
    old = crd()
    old["status"]["conditions"] = [{"type": "Established", "status": "True"}]
    new = copy.deepcopy(old)
    new["spec"]["scope"] = "Cluster"
    assert 'spec.scope: Invalid value: "Cluster": field is immutable' in texts(new, old)
    new = copy.deepcopy(old)
    v2 = {**copy.deepcopy(new["spec"]["versions"][0]), "name": "v2"}
    new["spec"]["versions"][0]["storage"] = False
    new["spec"]["versions"].append(v2)
    crdschema_check.default_crd(new, old)
    assert new["status"]["storedVersions"] == ["v1", "v2"]
    assert texts(new, old) == []
    new["spec"]["versions"] = [v2]
    assert 'status.storedVersions[0]: Invalid value: "v1": must appear in spec.versions' in texts(
        new, old
    )
