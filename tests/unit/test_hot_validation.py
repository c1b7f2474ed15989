"""The shortcuts of validation, defaulting and schema normalization give the results of the long
way: remembered valid names, lazily built field paths, the unchanged-spec pod update, the written
out pod defaults and QoS class, remembered timestamps and quantities, and `normalize`'s clean-object
check. Each is compared, on realistic pods randomly broken in many places (wrong types, bad names,
missing and unknown fields), with the long way: the general function kept beside it, or below a
copy of the code as it was before the shortcut (`_ref_*`)."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybern.api import defaults, errors, schema, validation, validation_kinds
from kybern.api.validation import (
    ANNOTATIONS_LIMIT,
    FIELD_IMMUTABLE,
    IS_NEGATIVE,
    FieldErrors,
    _c,
    _d,
    _enum,
    _go_strings,
    _invalid,
    _is_int,
    _l,
    _nonneg,
    canonical_quantity,
    is_dns1035_label,
    is_path_segment_name,
    parse_quantity,
)

# ---------------------------------------------------------------- the long way, as it was


def _ref_name_check(rule: str, name: str, prefix: bool = False) -> list[str]:
    if rule == "path":
        return is_path_segment_name(name)
    if prefix and name.endswith("-"):
        name = name[:-1] + "a"
    check = {"label": _ref_label, "dns1035": is_dns1035_label}.get(rule)
    return (check or _ref_subdomain)(name)


_ref_label = validation._dns1123_label_checked
_ref_subdomain = validation._dns1123_subdomain_checked
_ref_qualified = validation._qualified_name_checked
_ref_label_value = validation._label_value_checked


def _ref_validate_labels(labels: Any, path: str) -> FieldErrors:
    errs: FieldErrors = []
    for key, value in _d(labels).items():
        errs += [_invalid(path, key, m) for m in _ref_qualified(key)]
        if not isinstance(value, str):
            errs.append(_invalid(path, value, "must be a string"))
        else:
            errs += [_invalid(path, value, m) for m in _ref_label_value(value)]
    return errs


def _ref_resources(res: Any, path: str, container: bool = True) -> FieldErrors:
    res, errs = _d(res), []
    parsed: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    std = ("cpu", "memory", "ephemeral-storage")
    for part in ("limits", "requests"):
        for name, value in _d(res.get(part)).items():
            qpath = f"{path}.{part}[{name}]"
            standard = name in std or name.startswith("hugepages-") or "/" in name
            if container and not standard:
                errs.append(_invalid(qpath, name, "must be a standard resource for containers"))
            try:
                parsed[part][name] = parse_quantity(value)
            except ValueError as exc:
                errs.append(_invalid(qpath, value, str(exc)))
                continue
            if parsed[part][name] < 0:
                errs.append(_invalid(qpath, canonical_quantity(value), IS_NEGATIVE))
    for name, req in parsed["requests"].items():
        if name in parsed["limits"] and req > parsed["limits"][name]:
            limit = canonical_quantity(res["limits"][name])
            detail = f"must be less than or equal to {name} limit of {limit}"
            value = canonical_quantity(res["requests"][name])
            errs.append(_invalid(f"{path}.requests[{name}]", value, detail))
    return errs


def _ref_meta_common(meta: dict[str, Any], path: str) -> FieldErrors:
    errs = _nonneg(meta.get("generation"), _c(path, "generation"))
    errs += _ref_validate_labels(meta.get("labels"), _c(path, "labels"))
    annotations, apath = _d(meta.get("annotations")), _c(path, "annotations")
    size = 0
    for key, value in annotations.items():
        errs += [_invalid(apath, key, m) for m in _ref_qualified(key.lower())]
        size += len(key.encode()) + len(str(value).encode())
    if size > ANNOTATIONS_LIMIT:
        errs.append(
            errors.FieldError(
                "FieldValueTooLong", apath, f"Too long: must have at most {ANNOTATIONS_LIMIT} bytes"
            )
        )
    refs, rpath, controller = _l(meta.get("ownerReferences")), _c(path, "ownerReferences"), ""
    for ref in refs:
        ref = _d(ref)
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.rpartition("/")[2]:
            errs.append(_invalid(_c(rpath, "apiVersion"), api_version, "version must not be empty"))
        for fld in ("kind", "name", "uid"):
            if not ref.get(fld):
                errs.append(_invalid(_c(rpath, fld), ref.get(fld) or "", "must not be empty"))
        if ref.get("controller") is True:
            current = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                detail = (
                    'Only one reference can have Controller set to true. Found "true" in '
                    f"references for {controller} and {current}"
                )
                errs.append(_invalid(rpath, refs, detail))
            else:
                controller = current
    finalizers, fpath = _l(meta.get("finalizers")), _c(path, "finalizers")
    for fin in finalizers:
        errs += [_invalid(fpath, fin, m) for m in _ref_qualified(str(fin))]
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        detail = "finalizer orphan and foregroundDeletion cannot be both set"
        errs.append(_invalid(fpath, finalizers, detail))
    return errs


def _ref_object_meta(
    meta: dict[str, Any], *, namespaced: bool | None, name_rule: str, path: str = "metadata"
) -> FieldErrors:
    meta = _d(meta)
    errs: FieldErrors = []
    name, generate = meta.get("name") or "", meta.get("generateName") or ""
    if generate:
        gpath = _c(path, "generateName")
        errs += [_invalid(gpath, generate, m) for m in _ref_name_check(name_rule, generate, True)]
    if not name and not generate:
        errs.append(errors.required(_c(path, "name"), "name or generateName is required"))
    elif name:
        errs += [_invalid(_c(path, "name"), name, m) for m in _ref_name_check(name_rule, name)]
    namespace, npath = meta.get("namespace") or "", _c(path, "namespace")
    if namespaced and not namespace:
        errs.append(errors.required(npath))
    elif namespaced:
        errs += [_invalid(npath, namespace, m) for m in _ref_label(namespace)]
    elif namespaced is False and namespace:
        errs.append(errors.forbidden(npath, "not allowed on this type"))
    return errs + _ref_meta_common(meta, path)


def _ref_object_meta_update(
    new: dict[str, Any], old: dict[str, Any], *, path: str = "metadata"
) -> FieldErrors:
    new, old = _d(new), _d(old)
    errs: FieldErrors = []
    if old.get("deletionTimestamp"):
        added = sorted(set(_l(new.get("finalizers"))) - set(_l(old.get("finalizers"))))
        if added:
            detail = (
                "no new finalizers can be added if the object is being deleted, found new "
                f"finalizers {_go_strings(added)}"
            )
            errs.append(errors.forbidden(_c(path, "finalizers"), detail))
    gen_new, gen_old = new.get("generation"), old.get("generation")
    if _is_int(gen_new) and _is_int(gen_old) and gen_new < gen_old:
        errs.append(_invalid(_c(path, "generation"), gen_new, "must not be decremented"))
    always = ("name", "namespace")
    when_set = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")
    for fld in always + when_set:
        nv, ov = new.get(fld), old.get(fld)
        if fld in when_set and nv in (None, ""):
            continue
        if (nv or None) != (ov or None):
            errs.append(_invalid(_c(path, fld), nv, FIELD_IMMUTABLE))
    return errs + _ref_meta_common(new, path)


def _ref_container(ctr: Any, path: str, names: set[str], volumes: set[str]) -> FieldErrors:
    each = validation_kinds._each
    ctr, errs = _d(ctr), []
    name, npath = ctr.get("name") or "", _c(path, "name")
    if not name:
        errs.append(errors.required(npath))
    else:
        errs += each(npath, name, _ref_label(name))
        if name in names:
            errs.append(errors.duplicate(npath, name))
        names.add(name)
    if not ctr.get("image"):
        errs.append(errors.required(_c(path, "image")))
    pull = ["Always", "IfNotPresent", "Never"]
    errs += _enum(ctr.get("imagePullPolicy"), _c(path, "imagePullPolicy"), pull)
    policy = ctr.get("terminationMessagePolicy")
    errs += _enum(policy, _c(path, "terminationMessagePolicy"), ["File", "FallbackToLogsOnError"])
    errs += validation_kinds._ports(ctr.get("ports"), _c(path, "ports"))
    for i, env in enumerate(_l(ctr.get("env"))):
        ename, epath = _d(env).get("name") or "", f"{path}.env[{i}].name"
        if not ename:
            errs.append(errors.required(epath))
        elif any(not 32 <= ord(ch) < 127 or ch == "=" for ch in ename):
            errs.append(_invalid(epath, ename, validation_kinds._ENV_NAME_MSG))
    for i, mount in enumerate(_l(ctr.get("volumeMounts"))):
        mount, mpath = _d(mount), f"{path}.volumeMounts[{i}]"
        mname = mount.get("name") or ""
        if not mname:
            errs.append(errors.required(_c(mpath, "name")))
        elif mname not in volumes:
            msg = f'Not found: "{mname}"'
            errs.append(errors.FieldError("FieldValueNotFound", _c(mpath, "name"), msg))
        if not mount.get("mountPath"):
            errs.append(errors.required(_c(mpath, "mountPath")))
    return errs + _ref_resources(ctr.get("resources"), _c(path, "resources"))


def _ref_pod_spec(spec: Any, path: str) -> FieldErrors:
    each, v = validation_kinds._each, validation
    spec, errs = _d(spec), []
    volumes: set[str] = set()
    for i, vol in enumerate(_l(spec.get("volumes"))):
        vname, vpath = _d(vol).get("name") or "", f"{path}.volumes[{i}].name"
        if not vname:
            errs.append(errors.required(vpath))
        else:
            errs += each(vpath, vname, _ref_label(vname))
        if vname and vname in volumes:
            errs.append(errors.duplicate(vpath, vname))
        volumes.add(vname)
    if not _l(spec.get("containers")):
        errs.append(errors.required(_c(path, "containers")))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, ctr in enumerate(_l(spec.get(key))):
            errs += _ref_container(ctr, f"{path}.{key}[{i}]", names, volumes)
    restart = ["Always", "OnFailure", "Never"]
    errs += _enum(spec.get("restartPolicy"), _c(path, "restartPolicy"), restart)
    dns = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
    errs += _enum(spec.get("dnsPolicy"), _c(path, "dnsPolicy"), dns)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not _is_int(deadline) or not 1 <= deadline <= v.MAX_INT32):
        detail = v.inclusive_range_error(1, v.MAX_INT32)
        errs.append(_invalid(_c(path, "activeDeadlineSeconds"), deadline, detail))
    errs += _ref_validate_labels(spec.get("nodeSelector"), _c(path, "nodeSelector"))
    if sa := spec.get("serviceAccountName"):
        errs += each(_c(path, "serviceAccountName"), sa, _ref_subdomain(sa))
    for fld in ("hostname", "subdomain"):
        if value := spec.get(fld):
            errs += each(_c(path, fld), value, _ref_label(value))
    for i, tol in enumerate(_l(spec.get("tolerations"))):
        tol, tpath = _d(tol), f"{path}.tolerations[{i}]"
        errs += _enum(tol.get("operator") or None, _c(tpath, "operator"), ["Equal", "Exists"])
        effects = ["NoExecute", "NoSchedule", "PreferNoSchedule"]
        errs += _enum(tol.get("effect") or None, _c(tpath, "effect"), effects)
    return errs


def _ref_validate_pod(obj: dict[str, Any]) -> FieldErrors:
    meta = _d(obj.get("metadata"))
    errs = validation.validate_finalizer_names(meta.get("finalizers"), "metadata.finalizers", False)
    return errs + _ref_pod_spec(obj.get("spec"), "spec")


_set, _dict, _dicts, _get = defaults._set, defaults._dict, defaults._dicts, defaults._get


def _ref_default_container(container: dict[str, Any], host_network: bool) -> None:
    _set(container, "terminationMessagePath", "/dev/termination-log")
    _set(container, "terminationMessagePolicy", "File")
    _set(container, "imagePullPolicy", defaults._image_pull_policy(container.get("image")))
    for port in _dicts(container.get("ports")):
        _set(port, "protocol", "TCP")
        if host_network and port.get("containerPort"):
            _set(port, "hostPort", port["containerPort"])
    resources = _dict(container, "resources")
    defaults._canonical(resources.get("limits"))
    defaults._canonical(resources.get("requests"))
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(name)
        if isinstance(probe, dict):
            for key, value in defaults.PROBE_DEFAULTS.items():
                _set(probe, key, value)
            _set(probe, "failureThreshold", 3)
            defaults._handler(probe)
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        defaults._handler(lifecycle.get("postStart"))
        defaults._handler(lifecycle.get("preStop"))
    defaults._env(container)


def _ref_pod_spec_defaults(spec: dict[str, Any]) -> None:
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "securityContext", {})
    _set(spec, "enableServiceLinks", True)
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    elif spec.get("serviceAccount") and not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec.get(key)):
            _ref_default_container(container, host_network)
    for volume in _dicts(spec.get("volumes")):
        defaults._volume(volume)
    if isinstance(spec.get("overhead"), dict):
        defaults._canonical(spec["overhead"])


def _ref_qos_class(spec: dict[str, Any]) -> str:
    requests: dict[str, bool] = {}
    limits: dict[str, bool] = {}
    guaranteed = True
    for container in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        resources = _get(container, "resources") or {}
        own: dict[str, dict[str, Any]] = {}
        for part, seen in (("requests", requests), ("limits", limits)):
            own[part] = {}
            for name, value in (resources.get(part) or {}).items():
                if name not in ("cpu", "memory"):
                    continue
                try:
                    quantity = parse_quantity(value)
                except ValueError:
                    continue
                if quantity != 0:
                    seen[name] = True
                    own[part][name] = quantity
        if set(own["limits"]) != {"cpu", "memory"} or own["requests"] != own["limits"]:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _ref_pod_defaults(pod: dict[str, Any]) -> None:
    spec = _dict(pod, "spec")
    for key in ("initContainers", "containers"):
        for container in _dicts(spec.get(key)):
            resources = _dict(container, "resources")
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = _dict(resources, "requests")
                for name, value in limits.items():
                    _set(requests, name, value)
    _ref_pod_spec_defaults(spec)
    if not spec.get("priorityClassName"):
        _set(spec, "priority", 0)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    status = _dict(pod, "status")
    _set(status, "phase", "Pending")
    _set(status, "qosClass", _ref_qos_class(spec))


def _ref_normalize(
    group: str, version: str, kind: str, obj: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """`schema.normalize` without its clean-object check: the walk only."""
    node = schema._KIND_NODES[f"{group}/{version}/{kind}"]
    unknown: list[str] = []
    try:
        result = schema._walk_struct(node, obj, [], unknown)
    except schema._DecodeError as e:
        raise errors.bad_request(schema._prefix(version, kind) + str(e)) from None
    return result, unknown


# ---------------------------------------------------------------- random objects

TS = "2024-05-01T10:00:00Z"
TS_MICRO = "2024-05-01T10:00:00.123456Z"


def _pod() -> dict[str, Any]:
    """A pod as stored after a binding and a status update, using most checked fields."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "resourceVersion": "42",
            "generation": 1,
            "creationTimestamp": TS,
            "labels": {"app": "web", "app.kubernetes.io/name": "web"},
            "annotations": {"example.com/note": "x"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}
            ],
            "finalizers": ["example.com/f"],
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": TS,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}},
                }
            ],
        },
        "spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp"}],
            "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.25",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {
                        "limits": {"cpu": "1", "memory": "512Mi"},
                        "requests": {"cpu": "250m", "memory": "128Mi"},
                    },
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                },
                {
                    "name": "side",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                },
            ],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "activeDeadlineSeconds": 600,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "serviceAccountName": "default",
            "hostname": "web-0",
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeName": "node-1",
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": TS}
            ],
            "hostIP": "192.168.1.2",
            "podIPs": [{"ip": "10.0.0.5"}],
            "startTime": TS,
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": True,
                    "restartCount": 0,
                    "image": "nginx:1.25",
                    "imageID": "sha256:abc",
                    "state": {"running": {"startedAt": TS}},
                    "lastState": {},
                    "allocatedResources": {"cpu": "250m"},
                }
            ],
        },
    }


