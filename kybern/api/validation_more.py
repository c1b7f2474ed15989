"""Validation of the scheduling, node, autoscaling, certificates and storage-capacity kinds (the
main rules of `pkg/apis/{scheduling,node,autoscaling,certificates,storage}/validation` with
Kubernetes' wording), and the create/update dispatch for all the newer built-in kinds, which
`validation_kinds` hands over here: the networking kinds are validated in
`validation_networking`, the admission-policy and flow-control kinds in `validation_policy`."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kybern.api import errors
from kybern.api import validation as v
from kybern.api.validation import FieldErrors, _c, _d, _enum, _invalid, _is_int, _l
from kybern.api.validation_networking import _each, _ingress, _ingress_class, _network_policy
from kybern.api.validation_policy import _flow_schema, _priority_level, _vap, _vap_binding

Obj = dict[str, Any]

HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": 2_000_001_000,
    "system-cluster-critical": 2_000_000_000,
}
_KEY_USAGES = sorted(
    [
        "signing",
        "digital signature",
        "content commitment",
        "key encipherment",
        "key agreement",
        "data encipherment",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
        "any",
        "server auth",
        "client auth",
        "code signing",
        "email protection",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "timestamping",
        "ocsp signing",
        "microsoft sgc",
        "netscape sgc",
    ]
)
_TRUE_ONLY = ("Approved", "Denied", "Failed")


def _immutable(new: Any, old: Any, path: str) -> FieldErrors:
    return [] if v._norm(new) == v._norm(old) else [_invalid(path, new, v.FIELD_IMMUTABLE)]


def _quantity(value: Any, path: str) -> FieldErrors:
    if value is None:
        return []
    try:
        q = v.parse_quantity(value)
    except ValueError as e:
        return [_invalid(path, value, str(e))]
    return [_invalid(path, value, v.IS_NEGATIVE)] if q < 0 else []


# ---------------------------------------------------------------- scheduling, node


def _priority_class(obj: Obj) -> FieldErrors:
    name = str(_d(obj.get("metadata")).get("name") or "")
    value, errs = obj.get("value"), []
    if name.startswith("system-"):
        known = SYSTEM_PRIORITY_CLASSES.get(name)
        if known is None:
            why = f"{name} is not a known system priority class"
        elif value != known:
            why = f"value of {name} PriorityClass must be {known}"
        elif obj.get("globalDefault"):
            why = f"globalDefault of {name} PriorityClass must be false"
        else:
            why = ""
        if why:
            errs.append(
                errors.forbidden(
                    "metadata.name",
                    "priority class names with 'system-' prefix are reserved for system use "
                    f"only. error: {why}",
                )
            )
    elif _is_int(value) and value > HIGHEST_USER_PRIORITY:
        errs.append(
            errors.forbidden(
                "value",
                f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}",
            )
        )
    policy = obj.get("preemptionPolicy")
    errs += _enum(policy, "preemptionPolicy", ["Never", "PreemptLowerPriority"])
    return errs


def _runtime_class(obj: Obj) -> FieldErrors:
    handler, errs = str(obj.get("handler") or ""), []
    if not handler:
        errs.append(errors.required("handler"))
    else:
        errs += _each("handler", handler, v.is_dns1123_label(handler))
    for name, q in _d(_d(obj.get("overhead")).get("podFixed")).items():
        errs += _quantity(q, f"overhead.podFixed[{name}]")
    sched = _d(obj.get("scheduling"))
    errs += v.validate_labels(sched.get("nodeSelector"), "scheduling.nodeSelector")
    return errs


# ---------------------------------------------------------------- autoscaling/v2

_METRIC_SOURCES = {
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "External": "external",
}


def _metric_target(target: Any, path: str) -> FieldErrors:
    t, errs = _d(target), []
    typ = t.get("type")
    if not typ:
        return [errors.required(_c(path, "type"), "must specify a metric target type")]
    if typ not in ("Utilization", "Value", "AverageValue"):
        return [
            errors.not_supported(_c(path, "type"), typ, ["AverageValue", "Utilization", "Value"])
        ]
    util = t.get("averageUtilization")
    if util is not None and _is_int(util) and util <= 0:
        errs.append(_invalid(_c(path, "averageUtilization"), util, "must be greater than 0"))
    for k in ("value", "averageValue"):
        errs += _quantity(t.get(k), _c(path, k))
    fields = {"Utilization": "averageUtilization", "Value": "value", "AverageValue": "averageValue"}
    if t.get(fields[typ]) is None:
        errs.append(errors.required(_c(path, fields[typ]), f"must set {fields[typ]} for {typ}"))
    return errs


def _metric(metric: Any, path: str) -> FieldErrors:
    m = _d(metric)
    typ = m.get("type")
    if not typ:
        return [errors.required(_c(path, "type"), "must specify a metric source type")]
    if typ not in _METRIC_SOURCES:
        supported = sorted(_METRIC_SOURCES)
        return [errors.not_supported(_c(path, "type"), typ, supported)]
    key = _METRIC_SOURCES[typ]
    errs: FieldErrors = []
    others = [k for k in _METRIC_SOURCES.values() if k != key and m.get(k) is not None]
    if others:
        errs.append(
            errors.forbidden(_c(path, others[0]), "must populate the given metric source only")
        )
    src = m.get(key)
    if src is None:
        detail = "must populate information for the given metric source"
        return [*errs, errors.required(_c(path, key), detail)]
    s, spath = _d(src), _c(path, key)
    if typ in ("Resource", "ContainerResource") and not s.get("name"):
        errs.append(errors.required(_c(spath, "name"), "must specify a resource name"))
    if typ == "ContainerResource" and not s.get("container"):
        errs.append(errors.required(_c(spath, "container"), "must specify a container"))
    if typ in ("Object", "Pods", "External"):
        if not _d(s.get("metric")).get("name"):
            errs.append(errors.required(_c(spath, "metric", "name"), "must specify a metric name"))
    return errs + _metric_target(s.get("target"), _c(spath, "target"))


def _scaling_rules(rules: Any, path: str) -> FieldErrors:
    if rules is None:
        return []
    r, errs = _d(rules), []
    window = r.get("stabilizationWindowSeconds")
    if _is_int(window) and not 0 <= window <= 3600:
        errs.append(
            _invalid(
                _c(path, "stabilizationWindowSeconds"),
                window,
                "must be less than or equal to 3600" if window > 0 else v.IS_NEGATIVE,
            )
        )
    errs += _enum(r.get("selectPolicy"), _c(path, "selectPolicy"), ["Disabled", "Max", "Min"])
    for i, p in enumerate(_l(r.get("policies"))):
        p, ppath = _d(p), f"{path}.policies[{i}]"
        errs += _enum(p.get("type") or "", _c(ppath, "type"), ["Percent", "Pods"])
        value, period = p.get("value"), p.get("periodSeconds")
        if not _is_int(value) or value <= 0:
            errs.append(_invalid(_c(ppath, "value"), value, "must be greater than zero"))
        if not _is_int(period) or period <= 0:
            errs.append(_invalid(_c(ppath, "periodSeconds"), period, "must be greater than zero"))
        elif period > 1800:
            errs.append(
                _invalid(_c(ppath, "periodSeconds"), period, "must be less than or equal to 1800")
            )
    return errs


def _hpa(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    ref = _d(spec.get("scaleTargetRef"))
    for k in ("kind", "name"):
        if not ref.get(k):
            errs.append(errors.required(f"spec.scaleTargetRef.{k}"))
        else:
            errs += _each(f"spec.scaleTargetRef.{k}", ref[k], v.is_path_segment_name(str(ref[k])))
    lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
    if _is_int(lo) and lo < 1:
        errs.append(_invalid("spec.minReplicas", lo, "must be greater than or equal to 1"))
    if not _is_int(hi) or hi < 1:
        errs.append(_invalid("spec.maxReplicas", hi, "must be greater than 0"))
    elif _is_int(lo) and hi < lo:
        errs.append(
            _invalid("spec.maxReplicas", hi, "must be greater than or equal to `minReplicas`")
        )
    for i, metric in enumerate(_l(spec.get("metrics"))):
        errs += _metric(metric, f"spec.metrics[{i}]")
    behavior = _d(spec.get("behavior"))
    errs += _scaling_rules(behavior.get("scaleUp"), "spec.behavior.scaleUp")
    errs += _scaling_rules(behavior.get("scaleDown"), "spec.behavior.scaleDown")
    return errs


# ---------------------------------------------------------------- certificates.k8s.io


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(type, whole block) of every PEM block in `data`."""
    out = []
    for m in re.finditer(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", data, re.S):
        out.append((m.group(1).decode(), m.group(0)))
    return out


def _decoded(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return None


def csr_request_error(request: Any) -> str:
    """Why `spec.request` (base64 of a PEM CSR) is unusable, or ""."""
    data = _decoded(request) or b""
    blocks = _pem_blocks(data)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        return "PEM block type must be CERTIFICATE REQUEST"
    try:
        csr = x509.load_pem_x509_csr(blocks[0][1])
    except ValueError as e:
        return f"x509: malformed certificate request ({e})"
    try:
        if not csr.is_signature_valid:
            return "x509: ECDSA verification failure"
    except (InvalidSignature, ValueError) as e:
        return f"x509: {e}"
    return ""


def _certificate_error(value: Any) -> str:
    data = _decoded(value)
    if not data:
        return ""
    blocks = _pem_blocks(data)
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    for typ, block in blocks:
        if typ != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{typ}"'
        try:
            x509.load_pem_x509_certificate(block)
        except ValueError as e:
            return f"x509: {e}"
    return ""


def signer_name_errors(name: Any, path: str) -> FieldErrors:
    name = str(name or "")
    if not name:
        return [errors.required(path)]
    segments = name.split("/")
    if len(segments) != 2:
        detail = "must be a fully qualified domain and path of the form 'example.com/signer-name'"
        return [_invalid(path, name, detail)]
    domain, rest = segments
    errs: FieldErrors = []
    labels = domain.split(".")
    for label in labels:
        msgs = v.is_dns1123_label(label)
        if msgs:
            errs += [_invalid(path, domain, f'validating label "{label}": {m}') for m in msgs]
            break
    if len(labels) < 2:
        detail = "should be a domain with at least two segments separated by dots"
        errs.append(_invalid(path, domain, detail))
    if not rest:
        errs.append(_invalid(path, rest, "may not be empty"))
    else:
        errs += _each(path, rest, v.is_dns1123_subdomain(rest.replace("/", ".")))
    return errs


def _conditions(obj: Obj, old: Obj | None) -> FieldErrors:
    errs: FieldErrors = []
    conds = [_d(c) for c in _l(_d(obj.get("status")).get("conditions"))]
    old_conds = [_d(c) for c in _l(_d((old or {}).get("status")).get("conditions"))]
    old_types = [c.get("type") for c in old_conds]
    both_ok = "Approved" in old_types and "Denied" in old_types
    seen: set[Any] = set()
    has_approved = has_denied = False
    for i, c in enumerate(conds):
        path = f"status.conditions[{i}]"
        typ, status = c.get("type"), c.get("status")
        if not typ and "" not in old_types:
            errs.append(errors.required(_c(path, "type")))
        allowed = ["True"] if typ in _TRUE_ONLY else ["False", "True", "Unknown"]
        if not status:
            errs.append(errors.required(_c(path, "status")))
        elif status not in allowed:
            errs.append(errors.not_supported(_c(path, "status"), status, allowed))
        if not both_ok:
            if typ == "Approved":
                has_approved = True
                if has_denied:
                    detail = "Approved and Denied conditions are mutually exclusive"
                    errs.append(_invalid(_c(path, "type"), typ, detail))
            elif typ == "Denied":
                has_denied = True
                if has_approved:
                    detail = "Approved and Denied conditions are mutually exclusive"
                    errs.append(_invalid(_c(path, "type"), typ, detail))
        if typ in seen and len(set(old_types)) == len(old_types):
            errs.append(errors.duplicate(_c(path, "type"), typ))
        seen.add(typ)
    return errs


def _csr(obj: Obj, old: Obj | None = None) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    ospec = _d((old or {}).get("spec"))
    why = csr_request_error(spec.get("request"))
    if why:
        errs.append(_invalid("spec.request", spec.get("request") or "", why))
    usages = _l(spec.get("usages"))
    if not usages:
        errs.append(errors.required("spec.usages"))
    old_usages = _l(ospec.get("usages"))
    if not any(u not in _KEY_USAGES for u in old_usages):
        for i, u in enumerate(usages):
            if u not in _KEY_USAGES:
                errs.append(errors.not_supported(f"spec.usages[{i}]", u, _KEY_USAGES))
    if len(set(old_usages)) == len(old_usages):
        seen: set[Any] = set()
        for i, u in enumerate(usages):
            if u in seen:
                errs.append(errors.duplicate(f"spec.usages[{i}]", u))
            seen.add(u)
    signer = spec.get("signerName")
    if signer == "kubernetes.io/legacy-unknown" and ospec.get("signerName") != signer:
        detail = "the legacy signerName is not allowed via this API version"
        errs.append(_invalid("spec.signerName", signer, detail))
    else:
        errs += signer_name_errors(signer, "spec.signerName")
    exp = spec.get("expirationSeconds")
    if _is_int(exp) and exp < 600:
        detail = "may not specify a duration less than 600 seconds (10 minutes)"
        errs.append(_invalid("spec.expirationSeconds", exp, detail))
    errs += _conditions(obj, old)
    cert = _d(obj.get("status")).get("certificate")
    ocert = _d((old or {}).get("status")).get("certificate")
    if old is None or cert != ocert:
        if why := _certificate_error(cert):
            errs.append(_invalid("status.certificate", "<certificate data>", why))
    return errs


def _csr_update(new: Obj, old: Obj) -> FieldErrors:
    """The update rules; the strategy already restricted what each endpoint can change (the
    main resource nothing in spec or status, `/status` everything but the conditions,
    `/approval` only the conditions)."""
    errs: FieldErrors = []

    def of_type(o: Obj, t: str) -> list[Any]:
        return [c for c in _l(_d(o.get("status")).get("conditions")) if _d(c).get("type") == t]

    for t in ("Approved", "Denied", "Failed"):
        if len(of_type(new, t)) < len(of_type(old, t)):
            errs.append(
                errors.forbidden(
                    "status.conditions", f'updates may not remove a condition of type "{t}"'
                )
            )
    cert = _d(new.get("status")).get("certificate")
    ocert = _d(old.get("status")).get("certificate")
    if cert != ocert and ocert:
        detail = "updates may not modify existing certificate content"
        errs.append(errors.forbidden("status.certificate", detail))
    return errs


# ---------------------------------------------------------------- storage.k8s.io


def _csi_storage_capacity(obj: Obj) -> FieldErrors:
    errs: FieldErrors = []
    sc = str(obj.get("storageClassName") or "")
    if not sc:
        errs.append(errors.required("storageClassName"))
    else:
        errs += _each("storageClassName", sc, v.is_dns1123_subdomain(sc))
    errs += v.validate_label_selector(obj.get("nodeTopology"), "nodeTopology")
    errs += _quantity(obj.get("capacity"), "capacity")
    errs += _quantity(obj.get("maximumVolumeSize"), "maximumVolumeSize")
    return errs


# ---------------------------------------------------------------- dispatch

VALIDATORS: dict[str, Callable[[Obj], FieldErrors]] = {
    "Ingress": _ingress,
    "IngressClass": _ingress_class,
    "NetworkPolicy": _network_policy,
    "PriorityClass": _priority_class,
    "RuntimeClass": _runtime_class,
    "HorizontalPodAutoscaler": _hpa,
    "CertificateSigningRequest": _csr,
    "CSIStorageCapacity": _csi_storage_capacity,
    "ValidatingAdmissionPolicy": _vap,
    "ValidatingAdmissionPolicyBinding": _vap_binding,
    "FlowSchema": _flow_schema,
    "PriorityLevelConfiguration": _priority_level,
}


def validate(kind: str, obj: Obj) -> FieldErrors:
    fn = VALIDATORS.get(kind)
    return fn(obj) if fn is not None else []


def validate_update(kind: str, new: Obj, old: Obj) -> FieldErrors:
    if kind == "PriorityClass":
        errs: FieldErrors = []
        if new.get("value") != old.get("value"):
            errs.append(errors.forbidden("value", "may not be changed in an update."))
        return errs + _immutable(
            new.get("preemptionPolicy"), old.get("preemptionPolicy"), "preemptionPolicy"
        )
    if kind == "IngressClass":
        ctl, octl = _d(new.get("spec")).get("controller"), _d(old.get("spec")).get("controller")
        return _immutable(ctl, octl, "spec.controller")
    if kind == "RuntimeClass":
        return _immutable(new.get("handler"), old.get("handler"), "handler")
    if kind == "CertificateSigningRequest":
        return _csr_update(new, old)
    if kind == "CSIStorageCapacity":
        errs = _immutable(
            new.get("storageClassName"), old.get("storageClassName"), "storageClassName"
        )
        return errs + _immutable(new.get("nodeTopology"), old.get("nodeTopology"), "nodeTopology")
    return []
