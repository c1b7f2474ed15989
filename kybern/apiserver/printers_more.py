"""Column printers of the workload and namespaced API groups: apps (deployments, replica sets,
stateful sets, daemon sets, controller revisions), batch (jobs, cron jobs), coordination
leases, endpoint slices, pod disruption budgets and RBAC bindings, registered into
`printers.PRINTERS` on import, with kube-apiserver's columns and cell texts (see `printers`)."""

from __future__ import annotations

from typing import Any

from kybern.apiserver.printers import (
    AGE,
    NAME,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    Obj,
    age,
    col,
    containers_images,
    dict_at,
    format_labels,
    format_selector,
    human_duration,
    list_at,
    register,
    selector_string,
    since,
    sub,
    template_wide,
    timestamp,
)

_SELECTOR = col("Selector", desc="Label selector for pods.", priority=1)


def _name(obj: Obj) -> str:
    return str(obj["metadata"].get("name", ""))


def _replicas(spec: Obj) -> int:
    r = spec.get("replicas")
    return 1 if r is None else int(r)


# ---- apps/v1 --------------------------------------------------------------------------------


@register(
    "apps",
    "Deployment",
    (
        NAME,
        col("Ready", desc="Number of the pod with ready state"),
        col(
            "Up-to-date",
            desc="Total number of non-terminated pods targeted by this "
            "deployment that have the desired template spec.",
        ),
        col(
            "Available",
            desc="Total number of available pods (ready for at least "
            "minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        *WIDE_CONTAINERS,
        *WIDE_IMAGES,
        _SELECTOR,
    ),
)
def deployment_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    selector = selector_string(spec.get("selector"))
    return [
        _name(obj),
        f"{status.get('readyReplicas') or 0}/{_replicas(spec)}",
        status.get("updatedReplicas") or 0,
        status.get("availableReplicas") or 0,
        age(obj, now),
        *template_wide(obj, "template"),
        "<invalid>" if selector is None else selector,
    ]


@register(
    "apps",
    "ReplicaSet",
    (
        NAME,
        col("Desired", "integer", "Replicas is the number of desired replicas."),
        col("Current", "integer", "Replicas is the most recently observed number of replicas."),
        col(
            "Ready",
            "integer",
            "readyReplicas is the number of pods targeted by this "
            "ReplicaSet with a Ready Condition.",
        ),
        AGE,
        *WIDE_CONTAINERS,
        *WIDE_IMAGES,
        _SELECTOR,
    ),
)
def replica_set_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    return [
        _name(obj),
        _replicas(spec),
        status.get("replicas") or 0,
        status.get("readyReplicas") or 0,
        age(obj, now),
        *template_wide(obj, "template"),
        format_selector(spec.get("selector")),
    ]


@register(
    "apps",
    "StatefulSet",
    (NAME, col("Ready", desc="Number of the pod with ready state"), AGE, *WIDE_CONTAINERS,
     *WIDE_IMAGES),
)  # fmt: skip
def stateful_set_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    ready = f"{status.get('readyReplicas') or 0}/{_replicas(spec)}"
    return [_name(obj), ready, age(obj, now), *template_wide(obj, "template")]


@register(
    "apps",
    "DaemonSet",
    (
        NAME,
        col(
            "Desired", "integer", "The total number of nodes that should be running the daemon pod."
        ),
        col(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon "
            "pod and are supposed to run the daemon pod.",
        ),
        col(
            "Ready",
            "integer",
            "The number of nodes that should be running the daemon pod "
            "and have one or more of the daemon pod running and ready.",
        ),
        col(
            "Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"
        ),
        col(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon "
            "pod and have one or more of the daemon pod running and available.",
        ),
        col(
            "Node Selector",
            desc="NodeSelector is a selector which must be true for the pod to fit on a node.",
        ),
        AGE,
        *WIDE_CONTAINERS,
        *WIDE_IMAGES,
        _SELECTOR,
    ),
)
def daemon_set_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    return [
        _name(obj),
        status.get("desiredNumberScheduled") or 0,
        status.get("currentNumberScheduled") or 0,
        status.get("numberReady") or 0,
        status.get("updatedNumberScheduled") or 0,
        status.get("numberAvailable") or 0,
        format_labels(sub(spec, "template", "spec", "nodeSelector")),
        age(obj, now),
        *template_wide(obj, "template"),
        format_selector(spec.get("selector")),
    ]


def _controller_name(obj: Obj) -> str:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            group = str(ref.get("apiVersion") or "").rpartition("/")[0]
            kind = str(ref.get("kind") or "")
            if not kind and not group:
                return str(ref.get("name", ""))
            gk = f"{kind}.{group}" if group else kind
            return f"{gk.lower()}/{ref.get('name', '')}"
    return "<none>"


@register(
    "apps",
    "ControllerRevision",
    (
        NAME,
        col("Controller", desc="Controller of the object"),
        col("Revision", desc="Revision indicates the revision of the state represented by Data."),
        AGE,
    ),
)
def controller_revision_row(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), _controller_name(obj), obj.get("revision") or 0, age(obj, now)]


# ---- batch/v1 -------------------------------------------------------------------------------


def _job_condition(conditions: Any, typ: str) -> bool:
    for c in conditions or []:
        if c.get("type") == typ:
            return bool(c.get("status") == "True")
    return False


