"""Generate `kybern/api/schema_data.json`, the field tree of every built-in kind, from the models
of the PyPI `kubernetes` client (dev-time only: `.venv/bin/python scripts/gen_schema.py`): each
`kubernetes.client.models.<Model>` has `openapi_types` (python attr -> `V1ObjectMeta`,
`List[V1Container]`, `Dict[str, str]`, `object`, ...) and `attribute_map` (python attr -> JSON
name), and the output is `{"kinds": {"<group>/<version>/<Kind>": model}, "types": {model:
{"fields": {jsonName: typeref}, "go": "v1.PodSpec", "required": [jsonName, ...]}}}`. The client
declares IntOrString and free-form JSON both as `object`, Quantity as `str` and MicroTime as
`datetime`: the tables below say which is which, and the script fails on any `object` field it
does not know, so a client upgrade forces a review."""

# The typeref grammar, read by `kybern.api.schema`:
#
#   string | integer | number | boolean | bytes (base64 string)
#   date-time       metav1.Time: an RFC3339 string
#   micro-time      metav1.MicroTime: RFC3339 with exactly six fractional digits
#   object          free-form JSON, never descended into (RawExtension, FieldsV1, JSON)
#   int-or-string   intstr.IntOrString: a string or an integer
#   quantity        resource.Quantity: a string or a number in quantity syntax
#   [T]             list of T          {T}   map of string to T
#   Model           a key of "types"
#   A|B             union, chosen by the JSON kind of the value (object / array / boolean)
#   gotype:T        T, named `gotype` in type-error messages (used for unions)
#   ~T              T decoded by a custom Go unmarshaler: unknown fields below are dropped but
#                   not reported (Go's strict decoding does not reach inside such values)

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from kubernetes.client import models

OUT = Path(__file__).resolve().parent.parent / "kybern" / "api" / "schema_data.json"

KINDS: dict[tuple[str, str, str], str] = {
    ("", "v1", "Namespace"): "V1Namespace",
    ("", "v1", "Pod"): "V1Pod",
    ("", "v1", "Node"): "V1Node",
    ("", "v1", "Service"): "V1Service",
    ("", "v1", "Endpoints"): "V1Endpoints",
    ("", "v1", "ConfigMap"): "V1ConfigMap",
    ("", "v1", "Secret"): "V1Secret",
    ("", "v1", "ServiceAccount"): "V1ServiceAccount",
    ("", "v1", "Event"): "CoreV1Event",
    ("", "v1", "PersistentVolume"): "V1PersistentVolume",
    ("", "v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("", "v1", "ReplicationController"): "V1ReplicationController",
    ("", "v1", "LimitRange"): "V1LimitRange",
    ("", "v1", "ResourceQuota"): "V1ResourceQuota",
    ("", "v1", "PodTemplate"): "V1PodTemplate",
    ("", "v1", "Binding"): "V1Binding",
    ("apps", "v1", "Deployment"): "V1Deployment",
    ("apps", "v1", "ReplicaSet"): "V1ReplicaSet",
    ("apps", "v1", "StatefulSet"): "V1StatefulSet",
    ("apps", "v1", "DaemonSet"): "V1DaemonSet",
    ("apps", "v1", "ControllerRevision"): "V1ControllerRevision",
    ("batch", "v1", "Job"): "V1Job",
    ("batch", "v1", "CronJob"): "V1CronJob",
    ("coordination.k8s.io", "v1", "Lease"): "V1Lease",
    ("events.k8s.io", "v1", "Event"): "EventsV1Event",
    ("discovery.k8s.io", "v1", "EndpointSlice"): "V1EndpointSlice",
    ("rbac.authorization.k8s.io", "v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("storage.k8s.io", "v1", "StorageClass"): "V1StorageClass",
    ("storage.k8s.io", "v1", "CSIDriver"): "V1CSIDriver",
    ("storage.k8s.io", "v1", "CSINode"): "V1CSINode",
    ("storage.k8s.io", "v1", "VolumeAttachment"): "V1VolumeAttachment",
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
    ("apiregistration.k8s.io", "v1", "APIService"): "V1APIService",
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
    ): "V1MutatingWebhookConfiguration",
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
    ): "V1ValidatingWebhookConfiguration",
    ("autoscaling", "v1", "Scale"): "V1Scale",
    ("policy", "v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io", "v1", "Ingress"): "V1Ingress",
    ("networking.k8s.io", "v1", "IngressClass"): "V1IngressClass",
    ("networking.k8s.io", "v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("scheduling.k8s.io", "v1", "PriorityClass"): "V1PriorityClass",
    ("node.k8s.io", "v1", "RuntimeClass"): "V1RuntimeClass",
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): "V1HorizontalPodAutoscaler",
    ("autoscaling", "v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("certificates.k8s.io", "v1", "CertificateSigningRequest"): "V1CertificateSigningRequest",
    ("storage.k8s.io", "v1", "CSIStorageCapacity"): "V1CSIStorageCapacity",
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
    ): "V1ValidatingAdmissionPolicy",
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
    ): "V1ValidatingAdmissionPolicyBinding",
    ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema"): "V1FlowSchema",
    (
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
    ): "V1PriorityLevelConfiguration",
}

