"""Per-kind validation of the built-in kinds, split from `kybern.api.validation` (which holds
the name checks, metadata rules and quantities, and re-exports `validate`/`validate_update`)
to keep both files small. The rules are the common ones of `pkg/apis/*/validation` with
Kubernetes' wording: pod specs and templates, services, workload selectors and strategies,
jobs and cron jobs, config keys, the immutable fields checked on update, and which kinds'
status updates are validated as the metadata update and the status alone."""

from __future__ import annotations

import ipaddress
from typing import Any

from kybern.api import errors, objects, validation_more
from kybern.api import validation as v
from kybern.api.validation import FieldErrors, _c, _d, _enum, _invalid, _is_int, _l, _nonneg

_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_ENV_NAME_MSG = (
    "a valid environment variable name must consist only of printable ASCII characters "
    "other than '='"
)
_POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)
_STS_UPDATE_MSG = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
    "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
    "'minReadySeconds' are forbidden"
)
_STS_MUTABLE = (
    "replicas ordinals template updateStrategy revisionHistoryLimit "
    "persistentVolumeClaimRetentionPolicy minReadySeconds"
).split()
_PVC_UPDATE_MSG = (
    "spec is immutable after creation except resources.requests and "
    "volumeAttributesClassName for bound claims"
)
_IMMUTABLE_SET = "field is immutable when `immutable` is set"
_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _each(path: str, value: Any, msgs: list[str]) -> FieldErrors:
    return [_invalid(path, value, m) for m in msgs]


# ---------------------------------------------------------------- pods


def _ports(ports: Any, path: str) -> FieldErrors:
    errs: FieldErrors = []
    names: set[str] = set()
    for i, port in enumerate(_l(ports)):
        port, ppath = _d(port), f"{path}[{i}]"
        if pname := port.get("name"):
            errs += _each(_c(ppath, "name"), pname, v.is_valid_port_name(pname))
            if pname in names:
                errs.append(errors.duplicate(_c(ppath, "name"), pname))
            names.add(pname)
        if not port.get("containerPort"):
            errs.append(errors.required(_c(ppath, "containerPort")))
        else:
            cport = port["containerPort"]
            errs += _each(_c(ppath, "containerPort"), cport, v.is_valid_port_num(cport))
        if hport := port.get("hostPort"):
            errs += _each(_c(ppath, "hostPort"), hport, v.is_valid_port_num(hport))
        errs += _enum(port.get("protocol"), _c(ppath, "protocol"), _PROTOCOLS)
    return errs


_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]


def _optional_enum(obj: dict[str, Any], key: str, path: str, allowed: list[str]) -> FieldErrors:
    """`obj[key]`, when set, must be one of `allowed` (kube's NotSupported error otherwise)."""
    value = obj.get(key)
    if value is None or value in allowed:
        return []
    return _enum(value, _c(path, key), allowed)


def _container(ctr: Any, path: str, names: set[str], volumes: set[str]) -> FieldErrors:
    # paths are built only for an error, or where there is something to check
    ctr, errs = _d(ctr), []
    name = ctr.get("name") or ""
    if not name:
        errs.append(errors.required(_c(path, "name")))
    else:
        if msgs := v.is_dns1123_label(name):
            errs += _each(_c(path, "name"), name, msgs)
        if name in names:
            errs.append(errors.duplicate(_c(path, "name"), name))
        names.add(name)
    if not ctr.get("image"):
        errs.append(errors.required(_c(path, "image")))
    errs += _optional_enum(ctr, "imagePullPolicy", path, _PULL_POLICIES)
    errs += _optional_enum(ctr, "terminationMessagePolicy", path, _MESSAGE_POLICIES)
    if ports := _l(ctr.get("ports")):
        errs += _ports(ports, _c(path, "ports"))
    envs = ctr.get("env")
    for i, env in enumerate(envs if isinstance(envs, list) else ()):
        ename, epath = _d(env).get("name") or "", f"{path}.env[{i}].name"
        if not ename:
            errs.append(errors.required(epath))
        elif any(not 32 <= ord(ch) < 127 or ch == "=" for ch in ename):
            errs.append(_invalid(epath, ename, _ENV_NAME_MSG))
    mounts = ctr.get("volumeMounts")
    for i, mount in enumerate(mounts if isinstance(mounts, list) else ()):
        mount, mpath = _d(mount), f"{path}.volumeMounts[{i}]"
        mname = mount.get("name") or ""
        if not mname:
            errs.append(errors.required(_c(mpath, "name")))
        elif mname not in volumes:
            msg = f'Not found: "{mname}"'
            errs.append(errors.FieldError("FieldValueNotFound", _c(mpath, "name"), msg))
        if not mount.get("mountPath"):
            errs.append(errors.required(_c(mpath, "mountPath")))
    resources = ctr.get("resources")
    if isinstance(resources, dict) and resources:  # else nothing to report
        errs += v.validate_resource_requirements(resources, _c(path, "resources"))
    return errs


