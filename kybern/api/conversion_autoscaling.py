"""autoscaling/v1 HorizontalPodAutoscaler to and from autoscaling/v2 (its storage version), as
kube-apiserver 1.32 converts them through its internal type (the facts of kube's
`pkg/apis/autoscaling/v1/conversion.go`). v1 `spec.targetCPUUtilizationPercentage` is the first
cpu Resource metric with a utilization target and v1 `status.currentCPUUtilizationPercentage`
the last cpu utilization among the current metrics; everything v1 cannot say travels in
annotations, written on the way to v1 (after dropping any stale ones): the other metrics
(`autoscaling.alpha.kubernetes.io/metrics`, as v1 MetricSpecs), every current metric
(`.../current-metrics`, as v1 MetricStatuses), the conditions (`.../conditions`) and the behavior
(`.../behavior`, as Go marshals the internal type: field names, no json tags). On the way back
they are decoded as Go's encoding/json does (keys matched case-insensitively; an annotation that
does not decode is ignored), put back in their fields and dropped; the CPU metric follows the
annotation's, and a v1 object with no metric at all gets kube's default (cpu at 80%). JSON dicts
in, new dicts out: the input is never modified (unchanged subtrees are shared); the fields v1's
Go structs never omit are always written."""

from __future__ import annotations

import json
from typing import Any, Final

from kybern.api import validation

Obj = dict[str, Any]

METRICS: Final = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS: Final = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS: Final = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR: Final = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP: Final = (METRICS, BEHAVIOR, CURRENT_METRICS, CONDITIONS)
DEFAULT_CPU_UTILIZATION: Final = 80
V1: Final = "autoscaling/v1"
V2: Final = "autoscaling/v2"

# The Go types the annotations hold, for decoding them: a struct is a dict of its JSON fields,
# `[T]` a slice of T; leaves: s string, i int32, q Quantity, o a free object (LabelSelector),
# t metav1.Time.
_REF = {"kind": "s", "name": "s", "apiVersion": "s"}
_TARGETS: dict[str, dict[str, Any]] = {
    "object": {"target": _REF, "metricName": "s", "targetValue": "q", "selector": "o",
               "averageValue": "q"},
    "pods": {"metricName": "s", "targetAverageValue": "q", "selector": "o"},
    "resource": {"name": "s", "targetAverageUtilization": "i", "targetAverageValue": "q"},
    "containerResource": {"name": "s", "targetAverageUtilization": "i",
                          "targetAverageValue": "q", "container": "s"},
    "external": {"metricName": "s", "metricSelector": "o", "targetValue": "q",
                 "targetAverageValue": "q"},
}  # fmt: skip
# the MetricStatus sources have the same fields, `current...` for `target...`
_CURRENTS = {
    source: {k if k == "target" else k.replace("target", "current"): t for k, t in f.items()}
    for source, f in _TARGETS.items()
}
_METRIC_SPECS: Final = [{"type": "s", **_TARGETS}]
_METRIC_STATUSES: Final = [{"type": "s", **_CURRENTS}]
_CONDITION_LIST: Final = [
    {"type": "s", "status": "s", "lastTransitionTime": "t", "reason": "s", "message": "s"}
]
_RULES = {
    "StabilizationWindowSeconds": "i",
    "SelectPolicy": "s",
    "Policies": [{"Type": "s", "Value": "i", "PeriodSeconds": "i"}],
}
_BEHAVIOR: Final = {"ScaleUp": _RULES, "ScaleDown": _RULES}


# ---- helpers ----------------------------------------------------------------------------------


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _dicts(v: Any) -> list[Obj]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _put(out: Obj, key: str, value: Any) -> None:
    """Set `key` unless `value` is None (Go's omitempty pointer)."""
    if value is not None:
        out[key] = value


def _ref(ref: Any) -> Obj:
    """A CrossVersionObjectReference (the same in both versions)."""
    r = _d(ref)
    out = {"kind": r.get("kind") or "", "name": r.get("name") or ""}
    if r.get("apiVersion"):
        out["apiVersion"] = r["apiVersion"]
    return out


def _identifier(name: Any, selector: Any) -> Obj:
    out = {"name": name or ""}
    _put(out, "selector", selector)
    return out


