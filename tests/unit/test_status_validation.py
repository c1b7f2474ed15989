"""The validation of an update through the `status` subresource
(`validation.validate_status_update`, used by the store for the kinds whose kube-apiserver status
strategy checks the metadata update and the status alone) gives the errors of the full path the
store ran before (object meta, object meta update, the kind's rules, the update rules) on
realistic stored objects and status writes, valid and broken; an invalid spec cannot come in
through `/status`; and the remembered non-negative quantities of `validate_resource_requirements`
give the long way's results."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kybern import storage
from kybern.api import defaults, errors, registry, validation
from kybern.apiserver import cache, strategy
from kybern.apiserver import store as storemod
from kybern.simnodes import objects as simobjects

Obj = dict[str, Any]
REG = registry.Registry()
TS = "2026-01-02T03:04:05Z"
UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def _res(kind: str) -> registry.Resource:
    found = [r for r in registry.BUILTIN if r.kind == kind]
    assert len(found) == 1, kind
    return found[0]


def _meta(name: str, **extra: Any) -> Obj:
    return {
        "name": name,
        "namespace": "default",
        "uid": UID,
        "resourceVersion": "42",
        "generation": 1,
        "creationTimestamp": TS,
        "labels": {"app": "web", "app.kubernetes.io/name": "web"},
        **extra,
    }


_CONTAINER = {
    "name": "c",
    "image": "registry.k8s.io/pause:3.10",
    "ports": [{"name": "http", "containerPort": 8080}],
    "env": [{"name": "A", "value": "1"}],
    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1"}},
}
_POD_SPEC = {"containers": [_CONTAINER], "volumes": [{"name": "tmp", "emptyDir": {}}]}
_TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": _POD_SPEC}
_SELECTOR = {"matchLabels": {"app": "web"}}


def _stored(kind: str) -> Obj:
    """A valid stored object of `kind`, defaulted as the server stores it."""
    api = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "DaemonSet": "apps/v1"}
    api |= {
        "StatefulSet": "apps/v1",
        "Job": "batch/v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
    }
    spec: Obj = {
        "Pod": {**_POD_SPEC, "nodeName": "node-1"},
        "Service": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        "PersistentVolumeClaim": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
        "Namespace": {"finalizers": ["kubernetes"]},
        "ReplicationController": {"replicas": 2, "selector": {"app": "web"}, "template": _TEMPLATE},
        "Deployment": {"replicas": 2, "selector": _SELECTOR, "template": _TEMPLATE},
        "ReplicaSet": {"replicas": 2, "selector": _SELECTOR, "template": _TEMPLATE},
        "DaemonSet": {"selector": _SELECTOR, "template": _TEMPLATE},
        "StatefulSet": {"serviceName": "web", "selector": _SELECTOR, "template": _TEMPLATE},
        "Job": {
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {**_POD_SPEC, "restartPolicy": "Never"},
            }
        },
        "HorizontalPodAutoscaler": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    }[kind]
    meta = _meta("web") if _res(kind).namespaced else {**_meta("web"), "namespace": None}
    if meta["namespace"] is None:
        del meta["namespace"]
    obj = {"apiVersion": api.get(kind, "v1"), "kind": kind, "metadata": meta}
    obj["spec"] = copy.deepcopy(spec)
    defaults.apply_defaults(kind, obj)
    if kind == "Job":
        defaults.generate_job_selector(obj)
    return obj


KINDS = sorted(validation._kinds()._STATUS_ALONE)


def _full(res: registry.Resource, new: Obj, old: Obj) -> validation.FieldErrors:
    """The store's validation of a status update before `validate_status_update`."""
    nmeta = new["metadata"]
    errs = validation.validate_object_meta(
        nmeta, namespaced=res.namespaced, name_rule=res.name_rule
    )
    errs += validation.validate_object_meta_update(nmeta, old["metadata"])
    errs += validation.validate(res.kind, new)
    return errs + validation.validate_update(res.kind, new, old)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # the exception itself is part of the behaviour compared
        return ("raised", type(e).__name__, str(e))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from(["", "Running", "True", "x" * 70, "a/b/c", "-bad-", "Ready", "10.0.0.1"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["phase", "conditions", "type", "status", "name", "ip", "x"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
# what the stored object's metadata may vary in (all of it valid)
_stored_meta = st.fixed_dictionaries(
    {},
    optional={
        "annotations": st.dictionaries(
            st.sampled_from(["example.com/a", "note", "A.b/c"]), st.text(max_size=5), max_size=2
        ),
        "finalizers": st.lists(
            st.sampled_from(["example.com/f", "kubernetes", "orphan", "other.io/x"]),
            max_size=2,
            unique=True,
        ),
        "ownerReferences": st.just(
            [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}]
        ),
        "deletionTimestamp": st.just(TS),
        "generation": st.integers(min_value=1, max_value=3),
    },
)
# what a status write may send besides the status (all but managedFields and uid is dropped)
_sent_meta = st.fixed_dictionaries(
    {},
    optional={
        "uid": st.sampled_from([UID, "other-uid", ""]),
        "managedFields": st.just([{"manager": "kubelet", "operation": "Update"}]),
        "labels": st.just({"-bad-": "x" * 70}),
        "finalizers": st.just(["bad/na/me"]),
        "name": st.just("renamed"),
        "generation": st.just(-1),
    },
)
_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _kubelet_status(pod: Obj, state: str) -> Obj:
    sim = simobjects.PodSim(
        uid=UID, node="node-1", ip="10.244.0.5", host_ip="10.0.0.1", started=1.0, run_started=2.0
    )
    sim.state = state
    status: Obj = simobjects.pod_status(pod, sim)
    return status


@_SETTINGS
@given(
    st.sampled_from(KINDS),
    _stored_meta,
    _sent_meta,
    st.one_of(_values, st.sampled_from(["running", "waiting", "terminated"])),
    st.booleans(),
)
def test_status_update_gives_the_full_path_errors(
    kind: str, stored_meta: Obj, sent_meta: Obj, status: Any, bad_spec: bool
) -> None:
    res = _res(kind)
    old = _stored(kind)
    old["metadata"].update(copy.deepcopy(stored_meta))
    assert _full(res, old, old) == []  # a valid stored object
    sent: Obj = {"metadata": copy.deepcopy(sent_meta)}
    if isinstance(status, str):  # a kubelet's status (of a pod-like object)
        sent["status"] = _kubelet_status(old, status)
    elif status is not None:
        sent["status"] = status
    if bad_spec:  # a spec sent along is dropped: it cannot come in through status
        sent["spec"] = {"containers": [{"name": "-Bad-"}], "replicas": -1, "selector": "x"}
    new = strategy.prepare_update(res, sent, old, "status")
    assert {k: val for k, val in new.items() if k not in ("status", "metadata")} == {
        k: val for k, val in old.items() if k not in ("status", "metadata")
    }
    fast = _outcome(validation.validate_status_update, kind, new, old)
    assert fast == _outcome(_full, res, new, old)


@_SETTINGS
@given(st.sampled_from(KINDS), _sent_meta, _values, st.data())
def test_status_update_of_a_broken_stored_object_reports_the_status_errors(
    kind: str, sent_meta: Obj, status: Any, data: st.DataObject
) -> None:
    """An object stored under other rules (its spec or name no longer valid): the status path
    reports what the full path reports minus what the stored object itself is found to break."""
    res = _res(kind)
    old = _stored(kind)
    broken = data.draw(
        st.sampled_from(["spec", "name", "labels", "finalizers"]), label="what is broken"
    )
    if broken == "spec":
        old["spec"] = {"replicas": -1, "containers": [{"name": "-Bad-"}], "selector": "x"}
    elif broken == "name":
        old["metadata"]["name"] = "Not_A_Name"
    elif broken == "labels":
        old["metadata"]["labels"] = {"-bad-": "x" * 70}
    else:
        old["metadata"]["finalizers"] = ["unqualified"]
    new = strategy.prepare_update(
        res, {"metadata": copy.deepcopy(sent_meta), "status": status}, old, "status"
    )
    fast = validation.validate_status_update(kind, new, old)
    assert fast is not None
    full = _full(res, new, old)
    of_stored = _full(res, old, old)
    assert all(e in full for e in fast)
    assert all(e in fast or e in of_stored for e in full)


def test_kinds_validated_whole_on_status_take_the_full_path() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": _meta("n1"), "spec": {}}
    for kind in ("Node", "CertificateSigningRequest", "CustomResourceDefinition", "Lease"):
        assert validation.validate_status_update(kind, node, node) is None


def test_pod_status_update_reports_meta_errors_and_ignores_the_spec() -> None:
    res = _res("Pod")
    old = _stored("Pod")
    sent = {
        "metadata": {"uid": "other-uid"},
        "spec": {"containers": []},  # dropped
        "status": _kubelet_status(old, "running"),
    }
    new = strategy.prepare_update(res, sent, old, "status")
    assert new["spec"] == old["spec"]
    errs = validation.validate_status_update("Pod", new, old)
    assert errs == _full(res, new, old)
    assert [(e.reason, e.field) for e in errs or []] == [("FieldValueInvalid", "metadata.uid")]
    ok = strategy.prepare_update(res, {"status": {"phase": "Running"}}, old, "status")
    assert validation.validate_status_update("Pod", ok, old) == []
    being_deleted = copy.deepcopy(old)
    being_deleted["metadata"]["deletionTimestamp"] = TS
    being_deleted["metadata"]["finalizers"] = ["example.com/f", "unqualified"]
    new = strategy.prepare_update(res, {"status": {}}, being_deleted, "status")
    errs = validation.validate_status_update("Pod", new, being_deleted)
    assert [e.field for e in errs or []] == ["metadata.finalizers"]


# ---------------------------------------------------------------- through the store


@pytest.fixture
async def store() -> AsyncIterator[storemod.Store]:
    backend = storage.open_backend("memory://")
    await backend.start()
    cacher = cache.Cacher(backend)
    await cacher.start(sorted({r.key_prefix for r in REG.all()}))
    s = storemod.Store(backend, cacher, REG, strategy.BuiltinHooks(cacher, "10.96.0.0/12"))
    ns = REG.lookup("", "v1", "namespaces")
    assert ns is not None
    await s.create(ns, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})
    yield s
    cacher.stop()
    await backend.close()


async def test_pod_status_patches_through_the_store(store: storemod.Store) -> None:
    pods = REG.lookup("", "v1", "pods")
    assert pods is not None
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "bench"}},
        "spec": {"containers": [copy.deepcopy(_CONTAINER)], "volumes": [{"name": "tmp"}]},
    }
    created = await store.create(pods, "d", pod)
    spec = copy.deepcopy(created["spec"])

    def set_status(o: Obj) -> Obj:
        o["status"] = {"phase": "Running", "podIP": "10.244.0.5"}
        o["spec"]["containers"][0]["name"] = "-Bad-"  # dropped: the spec is the stored one
        return o

    out = await store.guaranteed_update(pods, "d", "p", set_status, subresource="status")
    assert out["status"]["phase"] == "Running" and out["spec"] == spec

    def other_uid(o: Obj) -> Obj:
        o["metadata"]["uid"] = "other-uid"
        o["status"] = {"phase": "Failed"}
        return o

    with pytest.raises(errors.StatusError) as e:
        await store.guaranteed_update(pods, "d", "p", other_uid, subresource="status")
    assert e.value.code == 422
    assert [(c.reason, c.field) for c in e.value.causes] == [("FieldValueInvalid", "metadata.uid")]
    assert store.peek(pods, "d", "p") is not None
    cached = store.peek(pods, "d", "p")
    assert cached is not None and cached.obj["status"]["phase"] == "Running"


