"""The protobuf rendering of `/openapi/v2` (`kybern.apiserver.openapi_v2proto`): decoded with a
message class built at run time from a descriptor written here (gnostic's
`openapiv2/OpenAPIv2.proto`, cross-checked against the descriptor the kubectl binary embeds when
it is installed), turned back into Swagger JSON and compared with the JSON document (the same
definitions, `$ref`s, GVK extensions, paths and parameters); the rules kube-openapi's
`proto.NewOpenAPIData` applies when kubectl parses it; and the HTTP side (negotiation,
Content-Type, the JSON ETag, 304, caching)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import make_mocked_request
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message, message_factory

from kybern.api import definitions, registry
from kybern.apiserver import openapi
from kybern.apiserver import openapi_v2proto as v2proto

Obj = dict[str, Any]
PROTO_TYPES = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)

# gnostic's openapi.v2 messages: fields numbered 1, 2, ... in order ("-" skips a number);
# `*` repeated; `:type` a scalar (string when absent); `=Message` a message field.
_VX = "*vendor_extension=NamedAny"
_VALIDATIONS = (
    "type format items=PrimitivesItems collection_format default=Any maximum:double "
    "exclusive_maximum:bool minimum:double exclusive_minimum:bool max_length:int64 "
    "min_length:int64 pattern max_items:int64 min_items:int64 unique_items:bool *enum=Any "
    "multiple_of:double"
)
_PARAM = "required:bool in description name"
_OAUTH = "type flow scopes=Oauth2Scopes"
MESSAGES = {
    "AdditionalPropertiesItem": "schema=Schema boolean:bool",
    "Any": "- yaml",  # 1 is a google.protobuf.Any, never written
    "ApiKeySecurity": f"type name in description {_VX}",
    "BasicAuthenticationSecurity": f"type description {_VX}",
    "BodyParameter": f"description name in required:bool schema=Schema {_VX}",
    "Contact": f"name url email {_VX}",
    "Definitions": "*additional_properties=NamedSchema",
    "Document": (
        "swagger info=Info host base_path *schemes *consumes *produces paths=Paths "
        "definitions=Definitions parameters=ParameterDefinitions responses=ResponseDefinitions "
        "*security=SecurityRequirement security_definitions=SecurityDefinitions *tags=Tag "
        f"external_docs=ExternalDocs {_VX}"
    ),
    "Examples": "*additional_properties=NamedAny",
    "ExternalDocs": f"description url {_VX}",
    "FileSchema": (
        "format title description default=Any *required type read_only:bool "
        f"external_docs=ExternalDocs example=Any {_VX}"
    ),
    "FormDataParameterSubSchema": f"{_PARAM} allow_empty_value:bool {_VALIDATIONS} {_VX}",
    "Header": f"{_VALIDATIONS} description {_VX}",
    "HeaderParameterSubSchema": f"{_PARAM} {_VALIDATIONS} {_VX}",
    "Headers": "*additional_properties=NamedHeader",
    "Info": (f"title version description terms_of_service contact=Contact license=License {_VX}"),
    "ItemsItem": "*schema=Schema",
    "JsonReference": "_ref description",
    "License": f"name url {_VX}",
    "NamedAny": "name value=Any",
    "NamedHeader": "name value=Header",
    "NamedParameter": "name value=Parameter",
    "NamedPathItem": "name value=PathItem",
    "NamedResponse": "name value=Response",
    "NamedResponseValue": "name value=ResponseValue",
    "NamedSchema": "name value=Schema",
    "NamedSecurityDefinitionsItem": "name value=SecurityDefinitionsItem",
    "NamedString": "name value",
    "NamedStringArray": "name value=StringArray",
    "NonBodyParameter": (
        "header_parameter_sub_schema=HeaderParameterSubSchema "
        "form_data_parameter_sub_schema=FormDataParameterSubSchema "
        "query_parameter_sub_schema=QueryParameterSubSchema "
        "path_parameter_sub_schema=PathParameterSubSchema"
    ),
    "Oauth2AccessCodeSecurity": f"{_OAUTH} authorization_url token_url description {_VX}",
    "Oauth2ApplicationSecurity": f"{_OAUTH} token_url description {_VX}",
    "Oauth2ImplicitSecurity": f"{_OAUTH} authorization_url description {_VX}",
    "Oauth2PasswordSecurity": f"{_OAUTH} token_url description {_VX}",
    "Oauth2Scopes": "*additional_properties=NamedString",
    "Operation": (
        "*tags summary description external_docs=ExternalDocs operation_id *produces *consumes "
        "*parameters=ParametersItem responses=Responses *schemes deprecated:bool "
        f"*security=SecurityRequirement {_VX}"
    ),
    "Parameter": "body_parameter=BodyParameter non_body_parameter=NonBodyParameter",
    "ParameterDefinitions": "*additional_properties=NamedParameter",
    "ParametersItem": "parameter=Parameter json_reference=JsonReference",
    "PathItem": (
        "_ref get=Operation put=Operation post=Operation delete=Operation options=Operation "
        f"head=Operation patch=Operation *parameters=ParametersItem {_VX}"
    ),
    "PathParameterSubSchema": f"{_PARAM} {_VALIDATIONS} {_VX}",
    "Paths": "*vendor_extension=NamedAny *path=NamedPathItem",
    "PrimitivesItems": f"{_VALIDATIONS} {_VX}",
    "Properties": "*additional_properties=NamedSchema",
    "QueryParameterSubSchema": f"{_PARAM} allow_empty_value:bool {_VALIDATIONS} {_VX}",
    "Response": f"description schema=SchemaItem headers=Headers examples=Examples {_VX}",
    "ResponseDefinitions": "*additional_properties=NamedResponse",
    "ResponseValue": "response=Response json_reference=JsonReference",
    "Responses": "*response_code=NamedResponseValue *vendor_extension=NamedAny",
    "Schema": (
        "_ref format title description default=Any multiple_of:double maximum:double "
        "exclusive_maximum:bool minimum:double exclusive_minimum:bool max_length:int64 "
        "min_length:int64 pattern max_items:int64 min_items:int64 unique_items:bool "
        "max_properties:int64 min_properties:int64 *required *enum=Any "
        "additional_properties=AdditionalPropertiesItem type=TypeItem items=ItemsItem "
        "*all_of=Schema properties=Properties discriminator read_only:bool xml=Xml "
        f"external_docs=ExternalDocs example=Any {_VX}"
    ),
    "SchemaItem": "schema=Schema file_schema=FileSchema",
    "SecurityDefinitions": "*additional_properties=NamedSecurityDefinitionsItem",
    "SecurityDefinitionsItem": (
        "basic_authentication_security=BasicAuthenticationSecurity "
        "api_key_security=ApiKeySecurity oauth2_implicit_security=Oauth2ImplicitSecurity "
        "oauth2_password_security=Oauth2PasswordSecurity "
        "oauth2_application_security=Oauth2ApplicationSecurity "
        "oauth2_access_code_security=Oauth2AccessCodeSecurity"
    ),
    "SecurityRequirement": "*additional_properties=NamedStringArray",
    "StringArray": "*value",
    "Tag": f"name description external_docs=ExternalDocs {_VX}",
    "TypeItem": "*value",
    "Xml": f"name namespace prefix attribute:bool wrapped:bool {_VX}",
}
ONEOFS = {
    "AdditionalPropertiesItem",
    "NonBodyParameter",
    "Parameter",
    "ParametersItem",
    "ResponseValue",
    "SchemaItem",
    "SecurityDefinitionsItem",
}
FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "string": FDP.TYPE_STRING,
    "bool": FDP.TYPE_BOOL,
    "int64": FDP.TYPE_INT64,
    "double": FDP.TYPE_DOUBLE,
}


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """`openapiv2/OpenAPIv2.proto` (package openapi.v2, proto3) from the table above."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="openapiv2/OpenAPIv2.proto", package="openapi.v2", syntax="proto3"
    )
    for name, spec in MESSAGES.items():
        msg = fd.message_type.add(name=name)
        if name in ONEOFS:
            msg.oneof_decl.add(name="oneof")
        for number, word in enumerate(spec.split(), 1):
            if word == "-":
                continue
            repeated, word = word.startswith("*"), word.lstrip("*")
            word, _, target = word.partition("=")
            fname, _, scalar = word.partition(":")
            f = msg.field.add(name=fname, number=number)
            f.label = FDP.LABEL_REPEATED if repeated else FDP.LABEL_OPTIONAL
            if target:
                f.type, f.type_name = FDP.TYPE_MESSAGE, f".openapi.v2.{target}"
            else:
                f.type = SCALARS[scalar or "string"]
            if name in ONEOFS:
                f.oneof_index = 0
    return fd