_RESTART_POLICIES = ["Always", "OnFailure", "Never"]
_DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
_TOLERATION_OPERATORS = ["Equal", "Exists"]
_TAINT_EFFECTS = ["NoExecute", "NoSchedule", "PreferNoSchedule"]


def _pod_spec(spec: Any, path: str) -> FieldErrors:
    # paths are built only for an error, or where there is something to check
    spec, errs = _d(spec), []
    volumes: set[str] = set()
    vols = spec.get("volumes")
    for i, vol in enumerate(vols if isinstance(vols, list) else ()):
        vname, vpath = _d(vol).get("name") or "", f"{path}.volumes[{i}].name"
        if not vname:
            errs.append(errors.required(vpath))
        else:
            errs += _each(vpath, vname, v.is_dns1123_label(vname))
        if vname and vname in volumes:
            errs.append(errors.duplicate(vpath, vname))
        volumes.add(vname)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        errs.append(errors.required(_c(path, "containers")))
    names: set[str] = set()
    inits = spec.get("initContainers")
    if isinstance(inits, list) and inits:
        for i, ctr in enumerate(inits):
            errs += _container(ctr, f"{path}.initContainers[{i}]", names, volumes)
    if isinstance(containers, list):
        for i, ctr in enumerate(containers):
            errs += _container(ctr, f"{path}.containers[{i}]", names, volumes)
    errs += _optional_enum(spec, "restartPolicy", path, _RESTART_POLICIES)
    errs += _optional_enum(spec, "dnsPolicy", path, _DNS_POLICIES)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not _is_int(deadline) or not 1 <= deadline <= v.MAX_INT32):
        detail = v.inclusive_range_error(1, v.MAX_INT32)
        errs.append(_invalid(_c(path, "activeDeadlineSeconds"), deadline, detail))
    node_selector = spec.get("nodeSelector")
    if isinstance(node_selector, dict) and node_selector:  # else nothing to report
        errs += v.validate_labels(node_selector, _c(path, "nodeSelector"))
    if sa := spec.get("serviceAccountName"):
        errs += _each(_c(path, "serviceAccountName"), sa, v.is_dns1123_subdomain(sa))
    if hostname := spec.get("hostname"):
        errs += _each(_c(path, "hostname"), hostname, v.is_dns1123_label(hostname))
    if subdomain := spec.get("subdomain"):
        errs += _each(_c(path, "subdomain"), subdomain, v.is_dns1123_label(subdomain))
    tolerations = spec.get("tolerations")
    for i, tol in enumerate(tolerations if isinstance(tolerations, list) else ()):
        tol, tpath = _d(tol), f"{path}.tolerations[{i}]"
        op = tol.get("operator") or None
        errs += _enum(op, _c(tpath, "operator"), _TOLERATION_OPERATORS)
        errs += _enum(tol.get("effect") or None, _c(tpath, "effect"), _TAINT_EFFECTS)
    return errs


def _without_seconds(tol: Any) -> dict[str, Any]:
    return {k: val for k, val in _d(tol).items() if k != "tolerationSeconds"}


def _pod_update(new: dict[str, Any], old: dict[str, Any]) -> FieldErrors:
    if _d(new.get("spec")) == _d(old.get("spec")):
        # an unchanged spec (every status update) passes: the rules below only compare the
        # two specs after setting the mutable fields of the new one to the old one's values
        return []
    return _pod_update_rules(new, old)


