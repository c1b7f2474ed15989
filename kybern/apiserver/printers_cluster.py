"""Column printers of the cluster-level kinds: storage classes, CSI drivers and nodes, volume
attachments, admission webhook configurations, API services and component statuses, registered
into `printers.PRINTERS` on import."""

from __future__ import annotations

from typing import Any

from kybern.apiserver.printers import AGE, NAME, Obj, age, col, dict_at, list_at, register, sub


def _name(obj: Obj) -> str:
    return str(obj["metadata"].get("name", ""))


@register(
    "storage.k8s.io",
    "StorageClass",
    (
        NAME,
        col("Provisioner", desc="provisioner indicates the type of the provisioner."),
        col(
            "ReclaimPolicy",
            desc="reclaimPolicy controls the reclaimPolicy for dynamically "
            "provisioned PersistentVolumes of this storage class.",
        ),
        col(
            "VolumeBindingMode",
            desc="volumeBindingMode indicates how PersistentVolumeClaims "
            "should be provisioned and bound.",
        ),
        col(
            "AllowVolumeExpansion",
            desc="allowVolumeExpansion shows whether the storage class allow volume expand.",
        ),
        AGE,
    ),
)
def storage_class_row(obj: Obj, now: float) -> list[Any]:
    notes = obj["metadata"].get("annotations") or {}
    default = "true" in (
        notes.get("storageclass.kubernetes.io/is-default-class"),
        notes.get("storageclass.beta.kubernetes.io/is-default-class"),
    )
    return [
        _name(obj) + (" (default)" if default else ""),
        obj.get("provisioner") or "",
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        age(obj, now),
    ]


@register(
    "storage.k8s.io",
    "CSIDriver",
    (
        NAME,
        col(
            "AttachRequired",
            "boolean",
            "attachRequired indicates this CSI volume driver requires an attach operation.",
        ),
        col(
            "PodInfoOnMount",
            "boolean",
            "podInfoOnMount indicates this CSI volume driver "
            "requires additional pod information during mount operations.",
        ),
        col(
            "StorageCapacity",
            "boolean",
            "storageCapacity indicates that the CSI volume "
            "driver wants pod scheduling to consider the storage capacity.",
        ),
        col(
            "TokenRequests",
            desc="tokenRequests indicates the CSI driver needs pods' service "
            "account tokens it is mounting volume for to do necessary authentication.",
        ),
        col(
            "RequiresRepublish",
            "boolean",
            "requiresRepublish indicates the CSI driver wants "
            "NodePublishVolume being periodically called.",
        ),
        col(
            "Modes",
            desc="volumeLifecycleModes defines what kind of volumes this CSI volume "
            "driver supports.",
        ),
        AGE,
    ),
)
def csi_driver_row(obj: Obj, now: float) -> list[Any]:
    spec = dict_at(obj, "spec")
    attach = spec.get("attachRequired")
    tokens = spec.get("tokenRequests")
    audiences = "<unset>"
    if isinstance(tokens, list):
        audiences = ",".join(str(t.get("audience", "")) for t in tokens)
    return [
        _name(obj),
        True if attach is None else bool(attach),
        bool(spec.get("podInfoOnMount")),
        bool(spec.get("storageCapacity")),
        audiences,
        bool(spec.get("requiresRepublish")),
        ",".join(spec.get("volumeLifecycleModes") or []) or "<none>",
        age(obj, now),
    ]


@register(
    "storage.k8s.io",
    "CSINode",
    (NAME, col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered "
     "on the node"), AGE),
)  # fmt: skip
def csi_node_row(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), len(list_at(obj, "spec", "drivers")), age(obj, now)]


@register(
    "storage.k8s.io",
    "VolumeAttachment",
    (
        NAME,
        col(
            "Attacher",
            desc="attacher indicates the name of the volume driver that MUST handle this request.",
            fmt="name",
        ),
        col(
            "PV",
            desc="persistentVolumeName represents the name of the persistent volume to attach.",
        ),
        col("Node", desc="nodeName represents the node that the volume should be attached to."),
        col("Attached", "boolean", "attached indicates the volume is successfully attached."),
        AGE,
    ),
)
def volume_attachment_row(obj: Obj, now: float) -> list[Any]:
    spec = dict_at(obj, "spec")
    return [
        _name(obj),
        spec.get("attacher") or "",
        sub(spec, "source", "persistentVolumeName") or "",
        spec.get("nodeName") or "",
        bool(sub(obj, "status", "attached")),
        age(obj, now),
    ]


_WEBHOOKS = (
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
)


@register("admissionregistration.k8s.io", "MutatingWebhookConfiguration", _WEBHOOKS)
@register("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", _WEBHOOKS)
def webhook_configuration_row(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), len(list_at(obj, "webhooks")), age(obj, now)]


@register(
    "apiregistration.k8s.io",
    "APIService",
    (
        NAME,
        col("Service", desc="The reference to the service that hosts this API endpoint."),
        col("Available", desc="Whether this service is available."),
        AGE,
    ),
)
def api_service_row(obj: Obj, now: float) -> list[Any]:
    svc = sub(obj, "spec", "service")
    service = f"{svc.get('namespace', '')}/{svc.get('name', '')}" if svc else "Local"
    available = "Unknown"
    for c in list_at(obj, "status", "conditions"):
        if c.get("type") == "Available":
            status = str(c.get("status") or "")
            if status != "True" and c.get("reason"):
                available = f"{status} ({c['reason']})"
            else:
                available = status
            break
    return [_name(obj), service, available, age(obj, now)]


@register(
    "",
    "ComponentStatus",
    (
        NAME,
        col("Status", desc="Status of the component conditions"),
        col("Message", desc="Message of the component conditions"),
        col("Error", desc="Error of the component conditions"),
    ),
)
def component_status_row(obj: Obj, now: float) -> list[Any]:
    """The first Healthy condition: Healthy when True, else Unhealthy; Unknown without one."""
    status, message, error = "Unknown", "", ""
    for c in list_at(obj, "conditions"):
        if isinstance(c, dict) and c.get("type") == "Healthy":
            status = "Healthy" if c.get("status") == "True" else "Unhealthy"
            message, error = str(c.get("message") or ""), str(c.get("error") or "")
            break
    return [_name(obj), status, message, error]
