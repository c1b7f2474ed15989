"""The node's own counters for the Summary API, read from the machine: CPU and memory from the
cgroup v2 root (`cpu.stat` usage_usec, `memory.current`, `memory.stat`) where those files exist,
else `/proc/stat`, `/proc/meminfo` and `/proc/vmstat` (working set = usage - inactive_file);
network interfaces from `/proc/net/dev` (as cadvisor, without loopback and veths); filesystems by
statvfs; log file usage; the process limits. Pure parsers plus blocking readers (callers run the
readers in a thread)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kybern.agent import common

Obj = dict[str, Any]
PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# interfaces cadvisor leaves out of a node's network stats
IGNORED_INTERFACES = ("lo", "veth", "docker", "nerdctl")
DEFAULT_INTERFACE = "eth0"


# ---- the machine ----------------------------------------------------------------------------


def parse_kv(text: str) -> dict[str, int]:
    """`key value` lines (cgroup `cpu.stat`, `memory.stat`, `/proc/vmstat`) as integers."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_meminfo(text: str) -> dict[str, int]:
    """`/proc/meminfo` in bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            out[name.strip()] = int(parts[0]) * scale
    return out


def parse_proc_stat(text: str, ticks_per_second: int) -> tuple[int | None, int | None]:
    """(CPU time the machine spent busy in ns, boot time in seconds) from `/proc/stat`: user,
    nice, system, irq, softirq and steal of the `cpu` line (idle and iowait are not usage)."""
    busy: int | None = None
    boot: int | None = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu" and len(parts) >= 8:
            v = [int(x) for x in parts[1:9]]
            ticks = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
            busy = ticks * 1_000_000_000 // ticks_per_second
        elif parts[0] == "btime" and len(parts) > 1:
            boot = int(parts[1])
    return busy, boot


def parse_net_dev(text: str) -> list[Obj]:
    """`/proc/net/dev` as kubelet `InterfaceStats` (name, rxBytes, rxErrors, txBytes,
    txErrors)."""
    out: list[Obj] = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        v = rest.split()
        if not sep or len(v) < 11:
            continue
        out.append(
            {
                "name": name.strip(),
                "rxBytes": int(v[0]),
                "rxErrors": int(v[2]),
                "txBytes": int(v[8]),
                "txErrors": int(v[10]),
            }
        )
    return out


def network_stats(interfaces: list[Obj], at: int, *, node: bool) -> Obj | None:
    """A `NetworkStats`: the default interface's figures inline and every interface listed
    (for the node, without loopback and the pods' veth ends, as cadvisor does)."""
    if node:
        interfaces = [i for i in interfaces if not i["name"].startswith(IGNORED_INTERFACES)]
    else:
        interfaces = [i for i in interfaces if i["name"] != "lo"]
    if not interfaces:
        return None
    default = next((i for i in interfaces if i["name"] == DEFAULT_INTERFACE), interfaces[0])
    return {"time": common.micro_time(at / 1e9), **default, "interfaces": interfaces}


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@dataclass
class Machine:
    """One reading of the machine (blocking to take: `read_machine`)."""

    at: int  # ns since the epoch
    cpu_ns: int | None = None
    boot_time: int | None = None
    mem_total: int | None = None
    usage: int | None = None
    working_set: int | None = None
    rss: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None


def read_machine(proc: Path = PROC, cgroup: Path = CGROUP_ROOT) -> Machine:
    """The machine's CPU and memory: the cgroup v2 root's files where present, else /proc.
    Blocking."""
    m = Machine(at=time.time_ns())
    stat = read_text(proc / "stat") or ""
    busy, m.boot_time = parse_proc_stat(stat, os.sysconf("SC_CLK_TCK"))
    cpu_stat = parse_kv(read_text(cgroup / "cpu.stat") or "")
    m.cpu_ns = cpu_stat["usage_usec"] * 1000 if "usage_usec" in cpu_stat else busy
    meminfo = parse_meminfo(read_text(proc / "meminfo") or "")
    m.mem_total = meminfo.get("MemTotal")
    current = read_text(cgroup / "memory.current")
    mem_stat = parse_kv(read_text(cgroup / "memory.stat") or "")
    if current is not None and current.strip().isdigit():
        m.usage = int(current)
    elif m.mem_total is not None and "MemFree" in meminfo:
        m.usage = m.mem_total - meminfo["MemFree"]
    inactive = mem_stat.get("inactive_file", meminfo.get("Inactive(file)", 0))
    if m.usage is not None:
        m.working_set = max(m.usage - inactive, 0)
    m.rss = mem_stat.get("anon", meminfo.get("AnonPages"))
    if "pgfault" in mem_stat:
        m.page_faults, m.major_page_faults = mem_stat["pgfault"], mem_stat.get("pgmajfault")
    else:
        vmstat = parse_kv(read_text(proc / "vmstat") or "")
        m.page_faults, m.major_page_faults = vmstat.get("pgfault"), vmstat.get("pgmajfault")
    return m


def fs_stats(path: str | Path, at: int) -> Obj | None:
    """A `FsStats` of the filesystem holding `path` (statvfs), None if it cannot be read.
    Blocking."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return {
        "time": common.micro_time(at / 1e9),
        "availableBytes": st.f_bavail * st.f_frsize,
        "capacityBytes": st.f_blocks * st.f_frsize,
        "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
        "inodesFree": st.f_ffree,
        "inodes": st.f_files,
        "inodesUsed": st.f_files - st.f_ffree,
    }


def log_usage(log_path: str, container: str) -> tuple[int, int]:
    """(bytes, files) of a container's logs: its log directory when the file sits in one named
    after the container (the kubelet's layout, every attempt), else the file and its rotations.
    Blocking."""
    path = Path(log_path)
    size = files = 0
    try:
        if path.parent.name == container:
            entries = list(path.parent.iterdir())
        else:
            entries = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        for p in entries:
            st = p.stat()
            size += st.st_size
            files += 1
    except OSError:
        pass
    return size, files


def rlimit_stats(proc: Path, at: int) -> Obj:
    """`RlimitStats`: the pid limit and the number of tasks. Blocking."""
    out: Obj = {"time": common.micro_time(at / 1e9)}
    pid_max = (read_text(proc / "sys/kernel/pid_max") or "").strip()
    if pid_max.isdigit():
        out["maxpid"] = int(pid_max)
    loadavg = (read_text(proc / "loadavg") or "").split()
    if len(loadavg) > 3 and "/" in loadavg[3]:
        out["curproc"] = int(loadavg[3].split("/")[1])
    return out