def _pod_update_rules(new: dict[str, Any], old: dict[str, Any]) -> FieldErrors:
    spec, ospec, errs = objects.deep_copy(_d(new.get("spec"))), _d(old.get("spec")), []
    for key in ("containers", "initContainers"):
        ours, theirs = _l(spec.get(key)), _l(ospec.get(key))
        if len(ours) == len(theirs):
            for a, b in zip(ours, theirs, strict=True):
                if isinstance(a, dict) and isinstance(b, dict):
                    a["image"] = b.get("image")
    nad, oad = spec.get("activeDeadlineSeconds"), ospec.get("activeDeadlineSeconds")
    adpath = "spec.activeDeadlineSeconds"
    if nad is None and oad is not None:
        errs.append(_invalid(adpath, None, "must not update from a positive integer to nil value"))
    elif _is_int(nad) and _is_int(oad) and nad > oad:
        errs.append(_invalid(adpath, nad, "must be less than or equal to previous value"))
    spec["activeDeadlineSeconds"] = oad
    kept = [_without_seconds(t) for t in _l(spec.get("tolerations"))]
    if any(_without_seconds(t) not in kept for t in _l(ospec.get("tolerations"))):
        detail = "existing toleration can not be modified except its tolerationSeconds"
        errs.append(errors.forbidden("spec.tolerations", detail))
    spec["tolerations"] = ospec.get("tolerations")
    ograce = ospec.get("terminationGracePeriodSeconds")
    if _is_int(ograce) and ograce < 0 and spec.get("terminationGracePeriodSeconds") == 1:
        spec["terminationGracePeriodSeconds"] = ograce
    if all(g in _l(ospec.get("schedulingGates")) for g in _l(spec.get("schedulingGates"))):
        spec["schedulingGates"] = ospec.get("schedulingGates")
    if not errs and v._norm(spec) != v._norm(ospec):
        errs.append(errors.forbidden("spec", _POD_UPDATE_MSG))
    return errs


# ---------------------------------------------------------------- workloads


def _template(tpl: Any, path: str, selector: Any, restart: list[str]) -> FieldErrors:
    if not isinstance(tpl, dict):
        return [errors.required(path)]
    labels = _d(_d(tpl.get("metadata")).get("labels"))
    errs = v.validate_labels(labels, f"{path}.metadata.labels")
    if isinstance(selector, dict) and selector and not v.label_selector_matches(selector, labels):
        detail = "`selector` does not match template `labels`"
        errs.append(_invalid(f"{path}.metadata.labels", labels, detail))
    errs += _pod_spec(tpl.get("spec"), f"{path}.spec")
    policy = _d(tpl.get("spec")).get("restartPolicy")
    if policy is not None and policy not in restart:
        errs.append(errors.not_supported(f"{path}.spec.restartPolicy", policy, restart))
    return errs


def _rolling(ru: Any, path: str) -> FieldErrors:
    ru = _d(ru)
    un_path, surge_path = f"{path}.maxUnavailable", f"{path}.maxSurge"
    un_errs, unavailable = v.int_or_percent(ru.get("maxUnavailable"), un_path)
    surge_errs, surge = v.int_or_percent(ru.get("maxSurge"), surge_path)
    errs = un_errs + surge_errs
    if isinstance(ru.get("maxUnavailable"), str) and not un_errs and unavailable > 100:
        errs.append(_invalid(un_path, ru["maxUnavailable"], "must not be greater than 100%"))
    if "maxUnavailable" in ru and "maxSurge" in ru and unavailable == 0 and surge == 0:
        detail = "may not be 0 when `maxSurge` is 0"
        errs.append(_invalid(un_path, ru["maxUnavailable"], detail))
    return errs


def _selector(kind: str, spec: dict[str, Any]) -> tuple[FieldErrors, Any]:
    selector = spec.get("selector")
    if kind == "ReplicationController":
        errs = v.validate_labels(selector, "spec.selector")
        return errs, {"matchLabels": selector} if isinstance(selector, dict) else None
    if not isinstance(selector, dict):
        return [errors.required("spec.selector")], None
    errs = v.validate_label_selector(selector, "spec.selector")
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        what = {"DaemonSet": "daemonset", "StatefulSet": "statefulset"}.get(kind, "deployment")
        errs.append(_invalid("spec.selector", selector, f"empty selector is invalid for {what}"))
    return errs, selector