def document_class(fd: descriptor_pb2.FileDescriptorProto) -> type[message.Message]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("openapi.v2.Document"))


DOCUMENT = document_class(file_descriptor())


def json_key(field: str) -> str:
    if field == "_ref":
        return "$ref"
    head, *rest = field.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def to_json(m: message.Message) -> Any:
    """A decoded message back in its Swagger JSON form (gnostic's rules: `Named*` entries and
    vendor extensions make maps, oneofs unwrap, a one-element `type`/`items` is a scalar)."""
    name = m.DESCRIPTOR.name
    if name == "Any":
        return yaml.safe_load(m.yaml)
    fields = m.ListFields()
    if name in ("TypeItem", "ItemsItem", "StringArray"):  # one repeated field
        values = [v if isinstance(v, str) else to_json(v) for _, vs in fields for v in vs]
        return values[0] if name != "StringArray" and len(values) == 1 else values
    if name in ONEOFS:
        assert len(fields) == 1, m
        value = fields[0][1]
        return value if isinstance(value, bool) else to_json(value)
    out: Obj = {}
    for f, value in fields:
        target = f.message_type.name if f.message_type is not None else ""
        if target.startswith("Named"):
            for entry in value:
                v = entry.value
                out[entry.name] = to_json(v) if isinstance(v, message.Message) else v
        elif f.is_repeated:
            out[json_key(f.name)] = [
                to_json(v) if isinstance(v, message.Message) else v for v in value
            ]
        else:
            out[json_key(f.name)] = to_json(value) if target else value
    return out


