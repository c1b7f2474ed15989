"""The agent's Summary API provider without a runtime: the rate of cumulative CPU counters
between samples, the parsers of the machine's files (cgroup v2 root and /proc, from files
written in a temporary directory), and the document built from a fake CRI runtime (ready
sandboxes and running containers only, kubelet field names, the cpu-and-memory subset, the
fallbacks when the runtime has no pod sandbox stats), read back by the metrics server's parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from kybern.agent import hoststats, stats
from kybern.cri import RuntimeClient, api
from kybern.cri import errors as cri_errors
from kybern.metricsserver.sources import SummaryParser

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC

PROC_STAT = """cpu  100 20 30 5000 40 5 6 7 0 0
cpu0 50 10 15 2500 20 2 3 3 0 0
intr 12345
btime 1690000000
processes 999
"""
MEMINFO = """MemTotal:        8000000 kB
MemFree:         3000000 kB
MemAvailable:    6000000 kB
Inactive(file):  1000000 kB
AnonPages:        500000 kB
"""
VMSTAT = "pgfault 1234\npgmajfault 56\n"
NET_DEV = "".join(
    [
        "Inter-|   Receive   ...|  Transmit\n",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets ...\n",
        "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n",
        "  eth0: 5000 50 1 0 0 0 0 0 7000 70 2 0 0 0 0 0\n",
        "vethabc: 300 3 0 0 0 0 0 0 400 4 0 0 0 0 0 0\n",
    ]
)


# ---- rates ----------------------------------------------------------------------------------


def test_rate_needs_a_previous_sample() -> None:
    r = stats.RateTracker()
    r.begin()
    assert r.rate(("c", "a"), 5 * SEC, T0) is None
    r.commit()
    r.begin()
    # 1.5 CPU-seconds in 2 s: 0.75 cores
    assert r.rate(("c", "a"), int(6.5 * SEC), T0 + 2 * SEC) == 750_000_000
    r.commit()


def test_rate_keeps_the_last_one_without_a_newer_reading() -> None:
    r = stats.RateTracker()
    for total, at in ((0, T0), (SEC, T0 + 4 * SEC)):
        r.begin()
        r.rate(("k",), total, at)
        r.commit()
    r.begin()
    assert r.rate(("k",), SEC, T0 + 4 * SEC) == 250_000_000  # the same reading again
    r.commit()
    r.begin()
    assert r.rate(("k",), 2 * SEC, T0 + 8 * SEC) == 250_000_000  # from the kept sample
    r.commit()


def test_rate_restarts_when_the_counter_goes_back_and_forgets_unseen_keys() -> None:
    r = stats.RateTracker()
    r.begin()
    r.rate(("a",), 10 * SEC, T0)
    r.rate(("b",), 10 * SEC, T0)
    r.commit()
    r.begin()
    assert r.rate(("a",), SEC, T0 + SEC) is None  # a new process behind the same key
    r.commit()
    assert len(r) == 1  # "b" was not seen in the last sample
    r.begin()
    assert r.rate(("b",), 11 * SEC, T0 + 2 * SEC) is None
    assert r.rate(("a",), 2 * SEC, T0 + 2 * SEC) == SEC
    r.commit()


# ---- the machine ----------------------------------------------------------------------------


def test_parsers() -> None:
    busy, boot = hoststats.parse_proc_stat(PROC_STAT, 100)
    assert busy == (100 + 20 + 30 + 5 + 6 + 7) * SEC // 100 and boot == 1690000000
    info = hoststats.parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 8000000 * 1024 and info["Inactive(file)"] == 1000000 * 1024
    assert hoststats.parse_kv("usage_usec 42\nuser_usec 40\nnr_periods 0\n")["usage_usec"] == 42
    ifs = hoststats.parse_net_dev(NET_DEV)
    assert [i["name"] for i in ifs] == ["lo", "eth0", "vethabc"]
    assert ifs[1] == {"name": "eth0", "rxBytes": 5000, "rxErrors": 1, "txBytes": 7000,
                      "txErrors": 2}  # fmt: skip
    node = hoststats.network_stats(ifs, T0, node=True)
    assert node is not None and node["name"] == "eth0" and node["rxBytes"] == 5000
    assert [i["name"] for i in node["interfaces"]] == ["eth0"]


def _proc(tmp: Path) -> Path:
    proc = tmp / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "net").mkdir()
    (proc / "stat").write_text(PROC_STAT)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "vmstat").write_text(VMSTAT)
    (proc / "net/dev").write_text(NET_DEV)
    (proc / "sys/kernel/pid_max").write_text("4194304\n")
    (proc / "loadavg").write_text("0.50 0.40 0.30 2/345 6789\n")
    return proc


def test_machine_from_proc(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    m = hoststats.read_machine(proc, tmp_path / "no-cgroup")
    assert m.cpu_ns == hoststats.parse_proc_stat(PROC_STAT, hoststats.os.sysconf("SC_CLK_TCK"))[0]
    assert m.boot_time == 1690000000 and m.mem_total == 8000000 * 1024
    assert m.usage == 5000000 * 1024  # MemTotal - MemFree
    assert m.working_set == 4000000 * 1024  # minus Inactive(file)
    assert (m.rss, m.page_faults, m.major_page_faults) == (500000 * 1024, 1234, 56)


def test_machine_from_cgroup_v2_root(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    cg = tmp_path / "cgroup"
    cg.mkdir()
    (cg / "cpu.stat").write_text("usage_usec 7000000\nuser_usec 5000000\nsystem_usec 2000000\n")
    (cg / "memory.current").write_text("3000000000\n")
    (cg / "memory.stat").write_text(
        "anon 1000000\nfile 2000000\ninactive_file 500000000\npgfault 11\npgmajfault 2\n"
    )
    m = hoststats.read_machine(proc, cg)
    assert m.cpu_ns == 7 * SEC
    assert (m.usage, m.working_set) == (3000000000, 2500000000)
    assert (m.rss, m.page_faults, m.major_page_faults) == (1000000, 11, 2)


# ---- the document ---------------------------------------------------------------------------


def _u(v: int) -> api.UInt64Value:
    return api.UInt64Value(value=v)


class FakeRuntime:
    """Just the RuntimeService calls SummaryProvider makes; cumulative counters set by tests."""

    def __init__(self) -> None:
        self.sandboxes = [
            self._sandbox("sb-web", "web", "ns1", "uid-web", api.SANDBOX_READY, 10),
            self._sandbox("sb-old", "web", "ns1", "uid-web", api.SANDBOX_NOTREADY, 5),
            self._sandbox("sb-gone", "gone", "ns1", "uid-gone", api.SANDBOX_NOTREADY, 7),
            self._sandbox("sb-db", "db", "ns2", "uid-db", api.SANDBOX_READY, 20),
        ]
        self.containers = [
            self._container("c-app", "sb-web", "app", api.CONTAINER_RUNNING),
            self._container("c-side", "sb-web", "side", api.CONTAINER_RUNNING),
            self._container("c-init", "sb-web", "init", api.CONTAINER_EXITED),
            self._container("c-db", "sb-db", "db", api.CONTAINER_RUNNING),
            self._container("c-gone", "sb-gone", "x", api.CONTAINER_EXITED),
        ]
        self.cpu: dict[str, tuple[int, int]] = {}  # id -> (usage ns, timestamp ns)
        self.sandbox_stats: Exception | None = cri_errors.UnsupportedAPIError(
            "no", code=grpc.StatusCode.UNIMPLEMENTED
        )
        self.calls: list[str] = []

    @staticmethod
    def _sandbox(id: str, name: str, ns: str, uid: str, state: int, at: int) -> api.PodSandbox:
        md = api.PodSandboxMetadata(name=name, namespace=ns, uid=uid)
        return api.PodSandbox(id=id, metadata=md, state=state, created_at=T0 + at * SEC)  # type: ignore[arg-type]

    @staticmethod
    def _container(id: str, sandbox: str, name: str, state: int) -> api.Container:
        return api.Container(
            id=id, pod_sandbox_id=sandbox, metadata=api.ContainerMetadata(name=name),
            state=state, created_at=T0 + 30 * SEC,  # type: ignore[arg-type]
        )  # fmt: skip

    def _stats(self, cid: str, name: str) -> api.ContainerStats:
        usage, at = self.cpu.get(cid, (0, T0))
        return api.ContainerStats(
            attributes=api.ContainerAttributes(id=cid, metadata=api.ContainerMetadata(name=name)),
            cpu=api.CpuUsage(timestamp=at, usage_core_nano_seconds=_u(usage),
                             usage_nano_cores=_u(123)),  # the runtime's own: ignored
            memory=api.MemoryUsage(timestamp=at, working_set_bytes=_u(1000), usage_bytes=_u(2000),
                                   available_bytes=_u(0), rss_bytes=_u(500)),
            writable_layer=api.FilesystemUsage(
                timestamp=at, fs_id=api.FilesystemIdentifier(mountpoint="/"),
                used_bytes=_u(4096), inodes_used=_u(3)),
        )  # fmt: skip

    async def list_pod_sandbox(self) -> list[api.PodSandbox]:
        return self.sandboxes

    async def list_containers(self) -> list[api.Container]:
        return self.containers

    async def list_container_stats(self) -> list[api.ContainerStats]:
        # a runtime lists stats of exited containers too
        return [self._stats(c.id, c.metadata.name) for c in self.containers]

    async def list_pod_sandbox_stats(self) -> list[api.PodSandboxStats]:
        self.calls.append("ListPodSandboxStats")
        if self.sandbox_stats is not None:
            raise self.sandbox_stats
        return []

    async def pod_sandbox_stats(self, sandbox_id: str) -> api.PodSandboxStats:
        self.calls.append(f"PodSandboxStats {sandbox_id}")
        if sandbox_id != "sb-db":
            raise cri_errors.CRIError("no cgroup", code=grpc.StatusCode.UNKNOWN)
        usage, at = self.cpu.get("pod-db", (0, T0))
        linux = api.LinuxPodSandboxStats(
            cpu=api.CpuUsage(timestamp=at, usage_core_nano_seconds=_u(usage)),
            memory=api.MemoryUsage(timestamp=at, working_set_bytes=_u(7777)),
            process=api.ProcessUsage(timestamp=at, process_count=_u(3)),
        )
        attrs = api.PodSandboxAttributes(id="sb-db", metadata=self.sandboxes[3].metadata)
        return api.PodSandboxStats(attributes=attrs, linux=linux)

    async def image_fs_info(self) -> api.ImageFsInfoResponse:
        fs = api.FilesystemUsage(
            timestamp=T0, fs_id=api.FilesystemIdentifier(mountpoint="/"), used_bytes=_u(10**9),
            inodes_used=_u(100),
        )  # fmt: skip
        return api.ImageFsInfoResponse(image_filesystems=[fs])

    async def container_status(self, container_id: str) -> api.ContainerStatusResponse:
        return api.ContainerStatusResponse(
            status=api.ContainerStatus(id=container_id, log_path=f"/none/{container_id}/0.log")
        )

    async def pod_sandbox_status(
        self, sandbox_id: str, verbose: bool = False
    ) -> api.PodSandboxStatusResponse:
        return api.PodSandboxStatusResponse(info={"info": '{"pid": 0}'})


def _provider(rt: FakeRuntime, tmp: Path, **kw: Any) -> stats.SummaryProvider:
    return stats.SummaryProvider(
        cast(RuntimeClient, rt), "node-1", proc=_proc(tmp), cgroup_root=tmp / "nocg", **kw
    )


async def test_cpu_and_memory_document(tmp_path: Path) -> None:
    rt = FakeRuntime()
    p = _provider(rt, tmp_path)
    rt.cpu = {"c-app": (SEC, T0 + 100 * SEC), "c-side": (0, T0 + 100 * SEC),
              "c-db": (5 * SEC, T0 + 100 * SEC)}  # fmt: skip
    first = await p.summary(only_cpu_and_memory=True)
    assert set(first) == {"node", "pods"}
    assert set(first["node"]) == {"nodeName", "startTime", "cpu", "memory"}
    assert first["node"]["nodeName"] == "node-1"
    assert first["node"]["startTime"] == "2023-07-22T04:26:40Z"  # btime
    assert "usageNanoCores" not in first["node"]["cpu"]
    mem = first["node"]["memory"]
    assert mem["workingSetBytes"] == 4000000 * 1024
    assert mem["availableBytes"] == 8000000 * 1024 - mem["workingSetBytes"]
    # ready sandboxes only (the newest per pod), running containers only, by namespace/name
    refs = [pod["podRef"] for pod in first["pods"]]
    assert refs == [{"name": "web", "namespace": "ns1", "uid": "uid-web"},
                    {"name": "db", "namespace": "ns2", "uid": "uid-db"}]  # fmt: skip
    web = first["pods"][0]
    assert set(web) == {"podRef", "startTime", "containers", "cpu", "memory"}
    assert [c["name"] for c in web["containers"]] == ["app", "side"]
    app = web["containers"][0]
    assert set(app) == {"name", "startTime", "cpu", "memory"}
    assert app["cpu"] == {"time": "2023-11-14T22:15:00.000000Z", "usageCoreNanoSeconds": SEC}
    assert app["memory"] == {"time": "2023-11-14T22:15:00.000000Z", "usageBytes": 2000,
                             "workingSetBytes": 1000, "rssBytes": 500}  # fmt: skip
    assert web["cpu"]["usageCoreNanoSeconds"] == SEC and "usageNanoCores" not in web["cpu"]
    assert web["memory"]["workingSetBytes"] == 2000  # the sum of its containers'

    # 10 s later: app used 5 CPU-seconds (0.5 cores), side 1 (0.1)
    rt.cpu = {"c-app": (6 * SEC, T0 + 110 * SEC), "c-side": (SEC, T0 + 110 * SEC),
              "c-db": (5 * SEC, T0 + 110 * SEC)}  # fmt: skip
    second = await p.summary(only_cpu_and_memory=True)
    web = second["pods"][0]
    assert web["containers"][0]["cpu"]["usageNanoCores"] == 500_000_000
    assert web["containers"][1]["cpu"]["usageNanoCores"] == 100_000_000
    assert web["cpu"] == {"time": "2023-11-14T22:15:10.000000Z", "usageNanoCores": 600_000_000,
                          "usageCoreNanoSeconds": 7 * SEC}  # fmt: skip
    assert second["pods"][1]["containers"][0]["cpu"]["usageNanoCores"] == 0
    assert "usageNanoCores" in second["node"]["cpu"]
    # UNIMPLEMENTED is not asked again
    assert rt.calls == ["ListPodSandboxStats"]

    # what the metrics server makes of it
    parser = SummaryParser()
    sample = parser.parse(second, 15.0)
    assert sample is not None and sample.node == "node-1"
    pods = {(s.namespace, s.name): s for s in sample.pods}
    assert pods[("ns1", "web")].containers["app"].cpu_nanocores == 500_000_000
    assert pods[("ns1", "web")].containers["app"].memory_bytes == 1000


async def test_pod_stats_sandbox_by_sandbox_when_the_list_fails(tmp_path: Path) -> None:
    rt = FakeRuntime()
    rt.sandbox_stats = cri_errors.CRIError("no cgroup path", code=grpc.StatusCode.UNKNOWN)
    p = _provider(rt, tmp_path)
    rt.cpu = {"pod-db": (10 * SEC, T0)}
    await p.summary(only_cpu_and_memory=True)
    rt.cpu = {"pod-db": (12 * SEC, T0 + 4 * SEC)}
    doc = await p.summary(only_cpu_and_memory=True)
    db = doc["pods"][1]
    assert db["podRef"]["name"] == "db"
    assert db["cpu"]["usageNanoCores"] == 500_000_000  # the sandbox's own figures
    assert db["memory"]["workingSetBytes"] == 7777
    web = doc["pods"][0]
    assert web["memory"]["workingSetBytes"] == 2000  # no sandbox stats: its containers' sums
    assert rt.calls.count("ListPodSandboxStats") == 2  # still asked: not UNIMPLEMENTED
    assert "PodSandboxStats sb-db" in rt.calls and "PodSandboxStats sb-old" not in rt.calls


async def test_full_document(tmp_path: Path) -> None:
    rt = FakeRuntime()
    rt.sandbox_stats = cri_errors.CRIError("no cgroup path", code=grpc.StatusCode.UNKNOWN)
    vol = {"time": "2024-01-01T00:00:00Z", "name": "data", "usedBytes": 100, "inodesUsed": 2}
    pvc = {"time": "2024-01-01T00:00:00Z", "name": "pv", "usedBytes": 10**6,
           "pvcRef": {"name": "claim", "namespace": "ns1"}}  # fmt: skip

    async def volumes() -> dict[str, list[dict[str, Any]]]:
        return {"uid-web": [vol, pvc]}

    p = _provider(rt, tmp_path, volume_stats=volumes)
    doc = await p.summary()
    node = doc["node"]
    assert {"nodeName", "startTime", "cpu", "memory", "network", "fs", "runtime",
            "rlimit"} <= set(node)  # fmt: skip
    assert node["network"]["name"] == "eth0"
    assert node["fs"]["capacityBytes"] > 0 and node["fs"]["usedBytes"] >= 0
    assert node["runtime"]["imageFs"]["usedBytes"] == 10**9
    assert node["runtime"]["imageFs"]["inodesUsed"] == 100
    assert node["runtime"]["imageFs"]["capacityBytes"] == node["fs"]["capacityBytes"]
    assert node["rlimit"]["maxpid"] == 4194304 and node["rlimit"]["curproc"] == 345
    web, db = doc["pods"]
    app = web["containers"][0]
    assert app["rootfs"]["usedBytes"] == 4096 and app["rootfs"]["inodesUsed"] == 3
    assert app["rootfs"]["capacityBytes"] == node["fs"]["capacityBytes"]
    assert app["logs"]["usedBytes"] == 0  # no such file
    assert web["volume"] == [vol, pvc]
    # the writable layers and the emptyDir count; the persistent volume does not
    assert web["ephemeral-storage"]["usedBytes"] == 2 * 4096 + 100
    assert web["ephemeral-storage"]["inodesUsed"] == 2 * 3 + 2
    assert db["process_stats"] == {"process_count": 3}
    assert "volume" not in db


async def test_nothing_running(tmp_path: Path) -> None:
    rt = FakeRuntime()
    rt.sandboxes, rt.containers = [], []
    doc = await _provider(rt, tmp_path).summary(only_cpu_and_memory=True)
    assert doc["pods"] == [] and doc["node"]["memory"]["workingSetBytes"] > 0
    assert rt.calls == []  # no sandbox: no sandbox stats asked for


@pytest.mark.parametrize("path", ["logs", "other"])
def test_log_usage(tmp_path: Path, path: str) -> None:
    d = tmp_path / ("app" if path == "logs" else "pod")
    d.mkdir()
    (d / "0.log").write_bytes(b"x" * 10)
    (d / "1.log").write_bytes(b"x" * 5)
    (d / "0.log.20240101").write_bytes(b"x" * 3)
    got = hoststats.log_usage(str(d / "0.log"), "app")
    assert got == ((18, 3) if path == "logs" else (13, 2))
