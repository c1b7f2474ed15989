"""autoscaling/v1 <-> autoscaling/v2 HorizontalPodAutoscaler conversion as kube-apiserver 1.32
does it: what v1 cannot express (other metrics, current metrics, conditions, behavior) rides in
the `autoscaling.alpha.kubernetes.io/*` annotations and comes back; v1's CPU target is the
first cpu Utilization metric and goes last on the way back; a v1 object with no metric gets the
80% CPU default; annotations are decoded as Go does (case-insensitive keys, malformed ones
ignored); the input is never modified; a validation error on the converted CPU metric names
v1's field."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.api import conversion, errors
from kybern.api import conversion_autoscaling as ca

Obj = dict[str, Any]
V1, V2 = "autoscaling/v1", "autoscaling/v2"
TS = "2026-01-02T03:04:05Z"


def hpa(api_version: str, spec: Obj, status: Obj | None = None, **meta: Any) -> Obj:
    obj: Obj = {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "d", "resourceVersion": "7", **meta},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


REF = {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}


def cpu(utilization: int) -> Obj:
    target = {"type": "Utilization", "averageUtilization": utilization}
    return {"type": "Resource", "resource": {"name": "cpu", "target": target}}


# ---- hand-checked examples -------------------------------------------------------------------


def test_v1_cpu_target_is_a_v2_cpu_metric_and_back() -> None:
    v1 = hpa(V1, {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 5,
                  "targetCPUUtilizationPercentage": 50})  # fmt: skip
    v2 = conversion.convert(v1, V2)
    assert v2["apiVersion"] == V2
    assert v2["spec"] == {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 5,
                          "metrics": [cpu(50)]}  # fmt: skip
    assert "annotations" not in v2["metadata"] and "status" not in v2
    back = conversion.convert(v2, V1)
    assert back["spec"] == v1["spec"]
    assert back["status"] == {"currentReplicas": 0, "desiredReplicas": 0}  # Go never omits them
    assert "annotations" not in back["metadata"]


def test_a_v1_object_without_metrics_gets_the_default_cpu_target() -> None:
    v2 = conversion.convert(hpa(V1, {"scaleTargetRef": REF, "maxReplicas": 3}), V2)
    assert v2["spec"]["metrics"] == [cpu(80)]
    assert conversion.convert(v2, V1)["spec"]["targetCPUUtilizationPercentage"] == 80


def test_what_v1_cannot_say_travels_in_annotations() -> None:
    memory = {"type": "Resource",
              "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                        "averageValue": "500Mi"}}}  # fmt: skip
    qps = {"name": "qps", "selector": {"matchLabels": {"a": "b"}}}
    by_ten = {"type": "AverageValue", "averageValue": "10"}
    pods = {"type": "Pods", "pods": {"metric": qps, "target": by_ten}}
    policies = [{"type": "Pods", "value": 1, "periodSeconds": 30}]
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Min",
                              "policies": policies}}  # fmt: skip
    status = {
        "observedGeneration": 3, "lastScaleTime": TS, "currentReplicas": 2, "desiredReplicas": 4,
        "currentMetrics": [{"type": "Resource",
                            "resource": {"name": "cpu", "current": {"averageUtilization": 61,
                                                                    "averageValue": "120m"}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": TS,
                        "reason": "ReadyForNewScale", "message": "a <b> & c"}],
    }  # fmt: skip
    v2 = hpa(V2, {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 9,
                  "metrics": [memory, cpu(70), pods], "behavior": behavior}, status,
             annotations={"team": "x"})  # fmt: skip
    before = copy.deepcopy(v2)
    v1 = conversion.convert(v2, V1)
    assert v2 == before  # not modified
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 70
    assert v1["status"] == {"observedGeneration": 3, "lastScaleTime": TS, "currentReplicas": 2,
                            "desiredReplicas": 4,
                            "currentCPUUtilizationPercentage": 61}  # fmt: skip
    notes = v1["metadata"]["annotations"]
    assert notes["team"] == "x"
    # Go's encoding of the v1 types (struct field order, `<>&` escaped) and of the internal
    # behavior type (no json tags: Go field names)
    assert notes[ca.METRICS] == (
        '[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"500Mi"}},'
        '{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10",'
        '"selector":{"matchLabels":{"a":"b"}}}}]'
    )
    assert notes[ca.CURRENT_METRICS] == (
        '[{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":61,'
        '"currentAverageValue":"120m"}}]'
    )
    assert notes[ca.BEHAVIOR] == (
        '{"ScaleUp":null,"ScaleDown":{"StabilizationWindowSeconds":60,"SelectPolicy":"Min",'
        '"Policies":[{"Type":"Pods","Value":1,"PeriodSeconds":30}]}}'
    )
    assert notes[ca.CONDITIONS] == (
        '[{"type":"AbleToScale","status":"True","lastTransitionTime":"2026-01-02T03:04:05Z",'
        '"reason":"ReadyForNewScale","message":"a \\u003cb\\u003e \\u0026 c"}]'
    )
    back = conversion.convert(v1, V2)
    # everything comes back, the CPU metric after the others; the annotations go
    assert back["spec"]["metrics"] == [memory, pods, cpu(70)]
    assert back["spec"]["behavior"] == behavior
    assert back["status"] == status
    assert back["metadata"]["annotations"] == {"team": "x"}


def test_the_first_cpu_utilization_metric_is_v1s_target() -> None:
    """kube's conversion_test: a cpu AverageValue metric before a cpu Utilization one."""
    by_value = {"type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "AverageValue",
                                                       "averageValue": "300m"}}}  # fmt: skip
    v1 = conversion.convert(
        hpa(V2, {"scaleTargetRef": REF, "maxReplicas": 3, "metrics": [by_value, cpu(70), cpu(20)]}),
        V1,
    )
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 70
    # the AverageValue one is kept in the annotation; the second utilization one is lost
    assert json.loads(v1["metadata"]["annotations"][ca.METRICS]) == [
        {"type": "Resource", "resource": {"name": "cpu", "targetAverageValue": "300m"}}
    ]


