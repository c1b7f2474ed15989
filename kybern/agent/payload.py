"""The file contents of configMap, secret, downwardAPI and projected volumes, as kubelet lays
them out: every key (or the listed `items`, each with its own path and mode) of the object,
`defaultMode` for the rest, an optional source that is absent gives no files, a required one (or
a listed key that is missing) is an error; downward API files hold field and resource values
(labels and annotations as `key="value"` lines); a projected volume merges its sources, including
service account tokens obtained by the caller. Pure: objects and tokens are handed in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kybern.agent import atomic, common, env

Obj = common.Obj
Payload = dict[str, atomic.File]
TokenSource = Callable[[Obj], str]  # serviceAccountToken projection -> token


class VolumeError(Exception):
    """A volume cannot be set up (the pod waits; kubelet's FailedMount)."""


def _mode(item: Mapping[str, Any], default: int) -> int:
    mode = item.get("mode")
    return int(mode) if mode is not None else default


def object_payload(
    kind: str, source: Obj, obj: Obj | None, namespace: str, default_mode: int
) -> Payload:
    """The files of a configMap (`kind` "configmap") or secret volume or projection."""
    name = str(source.get("name") or source.get("secretName") or "")
    optional = bool(source.get("optional"))
    label = "configmap" if kind == "configmap" else "secret"
    if obj is None:
        if optional:
            return {}
        raise VolumeError(f'{label} "{name}" not found')
    data = env.object_data(obj, kind)
    items = [i for i in source.get("items") or [] if isinstance(i, dict)]
    out: Payload = {}
    if not items:
        for key, value in data.items():
            out[key] = atomic.File(value, default_mode)
        return out
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise VolumeError(
                f"{label} {namespace}/{name} has no key {key!r} listed in the volume's items"
            )
        out[str(item.get("path") or key)] = atomic.File(data[key], _mode(item, default_mode))
    return out


def downward_payload(items: list[Obj], pod: Obj, ctx: env.PodContext, default_mode: int) -> Payload:
    out: Payload = {}
    for item in items:
        path = str(item.get("path", ""))
        try:
            if isinstance(item.get("fieldRef"), dict):
                value = env.field_ref(pod, str(item["fieldRef"].get("fieldPath", "")), ctx)
            elif isinstance(item.get("resourceFieldRef"), dict):
                value = env.resource_field_ref(pod, item["resourceFieldRef"], ctx)
            else:
                continue
        except env.ConfigError as e:
            raise VolumeError(str(e)) from None
        out[path] = atomic.File(value.encode(), _mode(item, default_mode))
    return out


def projected_payload(
    source: Obj,
    pod: Obj,
    ctx: env.PodContext,
    lookup: env.Lookup,
    token: TokenSource,
) -> Payload:
    ns = str(common.meta(pod).get("namespace", ""))
    default_mode = int(source.get("defaultMode", 0o644))
    out: Payload = {}
    for src in source.get("sources") or []:
        if not isinstance(src, dict):
            continue
        if isinstance(src.get("configMap"), dict):
            ref = src["configMap"]
            obj = lookup.configmap(ns, str(ref.get("name", "")))
            out.update(object_payload("configmap", ref, obj, ns, default_mode))
        elif isinstance(src.get("secret"), dict):
            ref = src["secret"]
            obj = lookup.secret(ns, str(ref.get("name", "")))
            out.update(object_payload("secret", ref, obj, ns, default_mode))
        elif isinstance(src.get("downwardAPI"), dict):
            items = [i for i in src["downwardAPI"].get("items") or [] if isinstance(i, dict)]
            out.update(downward_payload(items, pod, ctx, default_mode))
        elif isinstance(src.get("serviceAccountToken"), dict):
            sat = src["serviceAccountToken"]
            mode = default_mode if source.get("defaultMode") is not None else 0o600
            out[str(sat.get("path", "token"))] = atomic.File(token(sat).encode(), mode)
    return out


def volume_payload(
    volume: Obj, pod: Obj, ctx: env.PodContext, lookup: env.Lookup, token: TokenSource
) -> Payload | None:
    """The files of an atomically written volume; None for other volume types."""
    ns = str(common.meta(pod).get("namespace", ""))
    if isinstance(volume.get("configMap"), dict):
        src = volume["configMap"]
        obj = lookup.configmap(ns, str(src.get("name", "")))
        return object_payload("configmap", src, obj, ns, int(src.get("defaultMode", 0o644)))
    if isinstance(volume.get("secret"), dict):
        src = volume["secret"]
        obj = lookup.secret(ns, str(src.get("secretName", "")))
        return object_payload("secret", src, obj, ns, int(src.get("defaultMode", 0o644)))
    if isinstance(volume.get("downwardAPI"), dict):
        src = volume["downwardAPI"]
        items = [i for i in src.get("items") or [] if isinstance(i, dict)]
        return downward_payload(items, pod, ctx, int(src.get("defaultMode", 0o644)))
    if isinstance(volume.get("projected"), dict):
        return projected_payload(volume["projected"], pod, ctx, lookup, token)
    return None


def referenced_objects(pod: Obj) -> set[tuple[str, str]]:
    """(kind, name) of every configMap and secret the pod refers to (volumes, env, envFrom,
    imagePullSecrets), kind "configmap" or "secret"."""
    out: set[tuple[str, str]] = set()
    spec = common.spec(pod)
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        if isinstance(v.get("configMap"), dict):
            out.add(("configmap", str(v["configMap"].get("name", ""))))
        if isinstance(v.get("secret"), dict):
            out.add(("secret", str(v["secret"].get("secretName", ""))))
        for src in (v.get("projected") or {}).get("sources") or []:
            if isinstance(src.get("configMap"), dict):
                out.add(("configmap", str(src["configMap"].get("name", ""))))
            if isinstance(src.get("secret"), dict):
                out.add(("secret", str(src["secret"].get("name", ""))))
    for c in common.containers(pod) + common.containers(pod, "initContainers"):
        for e in c.get("envFrom") or []:
            if isinstance(e.get("configMapRef"), dict):
                out.add(("configmap", str(e["configMapRef"].get("name", ""))))
            if isinstance(e.get("secretRef"), dict):
                out.add(("secret", str(e["secretRef"].get("name", ""))))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if isinstance(vf.get("configMapKeyRef"), dict):
                out.add(("configmap", str(vf["configMapKeyRef"].get("name", ""))))
            if isinstance(vf.get("secretKeyRef"), dict):
                out.add(("secret", str(vf["secretKeyRef"].get("name", ""))))
    for ref in spec.get("imagePullSecrets") or []:
        if isinstance(ref, dict) and ref.get("name"):
            out.add(("secret", str(ref["name"])))
    return {(k, n) for k, n in out if n}