def _go_json(v: Any) -> str:
    """`v` (dicts in Go struct order) as Go's json.Marshal writes it: compact, `<>&` escaped."""
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        s = s.replace(a, b)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def is_cpu_utilization(metric: Any) -> bool:
    """A v2 metric that v1's targetCPUUtilizationPercentage expresses."""
    m = _d(metric)
    res = _d(m.get("resource"))
    return (
        m.get("type") == "Resource"
        and res.get("name") == "cpu"
        and _d(res.get("target")).get("averageUtilization") is not None
    )


# ---- decoding annotations as encoding/json does ----------------------------------------------


class _Undecodable(Exception):
    pass


def _decode(t: Any, v: Any) -> Any:
    """`v` decoded into Go type `t` (None for a JSON null); raises `_Undecodable`."""
    if v is None:
        return None
    if isinstance(t, str):
        if t in ("s", "t"):
            if v.__class__ is not str:
                raise _Undecodable
            return v
        if t == "i":
            if v.__class__ is not int or not -(2**31) <= v < 2**31:
                raise _Undecodable
            return v
        if t == "o":
            if v.__class__ is not dict:
                raise _Undecodable
            return v
        if v.__class__ not in (str, int, float):  # a Quantity: a string or a bare number
            raise _Undecodable
        try:
            validation.parse_quantity(v)
        except ValueError:
            raise _Undecodable from None
        return v if v.__class__ is str else validation.canonical_quantity(v)
    if isinstance(t, list):
        if v.__class__ is not list:
            raise _Undecodable
        return [_decode(t[0], x) or {} for x in v]  # a null item is the zero struct
    if v.__class__ is not dict:
        raise _Undecodable
    out: Obj = {}
    folded = {k.lower(): k for k in t}
    for k, x in v.items():
        name = k if k in t else folded.get(k.lower())  # exact, else case-insensitive
        if name is None:
            continue
        got = _decode(t[name], x)
        if got is None:
            out.pop(name, None)
        else:
            out[name] = got
    return out


def _annotation(annotations: Obj, key: str, t: Any) -> Any:
    """The annotation `key` decoded into `t`, None when absent or malformed."""
    raw = annotations.get(key)
    if raw.__class__ is not str:
        return None
    try:
        return _decode(t, json.loads(raw))
    except (ValueError, RecursionError, _Undecodable):
        return None


# ---- v2 -> v1 ---------------------------------------------------------------------------------


def _target_v1(m: Obj) -> Obj:
    """A v2 MetricSpec as v1's MetricSpec."""
    out: Obj = {"type": m.get("type") or ""}
    src = _d(m.get("object"))
    if m.get("object") is not None:
        t, metric = _d(src.get("target")), _d(src.get("metric"))
        o = {
            "target": _ref(src.get("describedObject")),
            "metricName": metric.get("name") or "",
            "targetValue": t.get("value") or "0",
        }
        _put(o, "selector", metric.get("selector"))
        _put(o, "averageValue", t.get("averageValue"))
        out["object"] = o
    if m.get("pods") is not None:
        src = _d(m["pods"])
        t, metric = _d(src.get("target")), _d(src.get("metric"))
        p = {
            "metricName": metric.get("name") or "",
            "targetAverageValue": t.get("averageValue") or "0",
        }
        _put(p, "selector", metric.get("selector"))
        out["pods"] = p
    for key in ("resource", "containerResource"):
        if m.get(key) is not None:
            src = _d(m[key])
            t = _d(src.get("target"))
            r = {"name": src.get("name") or ""}
            _put(r, "targetAverageUtilization", t.get("averageUtilization"))
            _put(r, "targetAverageValue", t.get("averageValue"))
            if key == "containerResource":
                r["container"] = src.get("container") or ""
            out[key] = r
    if m.get("external") is not None:
        src = _d(m["external"])
        t, metric = _d(src.get("target")), _d(src.get("metric"))
        e = {"metricName": metric.get("name") or ""}
        _put(e, "metricSelector", metric.get("selector"))
        _put(e, "targetValue", t.get("value"))
        _put(e, "targetAverageValue", t.get("averageValue"))
        out["external"] = e
    return out