def test_an_object_metric_by_average_value_gets_a_zero_value() -> None:
    """1.32's v1 ObjectMetricSource has a non-pointer targetValue: it comes back as value 0."""
    obj_metric = {"type": "Object",
                  "object": {"describedObject": {"kind": "Service", "name": "s"},
                             "metric": {"name": "rps"},
                             "target": {"type": "AverageValue", "averageValue": "5"}}}  # fmt: skip
    v1 = conversion.convert(
        hpa(V2, {"scaleTargetRef": REF, "maxReplicas": 3, "metrics": [obj_metric]}), V1
    )
    assert json.loads(v1["metadata"]["annotations"][ca.METRICS]) == [
        {"type": "Object", "object": {"target": {"kind": "Service", "name": "s"},
                                      "metricName": "rps", "targetValue": "0",
                                      "averageValue": "5"}}
    ]  # fmt: skip
    assert "targetCPUUtilizationPercentage" not in v1["spec"]
    back = conversion.convert(v1, V2)
    assert back["spec"]["metrics"][0]["object"]["target"] == {
        "type": "AverageValue", "value": "0", "averageValue": "5"
    }  # fmt: skip


def test_annotations_decode_as_go_does() -> None:
    notes = {
        # keys matched case-insensitively, unknown keys ignored, quantities as numbers
        ca.METRICS: '[{"TYPE":"Pods","pods":{"MetricName":"q","targetaveragevalue":2,"x":1}}]',
        ca.BEHAVIOR: '{"scaleup":{"selectpolicy":"Disabled"}}',
        ca.CONDITIONS: "not json",  # ignored
        ca.CURRENT_METRICS: '[{"type":"Resource","resource":{"name":"cpu","currentAverageValue":'
        '"1x"}}]',  # not a quantity: the whole annotation is ignored
        "keep": "me",
    }
    v1 = hpa(V1, {"scaleTargetRef": REF, "maxReplicas": 3, "targetCPUUtilizationPercentage": 40},
             {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 9},
             annotations=notes)  # fmt: skip
    v2 = conversion.convert(v1, V2)
    assert v2["spec"]["metrics"] == [
        {"type": "Pods", "pods": {"metric": {"name": "q"},
                                  "target": {"type": "AverageValue", "averageValue": "2"}}},
        cpu(40),
    ]  # fmt: skip
    assert v2["spec"]["behavior"] == {"scaleUp": {"selectPolicy": "Disabled"}}
    assert v2["status"] == {
        "currentReplicas": 1, "desiredReplicas": 1,
        "currentMetrics": [{"type": "Resource",
                            "resource": {"name": "cpu", "current": {"averageUtilization": 9}}}],
    }  # fmt: skip
    assert v2["metadata"]["annotations"] == {"keep": "me"}
    # a behavior without rules is no behavior; a null annotation list is no metric
    v1["metadata"]["annotations"] = {ca.BEHAVIOR: '{"ScaleUp":null}', ca.METRICS: "null"}
    v2 = conversion.convert(v1, V2)
    assert "behavior" not in v2["spec"] and v2["spec"]["metrics"] == [cpu(40)]
    assert "annotations" not in v2["metadata"]


