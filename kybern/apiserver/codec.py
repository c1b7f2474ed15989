"""Request decoding and response encoding: JSON, YAML and protobuf bodies in, JSON or protobuf
out (negotiated once per request from `Accept`, see docs/protobuf.md), `Status` objects for
errors, the 3 MiB body limit, and the query parameters every verb shares (`dryRun`,
`fieldValidation`, `fieldManager`)."""

from __future__ import annotations

import contextvars
import functools
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from aiohttp import web

from kybern.api import errors, protobuf

if TYPE_CHECKING:
    from kybern.apiserver.cache import CachedObject
    from kybern.apiserver.store import ListResult

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
PROTOBUF = protobuf.MEDIA_TYPE
# the response encoding this request negotiated (set once per request by `negotiate`)
_JSON, _PROTO, _PROTO_ONLY = 0, 1, 2
_negotiated: contextvars.ContextVar[int] = contextvars.ContextVar("kybern_accept", default=_JSON)
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


# the authenticated user of a request (name, groups), set by the server before routing
USER: web.RequestKey[tuple[str, list[str]]] = web.RequestKey("user", tuple)


def media_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or JSON).split(";", 1)[0].strip().lower()


async def read_body(request: web.Request) -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise errors.too_large()
    content = request.content
    if content.is_eof():  # all of it has arrived (the usual small body): no read loop
        body = content.read_nowait()
        if len(body) > MAX_BODY:
            raise errors.too_large()
        return body
    data = bytearray()
    async for chunk in content.iter_chunked(65536):
        data += chunk
        if len(data) > MAX_BODY:
            raise errors.too_large()
    return bytes(data)


def parse(body: bytes, mtype: str) -> Any:
    """Decode a JSON, YAML or protobuf document; a 400 Status for anything undecodable."""
    if not body.strip():
        raise errors.bad_request("the body of the request was empty")
    if mtype == PROTOBUF:
        return protobuf.decode_object(body)
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
    if mtype not in (JSON, PROTOBUF, *YAML_TYPES[:3]):
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
    """`data` as JSON, or as protobuf when the request negotiated it and its kind has a
    message."""
    if _negotiated.get() and isinstance(data, dict):
        try:
            body = protobuf.encode_object(data)
        except protobuf.NotEncodable:
            pass
        else:
            return web.Response(body=body, status=status, content_type=PROTOBUF, headers=headers)
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


# ---- protobuf negotiation ----------------------------------------------------------------------


def negotiate(request: web.Request) -> contextvars.Token[int]:
    """Read `Accept` once: protobuf is used for responses when it comes before any JSON type
    (media types with an `as=` parameter, e.g. Tables, are left to their handlers); the
    token resets it when the request is done."""
    return _negotiated.set(accept_mode(request.headers.get("Accept", "")))


def reset_negotiated(token: contextvars.Token[int]) -> None:
    """Forget the negotiation when the request is done (aiohttp reuses a task per
    connection)."""
    _negotiated.reset(token)


@functools.lru_cache(maxsize=256)
def accept_mode(accept: str) -> int:
    """_PROTO when protobuf comes first and JSON is acceptable too, _PROTO_ONLY when JSON is
    not, else _JSON."""
    if PROTOBUF not in accept:
        return _JSON
    for part in accept.split(","):
        mtype, _, params = part.partition(";")
        if "as=" in params:
            continue
        mtype = mtype.strip().lower()
        if mtype == PROTOBUF:
            rest = accept[accept.index(part) + len(part) :]
            json_ok = any(
                m.split(";", 1)[0].strip().lower() in (JSON, "*/*", "application/*", *YAML_TYPES)
                for m in rest.split(",")
            )
            return _PROTO if json_ok else _PROTO_ONLY
        if mtype in (JSON, "*/*", "application/*", *YAML_TYPES):
            return _JSON
    return _JSON


def check_acceptable(api_version: str, kind: str) -> None:
    """406 before doing anything when the client accepts only protobuf and the kind has no
    protobuf message (custom resources, apiextensions, apiregistration)."""
    if _negotiated.get() == _PROTO_ONLY and not protobuf.has_message(api_version, kind):
        raise errors.StatusError(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )


def object_response(o: CachedObject, status: int = 200) -> web.Response:
    """A cached object, as protobuf (its message encoded once per object) when negotiated."""
    if _negotiated.get():
        obj = o.obj
        try:
            body = protobuf.envelope(obj.get("apiVersion", ""), obj.get("kind", ""), o.proto)
        except protobuf.NotEncodable:
            pass
        else:
            return web.Response(body=body, status=status, content_type=PROTOBUF)
    return raw_json_response(o.json, status)


def protobuf_list(api_version: str, list_kind: str, result: ListResult) -> web.Response | None:
    """A list as protobuf when negotiated and possible, else None (the caller sends JSON)."""
    if not _negotiated.get() or not protobuf.has_message(api_version, list_kind):
        return None
    meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
    if result.continue_token:
        meta["continue"] = result.continue_token
    if result.remaining:
        meta["remainingItemCount"] = result.remaining
    try:
        body = protobuf.encode_list(api_version, list_kind, meta, [o.proto for o in result.items])
    except protobuf.NotEncodable:
        return None
    return web.Response(body=body, content_type=PROTOBUF)


def proto_frame(event_type: str, o: CachedObject) -> bytes:
    """A protobuf watch frame of a cached object (its message is encoded once)."""
    obj = o.obj
    body = protobuf.envelope(obj.get("apiVersion", ""), obj.get("kind", ""), o.proto)
    return protobuf.watch_frame(event_type, body)


def protobuf_watch(api_version: str, kind: str) -> bool:
    """Whether this watch streams protobuf frames."""
    return bool(_negotiated.get()) and protobuf.has_message(api_version, kind)


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


def manager_or_user_agent(request: web.Request) -> str:
    """The field manager of a write: `fieldManager`, else the User-Agent up to its first `/`
    (printable characters, at most 128 bytes), as kube-apiserver derives it."""
    fm = field_manager(request)
    if fm:
        return fm
    return user_agent_manager(request.headers.get("User-Agent", ""))


@functools.lru_cache(maxsize=256)
def user_agent_manager(user_agent: str) -> str:
    """The field manager a User-Agent stands for (clients send the same few: remembered)."""
    out, size = [], 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        size += len(ch.encode())
        if size > 128:
            break
        out.append(ch)
    return "".join(out)


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
