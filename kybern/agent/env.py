"""A container's environment as a kubelet computes it: the service link variables
(`KUBERNETES_SERVICE_HOST` and, with `enableServiceLinks`, Docker-link variables for every service
of the pod's namespace), `envFrom` (configMapRef/secretRef with a prefix; keys that are not valid
variable names are skipped), then `env` in order, with `valueFrom` (fieldRef, resourceFieldRef,
configMapKeyRef, secretKeyRef) and `$(VAR)` expansion against what is defined so far. Also the
expansion of `command` and `args`. Pure: the objects referred to come through a `Lookup`; a
missing required reference raises `ConfigError` (the container then waits with
`CreateContainerConfigError`)."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from kybern.agent import common

Obj = common.Obj
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """A container's configuration cannot be built (a missing configMap, secret or key)."""


class Lookup(Protocol):
    """Where configMaps and secrets of the pod's namespace come from (None when absent)."""

    def configmap(self, namespace: str, name: str) -> Obj | None: ...

    def secret(self, namespace: str, name: str) -> Obj | None: ...


@dataclass
class PodContext:
    """What env and downward API values refer to beyond the pod object itself."""

    pod_ips: list[str] = field(default_factory=list)
    host_ips: list[str] = field(default_factory=list)
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


# ---- $(VAR) expansion ------------------------------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion: `$(VAR)` becomes VAR's value when VAR is defined, `$$` is a
    literal `$`, anything else (an undefined or unclosed reference) stays as it is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append("$")
            i += 1
    return "".join(out)


def expand_all(items: Iterable[str], env: Mapping[str, str]) -> list[str]:
    return [expand(s, env) for s in items]


# ---- service links ---------------------------------------------------------------------------


def _service_vars(svc: Obj) -> list[tuple[str, str]]:
    spec = common.spec(svc)
    ip = spec.get("clusterIP") or ""
    if not ip or ip == "None":
        return []
    name = common.meta(svc).get("name", "").upper().replace("-", "_")
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    out = [(f"{name}_SERVICE_HOST", ip)]
    if not ports:
        return out
    out.append((f"{name}_SERVICE_PORT", str(ports[0].get("port", ""))))
    for p in ports:
        if p.get("name"):
            pname = str(p["name"]).upper().replace("-", "_")
            out.append((f"{name}_SERVICE_PORT_{pname}", str(p.get("port", ""))))
    first = ports[0]
    proto = str(first.get("protocol") or "TCP")
    out.append((f"{name}_PORT", f"{proto.lower()}://{ip}:{first.get('port', '')}"))
    for p in ports:
        proto = str(p.get("protocol") or "TCP")
        prefix = f"{name}_PORT_{p.get('port', '')}_{proto.upper()}"
        out += [
            (prefix, f"{proto.lower()}://{ip}:{p.get('port', '')}"),
            (f"{prefix}_PROTO", proto.lower()),
            (f"{prefix}_PORT", str(p.get("port", ""))),
            (f"{prefix}_ADDR", ip),
        ]
    return out


def service_env(pod: Obj, services: Iterable[Obj]) -> dict[str, str]:
    """The service link variables of `pod`: the `kubernetes` service of `default` always, the
    services of the pod's namespace when `enableServiceLinks` (the default) is on."""
    ns = common.meta(pod).get("namespace", "")
    links = common.spec(pod).get("enableServiceLinks")
    links = True if links is None else bool(links)
    master: list[Obj] = []
    local: list[Obj] = []
    for svc in services:
        m = common.meta(svc)
        if m.get("namespace") == "default" and m.get("name") == "kubernetes":
            master.append(svc)
        elif links and m.get("namespace") == ns:
            local.append(svc)
    out: dict[str, str] = {}
    for svc in sorted(local, key=lambda s: common.meta(s).get("name", "")):
        out.update(_service_vars(svc))
    for svc in master:
        out.update(_service_vars(svc))
    return out


# ---- valueFrom -------------------------------------------------------------------------------


def _bracket(path: str, prefix: str) -> str | None:
    m = re.fullmatch(re.escape(prefix) + r"\[['\"](.+)['\"]\]", path)
    return m.group(1) if m else None