def _current_v1(m: Obj) -> Obj:
    """A v2 MetricStatus as v1's MetricStatus."""
    out: Obj = {"type": m.get("type") or ""}
    if m.get("object") is not None:
        src = _d(m["object"])
        c, metric = _d(src.get("current")), _d(src.get("metric"))
        o = {
            "target": _ref(src.get("describedObject")),
            "metricName": metric.get("name") or "",
            "currentValue": c.get("value") or "0",
        }
        _put(o, "selector", metric.get("selector"))
        _put(o, "averageValue", c.get("averageValue"))
        out["object"] = o
    if m.get("pods") is not None:
        src = _d(m["pods"])
        c, metric = _d(src.get("current")), _d(src.get("metric"))
        p = {
            "metricName": metric.get("name") or "",
            "currentAverageValue": c.get("averageValue") or "0",
        }
        _put(p, "selector", metric.get("selector"))
        out["pods"] = p
    for key in ("resource", "containerResource"):
        if m.get(key) is not None:
            src = _d(m[key])
            c = _d(src.get("current"))
            r = {"name": src.get("name") or ""}
            _put(r, "currentAverageUtilization", c.get("averageUtilization"))
            r["currentAverageValue"] = c.get("averageValue") or "0"
            if key == "containerResource":
                r["container"] = src.get("container") or ""
            out[key] = r
    if m.get("external") is not None:
        src = _d(m["external"])
        c, metric = _d(src.get("current")), _d(src.get("metric"))
        e = {"metricName": metric.get("name") or ""}
        _put(e, "metricSelector", metric.get("selector"))
        e["currentValue"] = c.get("value") or "0"
        _put(e, "currentAverageValue", c.get("averageValue"))
        out["external"] = e
    return out


def _condition_v1(c: Obj) -> Obj:
    out = {
        "type": c.get("type") or "",
        "status": c.get("status") or "",
        "lastTransitionTime": c.get("lastTransitionTime"),  # a zero metav1.Time is null
    }
    for k in ("reason", "message"):
        if c.get(k):
            out[k] = c[k]
    return out


def _rules_internal(rules: Any) -> Obj | None:
    if not isinstance(rules, dict):
        return None
    policies = rules.get("policies")
    return {
        "StabilizationWindowSeconds": rules.get("stabilizationWindowSeconds"),
        "SelectPolicy": rules.get("selectPolicy"),
        "Policies": None
        if not isinstance(policies, list)
        else [
            {
                "Type": p.get("type") or "",
                "Value": p.get("value") or 0,
                "PeriodSeconds": p.get("periodSeconds") or 0,
            }
            for p in _dicts(policies)
        ],
    }


def to_v1(obj: Obj) -> Obj:
    """An autoscaling/v2 HorizontalPodAutoscaler as autoscaling/v1 shows it."""
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    metrics = _dicts(spec.get("metrics"))
    out = dict(obj)
    out["apiVersion"] = V1
    v1spec: Obj = {"scaleTargetRef": _ref(spec.get("scaleTargetRef"))}
    _put(v1spec, "minReplicas", spec.get("minReplicas"))
    v1spec["maxReplicas"] = spec.get("maxReplicas") or 0
    cpu = next((m for m in metrics if is_cpu_utilization(m)), None)
    if cpu is not None:
        v1spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    out["spec"] = v1spec
    current = _dicts(status.get("currentMetrics"))
    v1status: Obj = {}
    for k in ("observedGeneration", "lastScaleTime"):
        _put(v1status, k, status.get(k))
    v1status["currentReplicas"] = status.get("currentReplicas") or 0
    v1status["desiredReplicas"] = status.get("desiredReplicas") or 0
    for m in current:  # no break: the last one wins
        res = _d(m.get("resource"))
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            _put(
                v1status,
                "currentCPUUtilizationPercentage",
                _d(res.get("current")).get("averageUtilization"),
            )
    out["status"] = v1status
    meta = out["metadata"] = dict(_d(obj.get("metadata")))
    annotations = _d(meta.get("annotations"))
    notes = {k: v for k, v in annotations.items() if k not in ROUND_TRIP}
    others = [_target_v1(m) for m in metrics if not is_cpu_utilization(m)]
    if others:
        notes[METRICS] = _go_json(others)
    if current:
        notes[CURRENT_METRICS] = _go_json([_current_v1(m) for m in current])
    if spec.get("behavior") is not None:
        behavior = _d(spec["behavior"])
        notes[BEHAVIOR] = _go_json(
            {
                "ScaleUp": _rules_internal(behavior.get("scaleUp")),
                "ScaleDown": _rules_internal(behavior.get("scaleDown")),
            }
        )
    conditions = _dicts(status.get("conditions"))
    if conditions:
        notes[CONDITIONS] = _go_json([_condition_v1(c) for c in conditions])
    if notes != annotations:
        if notes:
            meta["annotations"] = notes
        else:
            meta.pop("annotations", None)
    return out


