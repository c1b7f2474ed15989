"""Request decoding and response encoding: JSON and YAML bodies in, JSON (or YAML) out,
`Status` objects for errors, the 3 MiB body limit, and the query parameters every verb shares
(`dryRun`, `fieldValidation`, `fieldManager`)."""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from aiohttp import web

from kybern.api import errors

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml")
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)

try:
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _YamlLoader = yaml.SafeLoader


def media_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or JSON).split(";", 1)[0].strip().lower()


async def read_body(request: web.Request) -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise errors.too_large()
    data = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        data += chunk
        if len(data) > MAX_BODY:
            raise errors.too_large()
    return bytes(data)


def parse(body: bytes, mtype: str) -> Any:
    """Decode a JSON or YAML document; a 400 Status for anything undecodable."""
    if not body.strip():
        raise errors.bad_request("the body of the request was empty")
    if mtype in YAML_TYPES:
        try:
            return yaml.load(body, Loader=_YamlLoader)  # a safe loader
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {_one_line(e)}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(
            f"the object provided is unrecognized: json parse error: {e}"
        ) from None


def decode_object(body: bytes, mtype: str) -> dict[str, Any]:
    if mtype not in (JSON, *YAML_TYPES[:3]):
        raise errors.unsupported_media_type(mtype)
    obj = parse(body, mtype)
    if not isinstance(obj, dict):
        raise errors.bad_request(
            f"the object provided is unrecognized: expected a JSON object, got {type(obj).__name__}"
        )
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise errors.bad_request(
            "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta"
        )
    return obj


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def raw_json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


def status_response(err: errors.StatusError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return json_response(err.status(), err.code, headers)


def success_status(details: dict[str, Any] | None = None, code: int = 200) -> dict[str, Any]:
    st: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        st["details"] = details
    if code != 200:
        st["code"] = code
    return st


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def field_validation(request: web.Request) -> str:
    v = request.query.get("fieldValidation", "Warn") or "Warn"
    if v not in ("Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{v}": supported values: '
            '"Ignore", "Strict", "Warn"'
        )
    return v


def field_manager(request: web.Request) -> str:
    fm = request.query.get("fieldManager", "")
    if len(fm) > 128:
        raise errors.invalid("", "", "", [errors.too_long("fieldManager", fm, 128)])
    if any(not c.isprintable() for c in fm):
        raise errors.bad_request(
            "fieldManager: Invalid value: must only contain printable characters"
        )
    return fm


def int_param(request: web.Request, name: str) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{v}": must be an integer') from None


def bool_param(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")