def field_ref(pod: Obj, path: str, ctx: PodContext) -> str:
    """The value of a `fieldRef` (`metadata.name`, `metadata.labels['app']`, `status.podIP`)."""
    m = common.meta(pod)
    simple = {
        "metadata.name": m.get("name", ""),
        "metadata.namespace": m.get("namespace", ""),
        "metadata.uid": m.get("uid", ""),
        "spec.nodeName": common.spec(pod).get("nodeName", ""),
        "spec.serviceAccountName": common.spec(pod).get("serviceAccountName", ""),
        "status.hostIP": ctx.host_ips[0] if ctx.host_ips else "",
        "status.hostIPs": ",".join(ctx.host_ips),
        "status.podIP": ctx.pod_ips[0] if ctx.pod_ips else "",
        "status.podIPs": ",".join(ctx.pod_ips),
    }
    if path in simple:
        return str(simple[path])
    if path == "metadata.labels":
        return _format_map(m.get("labels") or {})
    if path == "metadata.annotations":
        return _format_map(m.get("annotations") or {})
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        key = _bracket(path, prefix)
        if key is not None:
            return str((m.get(source) or {}).get(key, ""))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def _format_map(values: Mapping[str, str]) -> str:
    """The downward API file format of labels/annotations: `key="value"` lines, sorted."""
    lines = []
    for k in sorted(values):
        v = str(values[k]).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{k}="{v}"')
    return "\n".join(lines)


def resource_field_ref(pod: Obj, ref: Obj, ctx: PodContext, default_container: str = "") -> str:
    """A `resourceFieldRef` value: the container's limit (node allocatable when unset) or
    request, divided by the divisor and rounded up."""
    name = ref.get("containerName") or default_container
    c = next(
        (
            c
            for c in common.containers(pod) + common.containers(pod, "initContainers")
            if c.get("name") == name
        ),
        None,
    )
    if c is None:
        raise ConfigError(f"resourceFieldRef: no container {name!r}")
    resource = str(ref.get("resource", ""))
    part, _, res_name = resource.partition(".")
    requests, limits = common.resources(c)
    value: Decimal
    if part == "limits":
        raw = limits.get(res_name) or ctx.node_allocatable.get(res_name)
        value = common.quantity(raw)
    elif part == "requests":
        value = common.quantity(requests.get(res_name))
    else:
        raise ConfigError(f"unsupported resourceFieldRef {resource!r}")
    divisor = common.quantity(ref.get("divisor") or "1") or Decimal(1)
    return str(math.ceil(value / divisor))


def _key_ref(
    lookup: Lookup, kind: str, namespace: str, ref: Obj
) -> str | None:  # None: optional and absent
    name, key = str(ref.get("name", "")), str(ref.get("key", ""))
    optional = bool(ref.get("optional"))
    obj = (
        lookup.configmap(namespace, name) if kind == "configmap" else lookup.secret(namespace, name)
    )
    label = "configmap" if kind == "configmap" else "secret"
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{label} "{name}" not found')
    data = object_data(obj, kind)
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {label.capitalize()} {namespace}/{name}")
    return data[key].decode(errors="replace")


def object_data(obj: Obj, kind: str) -> dict[str, bytes]:
    """The key → bytes contents of a ConfigMap (`data` and `binaryData`) or Secret (`data`,
    base64)."""
    out: dict[str, bytes] = {}
    if kind == "configmap":
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v)
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v or "")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v).encode()
    return out


# ---- the whole environment -------------------------------------------------------------------


def container_env(
    pod: Obj,
    container: Obj,
    lookup: Lookup,
    ctx: PodContext,
    services: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The environment of `container` in order (service links, envFrom, env), every value
    expanded; a later definition of a name replaces an earlier one in place."""
    ns = common.meta(pod).get("namespace", "")
    env: dict[str, str] = dict(services or {})
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if not isinstance(ref, dict):
                continue
            name = str(ref.get("name", ""))
            obj = lookup.configmap(ns, name) if kind == "configmap" else lookup.secret(ns, name)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(
                    f'{"configmap" if kind == "configmap" else "secret"} "{name}" not found'
                )
            for k, v in sorted(object_data(obj, kind).items()):
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v.decode(errors="replace")
    for var in container.get("env") or []:
        name = str(var.get("name", ""))
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        source = var.get("valueFrom") or {}
        value: str | None
        if "fieldRef" in source:
            value = field_ref(pod, str(source["fieldRef"].get("fieldPath", "")), ctx)
        elif "resourceFieldRef" in source:
            value = resource_field_ref(
                pod, source["resourceFieldRef"], ctx, str(container.get("name", ""))
            )
        elif "configMapKeyRef" in source:
            value = _key_ref(lookup, "configmap", ns, source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = _key_ref(lookup, "secret", ns, source["secretKeyRef"])
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom")
        if value is not None:
            env[name] = value
    return list(env.items())
