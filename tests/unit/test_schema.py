"""Tests of `kybern.api.schema`: realistic objects of many kinds decode with no unknown fields and
come back as the very same object; unknown fields at every depth (struct fields, list items, map
values, the custom-unmarshaled JSONSchemaProps unions) are dropped and reported in document order
with Kubernetes' paths; wrong JSON types give kube-apiserver's 400 messages; `null` is accepted
anywhere, decoded as Go does; and a synthetic object filling every field of every type
round-trips clean."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from kybern.api import errors, schema

TS = "2024-05-01T10:00:00Z"

META = """
name: web
namespace: default
uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427
resourceVersion: "42"
generation: 2
creationTimestamp: "2024-05-01T10:00:00Z"
labels: {app: web}
annotations: {note: x}
ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: rs, uid: u, controller: true}]
finalizers: [example.com/f]
managedFields:
- manager: kubectl
  operation: Update
  apiVersion: v1
  time: "2024-05-01T10:00:00Z"
  fieldsType: FieldsV1
  fieldsV1: {"f:metadata": {"f:labels": {"f:app": {}}}, any thing: [1, null]}
"""

POD_SPEC = """
restartPolicy: Always
terminationGracePeriodSeconds: 30
serviceAccountName: default
nodeSelector: {kubernetes.io/os: linux}
securityContext: {runAsNonRoot: true, runAsUser: 1000, fsGroup: 2000}
tolerations: [{key: k, operator: Exists, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]
initContainers: [{name: init, image: busybox, command: [sh, -c, "true"]}]
containers:
- name: web
  image: nginx:1.25
  imagePullPolicy: IfNotPresent
  args: [--port, "8080"]
  env:
  - {name: A, value: "1"}
  - {name: P, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
  - {name: L, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
  envFrom: [{configMapRef: {name: cfg}}]
  ports: [{name: http, containerPort: 8080, protocol: TCP}]
  resources:
    limits: {cpu: 1, memory: 512Mi, nvidia.com/gpu: 1}
    requests: {cpu: 0.25, memory: 128Mi}
  livenessProbe: {httpGet: {path: /healthz, port: http, scheme: HTTP}, initialDelaySeconds: 5}
  readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 10}
  startupProbe: {exec: {command: ["true"]}, failureThreshold: 30}
  lifecycle: {preStop: {sleep: {seconds: 5}}}
  volumeMounts: [{name: cfg, mountPath: /etc/cfg, readOnly: true}]
  securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
volumes:
- {name: cfg, configMap: {name: cfg, defaultMode: 420}}
- {name: tmp, emptyDir: {sizeLimit: 1Gi}}
- {name: data, persistentVolumeClaim: {claimName: data}}
- {name: tok, projected: {sources: [{serviceAccountToken: {path: t, expirationSeconds: 3600}}]}}
"""

POD_STATUS = """
phase: Running
podIP: 10.0.0.5
podIPs: [{ip: 10.0.0.5}]
hostIP: 192.168.1.2
qosClass: Burstable
startTime: "2024-05-01T10:00:00Z"
conditions: [{type: Ready, status: "True", lastTransitionTime: "2024-05-01T10:00:00Z"}]
containerStatuses:
- name: web
  ready: true
  restartCount: 0
  image: nginx:1.25
  imageID: sha256:abc
  containerID: containerd://abc
  started: true
  state: {running: {startedAt: "2024-05-01T10:00:00Z"}}
  lastState: {}
  allocatedResources: {cpu: 250m}
"""

DEPLOYMENT_SPEC = """
replicas: 3
selector: {matchLabels: {app: web}}
strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}}
template: {metadata: {labels: {app: web}}}
"""

DEPLOYMENT_STATUS = """
observedGeneration: 2
replicas: 3
readyReplicas: 3
conditions: [{type: Available, status: "True", lastUpdateTime: "2024-05-01T10:00:00Z"}]
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ClusterIP
  selector: {app: web}
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
  - {name: metrics, port: 9090, targetPort: 9090}
  sessionAffinity: None
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  conversion: {strategy: None}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}, scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.n}}
    additionalPrinterColumns: [{name: Size, type: integer, jsonPath: .spec.size}]
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations: [{rule: self.size > 0, message: m}]
            properties:
              size: {type: integer, minimum: 1, maximum: 10, default: 3}
              port: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}]}
              tags: {type: array, items: {type: string, enum: [a, b]}}
              extra: {type: object, additionalProperties: {type: string}}
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
              any: {additionalProperties: true, example: {x: [1, y]}}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