@register(
    "batch",
    "Job",
    (
        NAME,
        col("Status", desc="Status of the job."),
        col("Completions", desc="The number of pods which reached phase Succeeded."),
        col("Duration", desc="Time required to complete the job."),
        AGE,
        *WIDE_CONTAINERS,
        *WIDE_IMAGES,
        _SELECTOR,
    ),
)
def job_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    succeeded = status.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = timestamp(status.get("startTime")), timestamp(status.get("completionTime"))
    duration = ""
    if started:
        duration = human_duration((finished or now) - started)
    conditions = status.get("conditions")
    if _job_condition(conditions, "Complete"):
        state = "Complete"
    elif _job_condition(conditions, "Failed"):
        state = "Failed"
    elif obj["metadata"].get("deletionTimestamp"):
        state = "Terminating"
    elif _job_condition(conditions, "Suspended"):
        state = "Suspended"
    elif _job_condition(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    return [
        _name(obj),
        state,
        completions,
        duration,
        age(obj, now),
        *template_wide(obj, "template"),
        format_selector(spec.get("selector")),
    ]


@register(
    "batch",
    "CronJob",
    (
        NAME,
        col("Schedule", desc="The schedule in Cron format."),
        col("Timezone", desc="The time zone name for the given schedule."),
        col(
            "Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."
        ),
        col("Active", "integer", "A list of pointers to currently running jobs."),
        col(
            "Last Schedule",
            desc="Information when was the last time the job was successfully scheduled.",
        ),
        AGE,
        *WIDE_CONTAINERS,
        *WIDE_IMAGES,
        _SELECTOR,
    ),
)
def cron_job_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    names, images = containers_images(
        sub(spec, "jobTemplate", "spec", "template", "spec", "containers")
    )
    return [
        _name(obj),
        spec.get("schedule") or "",
        spec.get("timeZone") or "<none>",
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(list_at(status, "active")),
        since(last, now) if last else "<none>",
        age(obj, now),
        names,
        images,
        format_selector(sub(spec, "jobTemplate", "spec", "selector")),
    ]


# ---- other groups ---------------------------------------------------------------------------


@register(
    "coordination.k8s.io",
    "Lease",
    (NAME, col("Holder", desc="holderIdentity contains the identity of the holder of a "
     "current lease."), AGE),
)  # fmt: skip
def lease_row(obj: Obj, now: float) -> list[Any]:
    return [_name(obj), sub(obj, "spec", "holderIdentity") or "", age(obj, now)]


def _with_more(items: list[str], count: int) -> str:
    text = ",".join(items[:3])
    if count > 3:
        return f"{text} + {count - 3} more..."
    return text or "<unset>"


@register(
    "discovery.k8s.io",
    "EndpointSlice",
    (
        NAME,
        col(
            "AddressType",
            desc="addressType specifies the type of address carried by this EndpointSlice.",
        ),
        col(
            "Ports",
            desc="ports specifies the list of network ports exposed by each endpoint "
            "in this slice.",
        ),
        col("Endpoints", desc="endpoints is a list of unique endpoints in this slice."),
        AGE,
    ),
)
def endpoint_slice_row(obj: Obj, now: float) -> list[Any]:
    ports = []
    for p in list_at(obj, "ports"):
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(str(p["name"]))
        else:
            ports.append("*")
    addresses = [a for e in list_at(obj, "endpoints") for a in e.get("addresses") or []]
    return [
        _name(obj),
        obj.get("addressType") or "",
        _with_more(ports, len(ports)),
        _with_more(addresses, len(addresses)),
        age(obj, now),
    ]


@register(
    "policy",
    "PodDisruptionBudget",
    (
        NAME,
        col("Min Available", desc="The minimum number of pods that must be available."),
        col("Max Unavailable", desc="The maximum number of pods that may be unavailable."),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ),
)
def pod_disruption_budget_row(obj: Obj, now: float) -> list[Any]:
    spec = dict_at(obj, "spec")
    lo, hi = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        _name(obj),
        "N/A" if lo is None else str(lo),
        "N/A" if hi is None else str(hi),
        sub(obj, "status", "disruptionsAllowed") or 0,
        age(obj, now),
    ]


def _binding_row(obj: Obj, now: float) -> list[Any]:
    ref = dict_at(obj, "roleRef")
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in list_at(obj, "subjects"):
        kind = s.get("kind")
        if kind == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        elif kind == "User":
            users.append(s.get("name", ""))
        elif kind == "Group":
            groups.append(s.get("name", ""))
    return [
        _name(obj),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        age(obj, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(sas),
    ]


for _kind, _what in (("RoleBinding", "roleBinding"), ("ClusterRoleBinding", "clusterRoleBinding")):
    register(
        "rbac.authorization.k8s.io",
        _kind,
        (
            NAME,
            col(
                "Role",
                desc="RoleRef can reference a Role in the current namespace or a "
                "ClusterRole in the global namespace.",
            ),
            AGE,
            col("Users", desc=f"Users in the {_what}", priority=1),
            col("Groups", desc=f"Groups in the {_what}", priority=1),
            col("ServiceAccounts", desc=f"ServiceAccounts in the {_what}", priority=1),
        ),
    )(_binding_row)
