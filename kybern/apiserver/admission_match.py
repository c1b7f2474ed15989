"""Admission webhook configurations as data, the pure half of `admission`: parsing
`admissionregistration.k8s.io/v1` Mutating/ValidatingWebhookConfiguration objects into `Hook`s,
deciding whether a request matches one (rules with operations, groups, versions, resources and
subresources, scope; namespaceSelector; objectSelector; CEL matchConditions), and validating
the configurations on create and update with kube-apiserver's rules and wording (422)."""

from __future__ import annotations

import base64
import binascii
import functools
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kybern.api import cel_library, errors, validation

Obj = dict[str, Any]
FieldErrors = list[errors.FieldError]
GROUP = "admissionregistration.k8s.io"
MUTATING, VALIDATING = "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"
OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
DEFAULT_TIMEOUT = 10
KNOWN_REVIEW_VERSIONS = ("v1", "v1beta1")
MAX_MATCH_CONDITIONS = 64


@dataclass(frozen=True)
class Rule:
    operations: tuple[str, ...]
    groups: tuple[str, ...]
    versions: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str = "*"


@dataclass(frozen=True)
class Request:
    """What a rule looks at: the request's operation, resource and where it lives."""

    operation: str
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str  # for a Namespace object: its own name, as in kube


@dataclass(eq=False)
class Hook:
    """One webhook of a configuration, ready to match and call."""

    configuration: str
    name: str
    mutating: bool
    rules: tuple[Rule, ...]
    failure_policy: str = "Fail"
    match_policy: str = "Equivalent"
    namespace_selector: Obj | None = None  # None: selects everything
    object_selector: Obj | None = None
    side_effects: str = ""
    timeout: int = DEFAULT_TIMEOUT
    review_versions: tuple[str, ...] = ("v1",)
    reinvocation: str = "Never"
    match_conditions: tuple[tuple[str, str], ...] = ()
    url: str = ""
    service: tuple[str, str, str, int] | None = None  # namespace, name, path, port
    ca_bundle: str = ""  # PEM
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def fail_open(self) -> bool:
        return self.failure_policy == "Ignore"

    @property
    def dry_run_safe(self) -> bool:
        return self.side_effects in ("None", "NoneOnDryRun")


# ---- parsing ----------------------------------------------------------------------------------


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, list) else ()


def _selector(v: Any) -> Obj | None:
    if not isinstance(v, dict) or not (v.get("matchLabels") or v.get("matchExpressions")):
        return None
    return v


def parse_rule(r: Obj) -> Rule:
    return Rule(
        operations=_strs(r.get("operations")),
        groups=_strs(r.get("apiGroups")),
        versions=_strs(r.get("apiVersions")),
        resources=_strs(r.get("resources")),
        scope=str(r.get("scope") or "*"),
    )


def decode_ca_bundle(value: Any) -> str:
    """The PEM text of a `caBundle` (base64 in JSON), "" when absent or not decodable."""
    if not value:
        return ""
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, ValueError):
        return ""


def parse_configuration(obj: Obj) -> list[Hook]:
    """The hooks of one configuration object, in order."""
    mutating = obj.get("kind") == MUTATING
    config = str((obj.get("metadata") or {}).get("name") or "")
    out: list[Hook] = []
    for w in obj.get("webhooks") or []:
        if not isinstance(w, dict):
            continue
        cc = w.get("clientConfig") or {}
        svc = cc.get("service")
        service = None
        if isinstance(svc, dict):
            service = (
                str(svc.get("namespace") or ""),
                str(svc.get("name") or ""),
                str(svc.get("path") or ""),
                int(svc.get("port") or 443),
            )
        out.append(
            Hook(
                configuration=config,
                name=str(w.get("name") or ""),
                mutating=mutating,
                rules=tuple(parse_rule(r) for r in w.get("rules") or [] if isinstance(r, dict)),
                failure_policy=str(w.get("failurePolicy") or "Fail"),
                match_policy=str(w.get("matchPolicy") or "Equivalent"),
                namespace_selector=_selector(w.get("namespaceSelector")),
                object_selector=_selector(w.get("objectSelector")),
                side_effects=str(w.get("sideEffects") or ""),
                timeout=int(w.get("timeoutSeconds") or DEFAULT_TIMEOUT),
                review_versions=_strs(w.get("admissionReviewVersions")),
                reinvocation=str(w.get("reinvocationPolicy") or "Never"),
                match_conditions=tuple(
                    (str(c.get("name") or ""), str(c.get("expression") or ""))
                    for c in w.get("matchConditions") or []
                    if isinstance(c, dict)
                ),
                url=str(cc.get("url") or ""),
                service=service,
                ca_bundle=decode_ca_bundle(cc.get("caBundle")),
            )
        )
    return out


# ---- matching ---------------------------------------------------------------------------------


