"""Validation rules and their exact Kubernetes wording: name checks (with hypothesis against
the DNS-1123 regex), object metadata on create and update, quantities, and the per-kind rules
of pods, services, workloads, jobs, config maps, secrets and the update-only checks."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybern.api import errors, validation

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?"
    "[A-Za-z0-9])?')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
QUANTITY_MSG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


def texts(errs: list[errors.FieldError]) -> list[str]:
    return [e.text() for e in errs]


# ---------------------------------------------------------------- names


def test_name_messages() -> None:
    assert validation.is_dns1123_subdomain("Foo") == [SUBDOMAIN_MSG]
    assert validation.is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert validation.is_dns1123_label("a.b") == ["must not contain dots"]
    assert validation.is_dns1123_label("-a") == [LABEL_MSG]
    assert validation.is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert validation.is_dns1035_label("1abc") == [DNS1035_MSG]
    assert validation.is_dns1035_label("abc-1") == []
    assert validation.is_path_segment_name("..") == ["may not be '..'"]
    assert validation.is_path_segment_name("a/b%") == ["may not contain '/'", "may not contain '%'"]
    assert validation.is_path_segment_name("Any:Thing") == []


def test_qualified_names_and_label_values() -> None:
    assert validation.is_qualified_name("example.com/My_Name.1") == []
    assert validation.is_qualified_name("-x") == [NAME_PART_MSG]
    assert validation.is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert validation.is_qualified_name("Ex.com/x") == ["prefix part " + SUBDOMAIN_MSG]
    assert validation.is_qualified_name("x/") == ["name part must be non-empty", NAME_PART_MSG]
    assert validation.is_qualified_name("a/b/c")[0].startswith("a qualified name must consist")
    assert validation.is_valid_label_value("") == []
    assert validation.is_valid_label_value("bad value") == [LABEL_VALUE_MSG]
    assert validation.is_config_map_key("a b") == [CONFIG_KEY_MSG]
    assert validation.is_config_map_key("..x") == ["must not start with '..'"]


SUBDOMAIN_RE = re.compile(validation.DNS1123_SUBDOMAIN_FMT)


@given(st.from_regex(SUBDOMAIN_RE, fullmatch=True))
def test_dns1123_regex_matches_pass(name: str) -> None:
    expected = [] if len(name) <= 253 else ["must be no more than 253 characters"]
    assert validation.is_dns1123_subdomain(name) == expected


@given(st.text(alphabet="abcXYZ019-._ /", max_size=40))
def test_dns1123_everything_else_fails(name: str) -> None:
    valid = SUBDOMAIN_RE.fullmatch(name) is not None
    assert (validation.is_dns1123_subdomain(name) == []) == valid
    label_ok = re.fullmatch(validation.DNS1123_LABEL_FMT, name) is not None
    assert (validation.is_dns1123_label(name) == []) == label_ok


# ---------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("text", "value", "canonical"),
    [
        ("1", Decimal(1), "1"),
        ("1000m", Decimal(1), "1"),
        ("0.5", Decimal("0.5"), "500m"),
        ("1024Mi", Decimal(2**30), "1Gi"),
        ("1.5Gi", Decimal(3 * 2**29), "1536Mi"),
        ("2k", Decimal(2000), "2k"),
        ("1e3", Decimal(1000), "1e3"),
        ("100u", Decimal("0.0001"), "100u"),
        ("0.5Ki", Decimal(512), "512"),
        (2, Decimal(2), "2"),
    ],
)
def test_quantities(text: str | int, value: Decimal, canonical: str) -> None:
    assert validation.parse_quantity(text) == value
    assert validation.canonical_quantity(text) == canonical


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1 Gi", "--1", "1x"])
def test_bad_quantities(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(QUANTITY_MSG)):
        validation.parse_quantity(bad)


@pytest.mark.parametrize("bad", ["1Ki2", "1mk", "1ii"])
def test_bad_quantity_suffixes(bad: str) -> None:
    with pytest.raises(ValueError, match="unable to parse quantity's suffix"):
        validation.parse_quantity(bad)


# ---------------------------------------------------------------- metadata


def meta_errs(meta: dict[str, Any], **kw: Any) -> list[str]:
    kw.setdefault("namespaced", True)
    kw.setdefault("name_rule", "subdomain")
    return texts(validation.validate_object_meta(meta, **kw))


def test_meta_name_rules() -> None:
    assert meta_errs({"namespace": "d"}) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert meta_errs({"generateName": "web-", "namespace": "d"}) == []
    assert meta_errs({"name": "Foo", "namespace": "d"}) == [
        f'metadata.name: Invalid value: "Foo": {SUBDOMAIN_MSG}'
    ]
    assert meta_errs({"name": "a.b", "namespace": "d"}, name_rule="label") == [
        'metadata.name: Invalid value: "a.b": must not contain dots'
    ]
    assert meta_errs({"name": "a:b"}, namespaced=False, name_rule="path") == []
    assert meta_errs({"name": "9a", "namespace": "d"}, name_rule="dns1035")[0].endswith(DNS1035_MSG)


def test_meta_namespace() -> None:
    assert meta_errs({"name": "a"}) == ["metadata.namespace: Required value"]
    assert meta_errs({"name": "a", "namespace": "x"}, namespaced=False) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]
    assert meta_errs({"name": "a", "namespace": "Bad"})[0].startswith(
        'metadata.namespace: Invalid value: "Bad": a lowercase RFC 1123 label'
    )


def test_meta_labels_annotations_finalizers() -> None:
    meta = {
        "name": "a",
        "namespace": "d",
        "labels": {"ok/key": "v", "-bad": "bad value"},
        "annotations": {"Example.com/Key": "x"},
        "finalizers": ["example.com/f", "bad//f"],
    }
    assert meta_errs(meta) == [
        f'metadata.labels: Invalid value: "-bad": {NAME_PART_MSG}',
        f'metadata.labels: Invalid value: "bad value": {LABEL_VALUE_MSG}',
        'metadata.finalizers: Invalid value: "bad//f": a qualified name must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
        "'/' (e.g. 'example.com/MyName')",
    ]
    big = {"name": "a", "namespace": "d", "annotations": {"k": "x" * (256 * 1024)}}
    assert validation.validate_object_meta(big, namespaced=True, name_rule="subdomain") == [
        errors.FieldError(
            "FieldValueTooLong", "metadata.annotations", "Too long: must have at most 262144 bytes"
        )
    ]


def test_meta_owner_references() -> None:
    refs = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "r",
            "uid": "1",
            "controller": True,
        },
        {"apiVersion": "apps/", "kind": "Deployment", "name": "", "uid": "2", "controller": True},
    ]
    errs = meta_errs({"name": "a", "namespace": "d", "ownerReferences": refs})
    assert errs[:2] == [
        'metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
    ]
    assert errs[2].startswith("metadata.ownerReferences: Invalid value: [{")
    assert errs[2].endswith(
        'Only one reference can have Controller set to true. Found "true" in references for '
        "ReplicaSet/r and Deployment/"
    )


def test_meta_update_immutable() -> None:
    old = {"name": "a", "namespace": "d", "uid": "u1", "creationTimestamp": "t1", "generation": 2}
    new = dict(old, name="b", namespace="e", uid="u2", creationTimestamp="t2", generation=1)
    assert texts(validation.validate_object_meta_update(new, old)) == [
        "metadata.generation: Invalid value: 1: must not be decremented",
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.namespace: Invalid value: "e": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        'metadata.creationTimestamp: Invalid value: "t2": field is immutable',
    ]
    carried = {"name": "a", "namespace": "d"}  # uid etc. left for the server to carry over
    assert validation.validate_object_meta_update(carried, old) == []
    deleting = dict(old, deletionTimestamp="t", finalizers=["a/x"])
    assert texts(
        validation.validate_object_meta_update(dict(deleting, finalizers=["a/x", "b/y"]), deleting)
    ) == [
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
        'deleted, found new finalizers []string{"b/y"}'
    ]


# ---------------------------------------------------------------- pods


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    return {"metadata": {"name": "p", "namespace": "d"}, "spec": base | spec}


def test_valid_pod() -> None:
    assert validation.validate("Pod", pod()) == []


def test_pod_containers() -> None:
    assert texts(validation.validate("Pod", pod(containers=[]))) == [
        "spec.containers: Required value"
    ]
    spec = pod(
        containers=[
            {"name": "Web", "image": ""},
            {"name": "x", "image": "i", "ports": [{"containerPort": 70000, "protocol": "HTTP"}]},
            {"name": "x", "image": "i", "imagePullPolicy": "Sometimes"},
        ],
        restartPolicy="Sometimes",
        dnsPolicy="Bogus",
    )
    assert texts(validation.validate("Pod", spec)) == [
        f'spec.containers[0].name: Invalid value: "Web": {LABEL_MSG}',
        "spec.containers[0].image: Required value",
        "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 "
        "and 65535, inclusive",
        'spec.containers[1].ports[0].protocol: Unsupported value: "HTTP": supported values: '
        '"SCTP", "TCP", "UDP"',
        'spec.containers[2].name: Duplicate value: "x"',
        'spec.containers[2].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
        '"Always", "IfNotPresent", "Never"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Bogus": supported values: "ClusterFirst", '
        '"ClusterFirstWithHostNet", "Default", "None"',
    ]


def test_pod_resources_and_mounts() -> None:
    ctr = {
        "name": "c",
        "image": "i",
        "resources": {"requests": {"cpu": "2", "memory": "1Gx"}, "limits": {"cpu": "1000m"}},
        "volumeMounts": [{"name": "missing", "mountPath": "/m"}],
    }
    assert texts(validation.validate("Pod", pod(containers=[ctr]))) == [
        'spec.containers[0].volumeMounts[0].name: Not found: "missing"',
        f'spec.containers[0].resources.requests[memory]: Invalid value: "1Gx": {QUANTITY_MSG}',
        'spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or '
        "equal to cpu limit of 1",
    ]


# ---------------------------------------------------------------- services


def svc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s", "namespace": "d"}, "spec": spec}


def test_services() -> None:
    assert validation.validate("Service", svc(ports=[{"port": 80}])) == []
    assert validation.validate("Service", svc(clusterIP="None")) == []
    assert validation.validate("Service", svc(type="ExternalName", externalName="a.b")) == []
    assert texts(validation.validate("Service", svc())) == ["spec.ports: Required value"]
    bad = svc(
        type="Magic",
        ports=[{"port": 0, "protocol": "ICMP"}, {"name": "b", "port": 80, "targetPort": "Bad"}],
    )
    assert texts(validation.validate("Service", bad)) == [
        "spec.ports[0].name: Required value",
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        'spec.ports[1].targetPort: Invalid value: "Bad": must contain only alpha-numeric '
        "characters (a-z, 0-9), and hyphens (-)",
        'spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"',
    ]
    assert texts(validation.validate("Service", svc(type="ExternalName"))) == [
        "spec.externalName: Required value"
    ]


# ---------------------------------------------------------------- workloads


def deployment(**spec: Any) -> dict[str, Any]:
    base = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    }
    return {"metadata": {"name": "d", "namespace": "d"}, "spec": base | spec}


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"])
def test_workload_selector(kind: str) -> None:
    assert validation.validate(kind, deployment()) == []
    assert texts(validation.validate(kind, deployment(selector=None))) == [
        "spec.selector: Required value"
    ]
    mismatch = deployment(selector={"matchLabels": {"app": "other"}})
    assert texts(validation.validate(kind, mismatch)) == [
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match '
        "template `labels`"
    ]


def test_deployment_rules() -> None:
    spec = deployment(replicas=-1, strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    spec["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert texts(validation.validate("Deployment", spec)) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when "
        "`maxSurge` is 0",
    ]
    assert texts(validation.validate("Deployment", deployment(selector={}))) == [
        "spec.selector: Invalid value: {}: empty selector is invalid for deployment"
    ]


def test_job_and_cronjob() -> None:
    job = deployment()
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    del job["spec"]["replicas"]
    assert texts(validation.validate("Job", job)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"'
    ]
    cron: dict[str, Any] = {"metadata": {"name": "c", "namespace": "d"}}
    cron["spec"] = {"schedule": "* *"}
    cron["spec"]["jobTemplate"] = {"spec": {"template": job["spec"]["template"]}}
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert texts(validation.validate("CronJob", cron)) == [
        'spec.schedule: Invalid value: "* *": expected exactly 5 fields, found 2: * *'
    ]


# ---------------------------------------------------------------- data, others


def test_config_map_and_secret_keys() -> None:
    cm = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x", "ok.key": "y"}}
    assert texts(validation.validate("ConfigMap", cm)) == [
        f'data[a b]: Invalid value: "a b": {CONFIG_KEY_MSG}'
    ]
    secret = {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"}
    secret["data"] = {"tls.crt": "eA==", "bad": "!!"}
    assert texts(validation.validate("Secret", secret))[1:] == ["data[tls.key]: Required value"]
    assert texts(validation.validate("Secret", secret))[0].startswith(
        'data[bad]: Invalid value: "<secret contents redacted>": illegal base64 data'
    )


def test_namespace_lease_node() -> None:
    ns = {"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes", "custom"]}}
    assert texts(validation.validate("Namespace", ns)) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name '
        "nor is it fully qualified"
    ]
    lease = {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}
    assert texts(validation.validate("Lease", lease)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    ]
    node = {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Nope"}]}}
    assert texts(validation.validate("Node", node)) == [
        'spec.taints[0].effect: Unsupported value: "Nope": supported values: "NoExecute", '
        '"NoSchedule", "PreferNoSchedule"'
    ]
    assert validation.validate("Widget", {"spec": {"anything": 1}}) == []
    pvc = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1"}}}}
    assert validation.validate("PersistentVolumeClaim", pvc) == []
    assert texts(validation.validate("PersistentVolumeClaim", {"spec": {}})) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]


# ---------------------------------------------------------------- updates


def test_pod_update() -> None:
    old = pod(activeDeadlineSeconds=100, tolerations=[{"key": "a", "operator": "Exists"}])
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    new["spec"]["activeDeadlineSeconds"] = 50
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    assert validation.validate_update("Pod", new, old) == []
    new["spec"]["containers"][0]["name"] = "renamed"
    assert texts(validation.validate_update("Pod", new, old)) == [
        "spec: Forbidden: pod updates may not change fields other than "
        "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
        "`spec.tolerations` (only additions to existing tolerations),"
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)"
    ]
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 200
    assert texts(validation.validate_update("Pod", new, old)) == [
        "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous "
        "value"
    ]


def test_immutable_fields_on_update() -> None:
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web", "v": "2"}})
    assert texts(validation.validate_update("Deployment", new, old)) == [
        'spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable'
    ]
    assert validation.validate_update("Deployment", deployment(replicas=5), old) == []
    sts = deployment(serviceName="a")
    assert texts(validation.validate_update("StatefulSet", deployment(serviceName="b"), sts)) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', "
        "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    ]
    old_svc = svc(clusterIP="10.0.0.1", clusterIPs=["10.0.0.1"], ports=[{"port": 80}])
    new_svc = svc(clusterIP="10.0.0.2", clusterIPs=["10.0.0.2"], ports=[{"port": 80}])
    assert texts(validation.validate_update("Service", new_svc, old_svc)) == [
        'spec.clusterIPs[0]: Invalid value: ["10.0.0.2"]: may not change once set'
    ]
    job = deployment()
    changed = copy.deepcopy(job)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert [e.field for e in validation.validate_update("Job", changed, job)] == ["spec.template"]
    cm = {"metadata": {"name": "c"}, "immutable": True, "data": {"a": "1"}}
    assert texts(validation.validate_update("ConfigMap", dict(cm, data={"a": "2"}), cm)) == [
        "data: Forbidden: field is immutable when `immutable` is set"
    ]