# ---------------------------------------------------------------- remembered quantities


@_SETTINGS
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["100m", "1", "128Mi", "-1", "1e3", "0", "1.5Gi", "x", "", "-0"]),
            st.integers(min_value=-3, max_value=3),
            st.just(0.5),
            st.none(),
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_remembered_quantities_give_the_long_way(values: list[Any], container: bool) -> None:
    names = ["cpu", "memory", "example.com/gpu", "pods", "hugepages-2Mi", "storage"]
    res = {
        "requests": dict(zip(names, values, strict=False)),
        "limits": dict(zip(reversed(names), values, strict=False)),
    }
    saved = validation._NONNEG_QUANTITIES
    try:
        validation._NONNEG_QUANTITIES = _Forgetful()  # the long way: nothing is remembered
        slow = _outcome(validation.validate_resource_requirements, res, "r", container)
        validation._NONNEG_QUANTITIES = {}
        for _ in range(2):  # the second round finds the valid ones remembered
            fast = _outcome(validation.validate_resource_requirements, res, "r", container)
            assert fast == slow
        remembered = validation._NONNEG_QUANTITIES
        assert all(k.__class__ is str for k in remembered)
        assert all(isinstance(q, Decimal) and q >= 0 for q in remembered.values())
    finally:
        validation._NONNEG_QUANTITIES = saved


class _Forgetful(dict[str, Decimal]):
    def __setitem__(self, key: str, value: Decimal) -> None:
        pass