def _resource_matches(patterns: tuple[str, ...], resource: str, sub: str) -> bool:
    for p in patterns:
        if p == "*/*":
            return True
        if p == "*":
            if not sub:
                return True
            continue
        res, _, psub = p.partition("/")
        if res == "*" and psub == sub and sub:
            return True
        if res == resource and (psub == sub or (psub == "*" and sub)):
            return True
    return False


def rule_matches(rule: Rule, req: Request) -> bool:
    """kube's rules.Matcher: operation, group, version, resource/subresource and scope."""
    if "*" not in rule.operations and req.operation not in rule.operations:
        return False
    if "*" not in rule.groups and req.group not in rule.groups:
        return False
    if "*" not in rule.versions and req.version not in rule.versions:
        return False
    if not _resource_matches(rule.resources, req.resource, req.subresource):
        return False
    if rule.scope in ("*", ""):
        return True
    is_namespace = req.group == "" and req.resource == "namespaces"
    if rule.scope == "Namespaced":
        return not is_namespace and req.namespace != ""
    if rule.scope == "Cluster":
        return is_namespace or req.namespace == ""
    return False


def matches_rules(hook: Hook, req: Request) -> bool:
    return any(rule_matches(r, req) for r in hook.rules)


def _labels(obj: Obj | None) -> Obj:
    if not isinstance(obj, dict):
        return {}
    return (obj.get("metadata") or {}).get("labels") or {}


def matches_object(hook: Hook, obj: Obj | None, old: Obj | None) -> bool:
    """objectSelector: the object's labels or the old object's."""
    sel = hook.object_selector
    if sel is None:
        return True
    return any(
        o is not None and validation.label_selector_matches(sel, _labels(o)) for o in (obj, old)
    )


def matches_namespace(hook: Hook, req: Request, namespace_labels: Obj | None) -> bool:
    """namespaceSelector: cluster-scoped objects other than namespaces always match;
    `namespace_labels` are the namespace's (for a Namespace, the object's own)."""
    sel = hook.namespace_selector
    if sel is None:
        return True
    if not req.namespace and not (req.group == "" and req.resource == "namespaces"):
        return True
    return validation.label_selector_matches(sel, namespace_labels or {})


# ---- CEL matchConditions ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _cel_env() -> Any:
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_bindings, ext_math, ext_optional

    t = cel.Type
    return cel.NewEnv(
        variables={"object": t.DYN, "oldObject": t.DYN, "request": t.DYN},
        extensions=[ext_optional.ExtOptional(), ext_bindings.ExtBindings(), ext_math.ExtMath()],
        functions=cel_library._decls(),
    )


@functools.lru_cache(maxsize=1024)
def _compile_condition(expr: str) -> tuple[Any, str]:
    try:
        return _cel_env().compile(expr), ""
    except Exception as e:
        return None, str(e).strip()


def evaluate_conditions(hook: Hook, review_request: Obj) -> bool:
    """Whether every matchCondition holds (ValueError when one cannot be
    evaluated: the caller applies failurePolicy)."""
    if not hook.match_conditions:
        return True
    act = _cel_env().Activation(
        {
            "object": review_request.get("object"),
            "oldObject": review_request.get("oldObject"),
            "request": review_request,
        }
    )
    for name, expr in hook.match_conditions:
        program, err = _compile_condition(expr)
        if program is None:
            raise ValueError(f"compilation failed for matchCondition {name!r}: {err}")
        try:
            value = program.eval(act).value()
        except RuntimeError as e:
            raise ValueError(f"matchCondition {name!r}: {e}") from None
        if value is False:
            return False
        if value is not True:
            raise ValueError(f"matchCondition {name!r} did not evaluate to a bool")
    return True


# ---- validation of the configurations ---------------------------------------------------------


def _fully_qualified(value: str, path: str) -> FieldErrors:
    if not value:
        return [errors.required(path)]
    msgs = validation.is_dns1123_subdomain(value)
    if msgs:
        return [errors.invalid_value(path, value, "; ".join(msgs))]
    if len(value.split(".")) < 3:
        return [
            errors.invalid_value(
                path, value, "should be a domain with at least three segments separated by dots"
            )
        ]
    return []


def _validate_url(url: str, path: str) -> FieldErrors:
    try:
        u = urlsplit(url)
    except ValueError as e:
        return [errors.invalid_value(path, url, f"url must be a valid URL: {e}")]
    errs: FieldErrors = []
    if u.scheme != "https":
        errs.append(errors.invalid_value(path, u.scheme, "'https' is the only allowed URL scheme"))
    if not u.hostname:
        errs.append(errors.invalid_value(path, u.hostname or "", "host must be specified"))
    if u.username or u.password:
        errs.append(errors.invalid_value(path, u.username, "user information is not permitted"))
    if u.fragment:
        errs.append(errors.invalid_value(path, u.fragment, "fragments are not permitted"))
    if u.query:
        errs.append(errors.invalid_value(path, u.query, "query parameters are not permitted"))
    return errs


