"""Column printers for the built-in kinds: for each (group, kind) the column definitions and a
function from an object (the stored JSON dict) to its row cells, with the columns, cell types
and cell texts kube-apiserver's printers give (priority-1 columns are the `-o wide` ones and
are always filled, as the server prints wide and kubectl hides them). Ages are computed from
`now` (seconds since the epoch) the way the printers' `translateTimestampSince` does. This
module has the shared helpers and the pod, pod template, replication controller, endpoints and
node printers; `printers_core`, `printers_more` and `printers_cluster` register the others."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Obj = dict[str, Any]
Column = dict[str, Any]
RowFn = Callable[[Obj, float], list[Any]]
CondFn = Callable[[Obj], list[Obj] | None]

NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated."
)
AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC."
)
CONTAINERS_DESC = "Names of each container in the template."
IMAGES_DESC = "Images referenced by each container in the template."


def col(name: str, typ: str = "string", desc: str = "", priority: int = 0, fmt: str = "") -> Column:
    """A `TableColumnDefinition` (every field present, as kube-apiserver encodes it)."""
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME = col("Name", desc=NAME_DESC, fmt="name")
AGE = col("Age", desc=AGE_DESC)
WIDE_CONTAINERS = (col("Containers", desc=CONTAINERS_DESC, priority=1),)
WIDE_IMAGES = (col("Images", desc=IMAGES_DESC, priority=1),)


@dataclass(frozen=True, slots=True)
class Printer:
    columns: tuple[Column, ...]
    row: RowFn
    conditions: CondFn | None = None


PRINTERS: dict[tuple[str, str], Printer] = {}


def register(group: str, kind: str, columns: Iterable[Column], cond: CondFn | None = None) -> Any:
    """Decorator: `fn(obj, now) -> cells` prints `kind` of `group` with `columns`."""

    def wrap(fn: RowFn) -> RowFn:
        PRINTERS[(group, kind)] = Printer(tuple(columns), fn, cond)
        return fn

    return wrap


# ---- time -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def parse_time(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp; 0.0 (Go's zero time) if unparsable."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except (TypeError, ValueError):
        return 0.0


def timestamp(value: Any) -> float:
    return parse_time(value) if isinstance(value, str) and value else 0.0


def human_duration(d: float) -> str:
    """Kubernetes' `duration.HumanDuration`: about 2-3 significant figures."""
    seconds = int(d)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def since(value: Any, now: float) -> str:
    """`translateTimestampSince`: the age of a timestamp, `<unknown>` when it is unset."""
    t = timestamp(value)
    return human_duration(now - t) if t else "<unknown>"


def age(obj: Obj, now: float) -> str:
    return since(obj["metadata"].get("creationTimestamp"), now)


# ---- formatting helpers ---------------------------------------------------------------------


def sub(obj: Obj | None, *path: str) -> Any:
    """`obj[p0][p1]...`, None when anything on the way is missing or not an object."""
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def dict_at(obj: Obj | None, *path: str) -> Obj:
    v = sub(obj, *path)
    return v if isinstance(v, dict) else {}


def list_at(obj: Obj | None, *path: str) -> list[Any]:
    v = sub(obj, *path)
    return v if isinstance(v, list) else []


