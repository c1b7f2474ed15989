"""The protobuf rendering of `/openapi/v2`: a Swagger 2.0 document (the JSON-shaped dict that
`openapi.Builder.v2` makes) encoded as gnostic's `openapi.v2.Document` message (the
`openapiv2/OpenAPIv2.proto` of github.com/google/gnostic-models, which kubectl decodes), as
kube-apiserver serves it for `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
(or `...spec.v2.v1.0+protobuf`). The wire format is written by hand from a table of the messages'
field numbers: no generated code, no descriptor pool, proto3 rules (zero scalars omitted; a
present sub-message, even empty, emitted, since kube-openapi tells `properties: {}` from none);
vendor extensions (`x-kubernetes-group-version-kind`, ...) and `default`/`enum`/`example` become
`NamedAny`/`Any` whose `yaml` is the value as JSON text (JSON is YAML; kube-openapi reads it with
`yaml.Unmarshal`). Keys gnostic has no field for are dropped. Pure data; no HTTP here."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from kybern.api.protobuf_wire import varint

CONTENT_TYPE: Final = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
Enc = Callable[[Any], bytes]  # a JSON value -> the bytes of one field (tag included), b"" = none
Payload = Callable[[Any], "bytes | None"]  # a JSON value -> a sub-message's bytes, None = skip


def _key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def _ld(key: bytes, payload: bytes) -> bytes:
    return key + varint(len(payload)) + payload


def _yaml(value: Any) -> bytes:
    """A JSON value as the `yaml` of an `Any` (flow-style JSON with spaces: YAML 1.1 and 1.2)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode()


def _any_payload(value: Any) -> bytes:
    return _ld(b"\x12", _yaml(value))  # Any.yaml = 2


# ---- field kinds: number -> encoder ------------------------------------------------------


def _string(number: int) -> Enc:
    key = _key(number, 2)

    def enc(v: Any) -> bytes:
        return _ld(key, v.encode()) if isinstance(v, str) and v else b""

    return enc


def _bool(number: int) -> Enc:
    tagged = _key(number, 0) + b"\x01"
    return lambda v: tagged if v is True else b""


def _int64(number: int) -> Enc:
    key = _key(number, 0)

    def enc(v: Any) -> bytes:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return key + varint(v) if isinstance(v, int) and not isinstance(v, bool) and v else b""

    return enc


def _double(number: int) -> Enc:
    key = _key(number, 1)

    def enc(v: Any) -> bytes:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and v
        return key + struct.pack("<d", float(v)) if ok else b""

    return enc


def _strings(number: int) -> Enc:
    key = _key(number, 2)

    def enc(v: Any) -> bytes:
        items = v if isinstance(v, list) else []
        return b"".join(_ld(key, s.encode()) for s in items if isinstance(s, str))

    return enc


def _any(number: int) -> Enc:
    key = _key(number, 2)
    return lambda v: _ld(key, _any_payload(v))


def _anys(number: int) -> Enc:
    key = _key(number, 2)
    return lambda v: b"".join(_ld(key, _any_payload(x)) for x in v) if isinstance(v, list) else b""


def _sub(number: int, payload: Payload) -> Enc:
    """A singular sub-message, emitted whenever `payload` gives bytes (even empty ones)."""
    key = _key(number, 2)

    def enc(v: Any) -> bytes:
        b = payload(v)
        return b"" if b is None else _ld(key, b)

    return enc


def _subs(number: int, payload: Payload) -> Enc:
    """A repeated sub-message from a JSON list."""
    key = _key(number, 2)

    def enc(v: Any) -> bytes:
        parts = [payload(x) for x in v] if isinstance(v, list) else []
        return b"".join(_ld(key, b) for b in parts if b is not None)

    return enc


def _entry(name: str, value: bytes | None) -> bytes:
    """The payload of a `Named*` message: {name = 1, value = 2}."""
    return _ld(b"\x0a", name.encode()) + (b"" if value is None else _ld(b"\x12", value))


def _map(number: int, value: Payload, vendor: int = 0) -> Payload:
    """A JSON object as a message of repeated `Named*` entries (field `number`); with `vendor`,
    its `x-` keys are vendor extensions in that field instead (Paths, Responses)."""
    key, vendor_key = _key(number, 2), _key(vendor, 2)

    def payload(v: Any) -> bytes | None:
        if not isinstance(v, Mapping):
            return None
        named: list[bytes] = []
        ext: list[bytes] = []
        for k, x in v.items():
            if vendor and k.startswith("x-"):
                ext.append(_ld(vendor_key, _entry(k, _any_payload(x))))
            else:
                named.append(_ld(key, _entry(k, value(x))))
        return b"".join([*named, *ext] if not vendor or number < vendor else [*ext, *named])

    return payload


