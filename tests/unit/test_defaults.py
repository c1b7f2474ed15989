"""Every default `apply_defaults` fills in, per kind, and that set values are never replaced."""

from __future__ import annotations

from typing import Any

import pytest

from kybern.api.defaults import apply_defaults, generate_job_selector


def defaulted(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    apply_defaults(kind, obj)
    return obj


def template(**spec: Any) -> dict[str, Any]:
    base = {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    return {"metadata": {"labels": {"app": "a"}}, "spec": base | spec}


# ---------------------------------------------------------------- pods


def test_pod_spec_defaults() -> None:
    pod = defaulted("Pod", {"metadata": {"name": "p"}, "spec": template()["spec"]})
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert spec["containers"][0] == {
        "name": "c",
        "image": "nginx:1.25",
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "resources": {},
    }


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("registry:5000/nginx", "Always"),
        ("registry:5000/nginx:1.2", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = defaulted("Pod", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_container_details() -> None:
    probe = {"httpGet": {"port": 80}}
    container = {
        "name": "c",
        "image": "i:1",
        "ports": [{"containerPort": 80}],
        "livenessProbe": probe,
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}},
    }
    spec = {"containers": [container], "hostNetwork": True, "volumes": [{"name": "v"}]}
    pod = defaulted("Pod", {"spec": spec})
    c = pod["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP", "hostPort": 80}]
    assert c["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert c["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "1", "memory": "1Gi"},
    }
    assert pod["status"]["qosClass"] == "Guaranteed"
    assert pod["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_volume_modes_and_qos_burstable() -> None:
    volumes = [
        {"name": "s", "secret": {"secretName": "x"}},
        {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
    ]
    ctr = {"name": "c", "image": "i", "resources": {"requests": {"cpu": "100m"}}}
    pod = defaulted("Pod", {"spec": {"containers": [ctr], "volumes": volumes}})
    assert pod["spec"]["volumes"][0]["secret"]["defaultMode"] == 420
    projected = pod["spec"]["volumes"][1]["projected"]
    assert projected["defaultMode"] == 420
    assert projected["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert pod["status"]["qosClass"] == "Burstable"


def test_set_values_are_kept() -> None:
    spec = {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}
    pod = defaulted("Pod", {"spec": spec, "status": {"phase": "Running"}})
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["status"]["phase"] == "Running"
    svc = defaulted("Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    assert svc["spec"]["type"] == "NodePort"


# ---------------------------------------------------------------- services


def test_service_defaults() -> None:
    svc = defaulted("Service", {"spec": {"ports": [{"port": 80}, {"port": 90, "targetPort": 9}]}})
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 80},
        {"port": 90, "targetPort": 9, "protocol": "TCP"},
    ]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "clusterIP" not in spec
    lb = defaulted("Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    ext = defaulted("Service", {"spec": {"type": "ExternalName", "externalName": "a.b"}})
    assert "ipFamilies" not in ext["spec"]
    headless = defaulted("Service", {"spec": {"clusterIP": "None"}})
    assert headless["spec"]["clusterIPs"] == ["None"]


# ---------------------------------------------------------------- workloads


def test_deployment_defaults() -> None:
    dep = defaulted("Deployment", {"spec": {"template": template()}})
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["containers"][0]["terminationMessagePolicy"] == "File"
    assert "priority" not in pod_spec  # admission sets it on pods, not templates
    recreate = defaulted("Deployment", {"spec": {"strategy": {"type": "Recreate"}}})
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_replicaset_and_rc_defaults() -> None:
    rs = defaulted("ReplicaSet", {"spec": {"template": template()}})
    assert rs["spec"]["replicas"] == 1
    assert rs["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    rc = defaulted("ReplicationController", {"metadata": {}, "spec": {"template": template()}})
    assert rc["spec"]["selector"] == {"app": "a"}
    assert rc["metadata"]["labels"] == {"app": "a"}
    assert rc["spec"]["replicas"] == 1


def test_statefulset_defaults() -> None:
    claim = {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    sts = defaulted(
        "StatefulSet", {"spec": {"template": template(), "volumeClaimTemplates": [claim]}}
    )
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert spec["volumeClaimTemplates"][0]["status"] == {"phase": "Pending"}


def test_daemonset_defaults() -> None:
    ds = defaulted("DaemonSet", {"spec": {"template": template()}})
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["spec"]["revisionHistoryLimit"] == 10


def test_job_defaults() -> None:
    job = defaulted("Job", {"metadata": {}, "spec": {"template": template(restartPolicy="Never")}})
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["labels"] == {"app": "a"}
    only_parallel = defaulted("Job", {"spec": {"parallelism": 3}})
    assert "completions" not in only_parallel["spec"]


def test_job_selector_generation() -> None:
    job: dict[str, Any] = {"metadata": {"name": "pi", "uid": "u-1"}}
    job["spec"] = {"template": template()}
    generate_job_selector(job)
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["job-name"] == "pi" and labels["controller-uid"] == "u-1"
    manual: dict[str, Any] = {"metadata": {"uid": "u"}, "spec": {"manualSelector": True}}
    generate_job_selector(manual)
    assert "selector" not in manual["spec"]


def test_cronjob_defaults() -> None:
    cron = {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}}
    spec = defaulted("CronJob", cron)["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"] == "default-scheduler"


# ---------------------------------------------------------------- core and storage


def test_simple_kinds() -> None:
    assert defaulted("Secret", {})["type"] == "Opaque"
    ns = defaulted("Namespace", {"metadata": {"name": "team"}})
    assert "spec" not in ns  # the `kubernetes` finalizer is added on create, not defaulted
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    pvc = defaulted(
        "PersistentVolumeClaim", {"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}
    )
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert pvc["status"] == {"phase": "Pending"}
    pv = defaulted("PersistentVolume", {"spec": {}})
    assert pv["spec"] == {"persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}
    sc = defaulted("StorageClass", {"provisioner": "x"})
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    node = defaulted("Node", {"status": {"capacity": {"cpu": "4", "memory": "8192Mi"}}})
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi"}
    for kind in ("Lease", "ServiceAccount", "ConfigMap", "Widget"):
        assert defaulted(kind, {"spec": {}}) == {"spec": {}}


def test_csi_driver_defaults() -> None:
    assert defaulted("CSIDriver", {})["spec"] == {
        "attachRequired": True,
        "podInfoOnMount": False,
        "volumeLifecycleModes": ["Persistent"],
        "fsGroupPolicy": "ReadWriteOnceWithFSType",
        "requiresRepublish": False,
        "storageCapacity": False,
        "seLinuxMount": False,
    }


def test_limit_range_quota_rbac_netpol() -> None:
    lr = {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1M"}}]}}
    item = defaulted("LimitRange", lr)["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "1M"}
    quota = defaulted("ResourceQuota", {"spec": {"hard": {"pods": "10", "cpu": "2000m"}}})
    assert quota["spec"]["hard"] == {"pods": "10", "cpu": "2"}
    binding = {"subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}
    subjects = defaulted("RoleBinding", binding)["subjects"]
    assert [s["apiGroup"] for s in subjects] == ["rbac.authorization.k8s.io", ""]
    netpol = defaulted("NetworkPolicy", {"spec": {"egress": [{"ports": [{"port": 53}]}]}})
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert netpol["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