status:
  acceptedNames: {plural: widgets, kind: Widget}
  storedVersions: [v1]
  conditions: [{type: Established, status: "True", lastTransitionTime: "2024-05-01T10:00:00Z"}]
"""


def load(text: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(text)
    return obj


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": load(META),
        "spec": load(POD_SPEC),
        "status": load(POD_STATUS),
    }


def deployment() -> dict[str, Any]:
    spec = load(DEPLOYMENT_SPEC)
    spec["template"]["spec"] = load(POD_SPEC)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": load(META),
        "spec": spec,
        "status": load(DEPLOYMENT_STATUS),
    }


def crd() -> dict[str, Any]:
    return load(CRD)


CRD_GVK = ("apiextensions.k8s.io", "v1", "CustomResourceDefinition")


def spec_schema(obj: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    return props["spec"]


MANIFESTS = """
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
spec: {podCIDR: 10.0.0.0/24, taints: [{key: k, effect: NoSchedule}]}
status:
  capacity: {cpu: "4", memory: 16Gi, pods: 110}
  allocatable: {cpu: 3800m, memory: 15Gi}
  addresses: [{type: InternalIP, address: 192.168.1.2}]
  conditions: [{type: Ready, status: "True", lastHeartbeatTime: "2024-05-01T10:00:00Z"}]
  nodeInfo: {kubeletVersion: v1.30.0, architecture: amd64}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
