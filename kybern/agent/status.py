"""The pod status a kubelet reports, computed from the pod, what the runtime holds of it
(`runtime.PodRuntime`) and what the pod worker knows besides (why a container waits, probe
results, the node's addresses): container and init container statuses (state, lastState,
restartCount, exit codes and reasons, image and imageID, containerID, started, ready), the
phase (kubelet's getPhase, never leaving a terminal phase), the conditions
PodReadyToStartContainers, Initialized, ContainersReady, Ready (with readiness gates) and
PodScheduled (True once on the node), pod and host IPs, QoS class and start time. Transition
times only move when a condition's status does. `merge_patch` turns the old and new status into
the smallest JSON merge patch. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kybern.agent import common, runtime

Obj = common.Obj
KUBELET_CONDITIONS = (
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
)


@dataclass
class Waiting:
    reason: str
    message: str = ""


@dataclass
class Inputs:
    """The worker's knowledge that the runtime does not hold."""

    now: float
    runtime_name: str = "containerd"
    host_ips: Sequence[str] = ()
    waiting: Mapping[str, Waiting] = field(default_factory=dict)  # container name -> why
    ready: Mapping[str, bool] = field(default_factory=dict)  # container id -> readiness probe
    started: Mapping[str, bool] = field(default_factory=dict)  # container id -> startup probe
    phase: str = ""  # forced terminal phase (Failed on activeDeadlineSeconds)
    reason: str = ""
    message: str = ""


def _terminated(c: runtime.ContainerInfo, runtime_name: str) -> Obj:
    reason = c.reason or ("Completed" if c.exit_code == 0 else "Error")
    t: Obj = {
        "exitCode": c.exit_code,
        "reason": reason,
        "startedAt": common.ns_to_rfc3339(c.started_at) if c.started_at else None,
        "finishedAt": common.ns_to_rfc3339(c.finished_at) if c.finished_at else None,
        "containerID": f"{runtime_name}://{c.id}",
    }
    if c.message:
        t["message"] = c.message
    return t


def container_status(
    pod: Obj,
    spec: Obj,
    rt: runtime.PodRuntime,
    inputs: Inputs,
    kind: str,
    default_waiting: str,
) -> Obj:
    """The status of one container (`kind` "app" or "init")."""
    name = str(spec.get("name", ""))
    found = rt.of(name, kind)
    latest = found[0] if found else None
    previous = found[1] if len(found) > 1 else None
    waiting = inputs.waiting.get(name)
    st: Obj = {
        "name": name,
        "image": str(spec.get("image", "")),
        "imageID": "",
        "restartCount": 0,
        "ready": False,
        "started": False,
        "lastState": {},
        "state": {"waiting": {"reason": default_waiting}},
    }
    if latest is None:
        if waiting is not None:
            st["state"] = {"waiting": _waiting(waiting)}
        return st
    st["restartCount"] = latest.restart_count
    st["imageID"] = latest.image_ref
    st["containerID"] = f"{inputs.runtime_name}://{latest.id}"
    if latest.state == runtime.RUNNING:
        started = inputs.started.get(latest.id, spec.get("startupProbe") is None)
        ready = started and inputs.ready.get(latest.id, spec.get("readinessProbe") is None)
        st["state"] = {"running": {"startedAt": common.ns_to_rfc3339(latest.started_at)}}
        st["started"] = bool(started)
        st["ready"] = bool(ready) if kind == "app" else False
        if previous is not None and previous.state == runtime.EXITED:
            st["lastState"] = {"terminated": _terminated(previous, inputs.runtime_name)}
    elif latest.state == runtime.EXITED:
        term = _terminated(latest, inputs.runtime_name)
        if waiting is not None:
            st["state"] = {"waiting": _waiting(waiting)}
            st["lastState"] = {"terminated": term}
        else:
            st["state"] = {"terminated": term}
            if previous is not None and previous.state == runtime.EXITED:
                st["lastState"] = {"terminated": _terminated(previous, inputs.runtime_name)}
        if kind == "init" and latest.exit_code == 0:
            st["ready"] = True  # a completed init container counts as ready
    else:  # created, not started yet (or unknown)
        st["state"] = {"waiting": _waiting(waiting or Waiting("ContainerCreating"))}
        if previous is not None and previous.state == runtime.EXITED:
            st["lastState"] = {"terminated": _terminated(previous, inputs.runtime_name)}
    if latest.state == runtime.CREATED and waiting is None:
        st["state"] = {"waiting": {"reason": "ContainerCreating"}}
    return st


def _waiting(w: Waiting) -> Obj:
    out: Obj = {"reason": w.reason}
    if w.message:
        out["message"] = w.message
    return out


def _term(st: Obj) -> Obj | None:
    return (st.get("state") or {}).get("terminated")


def _last_term(st: Obj) -> Obj | None:
    return (st.get("lastState") or {}).get("terminated")


def init_progress(init_statuses: Sequence[Obj]) -> tuple[int, int]:
    """(pending, failed) init containers, as kubelet's getPhase counts them."""
    pending = failed = 0
    for st in init_statuses:
        state = st.get("state") or {}
        if "running" in state:
            pending += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") != 0:
                failed += 1
        elif "waiting" in state:
            last = _last_term(st)
            if last is not None:
                if last.get("exitCode") != 0:
                    failed += 1
            else:
                pending += 1
        else:
            pending += 1
    return pending, failed