def _strategy(kind: str, spec: dict[str, Any]) -> FieldErrors:
    if kind == "Deployment":
        strategy, spath = _d(spec.get("strategy")), "spec.strategy"
        errs = _enum(strategy.get("type"), f"{spath}.type", ["Recreate", "RollingUpdate"])
        if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
            detail = "may not be specified when strategy `type` is 'Recreate'"
            errs.append(errors.forbidden(f"{spath}.rollingUpdate", detail))
        elif strategy.get("rollingUpdate") is not None:
            errs += _rolling(strategy["rollingUpdate"], f"{spath}.rollingUpdate")
        pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
        if _is_int(pds) and _is_int(mrs) and pds <= mrs:
            detail = "must be greater than minReadySeconds"
            errs.append(_invalid("spec.progressDeadlineSeconds", pds, detail))
        return errs
    if kind not in ("DaemonSet", "StatefulSet"):
        return []
    strategy, spath = _d(spec.get("updateStrategy")), "spec.updateStrategy"
    errs = _enum(strategy.get("type"), f"{spath}.type", ["OnDelete", "RollingUpdate"])
    rolling = _d(strategy.get("rollingUpdate"))
    if kind == "DaemonSet":
        return errs + _rolling(rolling, f"{spath}.rollingUpdate")
    errs += _nonneg(rolling.get("partition"), f"{spath}.rollingUpdate.partition")
    policies = ["OrderedReady", "Parallel"]
    return errs + _enum(spec.get("podManagementPolicy"), "spec.podManagementPolicy", policies)


def _workload(kind: str, obj: dict[str, Any]) -> FieldErrors:
    spec = _d(obj.get("spec"))
    errs: FieldErrors = []
    for fld in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        errs += _nonneg(spec.get(fld), f"spec.{fld}")
    sel_errs, selector = _selector(kind, spec)
    errs += sel_errs + _template(spec.get("template"), "spec.template", selector, ["Always"])
    tspec = _d(_d(spec.get("template")).get("spec"))
    if kind in ("Deployment", "ReplicaSet") and tspec.get("activeDeadlineSeconds") is not None:
        detail = "activeDeadlineSeconds in ReplicaSet is not Supported"
        errs.append(errors.forbidden("spec.template.spec.activeDeadlineSeconds", detail))
    return errs + _strategy(kind, spec)


def _job_spec(spec: Any, path: str, manual_check: bool = True) -> FieldErrors:
    spec, errs = _d(spec), []
    for fld in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += _nonneg(spec.get(fld), f"{path}.{fld}")
    deadline = spec.get("activeDeadlineSeconds")
    if _is_int(deadline) and deadline <= 0:
        errs.append(_invalid(f"{path}.activeDeadlineSeconds", deadline, "must be greater than 0"))
    errs += _enum(spec.get("completionMode"), f"{path}.completionMode", ["Indexed", "NonIndexed"])
    selector = spec.get("selector")
    if manual_check and spec.get("manualSelector") is True and not isinstance(selector, dict):
        errs.append(errors.required(f"{path}.selector"))
    if isinstance(selector, dict):
        errs += v.validate_label_selector(selector, f"{path}.selector")
    restart = ["OnFailure", "Never"]
    return errs + _template(spec.get("template"), f"{path}.template", selector, restart)


def _cronjob(obj: dict[str, Any]) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(errors.required("spec.schedule"))
    elif isinstance(schedule, str) and not schedule.startswith("@"):
        fields = schedule.split()
        if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
            detail = "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            errs.append(_invalid("spec.schedule", schedule, detail))
        elif len(fields) != 5:
            detail = f"expected exactly 5 fields, found {len(fields)}: {schedule}"
            errs.append(_invalid("spec.schedule", schedule, detail))
    policies = ["Allow", "Forbid", "Replace"]
    errs += _enum(spec.get("concurrencyPolicy"), "spec.concurrencyPolicy", policies)
    for fld in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds"):
        errs += _nonneg(spec.get(fld), f"spec.{fld}")
    job_spec = _d(spec.get("jobTemplate")).get("spec")
    return errs + _job_spec(job_spec, "spec.jobTemplate.spec", manual_check=False)


# ---------------------------------------------------------------- services