def _validate_service(svc: Obj, path: str) -> FieldErrors:
    errs: FieldErrors = []
    if not svc.get("name"):
        errs.append(errors.required(f"{path}.name", "service name is required"))
    if not svc.get("namespace"):
        errs.append(errors.required(f"{path}.namespace", "service namespace is required"))
    port = svc.get("port", 443)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        errs.append(
            errors.invalid_value(
                f"{path}.port",
                port,
                "port is not valid: " + validation.inclusive_range_error(1, 65535),
            )
        )
    p = svc.get("path")
    if p:
        if not str(p).startswith("/"):
            errs.append(errors.invalid_value(f"{path}.path", p, "must start with a '/'"))
        elif str(p) != "/":
            for i, seg in enumerate(str(p)[1:].rstrip("/").split("/")):
                if not seg:
                    errs.append(
                        errors.invalid_value(f"{path}.path", p, "segment[%d] may not be empty" % i)
                    )
                    break
    return errs


def _star_mixed(values: list[Any], path: str, what: str) -> FieldErrors:
    if "*" in values and len(values) > 1:
        return [
            errors.invalid_value(path, values, f"if '*' is present, must not specify other {what}")
        ]
    return []


def _validate_rule(r: Any, path: str) -> FieldErrors:
    if not isinstance(r, dict):
        return [errors.invalid_value(path, r, "must be an object")]
    errs: FieldErrors = []
    ops = r.get("operations") or []
    if not ops:
        errs.append(errors.required(f"{path}.operations"))
    for i, op in enumerate(ops):
        if op not in OPERATIONS:
            errs.append(errors.not_supported(f"{path}.operations[{i}]", op, list(OPERATIONS)))
    errs += _star_mixed(ops, f"{path}.operations", "operations")
    groups = r.get("apiGroups") or []
    if not groups:
        errs.append(errors.required(f"{path}.apiGroups"))
    errs += _star_mixed(groups, f"{path}.apiGroups", "API groups")
    versions = r.get("apiVersions") or []
    if not versions:
        errs.append(errors.required(f"{path}.apiVersions"))
    for i, v in enumerate(versions):
        if not v:
            errs.append(errors.required(f"{path}.apiVersions[{i}]", "version must not be empty"))
    errs += _star_mixed(versions, f"{path}.apiVersions", "API versions")
    resources = r.get("resources") or []
    if not resources:
        errs.append(errors.required(f"{path}.resources"))
    seen_sub: dict[str, set[str]] = {}
    for i, res in enumerate(resources):
        rp = f"{path}.resources[{i}]"
        if not res:
            errs.append(errors.required(rp))
            continue
        if str(res).count("/") > 1:
            errs.append(errors.invalid_value(rp, res, "must have at most one '/'"))
            continue
        main, _, sub = str(res).partition("/")
        seen_sub.setdefault(main, set()).add(sub)
    if "*" in seen_sub.get("*", set()) and len(resources) > 1:
        errs.append(
            errors.invalid_value(
                f"{path}.resources",
                resources,
                "if '*/*' is present, must not specify other resources",
            )
        )
    elif "" in seen_sub.get("*", set()) and any(
        sub == "" for m, subs in seen_sub.items() if m != "*" for sub in subs
    ):
        errs.append(
            errors.invalid_value(
                f"{path}.resources",
                resources,
                "if '*' is present, must not specify other resources without subresources",
            )
        )
    scope = r.get("scope")
    if scope is not None and scope not in ("*", "Cluster", "Namespaced"):
        errs.append(errors.not_supported(f"{path}.scope", scope, ["*", "Cluster", "Namespaced"]))
    return errs


def _enum(value: Any, path: str, supported: list[str]) -> FieldErrors:
    if value is not None and value not in supported:
        return [errors.not_supported(path, value, supported)]
    return []