Field = tuple[str, Callable[[int], Enc]]  # JSON key, field kind


class _Msg:
    """A message: JSON keys -> (field number, encoder), numbered 1, 2, ... in the order given;
    `x-` keys go to `vendor` (a repeated `NamedAny`: by default the field after the last, 0 =
    none). Fields are written in field-number order, as Go's marshaller writes them."""

    __slots__ = ("fields", "vendor", "vendor_key")

    def __init__(self, fields: list[Field], vendor: int | None = None) -> None:
        self.fields: dict[str, tuple[int, Enc]] = {}
        self.vendor = len(fields) + 1 if vendor is None else vendor
        self.vendor_key = _key(self.vendor, 2)
        self.extend(fields)

    def extend(self, fields: list[Field]) -> None:
        """Add `fields`, numbered on from the last one (for the recursive messages)."""
        for name, kind in fields:
            number = len(self.fields) + 1
            self.fields[name] = (number, kind(number))

    def __call__(self, obj: Any) -> bytes | None:
        if not isinstance(obj, Mapping):
            return None
        parts: list[tuple[int, bytes]] = []
        for k, v in obj.items():
            field = self.fields.get(k)
            if field is not None:
                b = field[1](v)
                if b:
                    parts.append((field[0], b))
            elif self.vendor and k.startswith("x-"):
                parts.append((self.vendor, _ld(self.vendor_key, _entry(k, _any_payload(v)))))
        parts.sort(key=lambda p: p[0])
        return b"".join(b for _, b in parts)


def _msg(m: Payload) -> Callable[[int], Enc]:
    return lambda n: _sub(n, m)


def _msgs(m: Payload) -> Callable[[int], Enc]:
    return lambda n: _subs(n, m)


# ---- the messages (field numbers of openapiv2/OpenAPIv2.proto) ----------------------------

_EXTERNAL_DOCS = _Msg([("description", _string), ("url", _string)])
_XML = _Msg(
    [
        ("name", _string),
        ("namespace", _string),
        ("prefix", _string),
        ("attribute", _bool),
        ("wrapped", _bool),
    ]
)
_PRIMITIVES_ITEMS = _Msg([], vendor=18)  # its `items` is itself: filled in below
# The validation keywords of parameters, headers and items, in gnostic's order.
_VALIDATIONS: list[Field] = [
    ("type", _string),
    ("format", _string),
    ("items", _msg(_PRIMITIVES_ITEMS)),
    ("collectionFormat", _string),
    ("default", _any),
    ("maximum", _double),
    ("exclusiveMaximum", _bool),
    ("minimum", _double),
    ("exclusiveMinimum", _bool),
    ("maxLength", _int64),
    ("minLength", _int64),
    ("pattern", _string),
    ("maxItems", _int64),
    ("minItems", _int64),
    ("uniqueItems", _bool),
    ("enum", _anys),
    ("multipleOf", _double),
]
_PRIMITIVES_ITEMS.extend(_VALIDATIONS)
_HEADER = _Msg([*_VALIDATIONS, ("description", _string)])
_PARAM_HEAD: list[Field] = [
    ("required", _bool),
    ("in", _string),
    ("description", _string),
    ("name", _string),
]
_PATH_OR_HEADER_PARAM = _Msg([*_PARAM_HEAD, *_VALIDATIONS])
_QUERY_OR_FORM_PARAM = _Msg([*_PARAM_HEAD, ("allowEmptyValue", _bool), *_VALIDATIONS])
# NonBodyParameter: oneof by `in`
_NON_BODY = {
    "header": (1, _PATH_OR_HEADER_PARAM),
    "formData": (2, _QUERY_OR_FORM_PARAM),
    "query": (3, _QUERY_OR_FORM_PARAM),
    "path": (4, _PATH_OR_HEADER_PARAM),
}

_SCHEMA = _Msg([], vendor=31)  # recursive: filled in below


def _type_item(v: Any) -> bytes | None:
    """TypeItem {repeated value = 1}: `type` is one name or a list of them."""
    types = [v] if isinstance(v, str) else v if isinstance(v, list) else None
    return None if types is None else _strings(1)(types)