def _service_port(port: Any, path: str, require_name: bool, names: set[str]) -> FieldErrors:
    port, errs = _d(port), []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(errors.required(_c(path, "name")))
    elif name:
        errs += _each(_c(path, "name"), name, v.is_dns1123_label(name))
        if name in names:
            errs.append(errors.duplicate(_c(path, "name"), name))
        names.add(name)
    errs += _each(_c(path, "port"), port.get("port"), v.is_valid_port_num(port.get("port")))
    errs += _enum(port.get("protocol"), _c(path, "protocol"), _PROTOCOLS)
    target = port.get("targetPort")
    if isinstance(target, str) and target:
        errs += _each(_c(path, "targetPort"), target, v.is_valid_port_name(target))
    elif _is_int(target) and target != 0:
        errs += _each(_c(path, "targetPort"), target, v.is_valid_port_num(target))
    return errs


def _service(obj: dict[str, Any]) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    stype, cluster_ip = spec.get("type"), spec.get("clusterIP") or ""
    ports = _l(spec.get("ports"))
    if not ports and cluster_ip != "None" and stype != "ExternalName":
        errs.append(errors.required("spec.ports"))
    if stype in ("NodePort", "LoadBalancer") and cluster_ip == "None":
        detail = f"may not be set to 'None' for {stype} services"
        errs.append(_invalid("spec.clusterIP", cluster_ip, detail))
    if stype == "ExternalName":
        if cluster_ip:
            errs.append(
                errors.forbidden("spec.clusterIP", "must be empty for ExternalName services")
            )
        if name := spec.get("externalName"):
            errs += _each("spec.externalName", name, v.is_dns1123_subdomain(str(name).rstrip(".")))
        else:
            errs.append(errors.required("spec.externalName"))
    elif cluster_ip and cluster_ip != "None":
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            detail = "must be empty, 'None', or a valid IP address"
            errs.append(_invalid("spec.clusterIP", cluster_ip, detail))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        errs += _service_port(port, f"spec.ports[{i}]", len(ports) > 1, names)
        key = (_d(port).get("protocol"), _d(port).get("port"))
        if key in seen:
            dup = v._json({"port": key[1], "protocol": key[0]})
            errs.append(
                errors.FieldError(
                    "FieldValueDuplicate", f"spec.ports[{i}]", f"Duplicate value: {dup}"
                )
            )
        seen.add(key)
        if stype == "ClusterIP" and _d(port).get("nodePort"):
            detail = "may not be used when `type` is 'ClusterIP'"
            errs.append(errors.forbidden(f"spec.ports[{i}].nodePort", detail))
    errs += v.validate_labels(spec.get("selector"), "spec.selector")
    errs += _enum(spec.get("sessionAffinity"), "spec.sessionAffinity", ["ClientIP", "None"])
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    return errs + _enum(stype, "spec.type", types)


# ---------------------------------------------------------------- config, secrets, others


