"""Built-in kinds served in more than one version, as kube-apiserver's scheme converts them:
`convert(obj, api_version)` gives an object of such a kind as another of its versions shows it,
`field_errors` names a validation error's field as the request's version does.
The registry says which versions a kind is served in and which one it is stored in
(`Resource.storage_version`); the conversions themselves live beside this module, one module per
API group (`conversion_autoscaling`). Pure functions of JSON dicts; no I/O."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kybern.api import conversion_autoscaling, errors

Obj = dict[str, Any]

# (group, kind, served version) -> the field path it shows for a path of the stored version
_PATHS: dict[tuple[str, str, str], Callable[[Obj, str], str]] = {
    ("autoscaling", "HorizontalPodAutoscaler", "v1"): conversion_autoscaling.v1_field_path,
}
# (group, kind, from version, to version) -> the conversion
_CONVERSIONS: dict[tuple[str, str, str, str], Callable[[Obj], Obj]] = {
    ("autoscaling", "HorizontalPodAutoscaler", "v1", "v2"): conversion_autoscaling.to_v2,
    ("autoscaling", "HorizontalPodAutoscaler", "v2", "v1"): conversion_autoscaling.to_v1,
}


def convert(obj: Obj, api_version: str) -> Obj:
    """`obj` as `api_version` shows it: `obj` itself when it is of that version already, else a
    new dict (`obj` is not modified; unchanged subtrees are shared with it). A pair of versions
    without a conversion is an internal error, as kube's scheme reports it."""
    have = obj.get("apiVersion")
    if have == api_version:
        return obj
    group, _, version = str(have).rpartition("/")
    want_group, _, want = api_version.rpartition("/")
    kind = str(obj.get("kind"))
    fn = _CONVERSIONS.get((group, kind, version, want)) if group == want_group else None
    if fn is None:
        raise errors.internal(f"converting {kind} from {have} to {api_version} is not supported")
    return fn(obj)


def field_errors(
    obj: Obj, api_version: str, errs: list[errors.FieldError]
) -> list[errors.FieldError]:
    """`errs` of the stored-version object `obj`, made of a request in `api_version`, with the
    field paths that version shows. (kube-apiserver validates its internal version and reports
    its paths; kybern names the request's field where the two differ, see docs/apiserver.md.)"""
    group, _, version = api_version.rpartition("/")
    fn = _PATHS.get((group, str(obj.get("kind")), version))
    if fn is None:
        return errs
    return [
        e if (p := fn(obj, e.field)) == e.field else errors.FieldError(e.reason, p, e.message)
        for e in errs
    ]


@functools.cache
def versions_of(group: str, kind: str) -> tuple[str, ...]:
    """The versions a built-in kind converts between (none for a kind served in one)."""
    found = {v for g, k, a, b in _CONVERSIONS if (g, k) == (group, kind) for v in (a, b)}
    return tuple(sorted(found))
