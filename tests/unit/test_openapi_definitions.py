"""The Kubernetes 1.32 definitions (`kybern.api.definitions`) and the strategic-merge metadata
derived from them: the canonical OpenAPI form, lookups by group/version/kind, reachability, and
the comparison with the hand-written `BUILTIN_PATCH_META` table (every hand-written entry must
be in the derived one; what the definitions add is listed here, so a change is noticed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kybern.api import definitions, errors, patch

DEFS = definitions.load()


def test_loads_once_and_quickly() -> None:
    assert definitions.load() is DEFS
    assert definitions.is_loaded()
    assert DEFS.version == "v1.32.0"
    assert len(DEFS.schemas) > 600
    # measured ~15-25 ms; generous bound for a busy 2-core machine, and no timing flakiness
    assert definitions.load_seconds < 2.0


def test_canonical_form() -> None:
    text = json.dumps(DEFS.schemas)
    assert "#/$defs/" not in text and '"null"' not in text
    pod = DEFS.schemas["io.k8s.api.core.v1.Pod"]
    assert pod["type"] == "object"
    assert pod["properties"]["apiVersion"] == {
        "description": pod["properties"]["apiVersion"]["description"],
        "type": "string",
    }
    assert pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec"
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    containers = DEFS.schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    assert DEFS.schemas[definitions.INT_OR_STRING] == {"type": "string", "format": "int-or-string"}


def test_v3_form() -> None:
    pod = DEFS.v3_schema("io.k8s.api.core.v1.Pod")
    assert pod["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert "$ref" not in pod["properties"]["metadata"]
    items = DEFS.v3_schema("io.k8s.api.core.v1.PodList")["properties"]["items"]["items"]
    assert items == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Pod"}
    ios = DEFS.v3_schema(definitions.INT_OR_STRING)
    assert ios == {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}
    assert "#/definitions/" not in json.dumps(DEFS.v3_schema("io.k8s.api.apps.v1.DeploymentSpec"))


def test_lookups_and_closure() -> None:
    assert DEFS.name_of("apps", "v1", "Deployment") == "io.k8s.api.apps.v1.Deployment"
    assert DEFS.name_of("", "v1", "PodList") == "io.k8s.api.core.v1.PodList"
    meta = "io.k8s.apimachinery.pkg.apis.meta.v1."
    assert DEFS.name_of("apps", "v1", "DeleteOptions") == meta + "DeleteOptions"
    assert DEFS.name_of("nope", "v1", "Deployment") is None
    assert DEFS.gvks_of_kind("Event")[:2] == [("", "v1", "Event"), ("events.k8s.io", "v1", "Event")]
    reach = DEFS.closure(["io.k8s.api.apps.v1.Deployment", "missing.Type"])
    assert {"io.k8s.api.core.v1.Container", meta + "ObjectMeta", definitions.QUANTITY} <= reach
    assert "io.k8s.api.batch.v1.Job" not in reach and "missing.Type" not in reach
    for name in reach:  # closed under references
        assert DEFS.references(name) <= reach


# What the definitions add to BUILTIN_PATCH_META (all correct per the 1.32 Go struct tags).
_EPHEMERAL_PVC = {
    "spec.volumes.ephemeral.volumeClaimTemplate.metadata.finalizers": ("merge", ""),
    "spec.volumes.ephemeral.volumeClaimTemplate.metadata.ownerReferences": ("merge", "uid"),
}


def _under(prefix: str, fields: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {f"{prefix}.{k}": v for k, v in fields.items()}


_STATUS_LISTS = {
    "volumeMounts": ("merge", "mountPath"),
    "allocatedResourcesStatus": ("merge", "name"),
}
_STATUSES = {
    f"status.{s}.{f}": v
    for s in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
    for f, v in _STATUS_LISTS.items()
}
_WEBHOOKS = {"webhooks": ("merge", "name"), "webhooks.matchConditions": ("merge", "name")}
EXPECTED_EXTRAS: dict[str, dict[str, tuple[str, str]]] = {
    "Pod": {**_EPHEMERAL_PVC, **_STATUSES},
    "PodTemplate": _under("template", _EPHEMERAL_PVC),
    "CronJob": _under("spec.jobTemplate.spec.template", _EPHEMERAL_PVC),
    "StatefulSet": {
        **_under("spec.template", _EPHEMERAL_PVC),
        "spec.volumeClaimTemplates.metadata.finalizers": ("merge", ""),
        "spec.volumeClaimTemplates.metadata.ownerReferences": ("merge", "uid"),
        "spec.volumeClaimTemplates.status.conditions": ("merge", "type"),
    },
    **{k: _under("spec.template", _EPHEMERAL_PVC)
       for k in ("Deployment", "ReplicationController", "ReplicaSet", "DaemonSet", "Job")},
    "PodDisruptionBudget": {"spec.selector": ("replace", "")},
    "CustomResourceDefinition": {
        "spec.versions.schema.openAPIV3Schema.x-kubernetes-validations": ("merge", "rule")
    },
    "MutatingWebhookConfiguration": _WEBHOOKS,
    "ValidatingWebhookConfiguration": _WEBHOOKS,
    "CSINode": {"spec.drivers": ("merge", "name")},
    "ComponentStatus": {"conditions": ("merge", "type")},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(patch.BUILTIN_PATCH_META))
def test_derived_patch_meta_covers_the_builtin_table(kind: str) -> None:
    group_version = {"HorizontalPodAutoscaler": ("autoscaling", "v2")}.get(kind)
    if group_version:  # autoscaling/v1 has no status.conditions; v2 has
        derived = DEFS.patch_fields(DEFS.name_of(*group_version, kind) or "")
    else:
        derived = DEFS.kind_patch_fields(kind) or {}
    builtin = patch.BUILTIN_PATCH_META[kind].fields
    assert {k: v for k, v in builtin.items() if derived.get(k) != v} == {}
    extras = {k: v for k, v in derived.items() if k not in builtin}
    assert extras == EXPECTED_EXTRAS.get(kind, {})


def test_strategic_patch_meta_comes_from_the_definitions() -> None:
    pod = patch.strategic_patch_meta("Pod")
    assert pod.lookup(("status", "containerStatuses", "volumeMounts")) == ("merge", "mountPath")
    assert pod.lookup(("spec", "containers", "ports")) == ("merge", "containerPort")
    assert patch.strategic_patch_meta("Pod") is pod  # cached
    pdb = patch.strategic_patch_meta("PodDisruptionBudget")
    assert pdb.lookup(("spec", "selector")) == ("replace", "")
    hpa = patch.strategic_patch_meta("HorizontalPodAutoscaler", group="autoscaling", version="v2")
    assert hpa.lookup(("status", "conditions")) == ("merge", "type")
    assert patch.strategic_patch_meta("ConfigMap") is patch.BUILTIN_PATCH_META["ConfigMap"]
    assert patch.strategic_patch_meta("NoSuchKind") is patch.OBJECT_META_PATCH
    with pytest.raises(errors.StatusError) as e:
        patch.strategic_patch_meta("Widget", custom=True)
    assert e.value.code == 415


def test_webhooks_now_merge_by_name() -> None:
    doc: dict[str, Any] = {
        "metadata": {"name": "w"},
        "webhooks": [{"name": "a.example.com", "sideEffects": "None"}, {"name": "b.example.com"}],
    }
    body = {"webhooks": [{"name": "a.example.com", "timeoutSeconds": 5}]}
    meta = patch.strategic_patch_meta("ValidatingWebhookConfiguration")
    out = patch.apply_strategic_merge_patch(doc, body, meta)
    assert out["webhooks"] == [
        {"name": "a.example.com", "sideEffects": "None", "timeoutSeconds": 5},
        {"name": "b.example.com"},
    ]


def test_custom_resource_schemas() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "nullable": True}}}
    gvk = ("stable.example.com", "v1", "CronTab")
    v3 = definitions.custom_resource_schemas(DEFS, gvk, "CronTabList", schema, v3=True)
    item, listing = v3["com.example.stable.v1.CronTab"], v3["com.example.stable.v1.CronTabList"]
    assert item["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}
    ]
    assert item["properties"]["metadata"]["allOf"][0]["$ref"].endswith("meta.v1.ObjectMeta")
    assert item["properties"]["spec"] == {"type": "object", "nullable": True}
    assert set(item["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert listing["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/com.example.stable.v1.CronTab"
    }
    assert listing["required"] == ["items"]
    v2 = definitions.custom_resource_schemas(DEFS, gvk, "CronTabList", schema, v3=False)
    item2 = v2["com.example.stable.v1.CronTab"]
    assert item2["properties"]["spec"] == {"type": "object"}  # no nullable in Swagger 2.0
    assert item2["properties"]["metadata"]["$ref"].startswith("#/definitions/")
    preserved = definitions.custom_resource_schemas(DEFS, gvk, "CronTabList", None, v3=True)
    assert preserved["com.example.stable.v1.CronTab"]["x-kubernetes-preserve-unknown-fields"]