def _config_map(kind: str, obj: dict[str, Any]) -> FieldErrors:
    errs: FieldErrors = []
    size = 0
    bags = ("data", "binaryData") if kind == "ConfigMap" else ("data", "stringData")
    for bag in bags:
        for key, value in _d(obj.get(bag)).items():
            errs += _each(f"{bag}[{key}]", key, v.is_config_map_key(key))
            if kind == "ConfigMap" and bag == "data" and key in _d(obj.get("binaryData")):
                errs.append(_invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
            if bag == "binaryData" or (kind == "Secret" and bag == "data"):
                errs += v.base64_errors(f"{bag}[{key}]", value)
            size += len(str(value))
    if size > v.MAX_SECRET_SIZE:
        path = "" if kind == "ConfigMap" else "data"
        msg = f"Too long: must have at most {v.MAX_SECRET_SIZE} bytes"
        errs.append(errors.FieldError("FieldValueTooLong", path, msg))
    if kind == "Secret":
        errs += _secret_type(obj)
    return errs


def _secret_type(obj: dict[str, Any]) -> FieldErrors:
    data = {**_d(obj.get("data")), **_d(obj.get("stringData"))}
    stype = obj.get("type")
    needed = {
        "kubernetes.io/dockercfg": [".dockercfg"],
        "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
        "kubernetes.io/tls": ["tls.crt", "tls.key"],
        "kubernetes.io/ssh-auth": ["ssh-privatekey"],
    }.get(str(stype), [])
    errs = [errors.required(f"data[{key}]") for key in needed if key not in data]
    if stype == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        errs += [errors.required("data[username]"), errors.required("data[password]")]
    annotations = _d(_d(obj.get("metadata")).get("annotations"))
    sa_key = "kubernetes.io/service-account.name"
    if stype == "kubernetes.io/service-account-token" and not annotations.get(sa_key):
        errs.append(errors.required(f"metadata.annotations[{sa_key}]"))
    return errs


def _node(obj: dict[str, Any]) -> FieldErrors:
    errs: FieldErrors = []
    for i, taint in enumerate(_l(_d(obj.get("spec")).get("taints"))):
        taint, tpath = _d(taint), f"spec.taints[{i}]"
        key = str(taint.get("key") or "")
        errs += _each(_c(tpath, "key"), key, v.is_qualified_name(key))
        if value := taint.get("value"):
            errs += _each(_c(tpath, "value"), value, v.is_valid_label_value(str(value)))
        effects = ["NoExecute", "NoSchedule", "PreferNoSchedule"]
        if not taint.get("effect"):
            errs.append(errors.required(_c(tpath, "effect")))
        errs += _enum(taint.get("effect") or None, _c(tpath, "effect"), effects)
    return errs


def _lease(obj: dict[str, Any]) -> FieldErrors:
    spec = _d(obj.get("spec"))
    duration, errs = spec.get("leaseDurationSeconds"), []
    if _is_int(duration) and duration <= 0:
        errs.append(_invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    return errs + _nonneg(spec.get("leaseTransitions"), "spec.leaseTransitions")


def _pvc(obj: dict[str, Any]) -> FieldErrors:
    spec, errs = _d(obj.get("spec")), []
    modes = _l(spec.get("accessModes"))
    if not modes:
        errs.append(errors.required("spec.accessModes", "at least 1 access mode is required"))
    for mode in modes:
        errs += _enum(mode, "spec.accessModes", _ACCESS_MODES)
    requests = _d(_d(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        errs.append(errors.required("spec.resources[storage]"))
    return errs + v.validate_resource_requirements(spec.get("resources"), "spec.resources", False)


def _spec_errors(kind: str, obj: dict[str, Any]) -> FieldErrors:
    if kind == "Pod":
        return _pod_spec(obj.get("spec"), "spec")
    if kind == "PodTemplate":
        return _template(obj.get("template"), "template", None, ["Always", "OnFailure", "Never"])
    if kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "ReplicationController"):
        return _workload(kind, obj)
    if kind == "Job":
        return _job_spec(obj.get("spec"), "spec")
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return simple(obj)
    if kind in ("ConfigMap", "Secret"):
        return _config_map(kind, obj)
    if kind == "Namespace":
        return v.validate_finalizer_names(_d(obj.get("spec")).get("finalizers"), "spec.finalizers")
    return validation_more.validate(kind, obj)


_SIMPLE = {
    "CronJob": _cronjob,
    "Service": _service,
    "Node": _node,
    "Lease": _lease,
    "PersistentVolumeClaim": _pvc,
}


def validate(kind: str, obj: dict[str, Any]) -> FieldErrors:
    finalizers = _d(obj.get("metadata")).get("finalizers")
    # core's rule; apiextensions/aggregator use the generic (no finalizers: nothing to check)
    if finalizers and kind not in _GENERIC_META_KINDS:
        errs = v.validate_finalizer_names(finalizers, "metadata.finalizers", False)
        return errs + _spec_errors(kind, obj)
    return _spec_errors(kind, obj)


_GENERIC_META_KINDS = frozenset({"CustomResourceDefinition", "APIService"})


# ---------------------------------------------------------------- updates


def _immutable(new: Any, old: Any, path: str) -> FieldErrors:
    return [] if v._norm(new) == v._norm(old) else [_invalid(path, new, v.FIELD_IMMUTABLE)]


def _immutability(kind: str, new: dict[str, Any], old: dict[str, Any]) -> FieldErrors:
    spec, ospec = _d(new.get("spec")), _d(old.get("spec"))
    if kind == "Pod":
        return _pod_update(new, old)
    if kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"):
        errs = _immutable(spec.get("selector"), ospec.get("selector"), "spec.selector")
        if kind == "StatefulSet":
            strip = {k: val for k, val in spec.items() if k not in _STS_MUTABLE}
            ostrip = {k: val for k, val in ospec.items() if k not in _STS_MUTABLE}
            if v._norm(strip) != v._norm(ostrip):
                errs.append(errors.forbidden("spec", _STS_UPDATE_MSG))
        return errs
    if kind == "Job":
        errs = _immutable(spec.get("selector"), ospec.get("selector"), "spec.selector")
        errs += _immutable(spec.get("template"), ospec.get("template"), "spec.template")
        fields = ["completionMode"] + (
            ["completions"] if spec.get("completionMode") != "Indexed" else []
        )
        for fld in fields:
            errs += _immutable(spec.get(fld), ospec.get(fld), f"spec.{fld}")
        return errs
    if kind == "Service":
        old_ip, new_ip = ospec.get("clusterIP") or "", spec.get("clusterIP") or ""
        external = "ExternalName" in (spec.get("type"), ospec.get("type"))
        if old_ip and new_ip and new_ip != old_ip and not external:
            ips = spec.get("clusterIPs") or [new_ip]
            return [_invalid("spec.clusterIPs[0]", ips, "may not change once set")]
        return []
    if kind in ("ConfigMap", "Secret"):
        errs = []
        if kind == "Secret" and new.get("type") and new.get("type") != old.get("type"):
            errs.append(_invalid("type", new.get("type"), v.FIELD_IMMUTABLE))
        if old.get("immutable") is True:
            if new.get("immutable") is not True:
                errs.append(errors.forbidden("immutable", _IMMUTABLE_SET))
            for bag in ("data", "binaryData"):
                if v._norm(new.get(bag) or {}) != v._norm(old.get(bag) or {}):
                    errs.append(errors.forbidden(bag, _IMMUTABLE_SET))
        return errs
    if kind == "PersistentVolumeClaim":
        mutable = ("resources", "volumeAttributesClassName", "volumeName")
        strip = {k: val for k, val in spec.items() if k not in mutable}
        ostrip = {k: val for k, val in ospec.items() if k not in mutable}
        if v._norm(strip) == v._norm(ostrip):
            return []
        return [errors.forbidden("spec", _PVC_UPDATE_MSG)]
    if kind == "StorageClass":
        errs = []
        for fld in ("parameters", "provisioner", "reclaimPolicy"):
            if v._norm(new.get(fld)) != v._norm(old.get(fld)):
                errs.append(errors.forbidden(fld, f"updates to {fld} are forbidden."))
        mode = new.get("volumeBindingMode")
        return errs + _immutable(mode, old.get("volumeBindingMode"), "volumeBindingMode")
    return []


def validate_update(kind: str, new: dict[str, Any], old: dict[str, Any]) -> FieldErrors:
    return _immutability(kind, new, old) + validation_more.validate_update(kind, new, old)


# ---------------------------------------------------------------- status updates

# The kinds whose status strategy in kube-apiserver validates a `/status` update as the
# metadata update and the status alone (`ValidatePodStatusUpdate`, `ValidateServiceStatusUpdate`,
# `ValidateDeploymentStatusUpdate`, `ValidateJobUpdateStatus`, ...): the spec is the stored one
# (`strategy.prepare_update` copied it), so validating it again is wasted work. Other kinds
# (nodes, CSRs, ...) validate the whole object on a status update, as on any update.
_STATUS_ALONE = frozenset(
    {
        "Pod",
        "Service",
        "PersistentVolumeClaim",
        "Namespace",
        "ReplicationController",
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "HorizontalPodAutoscaler",
    }
)


def validate_status_update(
    kind: str, new: dict[str, Any], old: dict[str, Any]
) -> FieldErrors | None:
    if kind not in _STATUS_ALONE:
        return None
    meta = _d(new.get("metadata"))
    errs = v.validate_object_meta_update(meta, _d(old.get("metadata")))
    finalizers = meta.get("finalizers")
    if finalizers:  # core's rule on update too (`ValidateObjectMetaUpdate` of pkg/apis/core)
        errs += v.validate_finalizer_names(finalizers, "metadata.finalizers", False)
    return errs  # kybern checks no status fields of these kinds (yet)
