"""Column printers of ingresses, ingress classes, network policies, priority and runtime
classes, horizontal pod autoscalers, certificate signing requests, CSI storage capacities,
validating admission policies (and bindings), flow schemas and priority levels, registered into
`printers.PRINTERS` on import. Cells follow kube-apiserver 1.32's `printers.go`."""

from __future__ import annotations

from typing import Any

from kybern.api import validation
from kybern.apiserver.printers import (
    AGE,
    NAME,
    Obj,
    age,
    col,
    dict_at,
    format_selector,
    human_duration,
    list_at,
    register,
    selector_string,
    sub,
)


def _name(obj: Obj) -> str:
    return str(obj["metadata"].get("name", ""))


def _q(value: Any) -> str:
    """A quantity as `Quantity.String()` prints it."""
    try:
        return validation.canonical_quantity(value)
    except (ValueError, TypeError):
        return str(value)


# ---- networking.k8s.io ------------------------------------------------------------------------


def _hosts(rules: list[Any]) -> str:
    """`formatHosts`: the first three hosts, `*` when none."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        host = rule.get("host") if isinstance(rule, dict) else None
        if not more and host:
            hosts.append(str(host))
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if more else text


@register(
    "networking.k8s.io",
    "Ingress",
    (
        NAME,
        col(
            "Class",
            desc="The name of the IngressClass resource that should be used for additional "
            "configuration",
        ),
        col(
            "Hosts", desc="Hosts that incoming requests are matched against before the ingress rule"
        ),
        col("Address", desc="Address is a list containing ingress points for the load-balancer"),
        col("Ports", desc="Ports of TLS configurations that open"),
        AGE,
    ),
)
def ingress_row(obj: Obj, now: float) -> list[Any]:
    addresses = set()
    for lb in list_at(obj, "status", "loadBalancer", "ingress"):
        if isinstance(lb, dict) and (lb.get("ip") or lb.get("hostname")):
            addresses.add(str(lb.get("ip") or lb.get("hostname")))
    return [
        _name(obj),
        sub(obj, "spec", "ingressClassName") or "<none>",
        _hosts(list_at(obj, "spec", "rules")),
        ",".join(sorted(addresses)),
        "80, 443" if list_at(obj, "spec", "tls") else "80",
        age(obj, now),
    ]


@register(
    "networking.k8s.io",
    "IngressClass",
    (
        NAME,
        col("Controller", desc="Controller that is responsible for handling this class"),
        col("Parameters", desc="A reference to a resource with additional parameters"),
        AGE,
    ),
)
def ingress_class_row(obj: Obj, now: float) -> list[Any]:
    params = sub(obj, "spec", "parameters")
    text = "<none>"
    if isinstance(params, dict):
        text = str(params.get("kind") or "")
        if params.get("apiGroup") is not None:
            text += "." + str(params["apiGroup"])
        text += "/" + str(params.get("name") or "")
    return [_name(obj), sub(obj, "spec", "controller") or "", text, age(obj, now)]


@register(
    "networking.k8s.io",
    "NetworkPolicy",
    (
        NAME,
        col(
            "Pod-Selector",
            desc="Selects the pods to which this NetworkPolicy object applies. An empty "
            "podSelector selects all pods in this namespace.",
        ),
        AGE,
    ),
)
def network_policy_row(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), format_selector(dict_at(obj, "spec", "podSelector")), age(obj, now)]


# ---- scheduling.k8s.io, node.k8s.io ------------------------------------------------------------


@register(
    "scheduling.k8s.io",
    "PriorityClass",
    (
        NAME,
        col(
            "Value",
            "integer",
            "value represents the integer value of this priority class. This is the actual "
            "priority that pods receive when they have the name of this class in their pod spec.",
        ),
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the "
            "default priority for pods that do not have any priority class.",
        ),
        AGE,
        col(
            "PreemptionPolicy",
            desc="preemptionPolicy is the Policy for preempting pods with lower priority.",
        ),
    ),
)
def priority_class_row(obj: Obj, now: float) -> list[Any]:
    return [
        _name(obj),
        int(obj.get("value") or 0),
        bool(obj.get("globalDefault")),
        age(obj, now),
        obj.get("preemptionPolicy") or "",
    ]


@register("node.k8s.io", "RuntimeClass", (NAME, col("Handler", desc="handler"), AGE))
def runtime_class_row(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), obj.get("handler") or "", age(obj, now)]


# ---- autoscaling --------------------------------------------------------------------------------


def _current(statuses: list[Any], i: int, key: str) -> Obj | None:
    if i < len(statuses) and isinstance(statuses[i], dict):
        found = statuses[i].get(key)
        return found if isinstance(found, dict) else None
    return None


def _metric_text(spec: Obj, statuses: list[Any], i: int) -> str:
    """One metric of `formatHPAMetrics`: `current/target`, `<unknown>` without a status."""
    typ = spec.get("type")
    key = {
        "External": "external",
        "Pods": "pods",
        "Object": "object",
        "Resource": "resource",
        "ContainerResource": "containerResource",
    }.get(str(typ))
    if key is None:
        return "<unknown type>"
    src: Obj = spec[key] if isinstance(spec.get(key), dict) else {}
    target: Obj = src["target"] if isinstance(src.get("target"), dict) else {}
    status = _current(statuses, i, key)
    current = (status or {}).get("current") or {}
    if typ in ("External", "Object"):
        if target.get("averageValue") is not None:
            cur = "<unknown>"
            if status is not None and current.get("averageValue") is not None:
                cur = _q(current["averageValue"])
            return f"{cur}/{_q(target['averageValue'])} (avg)"
        cur = _q(current.get("value", 0)) if status is not None else "<unknown>"
        return f"{cur}/{_q(target.get('value', 0))}"
    if typ == "Pods":
        cur = _q(current.get("averageValue", 0)) if status is not None else "<unknown>"
        return f"{cur}/{_q(target.get('averageValue', 0))}"
    if target.get("averageValue") is not None:
        cur = _q(current.get("averageValue", 0)) if status is not None else "<unknown>"
        return f"{cur}/{_q(target['averageValue'])}"
    cur = "<unknown>"
    if status is not None and current.get("averageUtilization") is not None:
        cur = f"{current['averageUtilization']}%"
    goal = "<auto>"
    if target.get("averageUtilization") is not None:
        goal = f"{target['averageUtilization']}%"
    name = src.get("name") or ""
    if typ == "ContainerResource":
        return f"{name} on {src.get('container') or ''}: {cur}/{goal}"
    return f"{name}: {cur}/{goal}"


def hpa_targets(obj: Obj) -> str:
    specs = [m for m in list_at(obj, "spec", "metrics") if isinstance(m, dict)]
    if not specs:
        return "<none>"
    statuses = list_at(obj, "status", "currentMetrics")
    texts = [_metric_text(m, statuses, i) for i, m in enumerate(specs)]
    if len(texts) > 2:
        return ", ".join(texts[:2]) + f" + {len(texts) - 2} more..."
    return ", ".join(texts)


@register(
    "autoscaling",
    "HorizontalPodAutoscaler",
    (
        NAME,
        col(
            "Reference",
            desc="scaleTargetRef points to the target resource to scale, and is used to the "
            "pods for which metrics should be collected, as well as to actually change the "
            "replica count.",
        ),
        col(
            "Targets",
            desc="metrics contains the specifications for which to use to calculate the desired "
            "replica count (the maximum replica count across all metrics will be used).",
        ),
        col(
            "MinPods",
            desc="minReplicas is the lower limit for the number of replicas to which the "
            "autoscaler can scale down.",
        ),
        col(
            "MaxPods",
            desc="maxReplicas is the upper limit for the number of replicas to which the "
            "autoscaler can scale up.",
        ),
        col(
            "Replicas",
            desc="currentReplicas is current number of replicas of pods managed by this "
            "autoscaler, as last seen by the autoscaler.",
        ),
        AGE,
    ),
)
def hpa_row(obj: Obj, now: float) -> list[Any]:
    ref = dict_at(obj, "spec", "scaleTargetRef")
    low = sub(obj, "spec", "minReplicas")
    return [
        _name(obj),
        f"{ref.get('kind') or ''}/{ref.get('name') or ''}",
        hpa_targets(obj),
        "<unset>" if low is None else str(low),
        int(sub(obj, "spec", "maxReplicas") or 0),
        int(sub(obj, "status", "currentReplicas") or 0),
        age(obj, now),
    ]


# ---- certificates.k8s.io ------------------------------------------------------------------------


def csr_condition(obj: Obj) -> str:
    """`extractCSRStatus`: Denied / Approved / Pending, then `,Failed` and `,Issued`."""
    types = {c.get("type") for c in list_at(obj, "status", "conditions") if isinstance(c, dict)}
    text = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        text += ",Failed"
    if sub(obj, "status", "certificate"):
        text += ",Issued"
    return text


@register(
    "certificates.k8s.io",
    "CertificateSigningRequest",
    (
        NAME,
        AGE,
        col("SignerName", desc="signerName indicates the requested signer"),
        col("Requestor", desc="Name of the user that requested the certificate."),
        col(
            "RequestedDuration",
            desc="expirationSeconds is the requested duration of validity of the issued "
            "certificate.",
        ),
        col("Condition", desc="Current status of the request"),
    ),
)
def csr_row(obj: Obj, now: float) -> list[Any]:
    seconds = sub(obj, "spec", "expirationSeconds")
    return [
        _name(obj),
        age(obj, now),
        sub(obj, "spec", "signerName") or "<none>",
        sub(obj, "spec", "username") or "",
        "<none>" if seconds is None else human_duration(float(seconds)),
        csr_condition(obj),
    ]


# ---- storage.k8s.io ---------------------------------------------------------------------------


@register(
    "storage.k8s.io",
    "CSIStorageCapacity",
    (
        NAME,
        col(
            "StorageClassName",
            desc="storageClassName represents the name of the StorageClass that the reported "
            "capacity applies to.",
        ),
        col("Capacity", desc="capacity is the value reported by the CSI driver."),
    ),
)
def csi_storage_capacity_row(obj: Obj, now: float) -> list[Any]:
    cap = obj.get("capacity")
    return [_name(obj), obj.get("storageClassName") or "", "<unset>" if cap is None else _q(cap)]


# ---- admissionregistration.k8s.io ------------------------------------------------------------


@register(
    "admissionregistration.k8s.io",
    "ValidatingAdmissionPolicy",
    (
        NAME,
        col(
            "Validations",
            "integer",
            "Validations indicates the number of validation rules defined in this configuration",
        ),
        col(
            "ParamKind",
            desc="ParamKind specifies the kind of resources used to parameterize this policy",
        ),
        AGE,
    ),
)
def vap_row(obj: Obj, now: float) -> list[Any]:
    pk = sub(obj, "spec", "paramKind")
    kind = "<unset>"
    if isinstance(pk, dict):
        kind = f"{pk.get('apiVersion') or ''}/{pk.get('kind') or ''}"
    return [_name(obj), len(list_at(obj, "spec", "validations")), kind, age(obj, now)]


@register(
    "admissionregistration.k8s.io",
    "ValidatingAdmissionPolicyBinding",
    (
        NAME,
        col(
            "PolicyName",
            desc="PolicyName indicates the policy definition which the policy binding binded to",
        ),
        col(
            "ParamRef",
            desc="ParamRef indicates the param resource which sets the configration param",
        ),
        AGE,
    ),
)
def vap_binding_row(obj: Obj, now: float) -> list[Any]:
    pr = sub(obj, "spec", "paramRef")
    text = "<unset>"
    if isinstance(pr, dict):
        if pr.get("name"):
            text = f"{pr.get('namespace') or '*'}/{pr['name']}"
        elif pr.get("selector") is not None:
            text = selector_string(pr["selector"]) or ""
    return [_name(obj), sub(obj, "spec", "policyName") or "", text, age(obj, now)]


# ---- flowcontrol.apiserver.k8s.io ------------------------------------------------------------


@register(
    "flowcontrol.apiserver.k8s.io",
    "FlowSchema",
    (
        NAME,
        col(
            "PriorityLevel",
            desc="`name` is the name of the priority level configuration being referenced "
            "Required.",
        ),
        col(
            "MatchingPrecedence",
            desc="`matchingPrecedence` is used to choose among the FlowSchemas that match a "
            "given request.",
        ),
        col(
            "DistinguisherMethod",
            desc="`distinguisherMethod` defines how to compute the flow distinguisher for "
            "requests that match this schema.",
        ),
        AGE,
        col("MissingPL", desc="references a broken or non-existent PriorityLevelConfiguration"),
    ),
)
def flow_schema_row(obj: Obj, now: float) -> list[Any]:
    method = sub(obj, "spec", "distinguisherMethod", "type") or "<none>"
    missing = "?"
    for c in list_at(obj, "status", "conditions"):
        if isinstance(c, dict) and c.get("type") == "Dangling":
            missing = str(c.get("status") or "")
            break
    return [
        _name(obj),
        sub(obj, "spec", "priorityLevelConfiguration", "name") or "",
        int(sub(obj, "spec", "matchingPrecedence") or 0),
        method,
        age(obj, now),
        missing,
    ]


@register(
    "flowcontrol.apiserver.k8s.io",
    "PriorityLevelConfiguration",
    (
        NAME,
        col(
            "Type",
            desc="`type` indicates whether this priority level is subject to limitation on "
            "request execution.",
        ),
        col(
            "NominalConcurrencyShares",
            desc="`nominalConcurrencyShares` (NCS) contributes to the computation of the "
            "NominalConcurrencyLimit (NominalCL) of this level.",
        ),
        col("Queues", desc="`queues` is the number of queues for this priority level."),
        col(
            "HandSize",
            desc="`handSize` is a small positive number that configures the shuffle sharding "
            "of requests into queues.",
        ),
        col(
            "QueueLengthLimit",
            desc="`queueLengthLimit` is the maximum number of requests allowed to be waiting "
            "in a given queue of this priority level at a time.",
        ),
        AGE,
    ),
)
def priority_level_row(obj: Obj, now: float) -> list[Any]:
    limited = sub(obj, "spec", "limited")
    shares: Any = "<none>"
    queues: Any = "<none>"
    hand: Any = "<none>"
    qll: Any = "<none>"
    if isinstance(limited, dict):
        shares = limited.get("nominalConcurrencyShares", 0)
        queuing = sub(limited, "limitResponse", "queuing")
        if isinstance(queuing, dict):
            queues = queuing.get("queues", 0)
            hand = queuing.get("handSize", 0)
            qll = queuing.get("queueLengthLimit", 0)
    return [_name(obj), sub(obj, "spec", "type") or "", shares, queues, hand, qll, age(obj, now)]