# intstr.IntOrString fields (declared `object` by the client).
INT_OR_STRING = {
    ("V1HTTPGetAction", "port"),
    ("V1TCPSocketAction", "port"),
    ("V1ServicePort", "targetPort"),
    ("V1RollingUpdateDeployment", "maxSurge"),
    ("V1RollingUpdateDeployment", "maxUnavailable"),
    ("V1RollingUpdateDaemonSet", "maxSurge"),
    ("V1RollingUpdateDaemonSet", "maxUnavailable"),
    ("V1RollingUpdateStatefulSetStrategy", "maxUnavailable"),
    ("V1PodDisruptionBudgetSpec", "minAvailable"),
    ("V1PodDisruptionBudgetSpec", "maxUnavailable"),
    ("V1NetworkPolicyPort", "port"),
}

# Free-form JSON (RawExtension, FieldsV1, apiextensions JSON): kept as-is.
FREE_FORM = {
    ("V1ControllerRevision", "data"),
    ("V1ManagedFieldsEntry", "fieldsV1"),
    ("V1JSONSchemaProps", "default"),
    ("V1JSONSchemaProps", "example"),
    ("V1JSONSchemaProps", "enum"),
}

# resource.Quantity fields and ResourceList maps (declared `str` / `Dict[str, str]`).
QUANTITY = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
    ("V1EmptyDirVolumeSource", "sizeLimit"),
    ("V1ResourceFieldSelector", "divisor"),
    ("V1ContainerStatus", "allocatedResources"),
    ("V1PodSpec", "overhead"),
    ("V1PodStatus", "allocatedResources"),
    ("V1NodeStatus", "capacity"),
    ("V1NodeStatus", "allocatable"),
    ("V1PersistentVolumeSpec", "capacity"),
    ("V1PersistentVolumeClaimStatus", "capacity"),
    ("V1PersistentVolumeClaimStatus", "allocatedResources"),
    ("V1LimitRangeItem", "max"),
    ("V1LimitRangeItem", "min"),
    ("V1LimitRangeItem", "default"),
    ("V1LimitRangeItem", "defaultRequest"),
    ("V1LimitRangeItem", "maxLimitRequestRatio"),
    ("V1ResourceQuotaSpec", "hard"),
    ("V1ResourceQuotaStatus", "hard"),
    ("V1ResourceQuotaStatus", "used"),
    ("V1NodeAllocatableMappedResources", "quantity"),
    ("V1NodeAllocatableOverheadResources", "perContainer"),
    ("V1NodeAllocatableOverheadResources", "perPod"),
    ("V1Overhead", "podFixed"),
    ("V1CSIStorageCapacity", "capacity"),
    ("V1CSIStorageCapacity", "maximumVolumeSize"),
    ("V2MetricTarget", "averageValue"),
    ("V2MetricTarget", "value"),
    ("V2MetricValueStatus", "averageValue"),
    ("V2MetricValueStatus", "value"),
}

# metav1.MicroTime fields (declared `datetime`, like metav1.Time): RFC3339 with exactly six
# fractional digits.
MICRO_TIME = {
    ("CoreV1Event", "eventTime"),
    ("CoreV1EventSeries", "lastObservedTime"),
    ("EventsV1Event", "eventTime"),
    ("EventsV1EventSeries", "lastObservedTime"),
    ("V1LeaseSpec", "acquireTime"),
    ("V1LeaseSpec", "renewTime"),
}

# Fields whose typeref is given whole: the apiextensions union types and empty structs.
OVERRIDES = {
    ("V1JSONSchemaProps", "items"): (
        "~v1.JSONSchemaPropsOrArray:V1JSONSchemaProps|[V1JSONSchemaProps]"
    ),
    ("V1JSONSchemaProps", "additionalProperties"): (
        "~v1.JSONSchemaPropsOrBool:V1JSONSchemaProps|boolean"
    ),
    ("V1JSONSchemaProps", "additionalItems"): "~v1.JSONSchemaPropsOrBool:V1JSONSchemaProps|boolean",
    ("V1JSONSchemaProps", "dependencies"): (
        "{~v1.JSONSchemaPropsOrStringArray:V1JSONSchemaProps|[string]}"
    ),
    ("V1CustomResourceSubresources", "status"): "V1CustomResourceSubresourceStatus",
    ("V1alpha3WorkloadPodGroupDisruptionMode", "all"): "V1alpha3EmptyStruct",
    ("V1alpha3WorkloadPodGroupDisruptionMode", "single"): "V1alpha3EmptyStruct",
    ("V1alpha3WorkloadPodGroupSchedulingPolicy", "basic"): "V1alpha3EmptyStruct",
}

