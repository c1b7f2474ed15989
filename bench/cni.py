"""CNI benchmark of kybern (`python -m bench.cni`, as root): ADD and then DEL of the default pod
network (bridge + host-local + portmap + loopback, the reference plugins in /usr/lib/cni) for
`--pods` network namespaces, first one pod at a time, then `--parallel` at a time, through
`kybern.cni.Runtime`. Per pod it reports the median and p99 wall time of ADD, DEL and both, and
splits each into plugin exec time (spawn to exit of every plugin process, as the executor sees
it) and kybern's own overhead (everything else: building stdin, parsing and converting results,
the result cache with its fsync, locks, thread hops). One warm-up pod first creates the bridge
and fills the VERSION cache. Only namespaces made here are touched; the bridge, namespaces,
iptables chains, host-local state and the ip_forward setting are restored at the end, also on
an error or Ctrl-C. See docs/cni.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from kybern import cni
from kybern.cni.invoke import ExecOutput, SubprocessExecutor

REF_BIN = "/usr/lib/cni"
SHARED = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class TimingExecutor:
    """The real executor, with the exec time of every plugin call summed per container."""

    def __init__(self) -> None:
        self.inner = SubprocessExecutor()
        self.exec_time: dict[tuple[str, str], float] = {}
        self.calls = 0

    async def run(
        self, path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float | None
    ) -> ExecOutput:
        out = await self.inner.run(path, env=env, stdin=stdin, timeout=timeout)
        key = (env.get("CNI_CONTAINERID", ""), env.get("CNI_COMMAND", ""))
        self.exec_time[key] = self.exec_time.get(key, 0.0) + out.duration
        self.calls += 1
        return out


class Host:
    """What the benchmark creates on the host, and its removal."""

    def __init__(self, tmp: Path) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        self.tmp = tmp
        self.network = f"kbbench-{self.suffix}"
        self.bridge = f"kbb{self.suffix}"
        self.subnet = self._pick_subnet()
        self.netns: list[str] = []
        self.container_ids: list[str] = []
        self.ip_forward = IP_FORWARD.read_text().strip()
        self.shared_before = self._chains() & set(SHARED)

    @staticmethod
    def _pick_subnet() -> ipaddress.IPv4Network:
        used = []
        for r in json.loads(sh("ip", "-j", "route", "show", "table", "all").stdout or "[]"):
            if r.get("dst") and r["dst"] != "default":
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(r["dst"], strict=False))
        for i in range(1, 255):
            net = ipaddress.IPv4Network(f"10.214.{i}.0/24")
            if not any(net.overlaps(u) for u in used if u.version == 4):
                return net
        raise SystemExit("no free /24 in 10.214.0.0/16")

    def conflist(self) -> dict[str, object]:
        return {
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.subnet)}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.tmp / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }

    def add_netns(self, i: int) -> tuple[str, str]:
        name = f"kbbench-{self.suffix}-{i}"
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        cid = f"bench-{self.suffix}-{i}"
        self.container_ids.append(cid)
        return f"/var/run/netns/{name}", cid

    @staticmethod
    def _chains(table: str = "nat") -> set[str]:
        out = sh("iptables", "-w", "-t", table, "-S", check=False).stdout.splitlines()
        return {line.split()[1] for line in out if line.startswith("-N ")}

    def allocated(self) -> int:
        d = self.tmp / "ipam" / self.network
        return sum(1 for p in d.iterdir() if p.name[0].isdigit()) if d.is_dir() else 0

    def cleanup(self) -> None:
        for name in self.netns:
            sh("ip", "netns", "del", name, check=False)
        out = sh("ip", "-j", "link", "show", "master", self.bridge, check=False).stdout
        for link in json.loads(out) if out.strip() else []:
            sh("ip", "link", "del", link["ifname"], check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        ours = set()
        for cid in self.container_ids:
            h = hashlib.sha512((self.network + cid).encode()).hexdigest()
            ours |= {f"CNI-{h[:24]}", f"CNI-DN-{h[:21]}", f"CNI-SN-{h[:21]}"}
        for table in ("nat", "filter"):
            present = self._chains(table) & ours
            for rule in sh("iptables", "-w", "-t", table, "-S").stdout.splitlines():
                w = shlex.split(rule)
                if rule.startswith("-A ") and "-j" in w and w[w.index("-j") + 1] in present:
                    sh("iptables", "-w", "-t", table, "-D", *w[1:], check=False)
            for chain in present:
                sh("iptables", "-w", "-t", table, "-F", chain, check=False)
                sh("iptables", "-w", "-t", table, "-X", chain, check=False)
        rules = sh("iptables", "-w", "-t", "nat", "-S").stdout.splitlines()
        if not self.shared_before and not any(r.startswith("-A CNI-HOSTPORT-DNAT ") for r in rules):
            for rule in rules:
                w = shlex.split(rule)
                if rule.startswith("-A ") and "-j" in w and w[w.index("-j") + 1] in SHARED:
                    sh("iptables", "-w", "-t", "nat", "-D", *w[1:], check=False)
            for chain in SHARED:
                sh("iptables", "-w", "-t", "nat", "-F", chain, check=False)
            for chain in SHARED:
                sh("iptables", "-w", "-t", "nat", "-X", chain, check=False)
        if IP_FORWARD.read_text().strip() != self.ip_forward:
            IP_FORWARD.write_text(self.ip_forward + "\n")


@dataclasses.dataclass
class Sample:
    add: float
    dele: float
    add_exec: float
    del_exec: float


async def run_mode(
    runtime: cni.Runtime,
    timing: TimingExecutor,
    net: cni.NetworkConfigList,
    pods: list[tuple[str, str]],
    parallel: int,
) -> tuple[list[Sample], float]:
    gate = asyncio.Semaphore(parallel)
    adds: dict[str, float] = {}
    dels: dict[str, float] = {}

    async def one(op: str, netns: str, cid: str) -> None:
        async with gate:
            rt = cni.RuntimeConf(cid, netns)
            start = time.perf_counter()
            if op == "ADD":
                await runtime.add(net, rt)
                adds[cid] = time.perf_counter() - start
            else:
                await runtime.delete(net, rt)
                dels[cid] = time.perf_counter() - start

    start = time.perf_counter()
    await asyncio.gather(*(one("ADD", ns, cid) for ns, cid in pods))
    await asyncio.gather(*(one("DEL", ns, cid) for ns, cid in pods))
    total = time.perf_counter() - start
    samples = [
        Sample(
            adds[cid],
            dels[cid],
            timing.exec_time[(cid, "ADD")],
            timing.exec_time[(cid, "DEL")],
        )
        for _, cid in pods
    ]
    return samples, total


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def report(name: str, samples: list[Sample], total: float) -> list[str]:
    lines = []
    for op, wall, exe in (
        ("ADD", [s.add for s in samples], [s.add_exec for s in samples]),
        ("DEL", [s.dele for s in samples], [s.del_exec for s in samples]),
        (
            "ADD+DEL",
            [s.add + s.dele for s in samples],
            [s.add_exec + s.del_exec for s in samples],
        ),
    ):
        over = [w - e for w, e in zip(wall, exe, strict=True)]
        lines.append(
            f"{name:<12} {op:<8} {ms(statistics.median(wall))} {ms(percentile(wall, 99))} "
            f"{ms(statistics.median(exe))} {ms(statistics.median(over))} "
            f"{ms(percentile(over, 99))} {100 * sum(over) / sum(wall):6.1f}%"
        )
    lines.append(f"{name:<12} {'total':<8} {len(samples) / total:8.1f} pods/s (ADD then DEL)")
    return lines


async def amain(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kybern-bench-cni-"))
    host = Host(tmp)
    try:
        timing = TimingExecutor()
        runtime = cni.Runtime(
            [REF_BIN],
            cache_dir=tmp / "cache",
            executor=timing,
            max_parallel=64,
            timeout=60,
            durable_cache=not args.no_fsync,
        )
        net = cni.config.parse(json.dumps(host.conflist()))
        warm = host.add_netns(0)
        await runtime.add(net, cni.RuntimeConf(warm[1], warm[0]))
        await runtime.delete(net, cni.RuntimeConf(warm[1], warm[0]))
        pods = [host.add_netns(i) for i in range(1, args.pods + 1)]
        out = [
            f"kybern bench.cni: {args.pods} pods, bridge+host-local+portmap+loopback "
            f"(containernetworking-plugins in {REF_BIN}), loop {args.loop}, cache fsync "
            f"{'off' if args.no_fsync else 'on'}, python "
            f"{platform.python_version()}, {os.cpu_count()} CPUs",
            "",
            f"{'mode':<12} {'op':<8} {'med ms':>8} {'p99 ms':>8} {'exec ms':>8} "
            f"{'own ms':>8} {'own p99':>8} {'own %':>7}",
        ]
        for name, k in (("sequential", 1), (f"{args.parallel} at once", args.parallel)):
            samples, total = await run_mode(runtime, timing, net, pods, k)
            if host.allocated():
                raise RuntimeError(f"{host.allocated()} addresses still allocated after DEL")
            timing.exec_time.clear()
            out += report(name, samples, total)
        out += [
            "",
            "med/p99: wall time per pod; exec: plugin processes (spawn to exit, summed over the "
            "chain); own: wall minus exec (median, p99) and its share of all wall time.",
        ]
        print("\n".join(out))
        return 0
    finally:
        host.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cni", description=__doc__)
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    p.add_argument("--no-fsync", action="store_true", help="result cache without fsync")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.cni needs root (network namespaces, bridge, iptables)")
    if not Path(REF_BIN, "bridge").exists():
        sys.exit("install containernetworking-plugins first")
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            args.loop = "asyncio"
        else:
            sys.exit(uvloop.run(amain(args)))
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
