"""What a CRD schema does to values besides validating them: pruning unknown fields (with
their paths, for `fieldValidation`), dropping non-nullable nulls, applying `default`s (and a
cheap check whether any is missing, for defaulting on read), plus the simple JSON paths of the
scale subresource and selectable fields, and a nesting-depth measure for bad input."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import crdschema

Obj = dict[str, Any]


# ---- pruning ------------------------------------------------------------------------------------


def prune(n: crdschema.Node, value: Any, path: str = "", root: bool = True) -> list[str]:
    """Remove fields the schema does not know (in place); returns their paths. Also drops
    `null`s of non-nullable fields (they are defaulted or pruned, as Kubernetes does)."""
    out: list[str] = []
    _prune(n, value, path, root, out)
    return out


def _prune_meta(meta: Any, path: str, out: list[str]) -> None:
    if isinstance(meta, dict):
        for k in [k for k in meta if k not in crdschema.OBJECT_META_FIELDS]:
            del meta[k]
            out.append(crdschema.join(path, k))


def _prune(n: crdschema.Node, value: Any, path: str, root: bool, out: list[str]) -> None:
    if isinstance(value, dict):
        if root or n.embedded:
            _prune_meta(value.get("metadata"), crdschema.join(path, "metadata"), out)
        if n.properties is None and n.additional is None:
            if not (n.preserve_unknown or n.additional_bool or n.embedded or root):
                if n.type == "object" or n.type == "":
                    for k in list(value):
                        del value[k]
                        out.append(crdschema.join(path, k))
            return
        for k in list(value):
            if (root or n.embedded) and k in ("apiVersion", "kind", "metadata"):
                continue
            child = n.properties.get(k) if n.properties is not None else None
            if child is None:
                child = n.additional
            if child is None:
                if not (n.preserve_unknown or n.additional_bool):
                    del value[k]
                    out.append(crdschema.join(path, k))
                continue
            v = value[k]
            if v is None and not child.nullable:
                del value[k]  # non-nullable null: pruned (a default takes its place)
                continue
            _prune(child, v, crdschema.join(path, k), False, out)
    elif isinstance(value, list) and n.items is not None:
        for i, v in enumerate(value):
            _prune(n.items, v, f"{path}[{i}]", False, out)


# ---- defaulting ---------------------------------------------------------------------------------


def apply_defaults(n: crdschema.Node, value: Any) -> None:
    """Set missing fields that have a `default` (in place, top-down)."""
    if not n.has_defaults:
        return
    if isinstance(value, dict):
        if n.properties is not None:
            for k, child in n.properties.items():
                if child.default is not crdschema.MISSING and (
                    k not in value or (value[k] is None and not child.nullable)
                ):
                    value[k] = copy.deepcopy(child.default)
                if k in value and child.has_defaults:
                    apply_defaults(child, value[k])
        if n.additional is not None and n.additional.has_defaults:
            for k, v in value.items():
                if n.properties is None or k not in n.properties:
                    apply_defaults(n.additional, v)
    elif isinstance(value, list) and n.items is not None and n.items.has_defaults:
        for v in value:
            apply_defaults(n.items, v)


def lacks_defaults(n: crdschema.Node, value: Any) -> bool:
    """Whether `apply_defaults` would change `value` (cheap check before copying on read)."""
    if not n.has_defaults:
        return False
    if isinstance(value, dict):
        if n.properties is not None:
            for k, child in n.properties.items():
                if child.default is not crdschema.MISSING and (
                    k not in value or (value[k] is None and not child.nullable)
                ):
                    return True
                if k in value and child.has_defaults and lacks_defaults(child, value[k]):
                    return True
        if n.additional is not None and n.additional.has_defaults:
            return any(lacks_defaults(n.additional, v) for v in value.values())
    elif isinstance(value, list) and n.items is not None and n.items.has_defaults:
        return any(lacks_defaults(n.items, v) for v in value)
    return False


def depth(value: Any, limit: int) -> int:
    """The nesting depth of a JSON value, counting at most to `limit + 1`."""
    best = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > best:
            best = d
            if best > limit:
                return best
        if isinstance(v, dict):
            stack.extend((c, d + 1) for c in v.values() if isinstance(c, (dict, list)))
        elif isinstance(v, list):
            stack.extend((c, d + 1) for c in v if isinstance(c, (dict, list)))
    return best


def at_path(obj: Any, path: str) -> Any:
    """The value at a simple JSON path (`.spec.replicas`), crdschema.MISSING if absent."""
    cur = obj
    for part in [p for p in path.strip().lstrip(".").split(".") if p]:
        if not isinstance(cur, dict) or part not in cur:
            return crdschema.MISSING
        cur = cur[part]
    return cur


def set_path(obj: Obj, path: str, value: Any) -> None:
    """Set the value at a simple JSON path, creating objects on the way."""
    parts = [p for p in path.strip().lstrip(".").split(".") if p]
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    if parts:
        cur[parts[-1]] = value


def schema_at(n: crdschema.Node, path: str) -> crdschema.Node | None:
    """The schema of the value at a simple JSON path, None when the schema does not say."""
    cur: crdschema.Node | None = n
    for part in [p for p in path.strip().lstrip(".").split(".") if p]:
        if cur is None:
            return None
        cur = cur.child(part)
    return cur