def _items_item(v: Any) -> bytes | None:
    """ItemsItem {repeated schema = 1}: `items` is one schema or a list of them."""
    schemas = [v] if isinstance(v, Mapping) else v if isinstance(v, list) else None
    return None if schemas is None else _subs(1, _SCHEMA)(schemas)


def _additional_properties(v: Any) -> bytes | None:
    """AdditionalPropertiesItem: oneof {schema = 1, boolean = 2} (a oneof's false is kept)."""
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    schema = _SCHEMA(v)
    return None if schema is None else _ld(b"\x0a", schema)


_SCHEMA.extend(
    [
        ("$ref", _string),
        ("format", _string),
        ("title", _string),
        ("description", _string),
        ("default", _any),
        ("multipleOf", _double),
        ("maximum", _double),
        ("exclusiveMaximum", _bool),
        ("minimum", _double),
        ("exclusiveMinimum", _bool),
        ("maxLength", _int64),
        ("minLength", _int64),
        ("pattern", _string),
        ("maxItems", _int64),
        ("minItems", _int64),
        ("uniqueItems", _bool),
        ("maxProperties", _int64),
        ("minProperties", _int64),
        ("required", _strings),
        ("enum", _anys),
        ("additionalProperties", _msg(_additional_properties)),
        ("type", _msg(_type_item)),
        ("items", _msg(_items_item)),
        ("allOf", _msgs(_SCHEMA)),
        ("properties", _msg(_map(1, _SCHEMA))),  # Properties {repeated NamedSchema}
        ("discriminator", _string),
        ("readOnly", _bool),
        ("xml", _msg(_XML)),
        ("externalDocs", _msg(_EXTERNAL_DOCS)),
        ("example", _any),
    ]
)
_FILE_SCHEMA = _Msg(
    [
        ("format", _string),
        ("title", _string),
        ("description", _string),
        ("default", _any),
        ("required", _strings),
        ("type", _string),
        ("readOnly", _bool),
        ("externalDocs", _msg(_EXTERNAL_DOCS)),
        ("example", _any),
    ]
)
_BODY_PARAM = _Msg(
    [
        ("description", _string),
        ("name", _string),
        ("in", _string),
        ("required", _bool),
        ("schema", _msg(_SCHEMA)),
    ]
)
_JSON_REFERENCE = _Msg([("$ref", _string), ("description", _string)], vendor=0)


def _oneof(number: int, payload: bytes | None) -> bytes:
    return _ld(_key(number, 2), payload or b"")


def _parameter(v: Any) -> bytes | None:
    """Parameter: oneof {body_parameter = 1, non_body_parameter = 2 (a oneof by `in`)}."""
    if not isinstance(v, Mapping):
        return None
    if v.get("in") == "body":
        return _oneof(1, _BODY_PARAM(v))
    number, sub = _NON_BODY.get(str(v.get("in")), _NON_BODY["query"])
    return _oneof(2, _oneof(number, sub(v)))


def _parameters_item(v: Any) -> bytes | None:
    """ParametersItem: oneof {parameter = 1, json_reference = 2}."""
    if isinstance(v, Mapping) and "$ref" in v:
        return _oneof(2, _JSON_REFERENCE(v))
    p = _parameter(v)
    return None if p is None else _oneof(1, p)


def _schema_item(v: Any) -> bytes | None:
    """SchemaItem: oneof {schema = 1, file_schema = 2}."""
    if isinstance(v, Mapping) and v.get("type") == "file":
        return _oneof(2, _FILE_SCHEMA(v))
    s = _SCHEMA(v)
    return None if s is None else _oneof(1, s)


_RESPONSE = _Msg(
    [
        ("description", _string),
        ("schema", _msg(_schema_item)),
        ("headers", _msg(_map(1, _HEADER))),  # Headers {repeated NamedHeader}
        ("examples", _msg(_map(1, _any_payload))),  # Examples {repeated NamedAny}
    ]
)


def _response_value(v: Any) -> bytes | None:
    """ResponseValue: oneof {response = 1, json_reference = 2}."""
    if isinstance(v, Mapping) and "$ref" in v:
        return _oneof(2, _JSON_REFERENCE(v))
    r = _RESPONSE(v)
    return None if r is None else _oneof(1, r)


