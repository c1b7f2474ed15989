"""Validation of the networking, scheduling, node, autoscaling, certificates, storage-capacity,
admission-policy and flow-control kinds (split from `validation_kinds`, which dispatches here):
the main rules of `pkg/apis/{networking,scheduling,node,autoscaling,certificates,storage,
admissionregistration,flowcontrol}/validation` with Kubernetes' wording. CEL expressions of
admission policies are not compiled (the policies are stored, not enforced)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kybern.api import errors
from kybern.api import validation as v
from kybern.api.validation import FieldErrors, _c, _d, _enum, _invalid, _is_int, _l

Obj = dict[str, Any]

HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": 2_000_001_000,
    "system-cluster-critical": 2_000_000_000,
}
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_WILDCARD_FMT = "\\*\\." + v.DNS1123_SUBDOMAIN_FMT
_WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character"
)
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


def _each(path: str, value: Any, msgs: list[str]) -> FieldErrors:
    return [_invalid(path, value, m) for m in msgs]


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


def _is_wildcard(host: str) -> bool:
    return re.fullmatch(_WILDCARD_FMT, host) is not None and len(host) <= 253


def _host(host: str, path: str) -> FieldErrors:
    """An Ingress rule or TLS host: a DNS name (or `*.` wildcard), not an IP address."""
    try:
        ipaddress.ip_address(host)
        return [_invalid(path, host, "must be a DNS name, not an IP address")]
    except ValueError:
        pass
    if host.startswith("*"):
        if _is_wildcard(host):
            return []
        return [_invalid(path, host, v.regex_error(_WILDCARD_MSG, _WILDCARD_FMT, "*.example.com"))]
    return _each(path, host, v.is_dns1123_subdomain(host))


# ---------------------------------------------------------------- networking.k8s.io


def _ingress_backend(backend: Any, path: str) -> FieldErrors:
    b = _d(backend)
    service, resource = b.get("service"), b.get("resource")
    if service is not None and resource is not None:
        return [_invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        r, errs = _d(resource), []
        if not r.get("kind"):
            errs.append(errors.required(_c(path, "resource", "kind")))
        if not r.get("name"):
            errs.append(errors.required(_c(path, "resource", "name")))
        return errs
    if service is None:
        return [_invalid(path, "", "resource or service backend is required")]
    s, errs = _d(service), []
    name = s.get("name") or ""
    if not name:
        errs.append(errors.required(_c(path, "service", "name")))
    else:
        errs += _each(_c(path, "service", "name"), name, v.is_dns1035_label(str(name)))
    port = _d(s.get("port"))
    pname, pnum = port.get("name") or "", port.get("number") or 0
    if pname and pnum:
        errs.append(_invalid(path, "", "cannot set both port name & port number"))
    elif pname:
        errs += _each(_c(path, "service", "port", "name"), pname, v.is_valid_port_name(pname))
    elif pnum:
        errs += _each(_c(path, "service", "port", "number"), pnum, v.is_valid_port_num(pnum))
    else:
        errs.append(errors.required(path, "port name or number is required"))
    return errs


def _ingress_path(p: Any, path: str) -> FieldErrors:
    p, errs = _d(p), []
    ptype, value = p.get("pathType"), p.get("path") or ""
    if not ptype:
        errs.append(errors.required(_c(path, "pathType"), "pathType must be specified"))
    elif ptype not in _PATH_TYPES:
        errs.append(errors.not_supported(_c(path, "pathType"), ptype, _PATH_TYPES))
    elif ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(_invalid(_c(path, "path"), value, "must be an absolute path"))
        for seq in _INVALID_PATH_SEQUENCES:
            if seq in value:
                errs.append(_invalid(_c(path, "path"), value, f"must not contain '{seq}'"))
        for suffix in _INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                errs.append(_invalid(_c(path, "path"), value, f"cannot end with '{suffix}'"))
    elif value and not value.startswith("/"):
        errs.append(_invalid(_c(path, "path"), value, "must be an absolute path"))
    return errs + _ingress_backend(p.get("backend"), _c(path, "backend"))


def _ingress(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    rules = _l(spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.append(_invalid("spec", [], "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += _ingress_backend(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules):
        rule, rpath = _d(rule), f"spec.rules[{i}]"
        if host := rule.get("host"):
            errs += _host(str(host), _c(rpath, "host"))
        if "http" in rule:
            paths = _l(_d(rule.get("http")).get("paths"))
            if not paths:
                errs.append(errors.required(_c(rpath, "http", "paths")))
            for j, p in enumerate(paths):
                errs += _ingress_path(p, f"{rpath}.http.paths[{j}]")
    for i, tls in enumerate(_l(spec.get("tls"))):
        for j, host in enumerate(_l(_d(tls).get("hosts"))):
            errs += _host(str(host), f"spec.tls[{i}].hosts[{j}]")
    if cls := spec.get("ingressClassName"):
        errs += _each("spec.ingressClassName", cls, v.is_dns1123_subdomain(str(cls)))
    return errs


def _ingress_class(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    controller = str(spec.get("controller") or "")
    if not controller:
        errs.append(errors.required("spec.controller"))
    elif len(controller) > 250:
        errs.append(errors.too_long("spec.controller", controller, 250))
    else:
        domain, slash, rest = controller.partition("/")
        if not slash or not rest:
            errs.append(_invalid("spec.controller", controller, "must be a domain-prefixed path"))
        else:
            errs += _each("spec.controller", domain, v.is_dns1123_subdomain(domain))
    if spec.get("parameters") is not None:
        p, ppath = _d(spec["parameters"]), "spec.parameters"
        if not p.get("kind"):
            errs.append(errors.required(_c(ppath, "kind")))
        if not p.get("name"):
            errs.append(errors.required(_c(ppath, "name")))
        scope = p.get("scope")
        if scope not in (None, "Cluster", "Namespace"):
            errs.append(errors.not_supported(_c(ppath, "scope"), scope, ["Cluster", "Namespace"]))
        elif scope == "Namespace" and not p.get("namespace"):
            errs.append(
                errors.required(_c(ppath, "namespace"), "`parameters.scope` is set to 'Namespace'")
            )
        elif scope == "Cluster" and p.get("namespace"):
            errs.append(
                errors.forbidden(_c(ppath, "namespace"), "`parameters.scope` is set to 'Cluster'")
            )
    return errs


def _np_port(port: Any, path: str) -> FieldErrors:
    port, errs = _d(port), []
    errs += _enum(port.get("protocol"), _c(path, "protocol"), _PROTOCOLS)
    value, end = port.get("port"), port.get("endPort")
    if _is_int(value):
        errs += _each(_c(path, "port"), value, v.is_valid_port_num(value))
        if end is not None:
            if not _is_int(end) or end < value:
                detail = "must be greater than or equal to `port`"
                errs.append(_invalid(_c(path, "endPort"), end, detail))
            else:
                errs += _each(_c(path, "endPort"), end, v.is_valid_port_num(end))
    elif isinstance(value, str):
        errs += _each(_c(path, "port"), value, v.is_valid_port_name(value))
        if end is not None:
            detail = "may not be specified when `port` is non-numeric"
            errs.append(errors.forbidden(_c(path, "endPort"), detail))
    elif end is not None:
        errs.append(errors.required(_c(path, "port"), "when endPort is specified"))
    return errs


def _np_peer(peer: Any, path: str) -> FieldErrors:
    peer, errs = _d(peer), []
    selectors = [k for k in ("podSelector", "namespaceSelector") if peer.get(k) is not None]
    block = peer.get("ipBlock")
    if block is not None and selectors:
        return [errors.forbidden(path, "may not specify both ipBlock and another peer")]
    if block is None and not selectors:
        return [errors.required(path, "must specify a peer")]
    for k in selectors:
        errs += v.validate_label_selector(peer[k], _c(path, k))
    if block is not None:
        b, bpath = _d(block), _c(path, "ipBlock")
        cidr = str(b.get("cidr") or "")
        if not cidr:
            return [*errs, errors.required(_c(bpath, "cidr"))]
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return [*errs, _invalid(_c(bpath, "cidr"), cidr, "must be a valid CIDR value")]
        for i, exc in enumerate(_l(b.get("except"))):
            epath = f"{bpath}.except[{i}]"
            try:
                enet = ipaddress.ip_network(str(exc), strict=False)
            except ValueError:
                errs.append(_invalid(epath, exc, "must be a valid CIDR value"))
                continue
            if enet.version != net.version or not enet.subnet_of(net):  # type: ignore[arg-type]
                errs.append(_invalid(epath, exc, "must be a strict subset of `cidr`"))
    return errs


def _network_policy(obj: Obj) -> FieldErrors:
    spec = _d(obj.get("spec"))
    errs = v.validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_l(spec.get(direction))):
            rule, rpath = _d(rule), f"spec.{direction}[{i}]"
            for j, port in enumerate(_l(rule.get("ports"))):
                errs += _np_port(port, f"{rpath}.ports[{j}]")
            for j, peer in enumerate(_l(rule.get(peers))):
                errs += _np_peer(peer, f"{rpath}.{peers}[{j}]")
    types = _l(spec.get("policyTypes"))
    if len(types) > 2:
        errs.append(
            _invalid("spec.policyTypes", types, "may not specify more than two policyTypes")
        )
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            errs.append(errors.not_supported(f"spec.policyTypes[{i}]", t, ["Egress", "Ingress"]))
    return errs


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


# ---------------------------------------------------------------- admissionregistration


def _vap(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    validations = _l(spec.get("validations"))
    if not validations and not _l(spec.get("auditAnnotations")):
        errs.append(
            errors.required(
                "spec.validations", "validations or auditAnnotations must contain at least one item"
            )
        )
    for i, val in enumerate(validations):
        if not _d(val).get("expression"):
            errs.append(errors.required(f"spec.validations[{i}].expression"))
        reason = _d(val).get("reason")
        supported = ["Forbidden", "Invalid", "RequestEntityTooLarge", "Unauthorized"]
        errs += _enum(reason, f"spec.validations[{i}].reason", supported)
    errs += _enum(spec.get("failurePolicy"), "spec.failurePolicy", ["Fail", "Ignore"])
    if spec.get("paramKind") is not None:
        pk = _d(spec["paramKind"])
        for k in ("apiVersion", "kind"):
            if not pk.get(k):
                errs.append(errors.required(f"spec.paramKind.{k}"))
    if spec.get("matchConstraints") is None:
        errs.append(errors.required("spec.matchConstraints"))
    elif not _l(_d(spec["matchConstraints"]).get("resourceRules")):
        errs.append(errors.required("spec.matchConstraints.resourceRules"))
    for i, var in enumerate(_l(spec.get("variables"))):
        var, vpath = _d(var), f"spec.variables[{i}]"
        if not var.get("name"):
            errs.append(errors.required(_c(vpath, "name")))
        if not var.get("expression"):
            errs.append(errors.required(_c(vpath, "expression")))
    return errs


def _vap_binding(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    if not spec.get("policyName"):
        errs.append(errors.required("spec.policyName"))
    actions = _l(spec.get("validationActions"))
    if not actions:
        errs.append(errors.required("spec.validationActions"))
    seen: set[Any] = set()
    for i, a in enumerate(actions):
        path = f"spec.validationActions[{i}]"
        if a not in ("Audit", "Deny", "Warn"):
            errs.append(errors.not_supported(path, a, ["Audit", "Deny", "Warn"]))
        if a in seen:
            errs.append(errors.duplicate(path, a))
        seen.add(a)
    if "Deny" in seen and "Warn" in seen:
        detail = (
            "must not contain both Deny and Warn (repeating the same validation failure "
            "information in the API response and headers serves no purpose)"
        )
        errs.append(_invalid("spec.validationActions", sorted(seen), detail))
    if spec.get("paramRef") is not None:
        pr = _d(spec["paramRef"])
        if pr.get("name") and pr.get("selector") is not None:
            errs.append(
                errors.forbidden("spec.paramRef.name", "name and selector are mutually exclusive")
            )
        errs += _enum(
            pr.get("parameterNotFoundAction"),
            "spec.paramRef.parameterNotFoundAction",
            ["Allow", "Deny"],
        )
    return errs


# ---------------------------------------------------------------- flowcontrol.apiserver.k8s.io


def _flow_schema(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    if not _d(spec.get("priorityLevelConfiguration")).get("name"):
        errs.append(errors.required("spec.priorityLevelConfiguration.name"))
    prec = spec.get("matchingPrecedence")
    if _is_int(prec) and not 1 <= prec <= 10000:
        errs.append(_invalid("spec.matchingPrecedence", prec, v.inclusive_range_error(1, 10000)))
    if spec.get("distinguisherMethod") is not None:
        typ = _d(spec["distinguisherMethod"]).get("type") or ""
        errs += _enum(typ, "spec.distinguisherMethod.type", ["ByNamespace", "ByUser"])
    for i, rule in enumerate(_l(spec.get("rules"))):
        rule, rpath = _d(rule), f"spec.rules[{i}]"
        if not _l(rule.get("subjects")):
            errs.append(errors.required(_c(rpath, "subjects")))
        for j, s in enumerate(_l(rule.get("subjects"))):
            errs += _enum(
                _d(s).get("kind") or "",
                f"{rpath}.subjects[{j}].kind",
                ["Group", "ServiceAccount", "User"],
            )
        if not _l(rule.get("resourceRules")) and not _l(rule.get("nonResourceRules")):
            detail = "at least one of resourceRules and nonResourceRules has to be non-empty"
            errs.append(errors.required(rpath, detail))
    return errs


def _priority_level(obj: Obj) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    typ = spec.get("type") or ""
    errs += _enum(typ, "spec.type", ["Exempt", "Limited"])
    limited, exempt = spec.get("limited"), spec.get("exempt")
    if typ == "Limited":
        if exempt is not None:
            errs.append(errors.forbidden("spec.exempt", "must be nil if the type is Limited"))
        if limited is None:
            errs.append(errors.required("spec.limited", "must not be empty when type is Limited"))
    elif typ == "Exempt" and limited is not None:
        errs.append(errors.forbidden("spec.limited", "must be nil if the type is not Limited"))
    if limited is not None:
        lim = _d(limited)
        shares = lim.get("nominalConcurrencyShares")
        if _is_int(shares) and shares < 0:
            errs.append(_invalid("spec.limited.nominalConcurrencyShares", shares, v.IS_NEGATIVE))
        for k in ("lendablePercent", "borrowingLimitPercent"):
            pct = lim.get(k)
            if _is_int(pct) and (pct < 0 or (k == "lendablePercent" and pct > 100)):
                detail = (
                    "must be between 0 and 100, inclusive"
                    if k == "lendablePercent"
                    else v.IS_NEGATIVE
                )
                errs.append(_invalid(f"spec.limited.{k}", pct, detail))
        lr, lpath = _d(lim.get("limitResponse")), "spec.limited.limitResponse"
        lrt = lr.get("type") or ""
        errs += _enum(lrt, _c(lpath, "type"), ["Queue", "Reject"])
        if lrt == "Queue":
            q, qpath = _d(lr.get("queuing")), _c(lpath, "queuing")
            queues, hand, qll = q.get("queues"), q.get("handSize"), q.get("queueLengthLimit")
            if _is_int(queues) and queues <= 0:
                errs.append(_invalid(_c(qpath, "queues"), queues, "must be positive"))
            if _is_int(qll) and qll <= 0:
                errs.append(_invalid(_c(qpath, "queueLengthLimit"), qll, "must be positive"))
            if _is_int(hand) and hand <= 0:
                errs.append(_invalid(_c(qpath, "handSize"), hand, "must be positive"))
            elif _is_int(hand) and _is_int(queues) and hand > queues:
                detail = f"should not be greater than queues ({queues})"
                errs.append(_invalid(_c(qpath, "handSize"), hand, detail))
        elif lrt == "Reject" and lr.get("queuing") is not None:
            detail = "must be nil if limited.limitResponse.type is not Limited"
            errs.append(errors.forbidden(_c(lpath, "queuing"), detail))
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
