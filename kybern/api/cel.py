"""CEL validation rules of CRD schemas (`x-kubernetes-validations`) on Google's CEL runtime
(`cel-expr-python`, the C++ implementation: fast, type-checked, with a hard per-evaluation
iteration budget). Rules are compiled once per CRD version (`compile_rules` attaches them to the
schema nodes, with Kubernetes' checks: compile errors, bool result, transition rules only where
old values correlate, estimated cost limits); `evaluate` runs them on an object (and its old
version for `oldSelf`), with `self` typed by the schema as Kubernetes does (numbers as doubles,
date-time/duration/byte strings as timestamps/durations/bytes, escaped property names). The
Kubernetes library functions are in `cel_library`."""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from typing import Any

from kybern.api import cel_cost, cel_library, crdschema, errors

Obj = dict[str, Any]
FieldErrors = list[errors.FieldError]
RUNTIME_BUDGET_SECONDS = 1.0  # wall-clock bound of all rules of one object
_RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package "
    "namespace return var void while".split()
)
_IDENT = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate")
_OPTIONAL_PREFIX = "cel.bind(oldSelf, __hasOld ? optional.of(oldSelf) : optional.none(), ("
OUT_OF_BUDGET = (
    "validation failed due to running out of cost budget, no further validation rules will be run"
)


def escape(name: str) -> str | None:
    """A property name as CEL sees it (`foo-bar` -> `foo__dash__bar`), None if inaccessible."""
    if name in _RESERVED:
        return f"__{name}__"
    if not _IDENT.match(name):
        return None
    return (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )


@functools.lru_cache(maxsize=4096)
def _escaped(name: str) -> str | None:
    return escape(name)


@dataclass(eq=False)
class Rule:
    """One compiled `x-kubernetes-validations` entry."""

    rule: str
    program: Any
    message: str = ""
    message_program: Any = None
    reason: str = "FieldValueInvalid"
    field_path: str = ""
    transition: bool = False  # uses oldSelf: only evaluated when an old value correlates
    optional_old: bool = False  # optionalOldSelf: evaluated without an old value too
    cost: float = 0.0


def _clean(err: Exception | str) -> str:
    text = str(err).strip()
    text = re.sub(r"^[A-Z_]+: ", "", text)
    text = re.sub(r"\s*\[[A-Z_]+\]$", "", text)
    return re.sub(r'^Key not found in map : "(.*)"$', r"no such key: \1", text)


@functools.lru_cache(maxsize=2048)
def compile_expr(src: str) -> tuple[Any, str]:
    """(program, "") or (None, error) for an expression in the rules' environment."""
    try:
        return cel_library.env().compile(src), ""
    except Exception as e:
        return None, _clean(e)


def _returns(program: Any, want: Any) -> bool:
    from cel_expr_python import cel as _cel

    try:
        t = program.return_type()
    except Exception:
        return True
    return bool(t == want or t == _cel.Type.DYN)


