"""HorizontalPodAutoscaler in autoscaling/v1 as well as v2, through the real `kubectl` and the
PyPI `kubernetes` client against a real `kybern server`: `kubectl autoscale` (which posts v1)
works, `kubectl get` prints the same columns for either version, a v1 read shows v1's fields and
carries what v1 cannot say in annotations, server-side apply in v1 records v1 managedFields,
`kubectl explain` knows v1, a v1 validation error names v1's field, and AutoscalingV1Api
creates, reads, patches and watches."""

from __future__ import annotations

import json
from typing import Any

import yaml
from conftest import Server
from kubernetes import client as k8s
from kubernetes import watch

V1_RESOURCE = "horizontalpodautoscalers.v1.autoscaling"
METRICS = "autoscaling.alpha.kubernetes.io/metrics"
BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"


def table(server: Server, *args: str) -> tuple[list[str], list[list[str]]]:
    lines = server.kubectl("get", *args).stdout.strip().splitlines()
    return lines[0].split(), [line.split() for line in lines[1:]]


def test_kubectl_autoscale_and_get_in_both_versions(server: Server, ns: str) -> None:
    server.kubectl("create", "deployment", "web", "--image=busybox", "-n", ns)
    out = server.kubectl("autoscale", "deployment", "web", "--max=3", "--cpu-percent=50", "-n", ns)
    assert out.stdout.strip() == "horizontalpodautoscaler.autoscaling/web autoscaled"
    head, rows = table(server, "hpa", "-n", ns)
    head1, rows1 = table(server, V1_RESOURCE, "-n", ns)
    assert head == head1 == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS",
                             "AGE"]  # fmt: skip
    assert rows[0][:7] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "3", "0"]
    assert rows1[0][:7] == rows[0][:7]
    v1 = yaml.safe_load(
        server.kubectl("get", V1_RESOURCE, "web", "-n", ns, "-o", "yaml",
                       "--show-managed-fields").stdout
    )  # fmt: skip
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50,
    }  # fmt: skip
    assert v1["status"] == {"currentReplicas": 0, "desiredReplicas": 0}
    (entry,) = v1["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
        "kubectl-autoscale", "Update", "autoscaling/v1"
    )  # fmt: skip
    # kubectl expands a short name to group and resource only: `hpa.v1.autoscaling` is read
    # in the preferred version, as against kube-apiserver
    short = yaml.safe_load(server.kubectl("get", "hpa.v1.autoscaling", "web", "-n", ns,
                                          "-o", "yaml").stdout)  # fmt: skip
    assert short["apiVersion"] == "autoscaling/v2"
    v2 = server.kubectl_json("get", "hpa", "web", "-n", ns)  # the preferred version
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [
        {"type": "Resource",
         "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
    ]  # fmt: skip
    assert v2["metadata"]["resourceVersion"] == v1["metadata"]["resourceVersion"]
    assert (
        "horizontalpodautoscaler.autoscaling/web" in server.kubectl("get", "all", "-n", ns).stdout
    )


def test_a_v2_object_read_and_written_as_v1(server: Server, ns: str) -> None:
    manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "mem"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "metrics": [
                {"type": "Resource", "resource": {"name": "memory", "target": {
                    "type": "AverageValue", "averageValue": "500Mi"}}},
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
        },
    }  # fmt: skip
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    v1 = server.kubectl_json("get", V1_RESOURCE, "mem", "-n", ns)
    notes = v1["metadata"]["annotations"]
    assert json.loads(notes[METRICS]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}}
    ]
    assert json.loads(notes[BEHAVIOR])["ScaleDown"]["StabilizationWindowSeconds"] == 30
    assert "targetCPUUtilizationPercentage" not in v1["spec"]
    _, rows = table(server, V1_RESOURCE, "mem", "-n", ns)
    assert rows[0][2] == "<unknown>/500Mi"
    # edited as v1 (kubectl replace sends back what it read): nothing v2 had is lost
    v1["spec"]["maxReplicas"] = 6
    server.kubectl("replace", "-n", ns, "-f", "-", input=json.dumps(v1))
    v2 = server.kubectl_json("get", "hpa", "mem", "-n", ns)
    assert v2["spec"]["maxReplicas"] == 6
    assert v2["spec"]["metrics"] == manifest["spec"]["metrics"]  # type: ignore[index]
    assert v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert METRICS not in (v2["metadata"].get("annotations") or {})