_KEEP_ZERO = frozenset({"default", "example", "enum", "additionalProperties"})  # YAML, a oneof
# objects whose keys are names, not fields (`security` is a list of them)
_MAPS = frozenset(
    {"definitions", "properties", "paths", "responses", "security", "securityDefinitions"}
)


def proto3(node: Any, is_map: bool = False) -> Any:
    """`node` as it survives proto3: fields with zero values (false, 0, "", []) dropped, but
    not inside values kept as YAML (`default`, `enum`, `example`, vendor extensions) nor in
    the oneof `additionalProperties`."""
    if isinstance(node, list):
        return [proto3(x, is_map) for x in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for k, v in node.items():
        if not is_map and (k in _KEEP_ZERO or k.startswith("x-")):
            out[k] = v
        elif is_map or isinstance(v, dict) or not (v is False or v == 0 or v in ("", [])):
            out[k] = proto3(v, is_map=not is_map and k in _MAPS)
    return out


def build_v2(with_crd: bool = True) -> tuple[Obj, openapi.Document]:
    reg = registry.Registry()
    crds: list[Obj] = []
    if with_crd:
        reg.add(CRONTABS)
        crds.append(CRONTAB_CRD)
    inputs = openapi.snapshot(reg, crds)
    builder = openapi.Builder(definitions.load())
    doc = openapi.Document.of(None, builder.v2(inputs.values()))
    return json.loads(doc.body), doc


CRONTABS = registry.Resource(
    group="stable.example.com",
    version="v1",
    kind="CronTab",
    plural="crontabs",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
    crd=True,
)
CRONTAB_SCHEMA: Obj = {
    "type": "object",
    "description": "CronTab runs a thing now and then.",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["cronSpec"],
            "properties": {
                "cronSpec": {"type": "string", "pattern": r"^\S+$", "default": "* * * * *"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "format": "int32"},
                "ratio": {"type": "number", "multipleOf": 0.5, "exclusiveMaximum": True},
                "mode": {"type": "string", "enum": ["a", "", "c"], "nullable": True},
                "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}]},
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 8},
                    "x-kubernetes-list-type": "set",
                    "minItems": 1,
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "closed": {"type": "object", "additionalProperties": False},
                "blob": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "empty": {"type": "object", "properties": {}},
            },
        }
    },
}
CRONTAB_CRD: Obj = {
    "metadata": {"name": "crontabs.stable.example.com", "resourceVersion": "7"},
    "spec": {
        "group": "stable.example.com",
        "names": {"kind": "CronTab", "plural": "crontabs"},
        "versions": [{"name": "v1", "schema": {"openAPIV3Schema": CRONTAB_SCHEMA}}],
    },
}


@pytest.fixture(scope="module")
def documents() -> tuple[Obj, Obj]:
    """(the JSON document, the protobuf document decoded back to JSON)."""
    original, doc = build_v2()
    decoded = DOCUMENT.FromString(v2proto.from_json(doc.body))
    return original, to_json(decoded)