# ---- v1 -> v2 ---------------------------------------------------------------------------------


def _target(value: Any, average: Any, utilization: Any, typ: str) -> Obj:
    out: Obj = {"type": typ}
    _put(out, "value", value)
    _put(out, "averageValue", average)
    _put(out, "averageUtilization", utilization)
    return out


def _target_v2(m: Obj) -> Obj:
    """A v1 MetricSpec (decoded) as v2's MetricSpec."""
    out: Obj = {"type": m.get("type", "")}
    if "object" in m:
        o = m["object"]
        average = o.get("averageValue")
        out["object"] = {
            "describedObject": _ref(o.get("target")),
            "target": _target(
                o.get("targetValue", "0"),
                average,
                None,
                "Value" if average is None else "AverageValue",
            ),
            "metric": _identifier(o.get("metricName"), o.get("selector")),
        }
    if "pods" in m:
        p = m["pods"]
        out["pods"] = {
            "metric": _identifier(p.get("metricName"), p.get("selector")),
            "target": _target(None, p.get("targetAverageValue", "0"), None, "AverageValue"),
        }
    for key in ("resource", "containerResource"):
        if key in m:
            r = m[key]
            util = r.get("targetAverageUtilization")
            typ = "AverageValue" if util is None else "Utilization"
            src: Obj = {
                "name": r.get("name", ""),
                "target": _target(None, r.get("targetAverageValue"), util, typ),
            }
            if key == "containerResource":
                src["container"] = r.get("container", "")
            out[key] = src
    if "external" in m:
        e = m["external"]
        value = e.get("targetValue")
        out["external"] = {
            "metric": _identifier(e.get("metricName"), e.get("metricSelector")),
            "target": _target(
                value,
                e.get("targetAverageValue"),
                None,
                "AverageValue" if value is None else "Value",
            ),
        }
    return out


def _current_v2(m: Obj) -> Obj:
    """A v1 MetricStatus (decoded) as v2's MetricStatus."""
    out: Obj = {"type": m.get("type", "")}
    if "object" in m:
        o = m["object"]
        current = {"value": o.get("currentValue", "0")}
        _put(current, "averageValue", o.get("averageValue"))
        out["object"] = {
            "metric": _identifier(o.get("metricName"), o.get("selector")),
            "current": current,
            "describedObject": _ref(o.get("target")),
        }
    if "pods" in m:
        p = m["pods"]
        out["pods"] = {
            "metric": _identifier(p.get("metricName"), p.get("selector")),
            "current": {"averageValue": p.get("currentAverageValue", "0")},
        }
    for key in ("resource", "containerResource"):
        if key in m:
            r = m[key]
            current = {"averageValue": r.get("currentAverageValue", "0")}
            _put(current, "averageUtilization", r.get("currentAverageUtilization"))
            src: Obj = {"name": r.get("name", ""), "current": current}
            if key == "containerResource":
                src["container"] = r.get("container", "")
            out[key] = src
    if "external" in m:
        e = m["external"]
        current = {"value": e.get("currentValue", "0")}
        _put(current, "averageValue", e.get("currentAverageValue"))
        out["external"] = {
            "metric": _identifier(e.get("metricName"), e.get("metricSelector")),
            "current": current,
        }
    return out


def _rules_v2(rules: Any) -> Obj | None:
    if rules is None:
        return None
    out: Obj = {}
    _put(out, "stabilizationWindowSeconds", rules.get("StabilizationWindowSeconds"))
    _put(out, "selectPolicy", rules.get("SelectPolicy"))
    if rules.get("Policies"):  # omitempty: an empty list is not kept
        out["policies"] = [
            {
                "type": p.get("Type", ""),
                "value": p.get("Value", 0),
                "periodSeconds": p.get("PeriodSeconds", 0),
            }
            for p in rules["Policies"]
        ]
    return out