type: Opaque
data: {password: aHVudGVyMg==, empty: ""}
stringData: {user: admin}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {a: b}
binaryData: {b: AAEC}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres, resources: {limits: {cpu: 2}}}]}
  updateStrategy: {rollingUpdate: {partition: 0, maxUnavailable: 10%}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      backoffLimit: 2
      template: {spec: {restartPolicy: Never, containers: [{name: j, image: busybox}]}}
status: {lastScheduleTime: "2024-05-01T10:00:00Z", active: [{kind: Job, name: j}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec: {minAvailable: 50%, selector: {matchLabels: {app: web}}}
status: {disruptedPods: {web-0: "2024-05-01T10:00:00Z"}, currentHealthy: 1}
---
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: e}
eventTime: "2024-05-01T10:00:00.123456Z"
reason: Started
regarding: {kind: Pod, name: web-0}
series: {count: 2, lastObservedTime: "2024-05-01T10:00:01.000001Z"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: w}
webhooks:
- name: w.example.com
  clientConfig:
    service: {name: s, namespace: n, port: 443}
    caBundle: LS0tLS1CRUdJTg==
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
spec: {holderIdentity: a, renewTime: "2024-05-01T10:00:00.000000Z", leaseDurationSeconds: 15}
"""


def gvk_of(obj: dict[str, Any]) -> tuple[str, str, str]:
    group, _, version = obj["apiVersion"].rpartition("/")
    return group, version, obj["kind"]


REALISTIC = [pod(), deployment(), load(SERVICE), crd(), *yaml.safe_load_all(MANIFESTS)]


@pytest.mark.parametrize("obj", REALISTIC, ids=lambda o: str(o["kind"]))
def test_realistic_objects_are_clean_and_unchanged(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    result, unknown = schema.normalize(*gvk_of(obj), obj)
    assert unknown == []
    assert result is obj
    assert obj == before


ALL_KINDS = """
v1 Namespace Pod Node Service Endpoints ConfigMap Secret ServiceAccount Event PersistentVolume
v1 PersistentVolumeClaim ReplicationController LimitRange ResourceQuota PodTemplate Binding
apps/v1 Deployment ReplicaSet StatefulSet DaemonSet ControllerRevision
batch/v1 Job CronJob
coordination.k8s.io/v1 Lease
events.k8s.io/v1 Event
discovery.k8s.io/v1 EndpointSlice
rbac.authorization.k8s.io/v1 Role ClusterRole RoleBinding ClusterRoleBinding
storage.k8s.io/v1 StorageClass CSIDriver CSINode VolumeAttachment
apiextensions.k8s.io/v1 CustomResourceDefinition
apiregistration.k8s.io/v1 APIService
admissionregistration.k8s.io/v1 MutatingWebhookConfiguration ValidatingWebhookConfiguration
autoscaling/v1 Scale
policy/v1 PodDisruptionBudget
"""


def test_kinds_and_accessors() -> None:
    for line in ALL_KINDS.strip().splitlines():
        api_version, *kinds = line.split()
        group, _, version = api_version.rpartition("/")
        assert all(schema.has_schema(group, version, k) for k in kinds), line
    assert not schema.has_schema("", "v1", "PodList")
    assert not schema.has_schema("example.com", "v1", "Widget")
    assert schema.type_for_kind("", "v1", "Pod") == "V1Pod"
    assert schema.type_for_kind("events.k8s.io", "v1", "Event") != schema.type_for_kind(
        "", "v1", "Event"
    )
    spec = schema.fields_of("V1PodSpec")
    assert spec is not None and spec["containers"] == "[V1Container]"
    assert "containers" in schema.required_of("V1PodSpec")
    props = schema.fields_of("V1JSONSchemaProps")
    assert props is not None
    assert {"$ref", "$schema", "x-kubernetes-preserve-unknown-fields", "not"} <= props.keys()
    assert schema.fields_of("Nope") is None and schema.required_of("Nope") == []
    obj = {"metadata": {"name": "x"}, "bogus": 1}
    assert schema.normalize("example.com", "v1", "Widget", obj) == (obj, [])


def test_unknown_fields_at_every_depth_are_pruned_in_document_order() -> None:
    obj = deployment()
    obj["zTop"] = 1
    obj["metadata"]["bogus"] = {"deep": 1}
    spec = obj["spec"]
    spec["replica"] = 3
    tmpl = spec["template"]
    tmpl["metadata"]["containers"] = []
    c = tmpl["spec"]["containers"][0]
    c["restartPolicyy"] = "x"
    c["env"][1]["valueFrom"]["fieldRef"]["extra"] = True
    c["ports"][0]["hostPortt"] = 1
    tmpl["spec"]["volumes"][1]["emptyDir"]["medium2"] = "Memory"
    obj["status"]["conditions"][0]["why"] = "?"
    before = copy.deepcopy(obj)

    result, unknown = schema.normalize("apps", "v1", "Deployment", obj)

    assert unknown == [
        "metadata.bogus",
        "spec.template.metadata.containers",
        "spec.template.spec.containers[0].env[1].valueFrom.fieldRef.extra",
        "spec.template.spec.containers[0].ports[0].hostPortt",
        "spec.template.spec.containers[0].restartPolicyy",
        "spec.template.spec.volumes[1].emptyDir.medium2",
        "spec.replica",
        "status.conditions[0].why",
        "zTop",
    ]
    assert obj == before  # input untouched
    assert result == deployment()
    # Unchanged subtrees are shared, changed ones copied.
    assert result["spec"]["selector"] is obj["spec"]["selector"]
    assert result["spec"]["template"]["spec"]["containers"][0]["resources"] is c["resources"]
    assert result["spec"] is not obj["spec"]


def test_unknown_fields_in_maps_of_objects() -> None:
    obj = crd()
    spec_props = spec_schema(obj)
    spec_props["properties"]["size"]["minimun"] = 0
    spec_props["typo"] = "object"
    result, unknown = schema.normalize(*CRD_GVK, obj)
    base = "spec.versions[0].schema.openAPIV3Schema.properties.spec"
    assert unknown == [f"{base}.properties.size.minimun", f"{base}.typo"]
    assert result == crd()


def test_custom_unmarshaled_unions_prune_without_reporting() -> None:
    obj = crd()
    spec_props = spec_schema(obj)
    spec_props["properties"]["tags"]["items"]["bogus"] = 1
    spec_props["properties"]["extra"]["additionalProperties"]["bogus"] = 2
    result, unknown = schema.normalize(*CRD_GVK, obj)
    assert unknown == []
    assert result == crd()
    # The array form of `items` and the boolean form of `additionalProperties` are accepted.
    spec_props["properties"]["tags"]["items"] = [{"type": "string", "x": 1}]
    spec_props["properties"]["extra"]["additionalProperties"] = False
    result, unknown = schema.normalize(*CRD_GVK, obj)
    assert unknown == []
    assert spec_schema(result)["properties"]["tags"]["items"] == [{"type": "string"}]


def test_free_form_fields_are_not_descended() -> None:
    obj = {"metadata": {"name": "c"}, "revision": 1, "data": {"unknown": {"x": [1, {"y": 2}]}}}
    assert schema.normalize("apps", "v1", "ControllerRevision", obj) == (obj, [])
    crd_obj = crd()
    spec_schema(crd_obj)["properties"]["size"]["default"] = {"whatever": ["a", 1, None]}
    assert schema.normalize(*CRD_GVK, crd_obj)[1] == []


def test_null_is_accepted_anywhere() -> None:
    obj = json.loads(
        '{"apiVersion": null, "metadata": {"name": "p", "labels": {"a": null},'
        ' "creationTimestamp": null}, "spec": {"nodeSelector": null, "containers": [null,'
        ' {"name": "c", "image": null, "args": [null, "x"], "resources": {"limits": {"cpu": null}},'
        ' "ports": [{"containerPort": null}], "livenessProbe": {"httpGet": {"port": null}}}]},'
        ' "status": null}'
    )
    before = copy.deepcopy(obj)
    result = {  # as Go decodes them: null fields absent, null items and map values zero
        "metadata": {"name": "p", "labels": {"a": ""}, "creationTimestamp": None},
        "spec": {
            "containers": [
                {},
                {
                    "name": "c",
                    "args": ["", "x"],
                    "resources": {"limits": {"cpu": "0"}},
                    "ports": [{}],
                    "livenessProbe": {"httpGet": {}},
                },
            ]
        },
    }
    assert schema.normalize("", "v1", "Pod", obj) == (result, [])
    assert obj == before


def test_int_or_string_and_quantity_accept_strings_and_numbers() -> None:
    for port in (80, "http"):
        svc = {"spec": {"ports": [{"port": 80, "targetPort": port}]}}
        assert schema.normalize("", "v1", "Service", svc)[1] == []
    for qty in (1, 0.5, "100m", "1Gi", "1e3", "1.5", "+2", "5E", " 3 "):
        p = {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": qty}}}]}}
        assert schema.normalize("", "v1", "Pod", p)[1] == []
    for surge in (1, "25%"):
        d = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": surge}}}}
        assert schema.normalize("apps", "v1", "Deployment", d)[1] == []


def bad(group: str, kind: str, obj: dict[str, Any]) -> str:
    with pytest.raises(errors.StatusError) as exc:
        schema.normalize(group, "v1", kind, obj)
    assert exc.value.code == 400
    assert exc.value.reason == "BadRequest"
    prefix = f'{kind} in version "v1" cannot be handled as a {kind}: '
    assert exc.value.message.startswith(prefix)
    return exc.value.message[len(prefix) :]


def go(value: str, field: str, go_type: str) -> str:
    return f"json: cannot unmarshal {value} into Go struct field {field} of type {go_type}"


# kind | body | expected error: `value Struct.field.path GoType` (a Go UnmarshalTypeError, `_`
# standing for a space in the value) or, after `=`, the start of the message.
WRONG_TYPES = """
Pod | {"spec": {"containers": "x"}} | string PodSpec.spec.containers []v1.Container
Pod | {"spec": {"containers": ["x"]}} | string PodSpec.spec.containers v1.Container
Pod | {"spec": "x"} | string Pod.spec v1.PodSpec
Pod | {"spec": {"containers": [{}, {"image": 5}]}} | number Container.spec.containers.image string
Pod | {"metadata": {"labels": {"a": 1}}} | number ObjectMeta.metadata.labels string
Pod | {"metadata": {"labels": ["a"]}} | array ObjectMeta.metadata.labels map[string]string
Pod | {"metadata": {"generation": true}} | bool ObjectMeta.metadata.generation int64
Pod | {"metadata": {"creationTimestamp": 5}} | number ObjectMeta.metadata.creationTimestamp string
Pod | {"metadata": {"creationTimestamp": "2024-13-01T00:00:00Z"}} | =parsing time
Pod | {"metadata": {"creationTimestamp": "x"}} | =parsing time "x" as "2006-01-02T15:04:05Z07:00"
Deployment | {"spec": {"replicas": "3"}} | string DeploymentSpec.spec.replicas int32
Deployment | {"spec": {"replicas": 1.5}} | number_1.5 DeploymentSpec.spec.replicas int32
Deployment | {"spec": {"paused": "true"}} | string DeploymentSpec.spec.paused bool
Service | {"spec": {"ports": [{"targetPort": true}]}} | bool ServicePort.spec.ports.targetPort int32
Secret | {"data": {"k": 5}} | number Secret.data []uint8
Secret | {"data": {"k": "not base64!"}} | =illegal base64 data at input byte 3
"""
GROUPS = {"Deployment": "apps", "CustomResourceDefinition": "apiextensions.k8s.io"}


@pytest.mark.parametrize("row", WRONG_TYPES.strip().splitlines())
def test_wrong_types_read_like_go_json_errors(row: str) -> None:
    kind, body, expected = row.split(" | ")
    if expected.startswith("="):
        message = expected[1:]
    else:
        value, field, go_type = expected.split()
        message = go(value.replace("_", " "), field, go_type)
    assert bad(GROUPS.get(kind, ""), kind, json.loads(body)).startswith(message)


def test_wrong_types_in_crd_schemas() -> None:
    path = "spec.versions.schema.openAPIV3Schema"
    for schema_props, expected in [
        (
            {"properties": {"a": "x"}},
            go("string", f"JSONSchemaProps.{path}.properties", "v1.JSONSchemaProps"),
        ),
        (
            {"additionalProperties": "x"},
            go(
                "string", f"JSONSchemaProps.{path}.additionalProperties", "v1.JSONSchemaPropsOrBool"
            ),
        ),
    ]:
        crd_obj = {"spec": {"versions": [{"schema": {"openAPIV3Schema": schema_props}}]}}
        assert bad(CRD_GVK[0], CRD_GVK[2], crd_obj) == expected


def test_micro_time_needs_six_fractional_digits() -> None:
    event = {"eventTime": "2024-05-01T10:00:00.123456Z"}
    assert schema.normalize("", "v1", "Event", event)[1] == []
    for ts in (TS, "2024-05-01T10:00:00.123Z"):
        message = bad("", "Event", {"eventTime": ts})
        assert message.startswith(f'parsing time "{ts}" as "2006-01-02T15:04:05.000000Z07:00"')


def test_bad_quantities() -> None:
    qty_re = "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    for q in ("abc", True, {"a": 1}, "", "1mm"):
        p = {"spec": {"containers": [{"resources": {"limits": {"cpu": q}}}]}}
        expected = f"quantities must match the regular expression {qty_re}"
        assert bad("", "Pod", p) == (
            "unable to parse quantity's suffix" if q == "1mm" else expected
        )


def test_first_type_error_wins_over_unknown_fields() -> None:
    obj = {"bogus": 1, "spec": {"replicas": "x", "selector": 5}}
    assert "DeploymentSpec.spec.replicas" in bad("apps", "Deployment", obj)


def test_strict_error_and_warnings() -> None:
    err = schema.strict_error("v1", "Deployment", ["spec.foo", "spec.containers[0].bar"])
    assert err.code == 400 and err.reason == "BadRequest"
    assert err.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.foo", unknown field "spec.containers[0].bar"'
    )
    assert schema.unknown_field_warnings(["a.b"], ["spec.replicas"]) == [
        'duplicate field "spec.replicas"',
        'unknown field "a.b"',
    ]
    assert len(schema.unknown_field_warnings([f"f{i}" for i in range(150)])) == 100


def test_duplicate_fields() -> None:
    raw = json.dumps(deployment())
    assert schema.duplicate_fields(raw) == []
    raw = (
        '{"kind":"Deployment","spec":{"replicas":1,"replicas":2,"template":{"spec":'
        '{"containers":[{"name":"a"},{"name":"b","image":"x","name":"c"}]}}},"kind":"X"}'
    )
    expected = ["kind", "spec.replicas", "spec.template.spec.containers[1].name"]
    assert schema.duplicate_fields(raw.encode()) == expected
    assert schema.duplicate_fields(b"{not json") == []


# --- every field of every type -------------------------------------------------------------------

_SAMPLES = {"string": "s", "integer": 7, "number": 1.5, "boolean": True, "quantity": "100m"}
_SAMPLES |= {"object": {"free": [1, None]}, "int-or-string": "50%", "date-time": TS}
_SAMPLES |= {"bytes": "aGVsbG8=", "micro-time": "2024-05-01T10:00:00.000000Z"}


def sample(ref: str, depth: int) -> Any:
    """A valid value for a typeref; structs get every field, down to a fixed depth."""
    ref = ref.lstrip("~")
    head, colon, rest = ref.partition(":")
    if colon and not any(ch in head for ch in "[{|"):
        ref = rest
    alts = schema._split_union(ref)
    if len(alts) > 1:
        return sample(alts[depth % len(alts)], depth)
    if ref in _SAMPLES:
        return _SAMPLES[ref]
    if ref.startswith("["):
        return [sample(ref[1:-1], depth)]
    if ref.startswith("{"):
        return {"key": sample(ref[1:-1], depth)}
    fields = schema.fields_of(ref)
    assert fields is not None, ref
    if depth > 6:
        return {}
    return {name: sample(sub, depth + 1) for name, sub in fields.items()}


def test_every_field_of_every_kind_round_trips() -> None:
    data = json.loads(schema._DATA_PATH.read_text())
    for key, type_name in data["kinds"].items():
        group, version, kind = key.split("/")
        obj = sample(type_name, 0)
        result, unknown = schema.normalize(group, version, kind, obj)
        assert unknown == [], (key, unknown[:3])
        assert result is obj
        obj["unknownTop"] = 1
        assert schema.normalize(group, version, kind, obj)[1] == ["unknownTop"]