def _validate_hook(w: Any, path: str, mutating: bool, require_no_side_effects: bool) -> FieldErrors:
    if not isinstance(w, dict):
        return [errors.invalid_value(path, w, "must be an object")]
    errs = _fully_qualified(str(w.get("name") or ""), f"{path}.name")
    for i, r in enumerate(w.get("rules") or []):
        errs += _validate_rule(r, f"{path}.rules[{i}]")
    errs += _enum(w.get("failurePolicy"), f"{path}.failurePolicy", ["Fail", "Ignore"])
    errs += _enum(w.get("matchPolicy"), f"{path}.matchPolicy", ["Equivalent", "Exact"])
    if mutating:
        errs += _enum(
            w.get("reinvocationPolicy"), f"{path}.reinvocationPolicy", ["IfNeeded", "Never"]
        )
    se = w.get("sideEffects")
    allowed = ["None", "NoneOnDryRun"]
    if se is None or se == "":
        errs.append(
            errors.required(f"{path}.sideEffects", "must specify one of None, NoneOnDryRun")
        )
    elif se not in (
        allowed if require_no_side_effects else ["None", "NoneOnDryRun", "Some", "Unknown"]
    ):
        errs.append(errors.not_supported(f"{path}.sideEffects", se, allowed))
    t = w.get("timeoutSeconds")
    if t is not None and (not isinstance(t, int) or isinstance(t, bool) or not 1 <= t <= 30):
        errs.append(
            errors.invalid_value(
                f"{path}.timeoutSeconds", t, "the timeout value must be between 1 and 30 seconds"
            )
        )
    versions = w.get("admissionReviewVersions")
    vpath = f"{path}.admissionReviewVersions"
    if not versions:
        errs.append(errors.required(vpath, "must specify one of v1, v1beta1"))
    else:
        seen: set[str] = set()
        for i, v in enumerate(versions):
            if v in seen:
                errs.append(errors.duplicate(f"{vpath}[{i}]", v))
            seen.add(v)
            for m in validation.is_dns1035_label(str(v)):
                errs.append(errors.invalid_value(f"{vpath}[{i}]", v, m))
        if not seen & set(KNOWN_REVIEW_VERSIONS):
            errs.append(
                errors.invalid_value(vpath, versions, "must include at least one of v1, v1beta1")
            )
    for sel in ("namespaceSelector", "objectSelector"):
        if w.get(sel) is not None:
            errs += validation.validate_label_selector(w[sel], f"{path}.{sel}")
    cc = w.get("clientConfig") or {}
    cpath = f"{path}.clientConfig"
    has_url, has_svc = bool(cc.get("url")), cc.get("service") is not None
    if has_url == has_svc:
        errs.append(errors.required(cpath, "exactly one of url or service is required"))
    elif has_url:
        errs += _validate_url(str(cc["url"]), f"{cpath}.url")
    else:
        errs += _validate_service(cc["service"] or {}, f"{cpath}.service")
    ca = cc.get("caBundle")
    if ca:
        try:
            base64.b64decode(str(ca), validate=True)
        except (binascii.Error, ValueError):
            errs.append(errors.invalid_value(f"{cpath}.caBundle", "", "illegal base64 data"))
    conds = w.get("matchConditions") or []
    mpath = f"{path}.matchConditions"
    if len(conds) > MAX_MATCH_CONDITIONS:
        errs.append(
            errors.FieldError(
                "FieldValueTooMany",
                mpath,
                f"Too many: {len(conds)}: must have at most {MAX_MATCH_CONDITIONS} items",
            )
        )
    names: set[str] = set()
    for i, c in enumerate(conds):
        c = c if isinstance(c, dict) else {}
        name, expr = str(c.get("name") or ""), str(c.get("expression") or "")
        if not name:
            errs.append(errors.required(f"{mpath}[{i}].name"))
        else:
            for m in validation.is_qualified_name(name):
                errs.append(errors.invalid_value(f"{mpath}[{i}].name", name, m))
            if name in names:
                errs.append(errors.duplicate(f"{mpath}[{i}].name", name))
            names.add(name)
        if not expr.strip():
            errs.append(errors.required(f"{mpath}[{i}].expression"))
    return errs


def _needs_side_effect_check(old: Obj | None) -> bool:
    """v1 requires None/NoneOnDryRun, except on an update of a configuration already using
    Some/Unknown (as kube-apiserver allows objects stored through v1beta1)."""
    if old is None:
        return True
    return all(
        (w.get("sideEffects") in ("None", "NoneOnDryRun"))
        for w in old.get("webhooks") or []
        if isinstance(w, dict)
    )


def validate_configuration(obj: Obj, old: Obj | None = None) -> FieldErrors:
    """The errors of a webhook configuration (empty when valid)."""
    mutating = obj.get("kind") == MUTATING
    strict = _needs_side_effect_check(old)
    errs: FieldErrors = []
    names: set[str] = set()
    for i, w in enumerate(obj.get("webhooks") or []):
        path = f"webhooks[{i}]"
        name = str((w or {}).get("name") or "") if isinstance(w, dict) else ""
        if name and name in names:
            errs.append(errors.duplicate(f"{path}.name", name))
        names.add(name)
        errs += _validate_hook(w, path, mutating, strict)
    return errs


def configuration_errors(group: str, kind: str, obj: Obj, old: Obj | None) -> FieldErrors:
    """The store's hook: errors of a webhook configuration, nothing for any other kind."""
    if group != GROUP or kind not in (MUTATING, VALIDATING):
        return []
    return validate_configuration(obj, old)