def format_labels(labels: Any) -> str:
    """`labels.FormatLabels`: `k=v,...` sorted by key, `<none>` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


_SELECTOR_OPS = {"In": "in", "NotIn": "notin", "Exists": "", "DoesNotExist": "!"}


def selector_string(sel: Any) -> str | None:
    """A `LabelSelector` as `labels.Selector.String()` ('' for nil or empty); None if invalid."""
    if not isinstance(sel, dict):
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in sel.get("matchExpressions") or []:
        op, key = e.get("operator"), e.get("key", "")
        if op not in _SELECTOR_OPS:
            return None
        values = sorted(set(e.get("values") or []))
        if op in ("In", "NotIn"):
            reqs.append((key, f"{key} {_SELECTOR_OPS[op]} ({','.join(values)})"))
        else:
            reqs.append((key, _SELECTOR_OPS[op] + key))
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs)


def format_selector(sel: Any) -> str:
    """`metav1.FormatLabelSelector`: `<none>` when empty, `<error>` when invalid."""
    s = selector_string(sel)
    if s is None:
        return "<error>"
    return s or "<none>"


def containers_images(containers: Any) -> tuple[str, str]:
    """`layoutContainerCells`: container names and images, comma-joined."""
    cs = [c for c in containers or [] if isinstance(c, dict)]
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def template_wide(obj: Obj, *path: str) -> list[Any]:
    """The CONTAINERS and IMAGES cells of a pod template at `path` under `spec`."""
    names, images = containers_images(sub(obj, "spec", *path, "spec", "containers"))
    return [names, images]


def quantity(value: Any) -> str:
    return "0" if value is None else str(value)


def access_modes(modes: Any) -> str:
    """`GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order."""
    have = set(modes or [])
    order = (
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    )
    return ",".join(short for mode, short in order if mode in have)


def or_none(value: Any, none: str = "<none>") -> Any:
    return value if value not in (None, "") else none


# ---- core/v1 --------------------------------------------------------------------------------

_POD_DONE = [
    {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    }
]
_POD_FAILED = [
    {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
]


def _pod_conditions(pod: Obj) -> list[Obj] | None:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return _POD_DONE
    if phase == "Failed":
        return _POD_FAILED
    return None


def _terminated_reason(term: Obj, prefix: str) -> str:
    if term.get("reason"):
        return prefix + term["reason"]
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode') or 0}"


def _has_condition(conditions: Any, typ: str) -> bool:
    for c in conditions or []:
        if c.get("type") == typ:
            return bool(c.get("status") == "True")
    return False


@register(
    "",
    "Pod",
    (
        NAME,
        col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
        col("Status", desc="The aggregate status of the containers in this pod."),
        col(
            "Restarts",
            desc="The number of times the containers in this pod have been restarted and "
            "when the last container in this pod has restarted.",
        ),
        AGE,
        col("IP", desc="podIP address allocated to the pod.", priority=1),
        col("Node", desc="NodeName indicates in which node this pod is scheduled.", priority=1),
        col(
            "Nominated Node",
            desc="nominatedNodeName is set when this pod preempts other pods on the node.",
            priority=1,
        ),
        col(
            "Readiness Gates",
            desc="If specified, all readiness gates will be evaluated for pod readiness.",
            priority=1,
        ),
    ),
    _pod_conditions,
)
def pod_row(pod: Obj, now: float) -> list[Any]:
    # plain .get chains (not `sub`): this runs once per pod of every `kubectl get pods`
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
    init_specs = spec.get("initContainers") or ()
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or ()) + sum(
        1 for c in init_specs if c.get("restartPolicy") == "Always"
    )
    restarts = sidecar_restarts = ready = 0
    last_restart = sidecar_last = 0.0
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or ()
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or ()):
        restarts += cs.get("restartCount") or 0
        last = (cs.get("lastState") or {}).get("terminated")
        finished = timestamp(last.get("finishedAt")) if last is not None else 0.0
        last_restart = max(last_restart, finished)
        sidecar = cs.get("name") in sidecars
        if sidecar:
            sidecar_restarts += cs.get("restartCount") or 0
            sidecar_last = max(sidecar_last, finished)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and (term.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        initializing = True
        if term is not None:
            reason = _terminated_reason(term, "Init:")
        elif wait is not None and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        break

    if not initializing or _has_condition(conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, sidecar_last
        has_running = False
        for cs in reversed(status.get("containerStatuses") or ()):
            restarts += cs.get("restartCount") or 0
            last = (cs.get("lastState") or {}).get("terminated")
            if last is not None:
                last_restart = max(last_restart, timestamp(last.get("finishedAt")))
            state = cs.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None:
                reason = _terminated_reason(term, "")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(conditions, "Ready") else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"

    ips = status.get("podIPs")
    ip = status.get("podIP") or (ips[0].get("ip") if ips else "")
    gates = "<none>"
    if spec.get("readinessGates"):
        wanted = [g.get("conditionType") for g in spec["readinessGates"]]
        by_type: dict[str, Any] = {}
        for c in conditions:
            by_type.setdefault(c.get("type"), c.get("status"))
        true = sum(1 for t in wanted if by_type.get(t) == "True")
        gates = f"{true}/{len(wanted)}"
    return [
        meta.get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_text,
        age(pod, now),
        ip or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates,
    ]


@register(
    "",
    "PodTemplate",
    (
        NAME,
        col("Containers", desc=CONTAINERS_DESC),
        col("Images", desc=IMAGES_DESC),
        col("Pod Labels", desc="The labels for the pod template."),
    ),
)
def pod_template_row(obj: Obj, now: float) -> list[Any]:
    names, images = containers_images(sub(obj, "template", "spec", "containers"))
    labels = sub(obj, "template", "metadata", "labels")
    return [obj["metadata"].get("name", ""), names, images, format_labels(labels)]


@register(
    "",
    "ReplicationController",
    (
        NAME,
        col("Desired", "integer", "Replicas is the number of desired replicas."),
        col("Current", "integer", "Replicas is the most recently observed number of replicas."),
        col("Ready", "integer", "The number of ready replicas for this replication controller."),
        AGE,
        *WIDE_CONTAINERS,
        *WIDE_IMAGES,
        col(
            "Selector",
            desc="Selector is a label query over pods that should match the Replicas count.",
            priority=1,
        ),
    ),
)
def replication_controller_row(obj: Obj, now: float) -> list[Any]:
    spec, status = dict_at(obj, "spec"), dict_at(obj, "status")
    replicas = spec.get("replicas")
    return [
        obj["metadata"].get("name", ""),
        1 if replicas is None else replicas,
        status.get("replicas") or 0,
        status.get("readyReplicas") or 0,
        age(obj, now),
        *template_wide(obj, "template"),
        format_labels(spec.get("selector")),
    ]


def _endpoints_text(obj: Obj) -> str:
    """`formatEndpoints`: up to three `ip:port`, then `+ N more...`."""
    subsets = list_at(obj, "subsets")
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        if not ports:
            count += len(addrs)
            shown.extend(addrs[: max(0, 3 - len(shown))])
            continue
        for p in ports:
            count += len(addrs)
            for ip in addrs:
                if len(shown) == 3:
                    break
                host = f"[{ip}]" if ":" in ip else ip
                shown.append(f"{host}:{p.get('port', 0)}")
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


@register(
    "",
    "Endpoints",
    (NAME, col("Endpoints", desc="The set of all endpoints is the union of all subsets."), AGE),
)
def endpoints_row(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), _endpoints_text(obj), age(obj, now)]


@register(
    "",
    "Node",
    (
        NAME,
        col("Status", desc="The status of the node"),
        col("Roles", desc="The roles of the node"),
        AGE,
        col("Version", desc="Kubelet Version reported by the node."),
        col("Internal-IP", desc="List of addresses reachable to the node.", priority=1),
        col("External-IP", desc="List of addresses reachable to the node.", priority=1),
        col("OS-Image", desc="OS Image reported by the node.", priority=1),
        col("Kernel-Version", desc="Kernel Version reported by the node.", priority=1),
        col("Container-Runtime", desc="ContainerRuntime Version reported by the node.", priority=1),
    ),
)
def node_row(obj: Obj, now: float) -> list[Any]:
    meta, spec, status = obj["metadata"], dict_at(obj, "spec"), dict_at(obj, "status")
    states: list[str] = []
    for c in list_at(status, "conditions"):
        if c.get("type") == "Ready":
            states = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for k, v in (meta.get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and len(k) > len("node-role.kubernetes.io/"):
            roles.add(k[len("node-role.kubernetes.io/") :])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = dict_at(status, "nodeInfo")
    internal = external = "<none>"
    for a in reversed(list_at(status, "addresses")):
        if a.get("type") == "InternalIP":
            internal = a.get("address", "")
        elif a.get("type") == "ExternalIP":
            external = a.get("address", "")
    return [
        meta.get("name", ""),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        age(obj, now),
        info.get("kubeletVersion") or "",
        internal,
        external,
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]