# SecurityRequirement {repeated NamedStringArray}; StringArray {repeated value = 1}
_SECURITY_REQUIREMENT = _map(1, _strings(1))
_OPERATION = _Msg(
    [
        ("tags", _strings),
        ("summary", _string),
        ("description", _string),
        ("externalDocs", _msg(_EXTERNAL_DOCS)),
        ("operationId", _string),
        ("produces", _strings),
        ("consumes", _strings),
        ("parameters", _msgs(_parameters_item)),
        # Responses {repeated NamedResponseValue response_code = 1; vendor_extension = 2}
        ("responses", _msg(_map(1, _response_value, vendor=2))),
        ("schemes", _strings),
        ("deprecated", _bool),
        ("security", _msgs(_SECURITY_REQUIREMENT)),
    ]
)
_PATH_ITEM = _Msg(
    [
        ("$ref", _string),
        *((m, _msg(_OPERATION)) for m in ("get", "put", "post", "delete", "options", "head")),
        ("patch", _msg(_OPERATION)),
        ("parameters", _msgs(_parameters_item)),
    ]
)
_SCOPES = _map(1, lambda s: s.encode() if isinstance(s, str) else None)  # Oauth2Scopes
_OAUTH2_HEAD: list[Field] = [("type", _string), ("flow", _string), ("scopes", _msg(_SCOPES))]
_AUTH_URL, _TOKEN_URL, _DESCRIPTION = (
    ("authorizationUrl", _string),
    ("tokenUrl", _string),
    ("description", _string),
)
# SecurityDefinitionsItem: oneof by `type` (and the `flow` of OAuth2)
_SECURITY_SCHEMES: dict[str, tuple[int, _Msg]] = {
    "basic": (1, _Msg([("type", _string), _DESCRIPTION])),
    "apiKey": (2, _Msg([("type", _string), ("name", _string), ("in", _string), _DESCRIPTION])),
    "implicit": (3, _Msg([*_OAUTH2_HEAD, _AUTH_URL, _DESCRIPTION])),
    "password": (4, _Msg([*_OAUTH2_HEAD, _TOKEN_URL, _DESCRIPTION])),
    "application": (5, _Msg([*_OAUTH2_HEAD, _TOKEN_URL, _DESCRIPTION])),
    "accessCode": (6, _Msg([*_OAUTH2_HEAD, _AUTH_URL, _TOKEN_URL, _DESCRIPTION])),
}


def _security_definition(v: Any) -> bytes | None:
    if not isinstance(v, Mapping):
        return None
    scheme = _SECURITY_SCHEMES.get(str(v.get("flow" if v.get("type") == "oauth2" else "type")))
    return None if scheme is None else _oneof(scheme[0], scheme[1](v))


_INFO = _Msg(
    [
        ("title", _string),
        ("version", _string),
        ("description", _string),
        ("termsOfService", _string),
        ("contact", _msg(_Msg([("name", _string), ("url", _string), ("email", _string)]))),
        ("license", _msg(_Msg([("name", _string), ("url", _string)]))),
    ]
)
_TAG = _Msg([("name", _string), _DESCRIPTION, ("externalDocs", _msg(_EXTERNAL_DOCS))])
_DOCUMENT = _Msg(
    [
        ("swagger", _string),
        ("info", _msg(_INFO)),
        ("host", _string),
        ("basePath", _string),
        ("schemes", _strings),
        ("consumes", _strings),
        ("produces", _strings),
        # Paths {vendor_extension = 1; repeated NamedPathItem path = 2}
        ("paths", _msg(_map(2, _PATH_ITEM, vendor=1))),
        ("definitions", _msg(_map(1, _SCHEMA))),  # Definitions {repeated NamedSchema}
        ("parameters", _msg(_map(1, _parameter))),  # ParameterDefinitions {NamedParameter}
        ("responses", _msg(_map(1, _RESPONSE))),  # ResponseDefinitions {NamedResponse}
        ("security", _msgs(_SECURITY_REQUIREMENT)),
        ("securityDefinitions", _msg(_map(1, _security_definition))),
        ("tags", _msgs(_TAG)),
        ("externalDocs", _msg(_EXTERNAL_DOCS)),
    ]
)


def encode(doc: Mapping[str, Any]) -> bytes:
    """The `openapi.v2.Document` bytes of a Swagger 2.0 document (maps in their dict order)."""
    return _DOCUMENT(doc) or b""


def from_json(body: bytes) -> bytes:
    """`encode` of a JSON document, its key order kept: the served JSON has sorted keys, as
    kube-apiserver's has, so definitions, properties and paths come sorted, as from it."""
    return encode(orjson.loads(body))
