"""The kubelet Summary API (`stats/v1alpha1`, `GET /stats/summary`) of the node agent:
`SummaryProvider.summary()` builds the document from CRI and the machine, with the kubelet's
field names. Pods are the ready sandboxes (`ListPodSandbox`: podRef from the sandbox metadata,
one per pod uid, the newest), their containers the running ones (`ListContainers` names them,
`ListContainerStats` gives CPU, memory and the writable layer). Pod-level CPU, memory, network
and process count come from `ListPodSandboxStats` where the runtime has them (containerd 1.6 has
the RPC but fails the whole list when one sandbox has no cgroup parent: then each sandbox is
asked alone, and a pod the runtime has no stats for gets the sums of its containers); a runtime
without the RPC (UNIMPLEMENTED) is not asked again. The node's CPU and memory are the machine's
(`hoststats`): the cgroup v2 root (`cpu.stat` usage_usec, `memory.current`, `memory.stat`) where
those files exist, else `/proc/stat`, `/proc/meminfo` and `/proc/vmstat`; working set = usage -
inactive_file, availableBytes = MemTotal - working set. `usageNanoCores` is the provider's own
rate between its previous sample of the node, pod or container and this one (`RateTracker`; the
runtime's own figure is ignored, its window being whatever its last caller made it): the first
sample has only `usageCoreNanoSeconds`, as with a kubelet. `only_cpu_and_memory` keeps just the
CPU and memory parts, which is what the metrics server asks for; the full document adds
filesystems (statvfs, the runtime's `ImageFsInfo` and writable layers, the containers' log
files), network (`/proc/net/dev` of the agent and of each sandbox's process), rlimit, the pods'
volumes (from the `volume_stats` callback) and ephemeral storage. Every file is read in a
thread, never on the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kybern.agent import common
from kybern.agent.hoststats import (
    CGROUP_ROOT,
    PROC,
    Machine,
    fs_stats,
    log_usage,
    network_stats,
    parse_net_dev,
    read_machine,
    read_text,
    rlimit_stats,
)
from kybern.cri import RuntimeClient, api
from kybern.cri import errors as cri_errors

log = logging.getLogger("kybern.agent.stats")
Obj = dict[str, Any]
Key = tuple[str, ...]
# pod uid -> the pod's VolumeStats objects (kubelet shape: name, time, capacityBytes, usedBytes,
# availableBytes, inodes..., pvcRef for persistent volumes); None: volume stats are unknown
VolumeStatsFn = Callable[[], Awaitable[Mapping[str, Sequence[Mapping[str, Any]]] | None]]


# ---- rates ----------------------------------------------------------------------------------


@dataclass
class _Point:
    total: int  # cumulative CPU time, ns
    at: int  # when, ns since the epoch
    rate: int | None  # nanocores between the point before and this one


@dataclass
class RateTracker:
    """Rates of cumulative CPU counters (`usageCoreNanoSeconds`) between consecutive samples of
    each key (the node, a pod's sandbox, a container). `begin()` starts a sample, `rate()`
    records a key's counter in it and answers the nanocores since the key's previous sample
    (None on its first sample, or when the counter went back), `commit()` makes the sample the
    previous one: keys it did not see are forgotten."""

    _prev: dict[Key, _Point] = field(default_factory=dict)
    _seen: dict[Key, _Point] = field(default_factory=dict)

    def begin(self) -> None:
        self._seen = {}

    def rate(self, key: Key, total: int, at: int) -> int | None:
        before = self._prev.get(key)
        if before is None or total < before.total:
            point = _Point(total, at, None)
        elif at <= before.at:  # no newer reading (the same or an older timestamp): keep the last
            point = before
        else:
            point = _Point(total, at, (total - before.total) * 1_000_000_000 // (at - before.at))
        self._seen[key] = point
        return point.rate

    def commit(self) -> None:
        self._prev, self._seen = self._seen, {}

    def __len__(self) -> int:
        return len(self._prev)


# ---- CRI messages ---------------------------------------------------------------------------


def _u64(msg: Any, name: str) -> int | None:
    """The value of a `UInt64Value` field, None when unset."""
    return int(getattr(msg, name).value) if msg.HasField(name) else None


def _memory(mem: api.MemoryUsage, now: int) -> Obj:
    """A kubelet `MemoryStats` from CRI (availableBytes only when the runtime knows a limit)."""
    out: Obj = {"time": common.micro_time((mem.timestamp or now) / 1e9)}
    for name, key in (
        ("available_bytes", "availableBytes"),
        ("usage_bytes", "usageBytes"),
        ("working_set_bytes", "workingSetBytes"),
        ("rss_bytes", "rssBytes"),
        ("page_faults", "pageFaults"),
        ("major_page_faults", "majorPageFaults"),
    ):
        value = _u64(mem, name)
        if value is not None and (value or name != "available_bytes"):
            out[key] = value
    return out


def _interfaces(net: api.NetworkUsage) -> list[Obj]:
    out: list[Obj] = []
    for i in [net.default_interface, *net.interfaces] if net.HasField("default_interface") else []:
        if i.name and all(o["name"] != i.name for o in out):
            entry: Obj = {"name": i.name}
            for name, key in (
                ("rx_bytes", "rxBytes"),
                ("rx_errors", "rxErrors"),
                ("tx_bytes", "txBytes"),
                ("tx_errors", "txErrors"),
            ):
                value = _u64(i, name)
                if value is not None:
                    entry[key] = value
            out.append(entry)
    return out


def _add_fs(parts: Iterable[Obj | None]) -> tuple[int, int]:
    used = inodes = 0
    for p in parts:
        if p:
            used += int(p.get("usedBytes") or 0)
            inodes += int(p.get("inodesUsed") or 0)
    return used, inodes


@dataclass
class _Pod:
    sandbox: api.PodSandbox
    containers: list[api.Container] = field(default_factory=list)
    stats: api.PodSandboxStats | None = None


class SummaryProvider:
    """The Summary API document of this node (see the module docstring). Keeps the previous
    cumulative CPU counters between calls to give rates; calls are serialised."""

    def __init__(
        self,
        runtime: RuntimeClient,
        node_name: str,
        *,
        volume_stats: VolumeStatsFn | None = None,
        root_dir: str | Path = "/",
        proc: Path = PROC,
        cgroup_root: Path = CGROUP_ROOT,
    ) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.volume_stats = volume_stats
        self.root_dir = root_dir  # the filesystem node.fs reports (the kubelet's: its root dir)
        self.proc = proc
        self.cgroup_root = cgroup_root
        self.rates = RateTracker()
        self.sandbox_stats_supported = True  # False once the runtime said UNIMPLEMENTED
        self._lock = asyncio.Lock()

    async def summary(self, only_cpu_and_memory: bool = False) -> Obj:
        async with self._lock:
            machine, pods, cstats = await asyncio.gather(
                asyncio.to_thread(read_machine, self.proc, self.cgroup_root),
                self._pods(),
                self.runtime.list_container_stats(),
            )
            by_id = {s.attributes.id: s for s in cstats}
            self.rates.begin()
            try:
                doc = self._build(machine, pods, by_id)
            finally:
                self.rates.commit()
        if not only_cpu_and_memory:
            await self._add_details(doc, machine, pods, by_id)
        return doc

    # ---- gathering ------------------------------------------------------------------------

    async def _pods(self) -> list[_Pod]:
        """Ready sandboxes (the newest per pod uid) with their running containers and, where the
        runtime has them, their stats."""
        sandboxes, containers = await asyncio.gather(
            self.runtime.list_pod_sandbox(), self.runtime.list_containers()
        )
        by_uid: dict[str, api.PodSandbox] = {}
        for s in sandboxes:
            if s.state != api.SANDBOX_READY:
                continue
            uid = s.metadata.uid or s.id
            if uid not in by_uid or s.created_at > by_uid[uid].created_at:
                by_uid[uid] = s
        pods = {s.id: _Pod(s) for s in by_uid.values()}
        for c in containers:
            if c.state == api.CONTAINER_RUNNING and c.pod_sandbox_id in pods:
                pods[c.pod_sandbox_id].containers.append(c)
        for p in pods.values():
            newest: dict[str, api.Container] = {}
            for c in p.containers:
                have = newest.get(c.metadata.name)
                if have is None or (c.metadata.attempt, c.created_at) > (
                    have.metadata.attempt,
                    have.created_at,
                ):
                    newest[c.metadata.name] = c
            p.containers = sorted(newest.values(), key=lambda c: c.metadata.name)
        for st in await self._sandbox_stats(list(pods)):
            if st.attributes.id in pods:
                pods[st.attributes.id].stats = st
        return sorted(
            pods.values(), key=lambda p: (p.sandbox.metadata.namespace, p.sandbox.metadata.name)
        )

    async def _sandbox_stats(self, ids: list[str]) -> list[api.PodSandboxStats]:
        if not ids or not self.sandbox_stats_supported:
            return []
        try:
            return await self.runtime.list_pod_sandbox_stats()
        except cri_errors.UnsupportedAPIError:
            log.info("the CRI runtime has no ListPodSandboxStats: pod stats from containers")
            self.sandbox_stats_supported = False
            return []
        except cri_errors.CRIError as e:
            # containerd fails the whole list for one sandbox it cannot measure: ask each
            log.debug("ListPodSandboxStats failed (%s); asking sandbox by sandbox", e)
        got = await asyncio.gather(
            *(self.runtime.pod_sandbox_stats(i) for i in ids), return_exceptions=True
        )
        out = []
        for r in got:
            if isinstance(r, api.PodSandboxStats):
                out.append(r)
            elif not isinstance(r, cri_errors.CRIError) and isinstance(r, BaseException):
                raise r
        return out

    # ---- cpu and memory -------------------------------------------------------------------

    def _cpu(self, key: Key, total: int | None, at: int) -> Obj | None:
        if total is None:
            return None
        out: Obj = {"time": common.micro_time(at / 1e9)}
        rate = self.rates.rate(key, total, at)
        if rate is not None:
            out["usageNanoCores"] = rate
        out["usageCoreNanoSeconds"] = total
        return out

    def _node(self, m: Machine) -> Obj:
        node: Obj = {
            "nodeName": self.node_name,
            "startTime": common.rfc3339(m.boot_time or m.at / 1e9),
        }
        cpu = self._cpu(("node",), m.cpu_ns, m.at)
        if cpu is not None:
            node["cpu"] = cpu
        mem: Obj = {"time": common.micro_time(m.at / 1e9)}
        if m.mem_total is not None and m.working_set is not None:
            mem["availableBytes"] = max(m.mem_total - m.working_set, 0)
        for key, value in (
            ("usageBytes", m.usage),
            ("workingSetBytes", m.working_set),
            ("rssBytes", m.rss),
            ("pageFaults", m.page_faults),
            ("majorPageFaults", m.major_page_faults),
        ):
            if value is not None:
                mem[key] = value
        node["memory"] = mem
        return node

    def _container(self, c: api.Container, st: api.ContainerStats | None, now: int) -> Obj:
        out: Obj = {"name": c.metadata.name, "startTime": common.ns_to_rfc3339(c.created_at)}
        if st is None:
            return out
        if st.HasField("cpu"):
            total = _u64(st.cpu, "usage_core_nano_seconds")
            cpu = self._cpu(("container", c.id), total, st.cpu.timestamp or now)
            if cpu is not None:
                out["cpu"] = cpu
        if st.HasField("memory"):
            out["memory"] = _memory(st.memory, now)
        return out

    def _pod(self, p: _Pod, cstats: Mapping[str, api.ContainerStats], now: int) -> Obj:
        md = p.sandbox.metadata
        containers = [self._container(c, cstats.get(c.id), now) for c in p.containers]
        out: Obj = {
            "podRef": {"name": md.name, "namespace": md.namespace, "uid": md.uid},
            "startTime": common.ns_to_rfc3339(p.sandbox.created_at),
            "containers": containers,
        }
        linux = p.stats.linux if p.stats is not None and p.stats.HasField("linux") else None
        if linux is not None and linux.HasField("cpu"):
            total = _u64(linux.cpu, "usage_core_nano_seconds")
            cpu = self._cpu(("pod", p.sandbox.id), total, linux.cpu.timestamp or now)
            if cpu is not None:
                out["cpu"] = cpu
        elif containers and all("cpu" in c for c in containers):
            # no pod-level figures from the runtime: the sums of the containers' (the sandbox's
            # own process is left out)
            cpus = [c["cpu"] for c in containers]
            cpu = {"time": max(c["time"] for c in cpus)}
            if all("usageNanoCores" in c for c in cpus):
                cpu["usageNanoCores"] = sum(c["usageNanoCores"] for c in cpus)
            cpu["usageCoreNanoSeconds"] = sum(c["usageCoreNanoSeconds"] for c in cpus)
            out["cpu"] = cpu
        if linux is not None and linux.HasField("memory"):
            out["memory"] = _memory(linux.memory, now)
        elif containers and all("memory" in c for c in containers):
            mem: Obj = {"time": max(c["memory"]["time"] for c in containers)}
            for key in ("usageBytes", "workingSetBytes", "rssBytes", "pageFaults",
                        "majorPageFaults"):  # fmt: skip
                if all(key in c["memory"] for c in containers):
                    mem[key] = sum(c["memory"][key] for c in containers)
            out["memory"] = mem
        return out

    def _build(
        self, machine: Machine, pods: list[_Pod], cstats: Mapping[str, api.ContainerStats]
    ) -> Obj:
        now = time.time_ns()
        return {
            "node": self._node(machine),
            "pods": [self._pod(p, cstats, now) for p in pods],
        }

    # ---- the rest of the full document ----------------------------------------------------

    async def _add_details(
        self,
        doc: Obj,
        machine: Machine,
        pods: list[_Pod],
        cstats: Mapping[str, api.ContainerStats],
    ) -> None:
        now = machine.at
        image_fs, statuses, pids, volumes = await asyncio.gather(
            self._image_fs(now),
            self._container_log_paths(pods),
            self._sandbox_pids(pods),
            self._volumes(),
        )

        def files() -> tuple[Obj | None, Obj | None, Obj, dict[str, Obj | None], dict[str, Any]]:
            text = read_text(self.proc / "net/dev") or ""
            node_net = network_stats(parse_net_dev(text), now, node=True)
            node_fs = fs_stats(self.root_dir, now)
            rlimit = rlimit_stats(self.proc, now)
            mounts: dict[str, Obj | None] = {}
            for st in cstats.values():
                mp = st.writable_layer.fs_id.mountpoint
                if mp and mp not in mounts:
                    mounts[mp] = fs_stats(mp, now)
            extra: dict[str, Any] = {}
            for cid, (path, name) in statuses.items():
                fs = fs_stats(Path(path).parent, now) or {"time": common.micro_time(now / 1e9)}
                used, count = log_usage(path, name)
                fs["usedBytes"], fs["inodesUsed"] = used, count
                extra[f"logs/{cid}"] = fs
            for sid, pid in pids.items():
                net = parse_net_dev(read_text(self.proc / str(pid) / "net/dev") or "")
                extra[f"net/{sid}"] = network_stats(net, now, node=False)
            return node_net, node_fs, rlimit, mounts, extra

        node_net, node_fs, rlimit, mounts, extra = await asyncio.to_thread(files)
        node = doc["node"]
        if node_net:
            node["network"] = node_net
        if node_fs:
            node["fs"] = node_fs
        if image_fs:
            node["runtime"] = image_fs
        node["rlimit"] = rlimit
        for p, out in zip(pods, doc["pods"], strict=True):
            linux = p.stats.linux if p.stats is not None and p.stats.HasField("linux") else None
            for c, cout in zip(p.containers, out["containers"], strict=True):
                st = cstats.get(c.id)
                if st is not None and st.HasField("writable_layer"):
                    wl = st.writable_layer
                    rootfs: Obj = dict(mounts.get(wl.fs_id.mountpoint) or {})
                    rootfs["time"] = common.micro_time((wl.timestamp or now) / 1e9)
                    rootfs.pop("usedBytes", None)
                    rootfs.pop("inodesUsed", None)
                    for name, key in (("used_bytes", "usedBytes"), ("inodes_used", "inodesUsed")):
                        value = _u64(wl, name)
                        if value is not None:
                            rootfs[key] = value
                    cout["rootfs"] = rootfs
                if f"logs/{c.id}" in extra:
                    cout["logs"] = extra[f"logs/{c.id}"]
            net = None
            if linux is not None and linux.HasField("network"):
                ifs = _interfaces(linux.network)
                ts = linux.network.timestamp or now
                net = network_stats(ifs, ts, node=False) if ifs else None
            net = net or extra.get(f"net/{p.sandbox.id}")
            if net:
                out["network"] = net
            vols = [dict(v) for v in (volumes or {}).get(p.sandbox.metadata.uid) or []]
            if vols:
                out["volume"] = vols
            used, inodes = _add_fs(
                [c.get("rootfs") for c in out["containers"]]
                + [c.get("logs") for c in out["containers"]]
                + [v for v in vols if not v.get("pvcRef")]
            )
            eph: Obj = {k: v for k, v in (node_fs or {}).items() if k != "usedBytes"}
            eph.update(time=common.micro_time(now / 1e9), usedBytes=used, inodesUsed=inodes)
            out["ephemeral-storage"] = eph
            if linux is not None and linux.HasField("process"):
                count = _u64(linux.process, "process_count")
                if count is not None:
                    out["process_stats"] = {"process_count": count}

    async def _image_fs(self, now: int) -> Obj | None:
        try:
            info = await self.runtime.image_fs_info()
        except cri_errors.CRIError as e:
            log.debug("ImageFsInfo failed: %s", e)
            return None

        def one(fs: api.FilesystemUsage) -> Obj:
            mountpoint = fs.fs_id.mountpoint
            out: Obj = (fs_stats(mountpoint, now) if mountpoint else None) or {}
            out["time"] = common.micro_time((fs.timestamp or now) / 1e9)
            for name, key in (("used_bytes", "usedBytes"), ("inodes_used", "inodesUsed")):
                value = _u64(fs, name)
                out.pop(key, None)
                if value is not None:
                    out[key] = value
            return out

        def build() -> Obj | None:
            if not info.image_filesystems:
                return None
            image = one(info.image_filesystems[0])
            containers = one(info.container_filesystems[0]) if info.container_filesystems else None
            # a runtime that does not split them keeps containers on the image filesystem
            return {"imageFs": image, "containerFs": containers or dict(image)}

        return await asyncio.to_thread(build)

    async def _container_log_paths(self, pods: list[_Pod]) -> dict[str, tuple[str, str]]:
        """container id -> (log path, container name), for containers with a log file."""
        ids = [(c.id, c.metadata.name) for p in pods for c in p.containers]
        got = await asyncio.gather(
            *(self.runtime.container_status(i) for i, _ in ids), return_exceptions=True
        )
        out = {}
        for (cid, name), r in zip(ids, got, strict=True):
            if isinstance(r, api.ContainerStatusResponse) and r.status.log_path:
                out[cid] = (r.status.log_path, name)
            elif isinstance(r, BaseException) and not isinstance(r, cri_errors.CRIError):
                raise r
        return out

    async def _sandbox_pids(self, pods: list[_Pod]) -> dict[str, int]:
        """sandbox id -> the sandbox process's pid (from the runtime's verbose info), for pods
        the runtime gave no network stats of."""
        want = [
            p.sandbox.id for p in pods if p.stats is None or not p.stats.linux.HasField("network")
        ]
        got = await asyncio.gather(
            *(self.runtime.pod_sandbox_status(i, verbose=True) for i in want),
            return_exceptions=True,
        )
        out = {}
        for sid, r in zip(want, got, strict=True):
            if isinstance(r, api.PodSandboxStatusResponse):
                try:
                    pid = orjson.loads(r.info.get("info", "{}")).get("pid")
                except (orjson.JSONDecodeError, AttributeError):
                    pid = None
                if isinstance(pid, int) and pid > 0:
                    out[sid] = pid
            elif isinstance(r, BaseException) and not isinstance(r, cri_errors.CRIError):
                raise r
        return out

    async def _volumes(self) -> Mapping[str, Sequence[Mapping[str, Any]]] | None:
        if self.volume_stats is None:
            return None
        try:
            return await self.volume_stats()
        except Exception:
            log.exception("volume stats failed")
            return None