def test_decodes_to_the_json_document(documents: tuple[Obj, Obj]) -> None:
    original, decoded = documents
    assert decoded == proto3(original)
    assert decoded["swagger"] == "2.0" and decoded["info"]["version"] == "v1.32.0"


def test_definitions_refs_and_gvks(documents: tuple[Obj, Obj]) -> None:
    original, decoded = documents
    assert list(decoded["definitions"]) == list(original["definitions"])  # sorted, as served
    assert set(refs(decoded["definitions"])) == set(refs(original["definitions"]))
    gvks = {
        name: s["x-kubernetes-group-version-kind"]
        for name, s in decoded["definitions"].items()
        if "x-kubernetes-group-version-kind" in s
    }
    assert gvks["io.k8s.api.core.v1.ConfigMap"] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}
    ]
    assert gvks["com.example.stable.v1.CronTab"] == [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}
    ]
    assert gvks == {
        name: s["x-kubernetes-group-version-kind"]
        for name, s in original["definitions"].items()
        if "x-kubernetes-group-version-kind" in s
    }
    spec = decoded["definitions"]["com.example.stable.v1.CronTab"]["properties"]["spec"]
    props = spec["properties"]
    assert props["empty"]["properties"] == {}  # present though empty: parsed as a kind
    assert props["closed"]["additionalProperties"] is False  # a oneof keeps its false
    assert props["mode"]["enum"] == ["a", "", "c"]  # YAML values keep their zeros
    assert "minimum" not in props["replicas"]  # a proto3 zero, as gnostic drops it too
    assert props["port"] == {"x-kubernetes-int-or-string": True}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(list(v.values()) if k == "properties" else v)
    elif isinstance(node, list):
        for x in node:
            yield from refs(x)


