"""Validation of the networking.k8s.io kinds (Ingress, IngressClass, NetworkPolicy; dispatched
from `validation_more`): the main rules of `pkg/apis/networking/validation` with Kubernetes'
wording, including the Ingress host rules (a DNS name or `*.` wildcard, never an IP address),
the path rules per `pathType`, and the NetworkPolicy port and peer (selector or ipBlock) rules."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kybern.api import errors
from kybern.api import validation as v
from kybern.api.validation import FieldErrors, _c, _d, _enum, _invalid, _is_int, _l

Obj = dict[str, Any]

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


def _each(path: str, value: Any, msgs: list[str]) -> FieldErrors:
    return [_invalid(path, value, m) for m in msgs]


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
