"""The agent's Node: registration (create, or adopt an existing node of the same name), the
machine's facts (CPU and memory from /proc, pods 110, ephemeral storage from the data
directory's filesystem, allocatable after kubelet's default hard eviction thresholds, addresses,
nodeInfo with the runtime's version from CRI Version, the images it holds), the conditions
(Ready from the runtime's and network's readiness, Memory/Disk/PIDPressure from the machine),
the Lease heartbeat in `kube-node-lease` every 10 s, and status writes only when something
changed or every 5 minutes (kubelet's nodeStatusReportFrequency). The node's own object is
watched, which brings its podCIDR and any condition a controller changed."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

import kybern
from kybern.agent import common
from kybern.api import errors
from kybern.client import informer, rest

log = logging.getLogger("kybern.agent")
Obj = common.Obj
KUBELET_VERSION = f"v1.32.0+kybern-{kybern.__version__}"
MAX_PODS = 110
EVICTION_MEMORY = 100 * 1024 * 1024  # memory.available<100Mi
EVICTION_NODEFS = 0.10  # nodefs.available<10%
MAX_IMAGES = 50
TRANSIENT = (TimeoutError, aiohttp.ClientError, OSError)
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


@dataclass
class Machine:
    """Facts of the host, read once (cpu, memory, boot id, OS) and refreshed (free memory,
    disk, processes) for the pressure conditions."""

    cpus: int = 1
    memory: int = 0
    memory_available: int = 0
    disk_capacity: int = 0
    disk_available: int = 0
    pids: int = 0
    pid_max: int = 32768
    machine_id: str = ""
    system_uuid: str = ""
    boot_id: str = ""
    kernel: str = ""
    os_image: str = ""
    arch: str = "amd64"


def _read(path: str) -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip()
    return ""


def meminfo(text: str) -> dict[str, int]:
    """Bytes per /proc/meminfo field."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            out[key] = int(words[0]) * (1024 if len(words) > 1 and words[1] == "kB" else 1)
    return out