def test_server_side_apply_explain_and_errors_in_v1(server: Server, ns: str) -> None:
    manifest = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "applied"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 4,
            "targetCPUUtilizationPercentage": 60,
        },
    }
    server.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(manifest))
    got = server.kubectl_json("get", V1_RESOURCE, "applied", "-n", ns, "--show-managed-fields")
    (entry,) = got["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
        "kubectl", "Apply", "autoscaling/v1"
    )  # fmt: skip
    assert "f:targetCPUUtilizationPercentage" in entry["fieldsV1"]["f:spec"]
    explained = server.kubectl("explain", "hpa.spec", "--api-version=autoscaling/v1").stdout
    assert "VERSION:    v1" in explained and "targetCPUUtilizationPercentage" in explained
    bad = {**manifest, "metadata": {"name": "bad"},
           "spec": {**manifest["spec"], "targetCPUUtilizationPercentage": 0}}  # type: ignore[dict-item]  # fmt: skip
    out = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode == 1
    assert (
        'The HorizontalPodAutoscaler "bad" is invalid: spec.targetCPUUtilizationPercentage: '
        "Invalid value: 0: must be greater than 0"
    ) in out.stderr


def test_python_client_autoscaling_v1(server: Server, ns: str) -> None:
    api = k8s.AutoscalingV1Api(server.client())
    body = k8s.V1HorizontalPodAutoscaler(
        metadata=k8s.V1ObjectMeta(name="py"),
        spec=k8s.V1HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s.V1CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="web"
            ),
            max_replicas=4,
            target_cpu_utilization_percentage=30,
        ),
    )
    created = api.create_namespaced_horizontal_pod_autoscaler(ns, body)
    assert created.spec.min_replicas == 1 and created.status.desired_replicas == 0
    got = api.read_namespaced_horizontal_pod_autoscaler("py", ns)
    assert got.spec.target_cpu_utilization_percentage == 30
    patched = api.patch_namespaced_horizontal_pod_autoscaler(
        "py", ns, {"spec": {"targetCPUUtilizationPercentage": 45}}
    )
    assert patched.spec.target_cpu_utilization_percentage == 45
    status = api.patch_namespaced_horizontal_pod_autoscaler_status(
        "py", ns, {"status": {"currentReplicas": 2, "desiredReplicas": 2,
                              "currentCPUUtilizationPercentage": 12}}
    )  # fmt: skip
    assert status.status.current_cpu_utilization_percentage == 12
    v2 = k8s.AutoscalingV2Api(server.client()).read_namespaced_horizontal_pod_autoscaler("py", ns)
    assert v2.spec.metrics[0].resource.target.average_utilization == 45
    assert v2.status.current_metrics[0].resource.current.average_utilization == 12
    # a watch from the create's resourceVersion replays the two changes, as v1
    seen: list[Any] = []
    w = watch.Watch()
    for ev in w.stream(
        api.list_namespaced_horizontal_pod_autoscaler,
        ns,
        resource_version=created.metadata.resource_version,
        timeout_seconds=20,
    ):
        seen.append(ev)
        if len(seen) == 2:
            w.stop()
    assert [e["type"] for e in seen] == ["MODIFIED", "MODIFIED"]
    assert seen[0]["object"].spec.target_cpu_utilization_percentage == 45
    assert seen[1]["object"].status.current_cpu_utilization_percentage == 12
    assert seen[1]["object"].metadata.resource_version == status.metadata.resource_version
    api.delete_namespaced_horizontal_pod_autoscaler("py", ns)
    names = [i.metadata.name for i in api.list_namespaced_horizontal_pod_autoscaler(ns).items]
    assert "py" not in names
