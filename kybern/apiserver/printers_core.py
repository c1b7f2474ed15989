"""Column printers of the core/v1 kinds other than pods and nodes: services, namespaces,
secrets, service accounts, config maps, persistent volumes and claims, events (core/v1 and
events.k8s.io/v1) and resource quotas, registered into `printers.PRINTERS` on import."""

from __future__ import annotations

from typing import Any

from kybern.apiserver.printers import (
    AGE,
    NAME,
    NAME_DESC,
    Obj,
    access_modes,
    age,
    col,
    dict_at,
    format_labels,
    list_at,
    or_none,
    quantity,
    register,
    since,
    sub,
    timestamp,
)


def _lb_ingress(status: Obj) -> list[str]:
    found = {
        i.get("ip") or i.get("hostname")
        for i in list_at(status, "loadBalancer", "ingress")
        if i.get("ip") or i.get("hostname")
    }
    return sorted(found)


def service_external_ip(obj: Obj) -> str:
    spec = dict_at(obj, "spec")
    typ = spec.get("type")
    external = [ip for ip in spec.get("externalIPs") or [] if isinstance(ip, str)]
    if typ in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if typ == "LoadBalancer":
        lb = _lb_ingress(dict_at(obj, "status"))
        if external:
            return ",".join(lb + external)
        return ",".join(lb) if lb else "<pending>"
    if typ == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def service_ports(ports: Any) -> str:
    """`makePortString`: `80/TCP`, `80:30080/TCP`, comma-joined."""
    out = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        node_port = p.get("nodePort") or 0
        if node_port > 0:
            out.append(f"{p.get('port', 0)}:{node_port}/{proto}")
        else:
            out.append(f"{p.get('port', 0)}/{proto}")
    return ",".join(out)


@register(
    "",
    "Service",
    (
        NAME,
        col("Type", desc="type determines how the Service is exposed."),
        col("Cluster-IP", desc="clusterIP is the IP address of the service."),
        col(
            "External-IP",
            desc="externalIPs is a list of IP addresses for which nodes in the "
            "cluster will also accept traffic for this service.",
        ),
        col("Port(s)", desc="The list of ports that are exposed by this service."),
        AGE,
        col(
            "Selector",
            desc="Route service traffic to pods with label keys and values matching this selector.",
            priority=1,
        ),
    ),
)
def service_row(obj: Obj, now: float) -> list[Any]:
    spec = dict_at(obj, "spec")
    ips = spec.get("clusterIPs") or []
    cluster_ip = (ips[0] if ips else "") or spec.get("clusterIP") or "<none>"
    return [
        obj["metadata"].get("name", ""),
        spec.get("type") or "",
        cluster_ip,
        service_external_ip(obj),
        service_ports(spec.get("ports")) or "<none>",
        age(obj, now),
        format_labels(spec.get("selector")),
    ]


@register("", "Namespace", (NAME, col("Status", desc="The status of the namespace"), AGE))
def namespace_row(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), sub(obj, "status", "phase") or "", age(obj, now)]


@register(
    "",
    "Secret",
    (
        NAME,
        col("Type", desc="Used to facilitate programmatic handling of secret data."),
        col("Data", desc="Data contains the secret data."),
        AGE,
    ),
)
def secret_row(obj: Obj, now: float) -> list[Any]:
    data = obj.get("data")
    n = len(data) if isinstance(data, dict) else 0
    return [obj["metadata"].get("name", ""), obj.get("type") or "", n, age(obj, now)]


@register(
    "",
    "ServiceAccount",
    (NAME, col("Secrets", desc="Secrets is a list of the secrets in the same namespace."), AGE),
)
def service_account_row(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), len(list_at(obj, "secrets")), age(obj, now)]


@register(
    "",
    "ConfigMap",
    (NAME, col("Data", desc="Data contains the configuration data."), AGE),
)
def config_map_row(obj: Obj, now: float) -> list[Any]:
    n = sum(len(v) for v in (obj.get("data"), obj.get("binaryData")) if isinstance(v, dict))
    return [obj["metadata"].get("name", ""), n, age(obj, now)]


def _storage_class_of(obj: Obj, spec_value: Any) -> str:
    beta = (obj["metadata"].get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class")
    if beta is not None:
        return str(beta)
    return str(spec_value or "")


@register(
    "",
    "PersistentVolume",
    (
        NAME,
        col(
            "Capacity",
            desc="capacity is the description of the persistent volume's resources and capacity.",
        ),
        col("Access Modes", desc="accessModes contains all ways the volume can be mounted."),
        col(
            "Reclaim Policy",
            desc="persistentVolumeReclaimPolicy defines what happens to a "
            "persistent volume when released from its claim.",
        ),
        col(
            "Status",
            desc="phase indicates if a volume is available, bound to a claim, or "
            "released by a claim.",
        ),
        col(
            "Claim",
            desc="claimRef is part of a bi-directional binding between "
            "PersistentVolume and PersistentVolumeClaim.",
        ),
        col("StorageClass", desc="StorageClass of the pv"),
        col("VolumeAttributesClass", desc="VolumeAttributesClass of the pv"),
        col("Reason", desc="reason is a brief CamelCase string that describes any failure."),
        AGE,
        col(
            "VolumeMode",
            desc="volumeMode defines if a volume is intended to be used with a "
            "formatted filesystem or to remain in raw block state.",
            priority=1,
        ),
    ),
)
def persistent_volume_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    claim = ""
    ref = spec.get("claimRef")
    if isinstance(ref, dict):
        claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}"
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase")
    return [
        obj["metadata"].get("name", ""),
        quantity(dict_at(spec, "capacity").get("storage")),
        access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        phase or "",
        claim,
        _storage_class_of(obj, spec.get("storageClassName")),
        or_none(spec.get("volumeAttributesClassName"), "<unset>"),
        status.get("reason") or "",
        age(obj, now),
        or_none(spec.get("volumeMode"), "<unset>"),
    ]