def os_image(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def read_machine(data_dir: Path) -> Machine:
    """Blocking: reads /proc, /sys and statvfs."""
    mem = meminfo(_read("/proc/meminfo"))
    st = os.statvfs(data_dir)
    mid = _read("/etc/machine-id")
    pids = sum(1 for p in os.listdir("/proc") if p.isdigit())
    pid_max = _read("/proc/sys/kernel/pid_max")
    return Machine(
        cpus=os.cpu_count() or 1,
        memory=mem.get("MemTotal", 0),
        memory_available=mem.get("MemAvailable", 0),
        disk_capacity=st.f_blocks * st.f_frsize,
        disk_available=st.f_bavail * st.f_frsize,
        pids=pids,
        pid_max=int(pid_max) if pid_max.isdigit() else 32768,
        machine_id=mid,
        system_uuid=_read("/sys/class/dmi/id/product_uuid").lower() or mid,
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        kernel=platform.release(),
        os_image=os_image(_read("/etc/os-release")),
        arch=_ARCH.get(platform.machine(), platform.machine()),
    )


def default_address() -> str:
    """The IPv4 address of the interface of the default route, or 127.0.0.1 (no traffic is
    sent: a UDP socket is only connected)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            routes = _read("/proc/net/route").splitlines()[1:]
            if not any(r.split()[1:2] == ["00000000"] for r in routes if r.split()):
                return "127.0.0.1"
            s.connect(("192.0.2.255", 9))  # TEST-NET: never routed anywhere
            addr = s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(addr).is_unspecified:
            return str(addr)
    return "127.0.0.1"


def capacity(m: Machine, max_pods: int = MAX_PODS) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable) after kubelet's default hard eviction thresholds."""
    cap = {
        "cpu": str(m.cpus),
        "memory": f"{m.memory // 1024}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": f"{m.disk_capacity // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    alloc = dict(cap)
    alloc["memory"] = f"{max(m.memory - EVICTION_MEMORY, 0) // 1024}Ki"
    alloc["ephemeral-storage"] = str(int(m.disk_capacity * (1 - EVICTION_NODEFS)))
    return cap, alloc


@dataclass
class Health:
    """What decides the Ready condition."""

    runtime_ready: bool = False
    network_ready: bool = False
    message: str = "container runtime status check may not have completed yet"


def conditions(m: Machine, health: Health, old: list[Obj], now: str) -> list[Obj]:
    """The four kubelet conditions; transition times kept while a status stays the same."""
    rows = [
        (
            "MemoryPressure",
            m.memory_available and m.memory_available < EVICTION_MEMORY,
            ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
            ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ),
        (
            "DiskPressure",
            m.disk_capacity and m.disk_available < m.disk_capacity * EVICTION_NODEFS,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        (
            "PIDPressure",
            m.pids > 0.9 * m.pid_max,
            ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
            ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ),
    ]
    out = []
    for typ, bad, (r_bad, m_bad), (r_ok, m_ok) in rows:
        out.append(_cond(old, typ, "True" if bad else "False", r_bad if bad else r_ok,
                         m_bad if bad else m_ok, now))  # fmt: skip
    ready = health.runtime_ready and health.network_ready
    out.append(
        _cond(
            old,
            "Ready",
            "True" if ready else "False",
            "KubeletReady" if ready else "KubeletNotReady",
            "kubelet is posting ready status" if ready else health.message,
            now,
        )
    )
    return out


def _cond(old: list[Obj], typ: str, status: str, reason: str, message: str, now: str) -> Obj:
    prev = next((c for c in old if c.get("type") == typ), None)
    same = prev is not None and prev.get("status") == status
    return {
        "type": typ,
        "status": status,
        "lastHeartbeatTime": now,
        "lastTransitionTime": prev.get("lastTransitionTime", now) if same and prev else now,
        "reason": reason,
        "message": message,
    }


def without_heartbeats(status: Obj) -> Obj:
    """A node status for comparison: heartbeat times dropped."""
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
        for c in status.get("conditions") or []
    ]
    return out


@dataclass
class NodeConfig:
    name: str
    data_dir: Path
    addresses: list[str] = field(default_factory=list)  # InternalIPs
    labels: dict[str, str] = field(default_factory=dict)
    kubelet_port: int = 10250
    max_pods: int = MAX_PODS
    lease_duration: int = 40
    heartbeat_interval: float = 10.0
    status_update_interval: float = 10.0
    status_report_interval: float = 300.0


class NodeManager:
    """Registers the node and keeps its Lease and status up to date."""

    def __init__(
        self,
        client: rest.Client,
        cfg: NodeConfig,
        *,
        runtime_version: Callable[[], str],
        health: Callable[[], Health],
        images: Callable[[], list[Obj]],
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.runtime_version = runtime_version
        self.health = health
        self.images = images
        self.machine = Machine()
        self.informer = informer.Informer(
            client, common.NODES, field_selector=f"metadata.name={cfg.name}"
        )
        self.changed = asyncio.Event()  # the node object changed (podCIDR, conditions)
        self.heartbeats = 0
        self.status_writes = 0
        self._last_report = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._kick = asyncio.Event()

    @property
    def node(self) -> Obj | None:
        return self.informer.get(self.cfg.name)

    def pod_cidrs(self) -> list[str]:
        spec = common.spec(self.node or {})
        cidrs = [str(c) for c in spec.get("podCIDRs") or [] if c]
        return cidrs or ([str(spec["podCIDR"])] if spec.get("podCIDR") else [])

    def update_now(self) -> None:
        """Ask for a status update at once (the runtime or network readiness changed)."""
        self._kick.set()

    async def start(self) -> None:
        self.machine = await asyncio.to_thread(read_machine, self.cfg.data_dir)
        delay = 0.5
        while True:  # as kubelet does, wait for the API server rather than give up
            try:
                await self.register()
                break
            except (errors.StatusError, *TRANSIENT) as e:
                if isinstance(e, errors.StatusError) and e.code < 500 and e.code != 429:
                    raise
                log.warning("cannot register node %s yet: %s", self.cfg.name, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        self.informer.add_handlers(
            informer.Handlers(
                on_add=lambda n: self.changed.set(),
                on_update=lambda old, new: self._on_update(old, new),
            )
        )
        self.informer.start()
        await self.informer.wait_synced(60.0)
        await self.update_status(force=True)
        await self.renew_lease()
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="node-lease"),
            asyncio.create_task(self._status_loop(), name="node-status"),
        ]

    def _on_update(self, old: Obj, new: Obj) -> None:
        self.changed.set()
        if common.status(old).get("conditions") != common.status(new).get("conditions"):
            self._kick.set()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        await self.informer.stop()

    def node_object(self) -> Obj:
        arch = self.machine.arch
        labels = {
            "kubernetes.io/hostname": self.cfg.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            **self.cfg.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.cfg.name,
                "labels": labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {},
        }

    async def register(self) -> None:
        """Create the Node, or take over an existing one of the same name (its labels
        brought in line)."""
        body = self.node_object()
        while True:
            try:
                await self.client.create(common.NODES, body)
                log.info("registered node %s", self.cfg.name)
                return
            except errors.StatusError as e:
                if e.code != 409:
                    raise
            try:
                existing = await self.client.get(common.NODES, self.cfg.name)
            except errors.StatusError as e:
                if e.code == 404:
                    continue  # deleted in between: create again
                raise
            labels = common.meta(existing).get("labels") or {}
            want = body["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in want.items()):
                await self.client.patch(common.NODES, self.cfg.name, {"metadata": {"labels": want}})
            log.info("node %s already registered; taking it over", self.cfg.name)
            return

    def desired_status(self, old: Obj) -> Obj:
        now = common.rfc3339(time.time())
        cap, alloc = capacity(self.machine, self.cfg.max_pods)
        addresses = [{"type": "InternalIP", "address": a} for a in self.cfg.addresses]
        addresses.append({"type": "Hostname", "address": self.cfg.name})
        m = self.machine
        out = {k: v for k, v in old.items() if k not in ("conditions",)}
        out.update(
            {
                "capacity": cap,
                "allocatable": alloc,
                "conditions": conditions(m, self.health(), old.get("conditions") or [], now),
                "addresses": addresses,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.kubelet_port}},
                "nodeInfo": {
                    "machineID": m.machine_id,
                    "systemUUID": m.system_uuid,
                    "bootID": m.boot_id,
                    "kernelVersion": m.kernel,
                    "osImage": m.os_image,
                    "containerRuntimeVersion": self.runtime_version(),
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": m.arch,
                },
                "images": self.images()[:MAX_IMAGES],
            }
        )
        return out

    async def update_status(self, force: bool = False) -> bool:
        """Write the node's status if it changed (or `force`, or the report interval passed)."""
        node = self.node
        if node is None:
            node = await self.client.get(common.NODES, self.cfg.name)
        self.machine = await asyncio.to_thread(read_machine, self.cfg.data_dir)
        old = common.status(node)
        new = self.desired_status(old)
        due = time.monotonic() - self._last_report >= self.cfg.status_report_interval
        if not force and not due and without_heartbeats(old) == without_heartbeats(new):
            return False
        await self.client.patch(common.NODES, self.cfg.name, {"status": new}, subresource="status")
        self._last_report = time.monotonic()
        self.status_writes += 1
        return True

    async def renew_lease(self) -> None:
        now = common.micro_time(time.time())
        name = self.cfg.name
        try:
            lease = await self.client.get(common.LEASES, name, common.LEASE_NAMESPACE)
        except errors.StatusError as e:
            if e.code != 404:
                raise
            node = self.node or await self.client.get(common.NODES, name)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": common.LEASE_NAMESPACE,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": name,
                            "uid": common.meta(node).get("uid", ""),
                        }
                    ],
                },
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": self.cfg.lease_duration,
                    "renewTime": now,
                },
            }
            await self.client.create(common.LEASES, body, common.LEASE_NAMESPACE)
        else:
            lease["spec"] = {
                **(lease.get("spec") or {}),
                "holderIdentity": name,
                "leaseDurationSeconds": self.cfg.lease_duration,
                "renewTime": now,
            }
            await self.client.update(common.LEASES, lease)
        self.heartbeats += 1

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            try:
                await self.renew_lease()
            except (errors.StatusError, *TRANSIENT) as e:
                log.warning("node lease renewal failed: %s", e)

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.cfg.status_update_interval)
            self._kick.clear()
            try:
                await self.update_status()
            except errors.StatusError as e:
                if e.code == 404:
                    log.warning("node %s was deleted; registering it again", self.cfg.name)
                    with contextlib.suppress(errors.StatusError, *TRANSIENT):
                        await self.register()
                        await self.update_status(force=True)
                else:
                    log.warning("node status update failed: %s", e.message)
            except TRANSIENT as e:
                log.warning("node status update failed: %s", e)