def compile_rule(
    raw: Any, path: str, node: crdschema.Node, correlatable: bool
) -> tuple[Rule | None, FieldErrors]:
    """Compile one rule at schema path `path`; errors are reported against `path`."""
    from cel_expr_python import cel as _cel

    errs: FieldErrors = []
    if not isinstance(raw, dict):
        return None, [errors.invalid_value(path, raw, "must be an object")]
    src = raw.get("rule")
    if not isinstance(src, str) or not src.strip():
        return None, [errors.required(f"{path}.rule", "")]
    shown = {k: raw[k] for k in ("rule", "message") if k in raw}
    transition = cel_cost.uses_old_self(src)
    optional_old = raw.get("optionalOldSelf") is True
    if optional_old and not transition:
        errs.append(
            errors.forbidden(
                f"{path}.optionalOldSelf", "may not be set if oldSelf is not used in rule"
            )
        )
    if transition and not correlatable:
        errs.append(
            errors.invalid_value(
                f"{path}.rule",
                src,
                "oldSelf cannot be used on the uncorrelatable portion of the schema within "
                + path.rsplit(".x-kubernetes-validations", 1)[0],
            )
        )
    source = f"{_OPTIONAL_PREFIX}\n{src}\n))" if optional_old and transition else src
    program, err = compile_expr(source)
    if program is None and source != src:
        _, err2 = compile_expr(src)
        err = err2 or err
    if program is None:
        errs.append(errors.invalid_value(f"{path}.rule", shown, f"compilation failed: {err}"))
    elif not _returns(program, _cel.Type.BOOL):
        errs.append(
            errors.invalid_value(
                f"{path}.rule", shown, "compilation failed: rule must evaluate to a bool"
            )
        )
    message = raw.get("message") or ""
    if not isinstance(message, str) or "\n" in message:
        errs.append(
            errors.invalid_value(f"{path}.message", message, "must not contain line breaks")
        )
    elif len(message) > 2048:
        errs.append(errors.too_long(f"{path}.message", message, 2048))
    msg_program = None
    mexpr = raw.get("messageExpression")
    if isinstance(mexpr, str) and mexpr.strip():
        msg_program, merr = compile_expr(mexpr)
        if msg_program is None:
            errs.append(
                errors.invalid_value(
                    f"{path}.messageExpression",
                    mexpr,
                    f"messageExpression compilation failed: {merr}",
                )
            )
        elif not _returns(msg_program, _cel.Type.STRING):
            errs.append(
                errors.invalid_value(
                    f"{path}.messageExpression", mexpr, "must evaluate to a string"
                )
            )
    reason = raw.get("reason") or "FieldValueInvalid"
    if reason not in _REASONS:
        errs.append(errors.not_supported(f"{path}.reason", reason, list(_REASONS)))
    fp = raw.get("fieldPath") or ""
    if fp and (not isinstance(fp, str) or _split_field_path(fp) is None):
        errs.append(errors.invalid_value(f"{path}.fieldPath", fp, "fieldPath must be a valid path"))
    elif fp and not _field_path_in_schema(node, str(fp)):
        errs.append(errors.invalid_value(f"{path}.fieldPath", fp, "fieldPath must be a valid path"))
    if errs or program is None:
        return None, errs
    cost = cel_cost.estimate(src, node)
    if cost > cel_cost.PER_CALL_LIMIT:
        errs.append(
            errors.forbidden(
                f"{path}.rule",
                cel_cost.cost_message("estimated rule cost", cost, cel_cost.PER_CALL_LIMIT),
            )
        )
        return None, errs
    return (
        Rule(
            src,
            program,
            message,
            msg_program,
            reason,
            str(fp),
            transition,
            optional_old,
            cost,
        ),
        [],
    )


_FP_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\['((?:[^'\\]|\\.)*)'\]")


def _split_field_path(fp: str) -> list[str] | None:
    """`.spec.foo['a.b']` -> ["spec", "foo", "a.b"], None when not a valid path."""
    out, pos = [], 0
    while pos < len(fp):
        m = _FP_PART.match(fp, pos)
        if m is None:
            return None
        out.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return out


def _field_path_in_schema(node: crdschema.Node, fp: str) -> bool:
    cur: crdschema.Node | None = node
    for part in _split_field_path(fp) or []:
        if cur is None:
            return False
        if cur.type == "array" or (cur.preserve_unknown and cur.child(part) is None):
            return cur.preserve_unknown
        cur = cur.child(part)
    return cur is not None


