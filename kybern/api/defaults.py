"""Defaulting of API objects, the values kube-apiserver fills in when a field is left unset:
`apply_defaults(kind, obj)` mutates a plain dict in place (pods and pod templates everywhere
they are embedded, services, workloads, jobs, storage, RBAC subjects, ...), the priority
admission plugin's `priority`/`preemptionPolicy`, a new pod's `Pending` phase and QoS class,
and the canonical form of resource quantities ("1000m" -> "1"). It never allocates anything
(cluster IPs, node ports, names, UIDs): the server does that. `generate_job_selector` adds the
selector and labels the Job strategy derives from the Job's UID."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kybern.api import validation

Obj = dict[str, Any]

PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1}
VOLUME_SOURCES_WITH_MODE = ("secret", "configMap", "downwardAPI", "projected")


def _set(d: Obj, key: str, value: Any) -> None:
    """Set `key` unless it holds a value (missing and JSON null both count as unset)."""
    if d.get(key) is None:
        d[key] = value


def _dict(d: Obj, key: str) -> Obj:
    if not isinstance(d.get(key), dict):
        d[key] = {}
    value: Obj = d[key]
    return value


def _get(d: Any, *keys: str) -> Any:
    """`d[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _dicts(value: Any) -> list[Obj]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _canonical(resources: Any) -> None:
    """Rewrite every parsable quantity of a ResourceList in canonical form."""
    if not isinstance(resources, dict):
        return
    for name, value in resources.items():
        try:
            resources[name] = validation.canonical_quantity(value)
        except ValueError:
            pass  # left for validation to report


# ---------------------------------------------------------------- pods


def _image_pull_policy(image: Any) -> str:
    image = str(image or "")
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _handler(handler: Any) -> None:
    if isinstance(handler, dict) and isinstance(handler.get("httpGet"), dict):
        _set(handler["httpGet"], "path", "/")
        _set(handler["httpGet"], "scheme", "HTTP")


def _env(container: Obj) -> None:
    for env in _dicts(container.get("env")):
        source = env.get("valueFrom")
        if not isinstance(source, dict):
            continue
        if isinstance(source.get("fieldRef"), dict):
            _set(source["fieldRef"], "apiVersion", "v1")
        if isinstance(source.get("resourceFieldRef"), dict):
            _set(source["resourceFieldRef"], "divisor", "0")


def _container(container: Obj, host_network: bool) -> None:
    # `_set` and `_dict` written out: this runs for every container of every pod write
    if container.get("terminationMessagePath") is None:
        container["terminationMessagePath"] = "/dev/termination-log"
    if container.get("terminationMessagePolicy") is None:
        container["terminationMessagePolicy"] = "File"
    if container.get("imagePullPolicy") is None:
        container["imagePullPolicy"] = _image_pull_policy(container.get("image"))
    ports = container.get("ports")
    if isinstance(ports, list) and ports:
        for port in _dicts(ports):
            _set(port, "protocol", "TCP")
            if host_network and port.get("containerPort"):
                _set(port, "hostPort", port["containerPort"])
    resources = container.get("resources")
    if not isinstance(resources, dict):
        resources = container["resources"] = {}
    elif resources:
        _canonical(resources.get("limits"))
        _canonical(resources.get("requests"))
    for name in _PROBES:
        probe = container.get(name)
        if isinstance(probe, dict):
            for key, value in PROBE_DEFAULTS.items():
                _set(probe, key, value)
            _set(probe, "failureThreshold", 3)
            _handler(probe)
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        _handler(lifecycle.get("postStart"))
        _handler(lifecycle.get("preStop"))
    env = container.get("env")
    if isinstance(env, list) and env:  # else `_env` has nothing to do
        _env(container)


_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _field_refs(items: Any) -> None:
    for item in _dicts(items):
        if isinstance(item.get("fieldRef"), dict):
            _set(item["fieldRef"], "apiVersion", "v1")


def _volume(volume: Obj) -> None:
    if all(key == "name" for key in volume):
        volume["emptyDir"] = {}
    for source in VOLUME_SOURCES_WITH_MODE:
        if isinstance(volume.get(source), dict):
            _set(volume[source], "defaultMode", 420)
    if isinstance(volume.get("downwardAPI"), dict):
        _field_refs(volume["downwardAPI"].get("items"))
    if isinstance(volume.get("projected"), dict):
        for item in _dicts(volume["projected"].get("sources")):
            if isinstance(item.get("serviceAccountToken"), dict):
                _set(item["serviceAccountToken"], "expirationSeconds", 3600)
            if isinstance(item.get("downwardAPI"), dict):
                _field_refs(item["downwardAPI"].get("items"))
    if isinstance(volume.get("hostPath"), dict):
        _set(volume["hostPath"], "type", "")
    ephemeral = volume.get("ephemeral")
    if isinstance(ephemeral, dict) and isinstance(ephemeral.get("volumeClaimTemplate"), dict):
        _pvc_spec(_dict(ephemeral["volumeClaimTemplate"], "spec"))


def pod_spec_defaults(spec: Obj) -> None:
    """Defaults of a PodSpec, shared by pods and every pod template."""
    get = spec.get  # `_set` written out: this runs for every pod write
    if get("dnsPolicy") is None:
        spec["dnsPolicy"] = "ClusterFirst"
    if get("restartPolicy") is None:
        spec["restartPolicy"] = "Always"
    if get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if get("schedulerName") is None:
        spec["schedulerName"] = "default-scheduler"
    if get("securityContext") is None:
        spec["securityContext"] = {}
    if get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    elif spec.get("serviceAccount") and not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        containers = spec.get(key)
        if isinstance(containers, list):  # `_dicts` written out
            for container in containers:
                if isinstance(container, dict):
                    _container(container, host_network)
    volumes = spec.get("volumes")
    if isinstance(volumes, list) and volumes:
        for volume in _dicts(volumes):
            _volume(volume)
    if isinstance(spec.get("overhead"), dict):
        _canonical(spec["overhead"])


def _template(template: Any) -> None:
    if isinstance(template, dict):
        pod_spec_defaults(_dict(template, "spec"))


def _qos_class(spec: Obj) -> str:
    any_set = False  # a non-zero cpu or memory request or limit in some container
    guaranteed = True
    for container in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        resources = container.get("resources") or {}
        requests = _qos_quantities(resources.get("requests") or {})
        limits = _qos_quantities(resources.get("limits") or {})
        if requests or limits:
            any_set = True
        # guaranteed: non-zero cpu and memory limits, and requests equal to them
        if len(limits) != 2 or requests != limits:
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _qos_quantities(values: Any) -> dict[str, Any]:
    """The non-zero parsable cpu and memory quantities of a ResourceList."""
    out = {}
    for name, value in values.items():
        if name not in _QOS_RESOURCES:
            continue
        try:
            quantity = validation.parse_quantity(value)
        except ValueError:
            continue
        if quantity != 0:
            out[name] = quantity
    return out


_QOS_RESOURCES = ("cpu", "memory")


def _pod(pod: Obj) -> None:
    spec = _dict(pod, "spec")
    for key in ("initContainers", "containers"):
        containers = spec.get(key)
        if not isinstance(containers, list):  # `_dicts` written out
            continue
        for container in containers:
            if not isinstance(container, dict):
                continue
            resources = _dict(container, "resources")
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = _dict(resources, "requests")
                for name, value in limits.items():
                    _set(requests, name, value)
    pod_spec_defaults(spec)
    if not spec.get("priorityClassName"):
        _set(spec, "priority", 0)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    status = _dict(pod, "status")
    _set(status, "phase", "Pending")
    qos = _qos_class(spec)  # always computed: like the long way, it fails on bad resources
    if status.get("qosClass") is None:
        status["qosClass"] = qos


# ---------------------------------------------------------------- workloads


def _deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(spec.get("template"))


def _replica_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "replicas", 1)
    _template(spec.get("template"))


def _replication_controller(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    labels = _get(spec, "template", "metadata", "labels")
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    _replica_set(obj)


def _stateful_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "replicas", 1)
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _set(_dict(strategy, "rollingUpdate"), "partition", 0)
    _set(spec, "revisionHistoryLimit", 10)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _set(retention, "whenDeleted", "Retain")
    _set(retention, "whenScaled", "Retain")
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        _pvc(claim)
    _template(spec.get("template"))


def _daemon_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", 1)
        _set(rolling, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _template(spec.get("template"))


def _job(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _set(spec, "parallelism", 1)
    per_index = spec.get("backoffLimitPerIndex") is not None
    _set(spec, "backoffLimit", 2**31 - 1 if per_index else 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    policy = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    _set(spec, "podReplacementPolicy", policy)
    labels = _get(spec, "template", "metadata", "labels")
    meta = _dict(obj, "metadata")
    if isinstance(labels, dict) and labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    _template(spec.get("template"))


def generate_job_selector(job: Obj) -> None:
    """What the Job create strategy does unless `spec.manualSelector` is true: derive the
    selector from `metadata.uid` and add the matching labels to the pod template."""
    spec = _dict(job, "spec")
    uid, name = _get(job, "metadata", "uid"), _get(job, "metadata", "name")
    if spec.get("manualSelector") is True or not uid:
        return
    template_meta = _dict(_dict(spec, "template"), "metadata")
    labels = _dict(template_meta, "labels")
    generated = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
    if name:
        generated |= {"batch.kubernetes.io/job-name": name, "job-name": name}
    labels.update(generated)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def _cron_job(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict):
        _template(_dict(job_template, "spec").get("template"))


def _pod_template(obj: Obj) -> None:
    _template(obj.get("template"))


# ---------------------------------------------------------------- services, network


def _service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    for port in _dicts(spec.get("ports")):
        _set(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    stype = spec["type"]
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = _dict(_dict(spec, "sessionAffinityConfig"), "clientIP")
        _set(client_ip, "timeoutSeconds", 10800)
    if stype in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
    if stype == "ExternalName":
        return
    _set(spec, "internalTrafficPolicy", "Cluster")
    _set(spec, "ipFamilyPolicy", "SingleStack")
    _set(spec, "ipFamilies", ["IPv4"])
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif spec.get("clusterIPs") and not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0]


def _ports_tcp(ports: Any) -> None:
    for port in _dicts(ports):
        _set(port, "protocol", "TCP")


def _endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        _ports_tcp(subset.get("ports"))


def _endpoint_slice(obj: Obj) -> None:
    _ports_tcp(obj.get("ports"))


def _network_policy(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            _ports_tcp(rule.get("ports"))
    if not spec.get("policyTypes"):
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        spec["policyTypes"] = types


def _bindings(obj: Obj) -> None:
    for subject in _dicts(obj.get("subjects")):
        group = "" if subject.get("kind") == "ServiceAccount" else "rbac.authorization.k8s.io"
        _set(subject, "apiGroup", group)


def _hpa(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "minReplicas", 1)
    if obj.get("apiVersion") == "autoscaling/v2" and not spec.get("metrics"):
        target = {"type": "Utilization", "averageUtilization": 80}
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
    behavior = spec.get("behavior")
    if obj.get("apiVersion") == "autoscaling/v2" and isinstance(behavior, dict):
        # GenerateHPAScaleUpRules / GenerateHPAScaleDownRules: unset parts of a given behavior
        up = _dict(behavior, "scaleUp")
        _set(up, "stabilizationWindowSeconds", 0)
        _set(up, "selectPolicy", "Max")
        _set(
            up,
            "policies",
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        )
        down = _dict(behavior, "scaleDown")
        _set(down, "selectPolicy", "Max")
        _set(down, "policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def _ingress_class(obj: Obj) -> None:
    params = _get(obj, "spec", "parameters")
    if isinstance(params, dict):
        _set(params, "scope", "Cluster")


def _match_resources(match: Any) -> None:
    if not isinstance(match, dict):
        return
    _set(match, "namespaceSelector", {})
    _set(match, "objectSelector", {})
    _set(match, "matchPolicy", "Equivalent")
    for key in ("resourceRules", "excludeResourceRules"):
        for rule in _dicts(match.get(key)):
            _set(rule, "scope", "*")


def _validating_admission_policy(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "failurePolicy", "Fail")
    _match_resources(spec.get("matchConstraints"))


def _validating_admission_policy_binding(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _match_resources(spec.get("matchResources"))
    if isinstance(spec.get("paramRef"), dict):
        _set(spec["paramRef"], "parameterNotFoundAction", "Deny")


def _flow_schema(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("matchingPrecedence"):
        spec["matchingPrecedence"] = 1000


def _priority_level(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    limited, exempt = spec.get("limited"), spec.get("exempt")
    if isinstance(limited, dict):
        _set(limited, "nominalConcurrencyShares", 30)
        _set(limited, "lendablePercent", 0)
        queuing = _get(limited, "limitResponse", "queuing")
        if isinstance(queuing, dict):
            for key, value in (("queues", 64), ("handSize", 8), ("queueLengthLimit", 50)):
                if not queuing.get(key):
                    queuing[key] = value
    if isinstance(exempt, dict):
        _set(exempt, "nominalConcurrencyShares", 0)
        _set(exempt, "lendablePercent", 0)


# ---------------------------------------------------------------- core, storage


def _pvc_spec(spec: Obj) -> None:
    _set(spec, "volumeMode", "Filesystem")
    resources = spec.get("resources")
    if isinstance(resources, dict):
        _canonical(resources.get("requests"))
        _canonical(resources.get("limits"))


def _pvc(obj: Obj) -> None:
    _pvc_spec(_dict(obj, "spec"))
    _set(_dict(obj, "status"), "phase", "Pending")


def _pv(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")
    _canonical(spec.get("capacity"))
    _set(_dict(obj, "status"), "phase", "Pending")


def _namespace(obj: Obj) -> None:
    name = _get(obj, "metadata", "name")
    if name:
        _dict(_dict(obj, "metadata"), "labels")["kubernetes.io/metadata.name"] = name
    _set(_dict(obj, "status"), "phase", "Active")


def _node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict):
        _canonical(status.get("capacity"))
        if isinstance(status.get("capacity"), dict):
            _set(status, "allocatable", dict(status["capacity"]))
        _canonical(status.get("allocatable"))


def _secret(obj: Obj) -> None:
    _set(obj, "type", "Opaque")


def _limit_range(obj: Obj) -> None:
    for item in _dicts(_dict(obj, "spec").get("limits")):
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _canonical(item.get(key))
        if item.get("type") != "Container":
            continue
        default = dict(item.get("default") or {})
        request = dict(item.get("defaultRequest") or {})
        for name, value in (item.get("max") or {}).items():
            default.setdefault(name, value)
        for name, value in default.items():
            request.setdefault(name, value)
        for name, value in (item.get("min") or {}).items():
            request.setdefault(name, value)
        if default:
            item["default"] = default
        if request:
            item["defaultRequest"] = request


def _resource_quota(obj: Obj) -> None:
    _canonical(_dict(obj, "spec").get("hard"))


def _storage_class(obj: Obj) -> None:
    _set(obj, "reclaimPolicy", "Delete")
    _set(obj, "volumeBindingMode", "Immediate")


def _csi_driver(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "attachRequired", True)
    _set(spec, "podInfoOnMount", False)
    _set(spec, "volumeLifecycleModes", ["Persistent"])
    _set(spec, "fsGroupPolicy", "ReadWriteOnceWithFSType")
    _set(spec, "requiresRepublish", False)
    _set(spec, "storageCapacity", False)
    _set(spec, "seLinuxMount", False)


def _priority_class(obj: Obj) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


def _webhooks(obj: Obj) -> None:
    mutating = obj.get("kind") == "MutatingWebhookConfiguration"
    for hook in _dicts(obj.get("webhooks")):
        _set(hook, "failurePolicy", "Fail")
        _set(hook, "matchPolicy", "Equivalent")
        _set(hook, "namespaceSelector", {})
        _set(hook, "objectSelector", {})
        _set(hook, "timeoutSeconds", 10)
        if mutating:
            _set(hook, "reinvocationPolicy", "Never")
        for rule in _dicts(hook.get("rules")):
            _set(rule, "scope", "*")
        service = _get(hook, "clientConfig", "service")
        if isinstance(service, dict):
            _set(service, "port", 443)


_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": _pod,
    "PodTemplate": _pod_template,
    "Service": _service,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpoint_slice,
    "Deployment": _deployment,
    "ReplicaSet": _replica_set,
    "ReplicationController": _replication_controller,
    "StatefulSet": _stateful_set,
    "DaemonSet": _daemon_set,
    "Job": _job,
    "CronJob": _cron_job,
    "Secret": _secret,
    "Namespace": _namespace,
    "Node": _node,
    "PersistentVolumeClaim": _pvc,
    "PersistentVolume": _pv,
    "LimitRange": _limit_range,
    "ResourceQuota": _resource_quota,
    "StorageClass": _storage_class,
    "CSIDriver": _csi_driver,
    "PriorityClass": _priority_class,
    "NetworkPolicy": _network_policy,
    "RoleBinding": _bindings,
    "ClusterRoleBinding": _bindings,
    "HorizontalPodAutoscaler": _hpa,
    "IngressClass": _ingress_class,
    "ValidatingAdmissionPolicy": _validating_admission_policy,
    "ValidatingAdmissionPolicyBinding": _validating_admission_policy_binding,
    "FlowSchema": _flow_schema,
    "PriorityLevelConfiguration": _priority_level,
    "MutatingWebhookConfiguration": _webhooks,
    "ValidatingWebhookConfiguration": _webhooks,
}


def apply_defaults(kind: str, obj: Obj) -> None:
    """Fill in, in place, the fields kube-apiserver defaults for `kind`; unknown kinds
    (custom resources included) are left alone."""
    defaulter = _DEFAULTERS.get(kind)
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)