@register(
    "",
    "PersistentVolumeClaim",
    (
        NAME,
        col("Status", desc="phase represents the current phase of PersistentVolumeClaim."),
        col(
            "Volume",
            desc="volumeName is the binding reference to the PersistentVolume backing this claim.",
        ),
        col("Capacity", desc="capacity represents the actual resources of the underlying volume."),
        col(
            "Access Modes",
            desc="accessModes contains the actual access modes the volume backing the PVC has.",
        ),
        col("StorageClass", desc="StorageClass of the pvc"),
        col("VolumeAttributesClass", desc="VolumeAttributesClass of the pvc"),
        AGE,
        col(
            "VolumeMode",
            desc="volumeMode defines what type of volume is required by the claim.",
            priority=1,
        ),
    ),
)
def persistent_volume_claim_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = access_modes(status.get("accessModes"))
        capacity = quantity(dict_at(status, "capacity").get("storage"))
    return [
        obj["metadata"].get("name", ""),
        phase or "",
        spec.get("volumeName") or "",
        capacity,
        modes,
        _storage_class_of(obj, spec.get("storageClassName")),
        or_none(spec.get("volumeAttributesClassName"), "<unset>"),
        age(obj, now),
        or_none(spec.get("volumeMode"), "<unset>"),
    ]


_EVENT_COLUMNS = (
    col(
        "Last Seen", desc="The time at which the most recent occurrence of this event was recorded."
    ),
    col(
        "Type", desc="Type of this event (Normal, Warning), new types could be added in the future"
    ),
    col(
        "Reason",
        desc="This should be a short, machine understandable string that gives the "
        "reason for the transition into the object's current status.",
    ),
    col("Object", desc="The object that this event is about."),
    col(
        "Subobject",
        desc="If referring to a piece of an object instead of an entire object, "
        "this string should contain a valid JSON/Go field access statement.",
        priority=1,
    ),
    col("Source", desc="The component reporting this event.", priority=1),
    col("Message", desc="A human-readable description of the status of this operation."),
    col("First Seen", desc="The time at which the event was first recorded.", priority=1),
    col("Count", desc="The number of times this event has occurred.", priority=1),
    col("Name", desc=NAME_DESC, priority=1, fmt="name"),
)


def _event_cells(
    obj: Obj, now: float, fields: tuple[str, str, str, str, str, str, str, str]
) -> list[Any]:
    """The event row; `fields` names, in this API version, the involved object, first and
    last timestamp, count, source, message, event time and series."""
    involved, first_f, last_f, count_f, source_f, message_f, time_f, series_f = fields
    first = since(obj.get(first_f), now)
    if not timestamp(obj.get(first_f)):
        first = since(obj.get(time_f), now)
    last = since(obj.get(last_f), now) if timestamp(obj.get(last_f)) else first
    count = obj.get(count_f) or 0
    series = obj.get(series_f)
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1
    ref = dict_at(obj, involved)
    kind = str(ref.get("kind") or "").lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    source = dict_at(obj, source_f)
    component = source.get("component") or obj.get("reportingController") or ""
    host = source.get("host") or obj.get("reportingInstance") or ""
    return [
        last,
        obj.get("type") or "",
        obj.get("reason") or "",
        target,
        ref.get("fieldPath") or "",
        f"{component}, {host}" if host else component,
        str(obj.get(message_f) or "").strip(),
        first,
        count,
        obj["metadata"].get("name", ""),
    ]


_CORE_EVENT = (
    "involvedObject", "firstTimestamp", "lastTimestamp", "count", "source", "message",
    "eventTime", "series",
)  # fmt: skip
_NEW_EVENT = (
    "regarding", "deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount",
    "deprecatedSource", "note", "eventTime", "series",
)  # fmt: skip


@register("", "Event", _EVENT_COLUMNS)
def event_row(obj: Obj, now: float) -> list[Any]:
    return _event_cells(obj, now, _CORE_EVENT)


@register("events.k8s.io", "Event", _EVENT_COLUMNS)
def new_event_row(obj: Obj, now: float) -> list[Any]:
    return _event_cells(obj, now, _NEW_EVENT)


@register(
    "",
    "ResourceQuota",
    (
        NAME,
        col(
            "Request",
            desc="Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        col(
            "Limit",
            desc="Limits control the maximum amount of cpu/memory that a container "
            "may use independent of contention on the node.",
        ),
        AGE,
    ),
)
def resource_quota_row(obj: Obj, now: float) -> list[Any]:
    hard, used = dict_at(obj, "status", "hard"), dict_at(obj, "status", "used")
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        text = f"{name}: {quantity(used.get(name))}/{quantity(hard[name])}"
        parts = name.split(".")
        (limits if len(parts) > 1 and parts[0] == "limits" else requests).append(text)
    return [obj["metadata"].get("name", ""), ", ".join(requests), ", ".join(limits), age(obj, now)]