def compile_rules(root: crdschema.Node, path: str) -> tuple[FieldErrors, float]:
    """Compile every rule of the schema tree, attaching them to their nodes (`node.rules`,
    `node.has_rules`); returns the errors and the estimated total cost."""
    errs: FieldErrors = []
    total = [0.0]

    def walk(n: crdschema.Node, p: str, correlatable: bool, cardinality: float) -> bool:
        n.rules = []
        raw = n.raw.get("x-kubernetes-validations")
        if isinstance(raw, list):
            for i, r in enumerate(raw):
                rule, rerrs = compile_rule(r, f"{p}.x-kubernetes-validations[{i}]", n, correlatable)
                errs.extend(rerrs)
                if rule is not None:
                    n.rules.append(rule)
                    total[0] += rule.cost * cardinality
        has = bool(n.rules)
        n.rule_fields = None
        if n.rules and n.properties is not None and not any(r.transition for r in n.rules):
            selected: set[str] | None = set()
            for r in n.rules:
                used = cel_cost.self_fields(r.rule)
                if used is None or selected is None:
                    selected = None
                    break
                selected |= used
            if selected is not None:
                names = {escape(k): k for k in n.properties}
                n.rule_fields = {c: names[c] for c in selected if c in names}
        for k, c in (n.properties or {}).items():
            has = walk(c, f"{p}.properties[{k}]", correlatable, cardinality) or has
        if n.additional is not None:
            card = cardinality * cel_cost.max_size(n)
            has = walk(n.additional, f"{p}.additionalProperties", correlatable, card) or has
        if n.items is not None:
            keyed = n.list_type == "map"
            card = cardinality * cel_cost.max_size(n)
            has = walk(n.items, f"{p}.items", correlatable and keyed, card) or has
        n.has_rules = has
        n.rule_children = [(k, c) for k, c in (n.properties or {}).items() if c.has_rules]
        return has

    walk(root, path, True, 1.0)
    if total[0] > cel_cost.CRD_TOTAL_LIMIT:
        errs.append(
            errors.forbidden(
                path,
                cel_cost.cost_message(
                    "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 "
                    "schema",
                    total[0],
                    cel_cost.CRD_TOTAL_LIMIT,
                ).replace("try simplifying the rule, or adding", "try adding"),
            )
        )
    return errs, total[0]


# ---- values as CEL sees them ------------------------------------------------------------------


def to_cel(n: crdschema.Node | None, v: Any) -> Any:
    """`v` typed by schema `n` for CEL."""
    if v is None or n is None or n.int_or_string:
        return v
    t = n.type
    if t == "number":
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    if t == "integer":
        return int(v) if isinstance(v, float) and v.is_integer() else v
    if t == "string":
        if isinstance(v, str) and n.format:
            return cel_library.typed_string(n.format, v)
        return v
    if t == "array" and isinstance(v, list):
        if n.items is None or not _needs_conversion(n.items):
            return v
        return [to_cel(n.items, x) for x in v]
    if isinstance(v, dict):
        if n.properties is None and n.additional is None:
            if n.embedded:
                return _embedded(v)
            return v
        out: Obj = {}
        for k, x in v.items():
            child = n.properties.get(k) if n.properties is not None else None
            if child is not None or n.properties is not None:
                name = _escaped(k)
                if name is not None:
                    out[name] = to_cel(child, x) if child is not None else x
            else:
                out[k] = to_cel(n.additional, x)
        if n.embedded:
            out.update(_embedded(v))
        return out
    return v


def _embedded(v: Obj) -> Obj:
    out = dict(v)
    meta = v.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return out


def _needs_conversion(n: crdschema.Node) -> bool:
    return n.type in ("number", "object", "array") or bool(n.format) or n.embedded


# ---- evaluation -------------------------------------------------------------------------------


class _Run:
    def __init__(self) -> None:
        self.errs: FieldErrors = []
        self.deadline = time.monotonic() + RUNTIME_BUDGET_SECONDS
        self.stopped = False


def evaluate(root: crdschema.Node, obj: Any, old: Any = None) -> FieldErrors:
    """Errors of the CEL rules of schema `root` on `obj` (`old`: the object before an update,
    for transition rules)."""
    if not root.has_rules:
        return []
    run = _Run()
    _walk(run, root, obj, None, old, None, "", old is not None)
    return run.errs


