"""Sans-I/O pieces of the simulated nodes: the Node and Lease objects a kubelet would register
and a Lease renewal's merge patch (encoded from parts encoded once per node), Go duration
parsing for `sim.kybern.io/run-for`, pod-CIDR and address allocation, the per-pod
simulation state (`PodSim`: running, terminated or in CrashLoopBackOff, restarts, IP) and the
pod status a kubelet would report for that state. Everything here is pure so the status logic
is unit-tested without a server."""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

import kybern

Obj = dict[str, Any]
RUN_FOR = "sim.kybern.io/run-for"
EXIT_CODE = "sim.kybern.io/exit-code"
SIMULATED = "sim.kybern.io/simulated"
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = f"v1.32.0+kybern-{kybern.__version__}"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's `time.ParseDuration` (`"3s"`, `"1m30s"`, `"250ms"`) in seconds; ValueError if bad."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def _split(t: float) -> tuple[int, int]:
    """Seconds and microseconds of `t`, rounded to the microsecond as `datetime` does."""
    secs = int(t // 1)
    micros = round((t - secs) * 1e6)
    if micros >= 1_000_000:
        return secs + 1, micros - 1_000_000
    return secs, micros


def rfc3339(t: float) -> str:
    return _rfc3339(_split(t)[0])


@functools.lru_cache(maxsize=1024)
def _rfc3339(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: float) -> str:
    secs, micros = _split(t)
    return f"{_rfc3339(secs)[:-1]}.{micros:06d}Z"


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---- addresses -------------------------------------------------------------------------------


class SubnetAllocator:
    """Hands out /24 pod CIDRs from `pool` skipping those in use; a node's InternalIP is the
    matching address in `node_pool` (subnet index + 1)."""

    def __init__(self, pool: str, node_pool: str, used: Iterable[str] = ()) -> None:
        self.pool = ipaddress.ip_network(pool)
        self.node_pool = ipaddress.ip_network(node_pool)
        self.used = {str(ipaddress.ip_network(c, strict=False)) for c in used if c}
        self._next = 0
        self._size = 2 ** (24 - self.pool.prefixlen) if self.pool.prefixlen <= 24 else 1

    def index_of(self, cidr: str) -> int:
        net = ipaddress.ip_network(cidr, strict=False)
        return (int(net.network_address) - int(self.pool.network_address)) >> 8

    def allocate(self) -> str:
        while self._next < self._size:
            net = ipaddress.ip_network((int(self.pool.network_address) + (self._next << 8), 24))
            self._next += 1
            if str(net) not in self.used:
                self.used.add(str(net))
                return str(net)
        raise ValueError(f"pod CIDR pool {self.pool} is exhausted")

    def node_ip(self, cidr: str) -> str:
        idx = self.index_of(cidr) % (self.node_pool.num_addresses - 2)
        return str(self.node_pool.network_address + idx + 1)


class PodIPs:
    """The pod addresses of one node's /24 (.2 to .254), reused after release."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        self.base = int(net.network_address)
        self.size = min(net.num_addresses - 1, 255)
        self._v4 = net.version == 4
        self._prefix = str(net.network_address).rsplit(".", 1)[0] + "."
        self.used: set[int] = set()
        self._next = 2

    def allocate(self) -> str:
        for _ in range(self.size):
            n = self._next
            self._next = 2 if self._next + 1 >= self.size else self._next + 1
            if n not in self.used:
                self.used.add(n)
                if self._v4:  # a /24 or smaller: only the last octet changes
                    return self._prefix + str((self.base & 0xFF) + n)
                return str(ipaddress.ip_address(self.base + n))
        raise ValueError("no pod IP left on this node")

    def reserve(self, ip: str) -> None:
        try:
            n = int(ipaddress.ip_address(ip)) - self.base
        except ValueError:
            return
        if 0 < n < 256:
            self.used.add(n)

    def release(self, ip: str) -> None:
        try:
            self.used.discard(int(ipaddress.ip_address(ip)) - self.base)
        except ValueError:
            pass


# ---- nodes and leases ------------------------------------------------------------------------


def node_conditions(now: str, transition: Mapping[str, str] | None = None) -> list[Obj]:
    """The conditions of a healthy kubelet; `transition` keeps earlier transition times."""
    transition = transition or {}
    rows = (
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "is posting ready status"),
    )
    return [
        {
            "type": t,
            "status": s,
            "lastHeartbeatTime": now,
            "lastTransitionTime": transition.get(t, now),
            "reason": r,
            "message": "kubelet " + m,
        }
        for t, s, r, m in rows
    ]


def node_object(
    name: str,
    *,
    cidr: str,
    ip: str,
    capacity: Mapping[str, str],
    labels: Mapping[str, str],
    taints: list[Obj],
    now: str,
) -> Obj:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
            "annotations": {SIMULATED: "true", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "podCIDR": cidr,
            "podCIDRs": [cidr],
            "providerID": f"kybern-sim://{name}",
            **({"taints": taints} if taints else {}),
        },
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": node_conditions(now),
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": digest[:32],
                "systemUUID": digest[32:40] + "-" + digest[40:44] + "-" + digest[44:48],
                "bootID": digest[:8],
                "kernelVersion": "simulated",
                "osImage": "kybern simulated node",
                "containerRuntimeVersion": "sim://" + kybern.__version__,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def lease_object(name: str, node_uid: str, duration: int, now: str) -> Obj:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
            ],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration, "renewTime": now},
    }


class LeaseRenewal:
    """A node's Lease renewal: its path, and its merge patch encoded as
    `orjson.dumps({"spec": {"holderIdentity": holder, "renewTime": now}})` encodes it, from
    parts encoded once."""

    __slots__ = ("_head", "path")

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self._head = b'{"spec":{"holderIdentity":' + orjson.dumps(holder) + b',"renewTime":'

    def body(self, now: str) -> bytes:
        return self._head + orjson.dumps(now) + b"}}"


def node_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


# ---- pods ------------------------------------------------------------------------------------

RUNNING, TERMINATED, WAITING = "running", "terminated", "waiting"


@dataclass
class PodSim:
    """What the simulated kubelet knows about one pod it runs."""

    uid: str
    node: str
    ip: str
    host_ip: str
    started: float  # pod start (startTime)
    run_started: float  # current container run
    state: str = RUNNING
    restarts: int = 0
    crashes: int = 0  # consecutive failed runs (for the back-off)
    exit_code: int = 0
    finished: float = 0.0
    changed: float = 0.0  # last readiness transition
    last_state: Obj = field(default_factory=dict)
    final: bool = False  # Succeeded/Failed: nothing more will happen

    @property
    def ready(self) -> bool:
        return self.state == RUNNING

    def state_key(self) -> tuple[Any, ...]:
        """Everything the reported status depends on (a change means a new status)."""
        return (
            self.uid,
            self.ip,
            self.host_ip,
            self.started,
            self.run_started,
            self.state,
            self.restarts,
            self.crashes,
            self.exit_code,
            self.finished,
            self.changed,
            id(self.last_state),
            self.final,
        )


def run_for(pod: Obj) -> float | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(RUN_FOR)
    if not value:
        return None
    try:
        return max(parse_duration(value), 0.0)
    except ValueError:
        return None


def exit_code(pod: Obj) -> int:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(EXIT_CODE, "0")
    try:
        return int(value)
    except ValueError:
        return 1


def container_id(uid: str, name: str, restarts: int) -> str:
    return "sim://" + hashlib.sha256(f"{uid}/{name}/{restarts}".encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1024)
def _image_id(image: str) -> str:
    return f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _condition(typ: str, ok: bool, when: str, reason: str = "") -> Obj:
    c: Obj = {"type": typ, "status": "True" if ok else "False", "lastProbeTime": None}
    c["lastTransitionTime"] = when
    if reason:
        c["reason"] = reason
    return c


def pod_phase(sim: PodSim) -> str:
    if not sim.final:
        return "Running"
    return "Succeeded" if sim.exit_code == 0 else "Failed"


def pod_status(pod: Obj, sim: PodSim, backoff: float = 0.0) -> Obj:
    """The status a kubelet reports for `pod` in simulation state `sim`."""
    spec = pod.get("spec") or {}
    start, run = rfc3339(sim.started), rfc3339(sim.run_started)
    phase = pod_phase(sim)
    ready = sim.ready
    done_reason = ("PodCompleted" if sim.exit_code == 0 else "PodFailed") if sim.final else ""
    changed = rfc3339(sim.changed or sim.started)
    terminated_reason = "Completed" if sim.exit_code == 0 else "Error"
    meta = pod.get("metadata") or {}
    statuses: list[Obj] = []
    for c in spec.get("containers") or ():
        name = c.get("name", "")
        st: Obj = {
            "name": name,
            "image": c.get("image", ""),
            "imageID": _image_id(c.get("image", "")),
            "containerID": container_id(sim.uid, name, sim.restarts),
            "restartCount": sim.restarts,
            "ready": ready,
            "started": ready,
            "lastState": sim.last_state,
        }
        if sim.state == RUNNING:
            st["state"] = {"running": {"startedAt": run}}
        elif sim.state == WAITING:
            st["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(backoff)}s restarting failed container={name} "
                    f"pod={meta.get('name', '')}_{meta.get('namespace', '')}({sim.uid})",
                }
            }
            st.pop("containerID")
        else:
            st["state"] = {
                "terminated": {
                    "exitCode": sim.exit_code,
                    "reason": terminated_reason,
                    "startedAt": run,
                    "finishedAt": rfc3339(sim.finished),
                    "containerID": st["containerID"],
                }
            }
        statuses.append(st)
    inits = [
        {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": _image_id(c.get("image", "")),
            "containerID": container_id(sim.uid, c.get("name", ""), 0),
            "restartCount": 0,
            "ready": True,
            "started": False,
            "lastState": {},
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": start,
                    "finishedAt": start,
                    "containerID": container_id(sim.uid, c.get("name", ""), 0),
                }
            },
        }
        for c in spec.get("initContainers") or ()
    ]
    not_ready = done_reason or ("" if ready else "ContainersNotReady")
    status: Obj = {
        "phase": phase,
        "conditions": [
            _condition("PodReadyToStartContainers", not sim.final, changed if sim.final else start),
            _condition("Initialized", True, start, "PodCompleted" if sim.final else ""),
            _condition("Ready", ready, changed, not_ready),
            _condition("ContainersReady", ready, changed, not_ready),
            _condition("PodScheduled", True, start),
        ],
        "hostIP": sim.host_ip,
        "hostIPs": [{"ip": sim.host_ip}],
        "podIP": sim.ip,
        "podIPs": [{"ip": sim.ip}],
        "startTime": start,
        "containerStatuses": statuses,
    }
    if inits:
        status["initContainerStatuses"] = inits
    qos = (pod.get("status") or {}).get("qosClass")
    if qos:
        status["qosClass"] = qos
    return status


def status_differs(current: Obj | None, desired: Obj) -> bool:
    """True when `current` lacks or differs in any field of `desired`."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())