def test_patch_operations_as_kubectl_reads_them(documents: tuple[Obj, Obj]) -> None:
    """kubectl's v2 field-validation check and `GetConsumes`: the PATCH operation found by its
    GVK extension has a `fieldValidation` query parameter and lists the patch types."""
    _, decoded = documents
    found: dict[str, Obj] = {}
    for path, item in decoded["paths"].items():
        op = item.get("patch")
        if op is not None:
            gvk = op["x-kubernetes-group-version-kind"]
            found[f"{gvk['group']}/{gvk['version']}/{gvk['kind']}"] = op
            names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            assert "fieldValidation" in names, path
            assert op["parameters"][0]["in"] == "body" and op["parameters"][0]["required"]
    assert "application/strategic-merge-patch+json" in found["/v1/ConfigMap"]["consumes"]
    assert (
        "application/strategic-merge-patch+json"
        not in (found["stable.example.com/v1/CronTab"]["consumes"])
    )
    item = decoded["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]
    assert [(p["name"], p["in"], p.get("required", False)) for p in item["parameters"]] == [
        ("name", "path", True),
        ("namespace", "path", True),
        ("pretty", "query", False),
    ]
    assert item["get"]["responses"]["200"]["schema"] == {
        "$ref": "#/definitions/io.k8s.api.core.v1.ConfigMap"
    }


def check_schema(s: Obj, models: set[str], path: str) -> None:
    """kube-openapi's `Definitions.ParseSchema` rules (what makes kubectl's parse fail)."""
    types = s.get("type")
    types = [types] if isinstance(types, str) else types or []
    if "$ref" in s:
        assert not s.get("properties") and not types, path
        assert s["$ref"].removeprefix("#/definitions/") in models, path
        return
    assert len(types) <= 1, path
    if types == ["array"]:
        assert isinstance(s.get("items"), dict), path  # exactly one item schema
        check_schema(s["items"], models, path + "[]")
    elif types in ([], ["object"]) and "properties" in s:
        for name, sub in s["properties"].items():
            check_schema(sub, models, f"{path}.{name}")
    elif types == ["object"]:
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            check_schema(extra, models, path + "{}")
    elif types:
        assert types[0] in ("string", "integer", "number", "boolean"), path


def test_kubectl_can_parse_the_models(documents: tuple[Obj, Obj]) -> None:
    _, decoded = documents
    models = set(decoded["definitions"])
    for name, schema in decoded["definitions"].items():
        check_schema(schema, models, name)


def test_every_field_kind_round_trips() -> None:
    """Everything the encoder knows, in a small document of its own."""
    primitive = {"type": "array", "items": {"type": "integer", "minimum": -3}, "maxItems": 4}
    doc: Obj = {
        "swagger": "2.0",
        "info": {
            "title": "T",
            "version": "1",
            "contact": {"name": "n", "email": "e@x"},
            "license": {"name": "MIT", "url": "u"},
            "x-logo": {"url": "l"},
        },
        "host": "example.com",
        "basePath": "/base",
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            "x-paths-ext": 1,
            "/a/{id}": {
                "get": {
                    "operationId": "getA",
                    "deprecated": True,
                    "externalDocs": {"url": "d"},
                    "parameters": [
                        {"in": "header", "name": "h", "type": "string", "enum": ["x", "y"]},
                        {"in": "formData", "name": "f", "type": "file", "allowEmptyValue": True},
                        {"in": "query", "name": "q", "collectionFormat": "csv", **primitive},
                        {"$ref": "#/parameters/shared"},
                    ],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "schema": {"type": "file"},
                            "headers": {"X-Rate": {"type": "integer", "format": "int32"}},
                            "examples": {"application/json": {"a": [1, "two", None]}},
                        },
                        "404": {"$ref": "#/responses/missing"},
                        "x-resp": True,
                    },
                    "security": [{"oauth": ["read", "write"]}],
                },
                "parameters": [{"in": "path", "name": "id", "required": True, "type": "string"}],
                "x-item": "i",
            },
        },
        "definitions": {
            "Thing": {
                "type": ["object"],
                "title": "A thing",
                "required": ["a"],
                "minProperties": 1,
                "maxProperties": 9,
                "discriminator": "kind",
                "readOnly": True,
                "xml": {"name": "thing", "wrapped": True},
                "allOf": [{"$ref": "#/definitions/Base"}],
                "items": [{"type": "string"}, {"type": "integer"}],
                "example": {"a": 1.5},
                "properties": {
                    "a": {"type": "number", "exclusiveMinimum": True, "minimum": 1.25},
                    "b": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^b"},
                    "x-not-an-extension": {"type": "boolean", "default": False},
                },
                "x-ext": {"nested": ["v", {"w": None}]},
            },
            "Base": {"type": "object", "uniqueItems": True, "additionalProperties": True},
        },
        "parameters": {"shared": {"in": "body", "name": "b", "schema": {"type": "string"}}},
        "responses": {"missing": {"description": "gone"}},
        "security": [{"key": []}],
        "securityDefinitions": {
            "basic": {"type": "basic", "description": "b"},
            "key": {"type": "apiKey", "name": "Authorization", "in": "header"},
            "implicit": {"type": "oauth2", "flow": "implicit", "authorizationUrl": "a"},
            "password": {"type": "oauth2", "flow": "password", "tokenUrl": "t"},
            "application": {"type": "oauth2", "flow": "application", "tokenUrl": "t"},
            "oauth": {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": "a",
                "tokenUrl": "t",
                "scopes": {"read": "r", "write": "w"},
            },
        },
        "tags": [{"name": "t", "description": "d", "externalDocs": {"url": "u"}}],
        "externalDocs": {"description": "more", "url": "u"},
        "x-top": [1, 2],
    }
    decoded = to_json(DOCUMENT.FromString(v2proto.encode(doc)))
    expected = proto3(doc)
    # `type: [object]` and one-element lists come back as gnostic writes them
    expected["definitions"]["Thing"]["type"] = "object"
    assert decoded == expected


def test_vendor_extensions_are_yaml() -> None:
    body = v2proto.encode({"definitions": {"D": {"type": "string", "x-v": {"k": 'é: "q"'}}}})
    msg: Any = DOCUMENT.FromString(body)
    ext = msg.definitions.additional_properties[0].value.vendor_extension[0]
    assert ext.name == "x-v" and yaml.safe_load(ext.value.yaml) == {"k": 'é: "q"'}


def test_unknown_keys_are_dropped() -> None:
    doc = {"swagger": "2.0", "bogus": 1, "definitions": {"D": {"nullable": True, "type": "string"}}}
    assert to_json(DOCUMENT.FromString(v2proto.encode(doc))) == {
        "swagger": "2.0",
        "definitions": {"D": {"type": "string"}},
    }


# ---- the descriptor kubectl embeds ---------------------------------------------------------