def _walk(
    run: _Run,
    n: crdschema.Node,
    v: Any,
    cv: Any,
    ov: Any,
    ocv: Any,
    path: str,
    has_old: bool,
) -> None:
    if run.stopped or not n.has_rules or v is None:
        return
    if n.rules:
        if cv is None:
            cv = _partial(n, v) if n.rule_fields is not None else to_cel(n, v)
        if has_old and ocv is None:
            ocv = to_cel(n, ov)
        _run_rules(run, n, cv, ocv if has_old else None, path, has_old)
    if isinstance(v, dict):
        if n.properties is not None:
            pairs = [(k, c) for k, c in n.rule_children if k in v]
        elif n.additional is not None and n.additional.has_rules:
            pairs = [(k, n.additional) for k in v]
        else:
            pairs = []
        for k, child in pairs:
            x = v[k]
            ox = ov.get(k) if has_old and isinstance(ov, dict) else None
            ck = _escaped(k) if n.properties is not None else k
            cx = cv.get(ck) if isinstance(cv, dict) and ck is not None else None
            ocx = ocv.get(ck) if isinstance(ocv, dict) and ck is not None else None
            _walk(run, child, x, cx, ox, ocx, crdschema.join(path, k), ox is not None)
    elif isinstance(v, list) and n.items is not None and n.items.has_rules:
        olds: dict[Any, int] = {}
        if has_old and n.list_type == "map" and isinstance(ov, list):
            for j, o in enumerate(ov):
                if isinstance(o, dict):
                    olds[tuple(crdschema._key(o.get(k)) for k in n.list_map_keys)] = j
        for i, x in enumerate(v):
            cx = cv[i] if isinstance(cv, list) and i < len(cv) else None
            ox = ocx = None
            if olds and isinstance(x, dict):
                found = olds.get(tuple(crdschema._key(x.get(k)) for k in n.list_map_keys))
                if found is not None:
                    ox = ov[found]
                    ocx = ocv[found] if isinstance(ocv, list) and found < len(ocv) else None
            _walk(run, n.items, x, cx, ox, ocx, f"{path}[{i}]", ox is not None)


def _partial(n: crdschema.Node, v: Any) -> Any:
    """`self` with only the members the node's rules select (the rest is never looked at)."""
    if not isinstance(v, dict) or n.properties is None or n.rule_fields is None:
        return to_cel(n, v)
    out: Obj = {}
    for name, k in n.rule_fields.items():
        if k in v:
            out[name] = to_cel(n.properties.get(k), v[k])
    return out


def _type_name(n: crdschema.Node, v: Any) -> str:
    return n.type or crdschema.json_type(v)


def _run_rules(run: _Run, n: crdschema.Node, cv: Any, ocv: Any, path: str, has_old: bool) -> None:
    act = None
    for r in n.rules:
        if r.transition and not has_old and not r.optional_old:
            continue
        if time.monotonic() > run.deadline:
            run.errs.append(errors.invalid_value(path, _type_name(n, cv), OUT_OF_BUDGET))
            run.stopped = True
            return
        if act is None:
            act = cel_library.env().Activation({"self": cv, "oldSelf": ocv, "__hasOld": has_old})
        try:
            result = r.program.eval(act)
        except RuntimeError as e:
            text = _clean(e)
            if "budget" in text.lower():
                run.errs.append(
                    errors.invalid_value(
                        path, _type_name(n, cv), f"call cost exceeds limit for rule: {r.rule}"
                    )
                )
                continue
            run.errs.append(
                errors.invalid_value(path, _type_name(n, cv), f"{text} evaluating rule: {r.rule}")
            )
            continue
        value = result.value()
        if value is True:
            continue
        if not isinstance(value, bool):
            text = _clean(str(value)) if isinstance(value, str) else "no such overload"
            run.errs.append(
                errors.invalid_value(path, _type_name(n, cv), f"{text} evaluating rule: {r.rule}")
            )
            continue
        run.errs.append(_failure(r, n, cv, act, path))


def _failure(r: Rule, n: crdschema.Node, cv: Any, act: Any, path: str) -> errors.FieldError:
    detail = r.message or f"failed rule: {' '.join(r.rule.split())}"
    if r.message_program is not None:
        try:
            out = r.message_program.eval(act).value()
        except RuntimeError:
            out = None
        if isinstance(out, str) and out.strip() and "\n" not in out:
            detail = out
    where = path
    for part in _split_field_path(r.field_path) or []:
        where = crdschema.join(where, part)
    shown = _type_name(n, cv)
    if r.reason == "FieldValueForbidden":
        return errors.forbidden(where, detail)
    if r.reason == "FieldValueRequired":
        return errors.required(where, detail)
    if r.reason == "FieldValueDuplicate":
        return errors.duplicate(where, shown)
    return errors.invalid_value(where, shown, detail)