def _lease() -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease", "creationTimestamp": TS},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": TS_MICRO},
    }


def _event() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-0.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default"},
        "reason": "Scheduled",
        "message": "Successfully assigned default/web-0 to node-1",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "firstTimestamp": TS,
        "lastTimestamp": TS,
        "count": 1,
        "eventTime": None,
    }


# strings near the edges of the name, label, time and quantity rules
_WORDS = [
    "",
    "a",
    "web-0",
    "Web",
    "a.b",
    "-a",
    "a-",
    "a_b",
    "a/b",
    "/a",
    "a/",
    "a/b/c",
    "example.com/x",
    "-x.com/y",
    "x.com/-y",
    "a" * 63,
    "a" * 64,
    "b" * 64 + "/c",
    ("c" * 60 + ".") * 5,
    "Always",
    "Never",
    "ClusterFirst",
    "Equal",
    "NoSchedule",
    "orphan",
    "foregroundDeletion",
    "kubernetes",
    "cpu",
    "memory",
    "hugepages-2Mi",
    "example.com/gpu",
    "100m",
    "-1",
    "1Gi",
    "1e3",
    "1.5",
    "0",
    "x1",
    " 1 ",
    TS,
    TS_MICRO,
    "2024-13-01T10:00:00Z",
    "2024-05-01T10:00:00",
    "2024-05-01T10:00:00.12Z",
    "A=B",
    "é",
]
_names = st.one_of(st.sampled_from(_WORDS), st.text("abAB-._/09= ", max_size=70))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 1, -1, 2**31, 1.5, 0.0, 1.0]),
    _names,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(data: st.DataObject, obj: dict[str, Any], count: int) -> dict[str, Any]:
    """`obj` with `count` random changes: a value replaced, a key added or removed."""
    for _ in range(count):
        paths = _paths(obj)[1:]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = obj
        for seg in path[:-1]:
            parent = parent[seg]
        action = data.draw(st.sampled_from(["replace", "replace", "add", "delete"]))
        if action == "replace":
            parent[path[-1]] = data.draw(_values)
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(_names)] = data.draw(_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    return obj


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """What `fn` returns, or the type and text of what it raises."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:  # the exception itself is part of the behaviour compared
        return ("raised", type(e).__name__, str(e))


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- validation


@_SETTINGS
@given(st.lists(_names, min_size=1, max_size=8))
def test_remembered_name_checks_give_the_long_way(values: list[str]) -> None:
    checks = [
        (validation.is_dns1123_label, _ref_label),
        (validation.is_dns1123_subdomain, _ref_subdomain),
        (validation.is_qualified_name, _ref_qualified),
        (validation.is_valid_label_value, _ref_label_value),
    ]
    for value in values + values:  # the second round finds the valid ones remembered
        for fast, slow in checks:
            assert _outcome(fast, value) == _outcome(slow, value), (fast.__name__, value)


def test_name_checks_forget_when_full_and_remember_only_strings() -> None:
    class Name(str):
        pass

    saved = set(validation._VALID_LABELS)
    try:
        validation._VALID_LABELS.clear()
        for i in range(validation._VALID_MAX + 5):
            assert validation.is_dns1123_label(f"n{i}") == []
        assert 0 < len(validation._VALID_LABELS) <= validation._VALID_MAX
        validation._VALID_LABELS.clear()
        assert validation.is_dns1123_label(Name("sub")) == []
        assert not validation._VALID_LABELS  # a subclass takes the long way, each time
        first = validation.is_dns1123_label("ok")
        first.append("x")  # callers may extend the list they get
        assert validation.is_dns1123_label("ok") == []
    finally:
        validation._VALID_LABELS.clear()
        validation._VALID_LABELS.update(saved)


@_SETTINGS
@given(st.data(), st.integers(min_value=0, max_value=6))
def test_object_meta_checks_give_the_long_way(data: st.DataObject, count: int) -> None:
    old = _pod()["metadata"]
    new = _mutate(data, {"metadata": copy.deepcopy(old)}, count).get("metadata")
    for rule in ("subdomain", "label", "dns1035", "path"):
        for namespaced in (True, False, None):
            kw = {"namespaced": namespaced, "name_rule": rule}
            fast = _outcome(validation.validate_object_meta, new, **kw)
            assert fast == _outcome(_ref_object_meta, new, **kw)
    fast = _outcome(validation.validate_object_meta_update, new, old)
    assert fast == _outcome(_ref_object_meta_update, new, old)
    fast = _outcome(validation.validate_object_meta_update, old, new)
    assert fast == _outcome(_ref_object_meta_update, old, new)


@_SETTINGS
@given(st.data(), st.integers(min_value=0, max_value=6))
def test_pod_validation_gives_the_long_way(data: st.DataObject, count: int) -> None:
    pod = _mutate(data, _pod(), count)
    assert _outcome(validation.validate, "Pod", pod) == _outcome(_ref_validate_pod, pod)
    containers = _l(_d(pod.get("spec")).get("containers"))
    resources = _d(containers[0]).get("resources") if containers else None
    for container in (False, True):
        fast = _outcome(validation.validate_resource_requirements, resources, "r", container)
        assert fast == _outcome(_ref_resources, resources, "r", container)


@_SETTINGS
@given(st.data(), st.integers(min_value=0, max_value=4))
def test_unchanged_spec_update_gives_the_long_way(data: st.DataObject, count: int) -> None:
    old = _mutate(data, _pod(), count)
    new = copy.deepcopy(old)
    if data.draw(st.booleans()):  # a status update: only the status differs
        new["status"] = data.draw(_values)
    else:  # any update
        _mutate(data, new, data.draw(st.integers(min_value=0, max_value=3)))
    fast = _outcome(validation.validate_update, "Pod", new, old)
    slow = _outcome(validation_kinds._pod_update_rules, new, old)
    assert fast == slow


def test_unchanged_spec_update_shortcut_is_taken_only_for_an_equal_spec() -> None:
    old = _pod()
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Succeeded"}
    assert validation.validate_update("Pod", new, old) == []
    new["spec"]["containers"][0]["name"] = "other"
    errs = validation.validate_update("Pod", new, old)
    assert [e.field for e in errs] == ["spec"]
    assert errs == validation_kinds._pod_update_rules(new, old)


# ---------------------------------------------------------------- defaulting


@_SETTINGS
@given(st.data(), st.integers(min_value=0, max_value=6), st.booleans())
def test_pod_defaults_give_the_long_way(data: st.DataObject, count: int, bare: bool) -> None:
    pod = _pod()
    if bare:  # as created: nothing defaulted yet
        pod.pop("status")
        for ctr in pod["spec"]["containers"]:
            ctr.pop("imagePullPolicy", None)
    pod = _mutate(data, pod, count)
    fast, slow = copy.deepcopy(pod), copy.deepcopy(pod)
    assert _outcome(defaults.apply_defaults, "Pod", fast) == _outcome(_ref_pod_defaults, slow)
    assert repr(fast) == repr(slow)  # the same values, types and key order
    spec = _d(pod.get("spec"))
    assert _outcome(defaults._qos_class, spec) == _outcome(_ref_qos_class, spec)
    # pod templates share the PodSpec defaults
    fast, slow = copy.deepcopy(spec), copy.deepcopy(spec)
    fast_out = _outcome(defaults.pod_spec_defaults, fast)
    assert fast_out == _outcome(_ref_pod_spec_defaults, slow)
    assert repr(fast) == repr(slow)


_quantities = st.sampled_from(["1", "1000m", "0", "100m", "128Mi", "1Gi", "-1", "bad", 1, 0, 1.5])
_resource_lists = st.dictionaries(
    st.sampled_from(["cpu", "memory", "example.com/gpu", "hugepages-2Mi", "bogus"]),
    _quantities,
    max_size=3,
)
_resources = st.fixed_dictionaries(
    {}, optional={"requests": _resource_lists, "limits": _resource_lists}
)


@_SETTINGS
@given(st.lists(_resources, min_size=1, max_size=3), st.lists(_resources, max_size=2))
def test_qos_class_and_resources_give_the_long_way(
    containers: list[dict[str, Any]], inits: list[dict[str, Any]]
) -> None:
    spec = {
        "containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)],
        "initContainers": [{"name": f"i{i}", "resources": r} for i, r in enumerate(inits)],
    }
    assert _outcome(defaults._qos_class, spec) == _outcome(_ref_qos_class, spec)
    fast, slow = {"spec": copy.deepcopy(spec)}, {"spec": copy.deepcopy(spec)}
    assert _outcome(defaults.apply_defaults, "Pod", fast) == _outcome(_ref_pod_defaults, slow)
    assert repr(fast) == repr(slow)
    for res in containers:
        for container in (False, True):
            fast_errs = _outcome(validation.validate_resource_requirements, res, "r", container)
            assert fast_errs == _outcome(_ref_resources, res, "r", container)


# ---------------------------------------------------------------- schema normalization


def _normalize_both(group: str, version: str, kind: str, obj: dict[str, Any]) -> None:
    fast = _outcome(schema.normalize, group, version, kind, obj)
    slow = _outcome(_ref_normalize, group, version, kind, obj)
    if fast[0] == "raised":
        assert fast == slow
        return
    assert slow[0] == "ok"
    assert repr(fast[1]) == repr(slow[1])
    if not slow[1][1] and slow[1][0] is obj:  # nothing pruned: the very same object
        assert fast[1][0] is obj


@_SETTINGS
@given(st.data(), st.integers(min_value=0, max_value=5))
def test_normalize_gives_the_walk(data: st.DataObject, count: int) -> None:
    for group, kind, make in (("", "Pod", _pod), ("", "Event", _event)):
        obj = _mutate(data, make(), count)
        _normalize_both(group, "v1", kind, obj)
        _normalize_both(group, "v1", kind, obj)  # again, with values remembered
    lease = _mutate(data, _lease(), count)
    _normalize_both("coordination.k8s.io", "v1", "Lease", lease)


@pytest.mark.parametrize("make", [_pod, _lease, _event])
def test_clean_objects_are_returned_as_they_are(make: Any) -> None:
    obj = make()
    group = "coordination.k8s.io" if obj["kind"] == "Lease" else ""
    node = schema._KIND_NODES[f"{group}/v1/{obj['kind']}"]
    assert schema._clean_struct(node, obj)
    assert schema.normalize(group, "v1", obj["kind"], obj) == (obj, [])
    assert schema.normalize(group, "v1", obj["kind"], obj)[0] is obj


def test_clean_check_refuses_what_the_walk_prunes_or_rejects() -> None:
    node = schema._KIND_NODES["/v1/Pod"]
    pod = _pod()
    pod["spec"]["containers"][0]["bogus"] = 1
    assert not schema._clean_struct(node, pod)
    assert schema.normalize("", "v1", "Pod", pod)[1] == ["spec.containers[0].bogus"]
    pod = _pod()
    pod["status"]["startTime"] = "yesterday"
    with pytest.raises(schema._DecodeError):
        schema._clean_struct(node, pod)
    with pytest.raises(errors.StatusError) as err:
        schema.normalize("", "v1", "Pod", pod)
    assert 'parsing time "yesterday"' in err.value.message


@_SETTINGS
@given(st.lists(_names, min_size=1, max_size=6))
def test_remembered_times_and_quantities_give_the_long_way(values: list[str]) -> None:
    def slow_time(v: str) -> None:
        schema._parse_time(v, schema._RFC3339, "2006-01-02T15:04:05Z07:00")

    def slow_micro(v: str) -> None:
        schema._parse_time(v, schema._RFC3339_MICRO, "2006-01-02T15:04:05.000000Z07:00")

    def slow_quantity(v: str) -> None:
        saved = set(schema._QTY_PASSED)
        schema._QTY_PASSED.clear()
        try:
            schema._check_quantity(v)
        finally:
            schema._QTY_PASSED.update(saved)

    for value in values + values:
        assert _outcome(schema._check_time, value) == _outcome(slow_time, value)
        assert _outcome(schema._check_micro_time, value) == _outcome(slow_micro, value)
        assert _outcome(schema._check_quantity, value) == _outcome(slow_quantity, value)