def _condition_v2(c: Obj) -> Obj:
    out = {"type": c.get("type", ""), "status": c.get("status", "")}
    for k in ("lastTransitionTime", "reason", "message"):
        if c.get(k):
            out[k] = c[k]
    return out


def _cpu(utilization: Any) -> Obj:
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": utilization},
        },
    }


def to_v2(obj: Obj) -> Obj:
    """An autoscaling/v1 HorizontalPodAutoscaler as autoscaling/v2 (its storage version)."""
    spec = _d(obj.get("spec"))
    meta = _d(obj.get("metadata"))
    annotations = _d(meta.get("annotations"))
    out = dict(obj)
    out["apiVersion"] = V2
    v2spec: Obj = {"scaleTargetRef": _ref(spec.get("scaleTargetRef"))}
    _put(v2spec, "minReplicas", spec.get("minReplicas"))
    v2spec["maxReplicas"] = spec.get("maxReplicas") or 0
    metrics = []
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append(_cpu(spec["targetCPUUtilizationPercentage"]))
    others = _annotation(annotations, METRICS, _METRIC_SPECS)
    if others is not None:  # the v1 CPU metric goes after them
        metrics = [_target_v2(m) for m in others] + metrics
    if not metrics:  # the implicit default of autoscaling/v1
        metrics.append(_cpu(DEFAULT_CPU_UTILIZATION))
    v2spec["metrics"] = metrics
    behavior = _annotation(annotations, BEHAVIOR, _BEHAVIOR)
    if behavior and (behavior.get("ScaleUp") is not None or behavior.get("ScaleDown") is not None):
        b: Obj = {}
        _put(b, "scaleUp", _rules_v2(behavior.get("ScaleUp")))
        _put(b, "scaleDown", _rules_v2(behavior.get("ScaleDown")))
        v2spec["behavior"] = b
    out["spec"] = v2spec
    status = obj.get("status")
    current = _annotation(annotations, CURRENT_METRICS, _METRIC_STATUSES)
    conditions = _annotation(annotations, CONDITIONS, _CONDITION_LIST)
    if status is not None or current is not None or conditions is not None:
        st = _d(status)
        v2status: Obj = {}
        for k in ("observedGeneration", "lastScaleTime"):
            _put(v2status, k, st.get(k))
        if st.get("currentReplicas"):  # omitempty in v2
            v2status["currentReplicas"] = st["currentReplicas"]
        v2status["desiredReplicas"] = st.get("desiredReplicas") or 0
        if current is not None:  # more than v1's CPU figure: it wins
            v2status["currentMetrics"] = [_current_v2(m) for m in current]
        elif st.get("currentCPUUtilizationPercentage") is not None:
            utilization = st["currentCPUUtilizationPercentage"]
            v2status["currentMetrics"] = [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": utilization}},
                }
            ]
        if conditions is not None:
            v2status["conditions"] = [_condition_v2(c) for c in conditions]
        if not v2status.get("currentMetrics"):
            v2status.pop("currentMetrics", None)
        if not v2status.get("conditions"):
            v2status.pop("conditions", None)
        out["status"] = v2status
    if any(k in annotations for k in ROUND_TRIP):
        meta = dict(meta)
        notes = {k: v for k, v in annotations.items() if k not in ROUND_TRIP}
        if notes:
            meta["annotations"] = notes
        else:
            meta.pop("annotations", None)
        out["metadata"] = meta
    return out


def v1_field_path(obj: Obj, path: str) -> str:
    """The path v1 shows for `path` of the v2 `obj` converted from a v1 request: its CPU
    metric's target is `spec.targetCPUUtilizationPercentage` (other paths are the same in both
    versions, or have no v1 field at all)."""
    if not path.startswith("spec.metrics["):
        return path
    metrics = _dicts(_d(obj.get("spec")).get("metrics"))
    i = next((i for i, m in enumerate(metrics) if is_cpu_utilization(m)), -1)
    cpu = f"spec.metrics[{i}].resource.target.averageUtilization"
    return "spec.targetCPUUtilizationPercentage" if path == cpu else path