def test_stale_round_trip_annotations_are_dropped_on_the_way_to_v1() -> None:
    v2 = hpa(V2, {"scaleTargetRef": REF, "maxReplicas": 3, "metrics": [cpu(50)]},
             annotations={ca.METRICS: "[]", ca.CONDITIONS: "[]"})  # fmt: skip
    v1 = conversion.convert(v2, V1)
    assert "annotations" not in v1["metadata"]
    assert v1["metadata"] is not v2["metadata"]


def test_same_version_and_unknown_conversions() -> None:
    v2 = hpa(V2, {"scaleTargetRef": REF, "maxReplicas": 3})
    assert conversion.convert(v2, V2) is v2
    try:
        conversion.convert(v2, "autoscaling/v9")
    except errors.StatusError as e:
        assert e.code == 500
    else:
        raise AssertionError("no error")


def test_errors_of_the_cpu_metric_name_v1s_field() -> None:
    v2 = conversion.convert(
        hpa(V1, {"scaleTargetRef": REF, "maxReplicas": 0, "targetCPUUtilizationPercentage": 0}),
        V2,
    )
    errs = [
        errors.invalid_value("spec.metrics[0].resource.target.averageUtilization", 0, "must be "
                             "greater than 0"),
        errors.invalid_value("spec.maxReplicas", 0, "must be greater than 0"),
    ]  # fmt: skip
    got = conversion.field_errors(v2, V1, errs)
    assert [e.field for e in got] == ["spec.targetCPUUtilizationPercentage", "spec.maxReplicas"]
    assert got[0].message == errs[0].message
    assert conversion.field_errors(v2, V2, errs) == errs


# ---- properties ----------------------------------------------------------------------------

_names = st.text(alphabet="abcxyz-", min_size=1, max_size=6)
_qty = st.sampled_from(["1", "250m", "1Gi", "3500", "0.5"])
_pct = st.integers(min_value=1, max_value=500)
_labels = st.dictionaries(_names, _names, max_size=2)
_selector = st.none() | st.fixed_dictionaries({"matchLabels": _labels})


def _ident(name: str, sel: Obj | None) -> Obj:
    return {"name": name} if sel is None else {"name": name, "selector": sel}


@st.composite
def _metric(draw: st.DrawFn) -> Obj:
    """A well-formed v2 metric that is not a cpu Utilization one."""
    kind = draw(st.sampled_from(["Resource", "ContainerResource", "Pods", "Object", "External"]))
    if kind in ("Resource", "ContainerResource"):
        name = draw(
            st.sampled_from(["cpu", "memory"] if kind == "ContainerResource" else ["memory"])
        )
        if draw(st.booleans()):
            target: Obj = {"type": "Utilization", "averageUtilization": draw(_pct)}
        else:
            target = {"type": "AverageValue", "averageValue": draw(_qty)}
        src: Obj = {"name": name, "target": target}
        if kind == "ContainerResource":
            src["container"] = draw(_names)
        return {"type": kind, "resource" if kind == "Resource" else "containerResource": src}
    if kind == "Pods":
        target = {"type": "AverageValue", "averageValue": draw(_qty)}
        return {"type": kind, "pods": {"metric": _ident(draw(_names), draw(_selector)),
                                       "target": target}}  # fmt: skip
    if kind == "Object":
        target = {"type": "Value", "value": draw(_qty)}
        described = {"kind": "Service", "name": draw(_names)}
        metric = _ident(draw(_names), draw(_selector))
        src = {"describedObject": described, "target": target, "metric": metric}
        return {"type": kind, "object": src}
    if draw(st.booleans()):
        target = {"type": "Value", "value": draw(_qty)}
    else:
        target = {"type": "AverageValue", "averageValue": draw(_qty)}
    return {"type": kind, "external": {"metric": _ident(draw(_names), draw(_selector)),
                                       "target": target}}  # fmt: skip