# Structs with no fields, which the client declares as `object`.
SYNTHETIC = {
    "V1CustomResourceSubresourceStatus": "v1.CustomResourceSubresourceStatus",
    "V1alpha3EmptyStruct": "v1alpha3.EmptyStruct",
}

_PRIMITIVES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "datetime": "date-time",
    "date": "date-time",
    "bytes": "bytes",
    "object": "object",
}
_MODEL_NAME = re.compile(r"^(?:[A-Z][a-z]+)*?(V\d+(?:alpha\d+|beta\d+)?)([A-Z].*)$")


def go_name(model: str) -> str:
    """`V1PodSpec` -> `v1.PodSpec`, `CoreV1EventSeries` -> `v1.EventSeries`."""
    m = _MODEL_NAME.match(model)
    if not m:
        raise SystemExit(f"cannot derive a Go name from model {model}")
    return f"{m.group(1).lower()}.{m.group(2)}"


def convert(tp: str, refs: list[str]) -> str:
    """A client type string as a typeref; model names met are appended to `refs`."""
    tp = tp.strip()
    if tp.startswith(("List[", "list[")):
        return "[" + convert(tp[5:-1], refs) + "]"
    if tp.startswith(("Dict[", "dict(")):
        key, _, val = tp[5:-1].partition(",")
        if key.strip() != "str":
            raise SystemExit(f"unsupported map key in {tp}")
        return "{" + convert(val, refs) + "}"
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if not hasattr(models, tp):
        raise SystemExit(f"unknown client type {tp}")
    refs.append(tp)
    return tp


def field_ref(model: str, json_name: str, tp: str, refs: list[str]) -> str:
    key = (model, json_name)
    if key in OVERRIDES:
        ref = OVERRIDES[key]
        refs.extend(n for n in re.findall(r"\b[A-Z]\w+", ref) if hasattr(models, n))
        return ref
    ref = convert(tp, refs)
    if key in INT_OR_STRING:
        if ref != "object":
            raise SystemExit(f"{model}.{json_name}: expected object for IntOrString, got {tp}")
        return "int-or-string"
    if key in MICRO_TIME:
        if ref != "date-time":
            raise SystemExit(f"{model}.{json_name}: expected datetime for MicroTime, got {tp}")
        return "micro-time"
    if key in QUANTITY:
        if ref not in ("string", "{string}"):
            raise SystemExit(f"{model}.{json_name}: expected str for Quantity, got {tp}")
        return ref.replace("string", "quantity")
    if "object" in ref and key not in FREE_FORM:
        raise SystemExit(f"{model}.{json_name} ({tp}): classify it in gen_schema.py")
    return ref


def required_fields(cls: Any) -> list[str]:
    """JSON names of the fields the client marks required (pydantic models only)."""
    fields = getattr(cls, "model_fields", None)
    if not fields:
        return []
    by_alias = {f.alias or name: f for name, f in fields.items()}
    out = []
    for attr, json_name in cls.attribute_map.items():
        f = fields.get(attr) or by_alias.get(attr)
        if f is not None and f.is_required():
            out.append(json_name)
    return sorted(out)


def build() -> dict[str, Any]:
    types: dict[str, Any] = {}
    pending = list(KINDS.values())
    while pending:
        model = pending.pop()
        if model in types:
            continue
        cls = getattr(models, model)
        refs: list[str] = []
        fields = {
            cls.attribute_map[attr]: field_ref(model, cls.attribute_map[attr], tp, refs)
            for attr, tp in cls.openapi_types.items()
        }
        entry: dict[str, Any] = {"fields": fields, "go": go_name(model)}
        req = required_fields(cls)
        if req:
            entry["required"] = req
        types[model] = entry
        pending.extend(r for r in refs if r not in types)
    for name, go in SYNTHETIC.items():
        types[name] = {"fields": {}, "go": go}
    for model, json_name in INT_OR_STRING | QUANTITY | MICRO_TIME | FREE_FORM | set(OVERRIDES):
        if model in types and json_name not in types[model]["fields"]:
            raise SystemExit(f"{model}.{json_name} listed but not a field")
    kinds = {f"{g}/{v}/{k}": model for (g, v, k), model in KINDS.items()}
    return {"kinds": kinds, "types": types}


def main() -> int:
    data = build()
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    OUT.write_text(text + "\n", encoding="utf-8")
    n_fields = sum(len(t["fields"]) for t in data["types"].values())
    print(f"wrote {OUT}: {len(data['types'])} types, {n_fields} fields, {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