def phase(pod: Obj, init_statuses: Sequence[Obj], statuses: Sequence[Obj]) -> str:
    """kubelet's getPhase."""
    policy = common.restart_policy(pod)
    pending_init, failed_init = init_progress(init_statuses)
    if failed_init and policy == "Never":
        return "Failed"
    running = waiting = stopped = succeeded = 0
    for st in statuses:
        state = st.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if _last_term(st) is not None:
                stopped += 1
            else:
                waiting += 1
    initialized = pending_init == 0 and failed_init == 0
    if not initialized or waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    old: Sequence[Obj], typ: str, ok: bool, now: str, reason: str = "", msg: str = ""
) -> Obj:
    status = "True" if ok else "False"
    prev = next((c for c in old if c.get("type") == typ), None)
    when = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
    c: Obj = {"type": typ, "status": status, "lastTransitionTime": when or now}
    if reason:
        c["reason"] = reason
    if msg:
        c["message"] = msg
    return c


OWNED = (
    "phase",
    "conditions",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "qosClass",
    "containerStatuses",
    "initContainerStatuses",
    "reason",
    "message",
)


def pod_status(pod: Obj, rt: runtime.PodRuntime, inputs: Inputs) -> Obj:
    """The whole status the agent reports for `pod` (no None values anywhere; the fields the
    agent does not own are kept from the pod's current status)."""
    old = common.status(pod)
    old_conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    now = common.rfc3339(inputs.now)
    inits = [
        container_status(pod, c, rt, inputs, "init", "PodInitializing")
        for c in common.containers(pod, "initContainers")
    ]
    pending_init, failed_init = init_progress(inits)
    initialized = pending_init == 0 and failed_init == 0
    apps = [
        container_status(
            pod, c, rt, inputs, "app", "ContainerCreating" if initialized else "PodInitializing"
        )
        for c in common.containers(pod)
    ]
    ph = inputs.phase or phase(pod, inits, apps)
    if old.get("phase") in ("Succeeded", "Failed"):
        ph = old["phase"]  # a terminal phase is final
    done = ph in ("Succeeded", "Failed")
    sandbox = rt.sandbox
    ips = list(sandbox.ips) if sandbox is not None and sandbox.ready else []
    if common.host_network(pod):
        ips = list(inputs.host_ips[:1]) if sandbox is not None else []
    if not ips and done:
        ips = [p.get("ip", "") for p in old.get("podIPs") or [] if p.get("ip")]
    unready = [s["name"] for s in apps if not s["ready"]]
    incomplete = [s["name"] for s in inits if (_term(s) or {}).get("exitCode", -1) != 0]
    gates = [g.get("conditionType") for g in common.spec(pod).get("readinessGates") or []]
    gates_ok = all(
        any(c.get("type") == g and c.get("status") == "True" for c in old_conditions) for g in gates
    )
    containers_ready = not unready and not done
    if ph == "Succeeded":
        ready_reason = "PodCompleted"
    elif not containers_ready:
        ready_reason = "ContainersNotReady"
    elif not gates_ok:
        ready_reason = "ReadinessGatesNotReady"
    else:
        ready_reason = ""
    unready_msg = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
    init_ok = initialized or (done and not incomplete)
    conditions = [
        _condition(
            old_conditions,
            "PodReadyToStartContainers",
            sandbox is not None and sandbox.ready and not done,
            now,
        ),
        _condition(
            old_conditions,
            "Initialized",
            init_ok,
            now,
            "" if init_ok else "ContainersNotInitialized",
            "" if init_ok else f"containers with incomplete status: [{' '.join(incomplete)}]",
        ),
        _condition(
            old_conditions,
            "Ready",
            containers_ready and gates_ok,
            now,
            ready_reason,
            unready_msg if ready_reason == "ContainersNotReady" else "",
        ),
        _condition(
            old_conditions,
            "ContainersReady",
            containers_ready,
            now,
            ready_reason if ready_reason != "ReadinessGatesNotReady" else "",
            unready_msg if ready_reason == "ContainersNotReady" else "",
        ),
    ]
    conditions += [c for c in old_conditions if c.get("type") not in KUBELET_CONDITIONS]
    conditions.append(_condition(old_conditions, "PodScheduled", True, now))
    out: Obj = {k: v for k, v in old.items() if k not in OWNED}
    out.update(
        {
            "phase": ph,
            "conditions": conditions,
            "hostIP": inputs.host_ips[0] if inputs.host_ips else None,
            "hostIPs": [{"ip": ip} for ip in inputs.host_ips] or None,
            "podIP": ips[0] if ips else None,
            "podIPs": [{"ip": ip} for ip in ips] or None,
            "startTime": old.get("startTime") or now,
            "qosClass": common.qos_class(pod),
            "containerStatuses": apps,
            "initContainerStatuses": inits or None,
            "reason": inputs.reason or (old.get("reason") if done else None) or None,
            "message": inputs.message or (old.get("message") if done else None) or None,
        }
    )
    return strip_none(out)


def strip_none(obj: Any) -> Any:
    """`obj` without None values in any dict (lists keep their items)."""
    if isinstance(obj, dict):
        return {k: strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [strip_none(v) for v in obj]
    return obj


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) turning `old` into `new` (lists are replaced whole, a
    key missing from `new` becomes null); None when they are equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: Obj = {}
    for k in old.keys() - new.keys():
        patch[k] = None
    for k, v in new.items():
        if k not in old:
            patch[k] = v
        elif isinstance(v, dict) and isinstance(old[k], dict):
            sub = merge_patch(old[k], v)
            if sub is not None:
                patch[k] = sub
        elif old[k] != v:
            patch[k] = v
    return patch or None


def status_patch(current: Obj, desired: Obj) -> Obj | None:
    """The merge patch of a pod's `status` from `current` (as the API has it) to `desired`;
    None when nothing would change."""
    return merge_patch(strip_none(current), desired)