def kubectl_descriptor() -> descriptor_pb2.FileDescriptorProto | None:
    """The `openapiv2/OpenAPIv2.proto` FileDescriptorProto in the kubectl binary (golang/protobuf
    keeps raw descriptors uncompressed): read from its name to the first invalid top-level tag."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    data = Path(kubectl).read_bytes()
    start = data.find(b"\n\x19openapiv2/OpenAPIv2.proto")
    if start < 0:
        return None

    def varint(pos: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            b = data[pos]
            result |= (b & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if b < 0x80:
                return result, pos

    pos = start
    while True:
        key, after = varint(pos)
        if not 1 <= key >> 3 <= 14 or key & 7 not in (0, 2):
            break
        if key & 7 == 0:
            _, pos = varint(after)
        else:
            size, after = varint(after)
            pos = after + size
    return descriptor_pb2.FileDescriptorProto.FromString(data[start:pos])


@pytest.fixture(scope="module")
def kubectl_fd() -> descriptor_pb2.FileDescriptorProto:
    fd = kubectl_descriptor()
    assert fd is not None, "kubectl (installed by scripts/test) embeds the gnostic descriptor"
    return fd


def test_field_table_matches_kubectl(kubectl_fd: descriptor_pb2.FileDescriptorProto) -> None:
    theirs = {m.name: m for m in kubectl_fd.message_type}
    for ours in file_descriptor().message_type:
        fields = {f.number: f for f in theirs[ours.name].field}
        for f in ours.field:
            other = fields[f.number]
            assert (other.name, other.type, other.label) == (f.name, f.type, f.label), (
                ours.name,
                f.name,
            )
            assert other.type_name == f.type_name, (ours.name, f.name)
            assert other.HasField("oneof_index") == f.HasField("oneof_index")


def test_kubectl_descriptor_decodes_the_same(
    kubectl_fd: descriptor_pb2.FileDescriptorProto, documents: tuple[Obj, Obj]
) -> None:
    _, doc = build_v2()
    theirs = document_class(kubectl_fd).FromString(v2proto.from_json(doc.body))
    assert to_json(theirs) == documents[1]


# ---- serving -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "spec", "chosen"),
    [
        ("", "v2", "json"),
        ("*/*", "v2", "json"),
        ("application/*", "v2", "json"),
        (PROTO_TYPES[0], "v2", "protobuf"),
        (PROTO_TYPES[1], "v2", "protobuf"),
        (f"{PROTO_TYPES[0]}, application/json", "v2", "protobuf"),
        (f"application/json, {PROTO_TYPES[0]}", "v2", "json"),
        (f"{PROTO_TYPES[0]};q=0.5, application/json", "v2", "json"),
        (f"*/*, {PROTO_TYPES[1]}", "v2", "protobuf"),  # the more specific clause first
        (PROTO_TYPES[0].replace("v2", "v3"), "v3", None),  # v3 protobuf is not served
        ("text/html", "v2", None),
    ],
)
def test_negotiation(accept: str, spec: str, chosen: str | None) -> None:
    assert openapi.negotiate(accept, spec, protobuf=spec == "v2") == chosen


async def test_serving() -> None:
    crds = [CRONTAB_CRD]
    reg = registry.Registry()
    reg.add(CRONTABS)
    oa = openapi.OpenAPI(reg, lambda: crds)

    def get(accept: str, **headers: str) -> Any:
        return oa.serve(make_mocked_request("GET", "/openapi/v2", {"Accept": accept, **headers}))

    as_json = await get("application/json")
    for accept in PROTO_TYPES:
        resp = await get(accept)
        assert resp.status == 200
        assert resp.content_type == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        assert resp.headers["ETag"] == as_json.headers["ETag"]  # as kube-openapi's
        assert resp.headers["Vary"] == "Accept"
        decoded = to_json(DOCUMENT.FromString(resp.body))
        assert decoded == proto3(json.loads(as_json.body))
    unchanged = await get(PROTO_TYPES[0], **{"If-None-Match": as_json.headers["ETag"]})
    assert unchanged.status == 304
    first = await oa.v2_protobuf()
    assert await oa.v2_protobuf() is first  # cached while the inputs stay
    crds[0] = {**CRONTAB_CRD, "metadata": {**CRONTAB_CRD["metadata"], "resourceVersion": "8"}}
    schema = crds[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema is CRONTAB_SCHEMA  # same schema, new resourceVersion: a new document
    again = await oa.v2_protobuf()
    assert again is not first and again.etag == (await oa.v2()).etag