@st.composite
def _current(draw: st.DrawFn) -> Obj:
    """A v2 current metric with the values v1's status types always carry."""
    kind = draw(st.sampled_from(["Resource", "ContainerResource", "Pods", "Object", "External"]))
    if kind in ("Resource", "ContainerResource"):
        current: Obj = {"averageValue": draw(_qty)}
        if draw(st.booleans()):
            current["averageUtilization"] = draw(_pct)
        src: Obj = {"name": draw(st.sampled_from(["cpu", "memory"])), "current": current}
        if kind == "ContainerResource":
            src["container"] = draw(_names)
        return {"type": kind, "resource" if kind == "Resource" else "containerResource": src}
    ident = _ident(draw(_names), draw(_selector))
    if kind == "Pods":
        return {"type": kind, "pods": {"metric": ident, "current": {"averageValue": draw(_qty)}}}
    current = {"value": draw(_qty)}
    if draw(st.booleans()):
        current["averageValue"] = draw(_qty)
    if kind == "Object":
        described = {"kind": "Service", "name": "s"}
        src = {"metric": ident, "current": current, "describedObject": described}
        return {"type": kind, "object": src}
    return {"type": kind, "external": {"metric": ident, "current": current}}


_rules = st.fixed_dictionaries(
    {},
    optional={
        "stabilizationWindowSeconds": st.integers(0, 3600),
        "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
        "policies": st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(["Pods", "Percent"]),
                                   "value": st.integers(1, 100),
                                   "periodSeconds": st.integers(1, 1800)}),
            min_size=1, max_size=2),
    },
)  # fmt: skip
_condition = st.fixed_dictionaries(
    {"type": st.sampled_from(["AbleToScale", "ScalingActive"]),
     "status": st.sampled_from(["True", "False"])},
    optional={"lastTransitionTime": st.just(TS), "reason": _names, "message": st.text(max_size=8)},
).map(lambda c: {k: v for k, v in c.items() if v != ""})  # fmt: skip


@st.composite
def v2_objects(draw: st.DrawFn) -> Obj:
    metrics = draw(st.lists(_metric(), max_size=3))
    if not metrics or draw(st.booleans()):  # stored ones have a metric (the default at least)
        # at most one cpu Utilization metric: v1 has one field for it
        metrics.insert(draw(st.integers(0, len(metrics))), cpu(draw(_pct)))
    spec: Obj = {"scaleTargetRef": REF, "maxReplicas": draw(st.integers(1, 20))}
    if draw(st.booleans()):
        spec["minReplicas"] = draw(st.integers(1, 5))
    spec["metrics"] = metrics
    behavior = draw(st.fixed_dictionaries({}, optional={"scaleUp": _rules, "scaleDown": _rules}))
    if behavior:
        spec["behavior"] = behavior
    status: Obj | None = None
    if draw(st.booleans()):
        status = {"desiredReplicas": draw(st.integers(0, 9))}
        if draw(st.booleans()):
            status["currentReplicas"] = draw(st.integers(1, 9))
        if draw(st.booleans()):
            status["lastScaleTime"] = TS
        currents = draw(st.lists(_current(), max_size=2))
        if currents:
            status["currentMetrics"] = currents
        conditions = draw(st.lists(_condition, max_size=2))
        if conditions:
            status["conditions"] = conditions
    notes = draw(st.dictionaries(_names, st.text(max_size=5), max_size=2))
    return hpa(V2, spec, status, **({"annotations": notes} if notes else {}))


def _cpu_last(v2: Obj) -> Obj:
    """`v2` as a v1 round trip gives it back: the cpu metric after the others, a status (Go's
    zero one) where there was none."""
    out = copy.deepcopy(v2)
    out.setdefault("status", {"desiredReplicas": 0})  # v1's status is never omitted
    metrics = out["spec"]["metrics"]
    out["spec"]["metrics"] = [m for m in metrics if not ca.is_cpu_utilization(m)] + [
        m for m in metrics if ca.is_cpu_utilization(m)
    ]
    return out


@settings(max_examples=300, deadline=None)
@given(v2_objects())
def test_v2_to_v1_to_v2_loses_nothing(v2: Obj) -> None:
    before = copy.deepcopy(v2)
    v1 = conversion.convert(v2, V1)
    assert v2 == before
    assert set(v1["spec"]) <= {"scaleTargetRef", "minReplicas", "maxReplicas",
                               "targetCPUUtilizationPercentage"}  # fmt: skip
    back = conversion.convert(json.loads(json.dumps(v1)), V2)  # through the wire
    assert back == _cpu_last(v2)


@settings(max_examples=300, deadline=None)
@given(v2_objects())
def test_v1_to_v2_to_v1_is_the_identity(v2: Obj) -> None:
    v1 = conversion.convert(v2, V1)
    before = copy.deepcopy(v1)
    again = conversion.convert(conversion.convert(v1, V2), V1)
    assert v1 == before
    assert again == v1
