"""The three PATCH flavours of kube-apiserver over plain JSON dicts: `apply_json_patch` (RFC 6902
with JSON-pointer escaping, `-` and negative indices like evanphx/json-patch, failures as 422
Invalid), `apply_merge_patch` (RFC 7386, plus `create_merge_patch` to diff two documents) and
`apply_strategic_merge_patch`, Kubernetes' strategic merge patch driven by a `PatchMeta` table of
per-field `(patchStrategy, patchMergeKey)`: keyed list merges with `$setElementOrder` ordering,
primitive list unions, `$patch: replace|delete|merge`, `$retainKeys` and
`$deleteFromPrimitiveList`. `strategic_patch_meta` derives the table of a built-in kind from the
Kubernetes definitions (`kybern.api.definitions`); the hand-written `BUILTIN_PATCH_META` is the
fallback without them; custom resources get 415, as in Kubernetes. Inputs are never mutated."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from kybern.api import definitions, errors

_MISSING: Any = object()


def _copy(v: Any) -> Any:
    cls = v.__class__
    if cls is str or cls is int or cls is bool or cls is float or v is None:
        return v
    if cls is dict:
        return {k: _copy(x) for k, x in v.items()}
    if cls is list:
        return [_copy(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_copy(x) for x in v]
    return v


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (`true` differs from `1`; `1` equals `1.0`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(json_equal(x, b[k]) for k, x in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    return not isinstance(b, (Mapping, list)) and a == b


def _go(v: Any) -> str:
    """Go's `%v` rendering of a JSON value, for error messages that quote patch fragments."""
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{_go(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "<nil>" if v is None else str(v)


# --- RFC 6902 JSON patch ----------------------------------------------------------------------

MAX_JSON_PATCH_OPERATIONS = 10000
_INDEX_RE = re.compile(r"-?[0-9]+")


def _rejected(message: str) -> errors.StatusError:
    """What kube-apiserver answers when applying a JSON patch fails (the detail is a cause)."""
    return errors.StatusError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        causes=[errors.FieldError("", "", message)],
    )


def _go_type(v: Any) -> str:
    kinds = {bool: "bool", int: "number", float: "number", str: "string", list: "array"}
    return kinds.get(type(v), "object")


def _tokens(op: str, pointer: Any, what: str) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise _rejected(f"{op} operation failed to decode {what}: missing value")
    if not pointer:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(key: Any, size: int, insert: bool = False) -> int | None:
    if isinstance(key, int):  # the synthetic holder of the root document
        return key
    if insert and key == "-":
        return size
    if not isinstance(key, str) or not _INDEX_RE.fullmatch(key):
        return None
    i = int(key)
    limit = size + 1 if insert else size
    if i < 0:
        i += limit
    return i if 0 <= i < limit else None


def _child(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key, _MISSING)
    if isinstance(container, list):
        i = _index(key, len(container))
        return _MISSING if i is None else container[i]
    return _MISSING


def _locate(holder: list[Any], tokens: list[str]) -> tuple[Any, Any] | None:
    """(parent container, last key) for `tokens`; the root's parent is `holder` with key 0."""
    container: Any = holder
    key: Any = 0
    for tok in tokens:
        container = _child(container, key)
        if not isinstance(container, (dict, list)):
            return None
        key = tok
    return container, key


def _add(container: Any, key: Any, value: Any, path: str) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    i = _index(key, len(container), insert=True)
    if i is None:
        raise _rejected(
            f"error in add for path: '{path}': "
            f"Unable to access invalid index: {key}: invalid index referenced"
        )
    if isinstance(key, int):  # the root document itself
        container[i] = value
    else:
        container.insert(i, value)


def _apply_op(holder: list[Any], o: Mapping[str, Any]) -> None:
    kind = o.get("op") if isinstance(o.get("op"), str) else "unknown"
    if kind not in ("add", "remove", "replace", "move", "copy", "test"):
        raise _rejected(f"Unexpected kind: {kind}")
    if kind in ("add", "replace", "test") and "value" not in o:
        raise _rejected(f"{kind} operation missing value: missing value")
    path, value = o.get("path"), o.get("value")
    if kind in ("move", "copy"):
        src = o.get("from")
        src_loc = _locate(holder, _tokens(kind, src, "from"))
        value = _MISSING if src_loc is None else _child(*src_loc)
        if src_loc is None or value is _MISSING or (kind == "move" and src_loc[0] is holder):
            raise _rejected(f"{kind} operation does not apply: doc is missing from path: {src}")
        if kind == "move":
            _pop(*src_loc)
    loc = _locate(holder, _tokens(kind, path, "path"))
    if loc is None:
        raise _rejected(f'{kind} operation does not apply: doc is missing path: "{path}"')
    if kind == "test":
        current = _child(*loc)
        if current is _MISSING or not json_equal(current, value):
            raise _rejected(f"testing value {path} failed: test failed")
        return
    if kind in ("remove", "replace"):
        root = loc[0] is holder
        if (root and kind == "remove") or (not root and _child(*loc) is _MISSING):
            raise _rejected(f"{kind} operation does not apply: doc is missing key: {path}")
        if not root:
            _pop(*loc)
    if kind != "remove":
        _add(*loc, value if kind == "move" else _copy(value), str(path))


def _pop(container: Any, key: Any) -> None:
    container.pop(key if isinstance(container, dict) else _index(key, len(container)))


def apply_json_patch(doc: Mapping[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch (the parsed `application/json-patch+json` body) to a copy of `doc`.

    A body that is not a list of objects -> 400 BadRequest; more than 10000 operations -> 413;
    an operation that does not apply (missing path, failed `test`, bad index, unknown op) ->
    422 Invalid "the server rejected our request ..." with the detail as the cause message,
    like kube-apiserver (which uses evanphx/json-patch, including its negative indices)."""
    for o in ops if isinstance(ops, list) else [ops]:
        if not isinstance(ops, list) or not isinstance(o, Mapping):
            what = "Operation" if isinstance(ops, list) else "Patch"
            raise errors.bad_request(
                f"json: cannot unmarshal {_go_type(o)} into Go value of type jsonpatch.{what}"
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.too_large(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}"
        )
    holder: list[Any] = [_copy(doc)]
    for o in ops:
        _apply_op(holder, o)
    if not isinstance(holder[0], dict):
        raise errors.bad_request("the patched document is not a JSON object")
    result: dict[str, Any] = holder[0]
    return result


# --- RFC 7386 JSON merge patch ----------------------------------------------------------------


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch; `target` is owned (mutated), `patch` is only read."""
    if not isinstance(patch, Mapping):
        return _copy(patch)
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = _merge(target.get(k), v)
    return target


def merge_patch_value(target: Any, patch: Any) -> Any:
    """RFC 7386 on arbitrary JSON values (a non-object patch replaces the target)."""
    return _merge(_copy(target), patch)


def apply_merge_patch(doc: Mapping[str, Any], patch: Any, *, owned: bool = False) -> dict[str, Any]:
    """Apply an `application/merge-patch+json` body to a copy of `doc` (`owned`: to `doc`
    itself, a dict the caller gives up): null deletes a key, objects merge recursively,
    anything else replaces. A non-object patch -> 400 BadRequest."""
    if not isinstance(patch, Mapping):
        raise errors.bad_request("Invalid JSON Patch")
    result: dict[str, Any] = _merge(doc if owned and isinstance(doc, dict) else _copy(doc), patch)
    return result


def create_merge_patch(original: Mapping[str, Any], modified: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 patch turning `original` into `modified` (deleted keys -> null, changed
    values -> the new value, nested objects diffed recursively). Null values inside `modified`
    cannot be expressed by a merge patch and come out as deletions/omissions."""
    patch: dict[str, Any] = {k: None for k in original if k not in modified}
    for k, v in modified.items():
        old = original.get(k, _MISSING)
        if isinstance(v, Mapping) and isinstance(old, Mapping):
            sub = create_merge_patch(old, v)
            if sub:
                patch[k] = sub
        elif old is _MISSING or not json_equal(old, v):
            patch[k] = _copy(v)
    return patch


# --- strategic merge patch --------------------------------------------------------------------


class PatchMeta:
    """Per-field strategic-merge metadata: dotted field paths (list indices collapsed, e.g.
    `spec.containers.ports`) -> `(patchStrategy, patchMergeKey)`, where the strategy is
    "merge", "replace", "retainKeys" or "merge,retainKeys". Unlisted fields use the defaults:
    objects merge recursively, lists are replaced."""

    __slots__ = ("_fields", "_tree")

    def __init__(self, fields: Mapping[str, tuple[str, str]] | None = None) -> None:
        self._fields = {tuple(k.split(".")): v for k, v in (fields or {}).items()}
        self._tree = _Node()
        for path, (strategy, key) in self._fields.items():
            node = self._tree
            for part in path:
                node = node.children.setdefault(part, _Node())
            node.merge = "merge" in strategy.split(",")
            node.replace = "replace" in strategy.split(",")
            node.key = key

    def lookup(self, path: tuple[str, ...]) -> tuple[str, str]:
        """`(strategy, merge_key)` of a field path, `("", "")` when it has no metadata."""
        return self._fields.get(tuple(path), ("", ""))

    @property
    def fields(self) -> dict[str, tuple[str, str]]:
        return {".".join(k): v for k, v in self._fields.items()}


class _Node:
    __slots__ = ("children", "key", "merge", "replace")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.merge = self.replace = False
        self.key = ""

    def child(self, name: str) -> _Node:
        return self.children.get(name, _LEAF)


_LEAF = _Node()
_DELETE_PREFIX, _ORDER_PREFIX = "$deleteFromPrimitiveList/", "$setElementOrder/"
_BAD_ORDER = "invalid patch format of setElementOrder list"
_BAD_RETAIN = "invalid patch format of retainKeys"
_BAD_PRIMITIVE = "invalid patch format of primitive list"


def _hkey(v: Any) -> Any:
    """A hashable identity for a merge-key value or primitive list element (Go `==`)."""
    if isinstance(v, (Mapping, list)):
        return ("json", json.dumps(v, sort_keys=True))
    return (isinstance(v, bool), v)


def _element_key(node: _Node) -> Callable[[Any], Any]:
    if not node.key:
        return _hkey
    key = node.key

    def of(item: Any) -> Any:
        if not isinstance(item, Mapping) or key not in item:
            raise errors.bad_request(f"map: {_go(item)} does not contain declared merge key: {key}")
        return _hkey(item[key])

    return of


def _order(items: list[Any], first: list[Any], server: list[Any], key: Any) -> list[Any]:
    """Kubernetes' element order: items named in `first` (the patch list or $setElementOrder)
    in that order, interleaved with the remaining server items kept in server order."""
    first_pos: dict[Any, int] = {}
    for i, x in enumerate(first):
        first_pos.setdefault(key(x), i)
    server_pos: dict[Any, int] = {}
    for i, x in enumerate(server):
        server_pos.setdefault(key(x), i)
    ours = sorted((x for x in items if key(x) in first_pos), key=lambda x: first_pos[key(x)])
    rest = sorted(
        (x for x in items if key(x) not in first_pos), key=lambda x: server_pos.get(key(x), -1)
    )
    out: list[Any] = []
    i = j = 0
    while i < len(rest) and j < len(ours):
        ls, rs = server_pos.get(key(rest[i])), server_pos.get(key(ours[j]))
        if ls is not None and rs is not None and ls < rs:
            out.append(rest[i])
            i += 1
        else:
            out.append(ours[j])
            j += 1
    return out + rest[i:] + ours[j:]


def _check_elements(*lists: list[Any]) -> bool:
    """True when the elements are maps, False for primitives; mixing them is an error."""
    kinds = {isinstance(x, Mapping) for lst in lists for x in lst}
    if any(isinstance(x, list) for lst in lists for x in lst):
        raise errors.StatusError(422, "Invalid", "lists of lists are not supported")
    if len(kinds) > 1:
        raise errors.bad_request(f"list element types are not identical: {_go(list(lists))}")
    return kinds == {True}


def _merge_list(orig: list[Any], patch: list[Any], node: _Node) -> list[Any]:
    """Merge a `patchStrategy: merge` list; `orig` is owned, `patch` only read."""
    if not orig and not patch:
        return orig
    if not _check_elements(orig, patch):
        merged = list(orig)
        seen = {_hkey(x) for x in merged}
        for x in patch:
            if _hkey(x) not in seen:
                seen.add(_hkey(x))
                merged.append(x)
        return _order(merged, patch, orig, _hkey)
    if not node.key:
        raise errors.bad_request("cannot merge lists without merge key for type struct")
    key, mk = _element_key(node), node.key
    plain: list[Any] = []
    replace = False
    for item in patch:
        directive = item.get("$patch", _MISSING)
        if directive is _MISSING:
            plain.append(item)
        elif directive == "delete":
            gone = key(item)
            orig = [x for x in orig if key(x) != gone]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise errors.bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise errors.bad_request(f"unknown patch type: {_go(directive)} in map: {_go(item)}")
    if replace:
        return [_merge_map({}, item, node) for item in plain]
    merged = list(orig)
    for item in plain:
        k = key(item)
        for i, x in enumerate(merged):
            if isinstance(x, dict) and mk in x and _hkey(x[mk]) == k:
                merged[i] = _merge_map(x, item, node)
                break
        else:
            merged.append(_merge_map({}, item, node))
    return _order(merged, plain, orig, key)


def _merge_value(cur: Any, value: Any, node: _Node) -> Any:
    if isinstance(value, Mapping):
        if node.replace or not isinstance(cur, dict):
            cur = {}
        return _merge_map(cur, value, node)
    if isinstance(value, list):
        if node.merge:
            return _merge_list(cur if isinstance(cur, list) else [], value, node)
        return [_copy(x) for x in value if not (isinstance(x, Mapping) and "$patch" in x)]
    return value


def _apply_order(orig: dict[str, Any], patch: Mapping[str, Any], field: str, node: _Node) -> bool:
    """Handle `$setElementOrder/<field>`; returns True when `field` was merged here."""
    order, new = patch[_ORDER_PREFIX + field], patch.get(field, [])
    if not isinstance(order, list):
        raise errors.bad_request(_BAD_ORDER)
    if not node.merge or new is None or (field not in orig and field not in patch):
        return False
    base = orig.get(field, [])
    if not isinstance(base, list) or not isinstance(new, list):
        raise errors.bad_request(_BAD_ORDER)
    key = _element_key(node)
    order_keys, pos = [key(x) for x in order], 0
    for item in new:  # the patch list must follow the $setElementOrder order
        if isinstance(item, Mapping) and "$patch" in item:
            continue
        while pos < len(order_keys) and order_keys[pos] != key(item):
            pos += 1
        if pos == len(order_keys):
            raise errors.bad_request(
                f"The order in patch list:\n{_go(new)}\n doesn't match "
                f"$setElementOrder list:\n{_go(order)}\n"
            )
        pos += 1
    orig[field] = _order(_merge_list(base, new, node), order, base, key)
    return True


def _directive_field(key: str, prefix: str, message: str) -> str:
    field = key[len(prefix) :]
    if not key.startswith(prefix) or not field:
        raise errors.bad_request(message)
    return field


def _merge_map(orig: dict[str, Any], patch: Mapping[str, Any], node: _Node) -> dict[str, Any]:
    """Strategic-merge `patch` into `orig` (owned, mutated and returned)."""
    directive = patch.get("$patch", _MISSING)
    if directive == "delete":
        return {}
    if directive == "replace":
        orig = {}
    elif directive is not _MISSING and directive != "merge":
        raise errors.bad_request(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")
    if "$retainKeys" in patch:
        retain = patch["$retainKeys"]
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise errors.bad_request(_BAD_RETAIN)
        for k, v in patch.items():
            if v is not None and not k.startswith("$") and k not in retain:
                raise errors.bad_request(_BAD_RETAIN)
        for k in [k for k in orig if k not in retain]:
            del orig[k]
    done: set[str] = set()
    for k in patch:
        if k.startswith("$setElementOrder"):
            field = _directive_field(k, _ORDER_PREFIX, _BAD_ORDER)
            if _apply_order(orig, patch, field, node.child(field)):
                done.add(field)
    deletions: list[tuple[str, Any]] = []
    for k, v in patch.items():
        if k in done or k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder"):
            continue
        if k.startswith("$deleteFromPrimitiveList"):
            deletions.append((_directive_field(k, _DELETE_PREFIX, _BAD_PRIMITIVE), v))
        elif v is None:
            orig.pop(k, None)
        else:
            orig[k] = _merge_value(orig.get(k, _MISSING), v, node.child(k))
    for field, gone in deletions:
        if not isinstance(gone, list):
            raise errors.bad_request(_BAD_PRIMITIVE)
        if isinstance(orig.get(field), list):
            drop = {_hkey(x) for x in gone}
            orig[field] = [x for x in orig[field] if _hkey(x) not in drop]
    return orig


def apply_strategic_merge_patch(
    doc: Mapping[str, Any], patch: Any, meta: PatchMeta, *, owned: bool = False
) -> dict[str, Any]:
    """Apply an `application/strategic-merge-patch+json` body to a copy of `doc` (`owned`: to
    `doc` itself, a dict the caller gives up).

    Differences from kube-apiserver, all for malformed patches: errors it reports as 500
    (missing merge key, mixed list element types, bad `$setElementOrder` order) are 400 here,
    and directive markers never leak into the result (`$patch: replace` content and new map
    values or list elements are merged into empty values, which drops directives and nulls;
    lists without a merge strategy drop `$patch` elements). Unknown fields merge by default."""
    if not isinstance(patch, Mapping):
        raise errors.bad_request(
            f"json: cannot unmarshal {_go_type(patch)} into Go value of type "
            "map[string]interface {}"
        )
    target: dict[str, Any] = doc if owned and isinstance(doc, dict) else _copy(doc)
    return _merge_map(target, patch, meta._tree)


# --- patch metadata of the built-in kinds (the patchStrategy/patchMergeKey struct tags) --------

_M, _MR = "merge", "merge,retainKeys"
_FieldTable = dict[str, tuple[str, str]]


def _at(prefix: str, fields: Mapping[str, tuple[str, str]]) -> _FieldTable:
    return {f"{prefix}.{k}": v for k, v in fields.items()}


_OBJECT_META: _FieldTable = {"finalizers": (_M, ""), "ownerReferences": (_M, "uid")}
_CONTAINER: _FieldTable = {"ports": (_M, "containerPort"), "env": (_M, "name")}
_CONTAINER |= {"volumeMounts": (_M, "mountPath"), "volumeDevices": (_M, "devicePath")}
_POD_SPEC: _FieldTable = {"volumes": (_MR, "name"), "imagePullSecrets": (_M, "name")}
_POD_SPEC |= {"hostAliases": (_M, "ip"), "topologySpreadConstraints": (_M, "topologyKey")}
_POD_SPEC |= {"schedulingGates": (_M, "name"), "resourceClaims": (_MR, "name")}
for _c in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC |= {_c: (_M, "name"), **_at(_c, _CONTAINER)}
_POD_STATUS: _FieldTable = {"conditions": (_M, "type"), "podIPs": (_M, "ip")}
_POD_STATUS |= {"hostIPs": (_M, "ip"), "resourceClaimStatuses": (_MR, "name")}
_META = _at("metadata", _OBJECT_META)
_CONDITIONS: _FieldTable = {**_META, "status.conditions": (_M, "type")}


def _template(prefix: str) -> _FieldTable:
    return {**_META, **_at(f"{prefix}.metadata", _OBJECT_META), **_at(f"{prefix}.spec", _POD_SPEC)}


_WORKLOAD = {**_template("spec.template"), **_CONDITIONS}
_CRONJOB = {**_template("spec.jobTemplate.spec.template")}
_CRONJOB |= _at("spec.jobTemplate.metadata", _OBJECT_META)
_TABLES: dict[str, _FieldTable] = {
    "Pod": {**_META, **_at("spec", _POD_SPEC), **_at("status", _POD_STATUS)},
    "PodTemplate": _template("template"),
    "Deployment": {**_WORKLOAD, "spec.strategy": ("retainKeys", "")},
    "CronJob": _CRONJOB,
    "Service": {**_CONDITIONS, "spec.ports": (_M, "port")},
    "Node": {**_CONDITIONS, "spec.podCIDRs": (_M, ""), "status.addresses": (_M, "type")},
    "ServiceAccount": {**_META, "secrets": (_M, "name")},
}
for _kinds, _table in (
    ("ReplicationController ReplicaSet StatefulSet DaemonSet Job", _WORKLOAD),
    ("Namespace PersistentVolumeClaim HorizontalPodAutoscaler PodDisruptionBudget", _CONDITIONS),
    ("APIService", _CONDITIONS),
    (
        "Endpoints EndpointSlice ConfigMap Secret Event LimitRange ResourceQuota PersistentVolume",
        _META,
    ),
    ("Role ClusterRole RoleBinding ClusterRoleBinding Lease Ingress IngressClass", _META),
    ("NetworkPolicy PriorityClass StorageClass ControllerRevision CustomResourceDefinition", _META),
    (
        "MutatingWebhookConfiguration ValidatingWebhookConfiguration CertificateSigningRequest",
        _META,
    ),
    ("RuntimeClass CSIDriver CSINode VolumeAttachment ComponentStatus Binding", _META),
):
    _TABLES |= dict.fromkeys(_kinds.split(), _table)

#: Strategic-merge metadata by kind for the built-in kinds (not custom resources).
BUILTIN_PATCH_META: dict[str, PatchMeta] = {kind: PatchMeta(t) for kind, t in _TABLES.items()}
#: The metadata every built-in object has (ObjectMeta's finalizers and ownerReferences).
OBJECT_META_PATCH = PatchMeta(_META)


_DERIVED: dict[tuple[str, str | None, str | None], PatchMeta] = {}


def strategic_patch_meta(
    kind: str, *, custom: bool = False, group: str | None = None, version: str | None = None
) -> PatchMeta:
    """A kind's `PatchMeta` from the 1.32 definitions (patch strategies = Go struct tags), cached;
    `group`/`version` pick among same-named kinds. Unknown kinds: `BUILTIN_PATCH_META` or
    `OBJECT_META_PATCH`. Custom resources (`custom=True`): 415, as from kube-apiserver."""
    if custom:
        raise errors.StatusError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml",
        )
    meta = _DERIVED.get((kind, group, version))
    if meta is None:
        try:
            defs = definitions.load()
        except definitions.DefinitionsUnavailable:
            return BUILTIN_PATCH_META.get(kind, OBJECT_META_PATCH)
        name = defs.name_of(group, version, kind) if group is not None and version else None
        fields = defs.patch_fields(name) if name else defs.kind_patch_fields(kind, group)
        known = BUILTIN_PATCH_META.get(kind, OBJECT_META_PATCH)
        meta = known if fields is None or known.fields == fields else PatchMeta(fields)
        _DERIVED[(kind, group, version)] = meta
    return meta
