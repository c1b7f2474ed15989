"""Kubernetes API errors as data: `StatusError` carries a `meta/v1` `Status` (code, reason,
details, causes) and is raised anywhere below the HTTP layer, which only serializes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation failure, rendered as a `StatusCause`.

    `reason` is a Kubernetes cause type: FieldValueInvalid, FieldValueRequired,
    FieldValueNotSupported, FieldValueDuplicate, FieldValueTooLong, FieldValueTooMany,
    FieldValueForbidden, FieldValueTypeInvalid. `message` is the detail after the field path,
    e.g. 'Invalid value: "Foo": a lowercase RFC 1123 subdomain must ...'."""

    reason: str
    field: str
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def invalid_value(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, f"Invalid value: {_quote(value)}: {detail}")


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(
        "FieldValueRequired", field, "Required value" + (f": {detail}" if detail else "")
    )


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    opts = ", ".join(f'"{s}"' for s in supported)
    return FieldError(
        "FieldValueNotSupported",
        field,
        f"Unsupported value: {_quote(value)}: supported values: {opts}",
    )


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, f"Forbidden: {detail}")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, f"Duplicate value: {_quote(value)}")


def too_long(field: str, value: Any, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", field, f"Too long: must have at most {limit} bytes")


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def go_quote(s: str) -> str:
    """Go's `%q` of a string, as kube's messages quote names and values (backslash, quote and
    the common control characters escaped)."""
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{out}"'


class StatusError(Exception):
    """An API error. `status()` is the `Status` object sent to the client."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        group: str = "",
        kind: str = "",
        name: str = "",
        causes: list[FieldError] | None = None,
        retry_after: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.group = group
        self.kind = kind
        self.name = name
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes
            ]
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            st["details"] = details
        st["code"] = self.code
        return st


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        group=group,
        kind=resource,
        name=name,
    )


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        group=group,
        kind=resource,
        name=name,
    )


def conflict(resource: str, group: str, name: str, detail: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        group=group,
        kind=resource,
        name=name,
    )


def stale_conflict(resource: str, group: str, name: str) -> StatusError:
    return conflict(
        resource,
        group,
        name,
        "the object has been modified; please apply your changes to the latest version "
        "and try again",
    )


def invalid(kind: str, group: str, name: str, causes: list[FieldError]) -> StatusError:
    text = ", ".join(c.text() for c in causes)
    if len(causes) > 1:
        text = "[" + text + "]"
    return StatusError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {text}'
        if group
        else f'{kind} "{name}" is invalid: {text}',
        group=group,
        kind=kind,
        name=name,
        causes=causes,
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden_error(resource: str, group: str, name: str, message: str) -> StatusError:
    what = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    return StatusError(
        403, "Forbidden", f"{what} is forbidden: {message}", group=group, kind=resource, name=name
    )


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml, application/merge-patch+json, "
        f"application/json-patch+json, application/strategic-merge-patch+json "
        f'(got "{content_type}")',
    )


def too_large(message: str = "Request entity too large: limit is 3145728") -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)


def from_status(status: dict[str, Any], http_code: int) -> StatusError:
    """The error a client received: rebuild a StatusError from a `Status` body."""
    details = status.get("details") or {}
    causes = [
        FieldError(c.get("reason", ""), c.get("field", ""), c.get("message", ""))
        for c in details.get("causes") or []
    ]
    return StatusError(
        int(status.get("code") or http_code),
        str(status.get("reason") or "Unknown"),
        str(status.get("message") or ""),
        group=details.get("group", ""),
        kind=details.get("kind", ""),
        name=details.get("name", ""),
        causes=causes,
        retry_after=int(details.get("retryAfterSeconds") or 0),
    )
