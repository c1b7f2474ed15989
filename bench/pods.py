"""Pod startup benchmark of the node agent with the real containerd (the Kubernetes pod startup
SLO's shape): it starts its own containerd (kybern's busybox and pause images imported), a
`kybern server` (controllers and scheduler; the cluster CIDR a free /24 of this host) and one
`kybern agent` process, waits for the node to be Ready and runs one warm-up pod, then

- creates `--pods` busybox pods (`sleep`, each with its own network namespace on the bridge)
  at once from `--creators` concurrent clients, in a namespace of their own;
- watches them: a pod's startup latency is create sent -> the watch shows it Running with every
  container running (scheduling, sandbox, CNI, container start and status write included; no
  image pull, as the SLO excludes it); p50, p99 and max, and the time until all run;
- records the CPU seconds the agent, containerd and the server used while the pods started,
  then the agent's CPU (% of one core) and RSS while the pods run for `--steady` seconds;
- deletes them all and records the time until the last is gone.

Everything is a child process on loopback; all of it (pods, containerd, the bridge, temporary
directories) is removed at the end, also on Ctrl-C or an error.

Run: `.venv/bin/python -m bench.pods [--pods 100 --creators 20 --steady 20 --runs 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kybern.agent import common, sandbox
from kybern.client import rest
from kybern.cri import Containerd, messages
from kybern.images import busybox, oci

REPO = Path(__file__).resolve().parents[1]
_CLK_TCK = os.sysconf("SC_CLK_TCK")
Obj = dict[str, Any]


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_rss(pid: int) -> int:
    """Resident set size in bytes."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def free_subnet() -> ipaddress.IPv4Network:
    used = []
    for cmd in (["ip", "-j", "route", "show", "table", "all"], ["ip", "-j", "addr"]):
        for item in json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout or "[]"):
            if item.get("dst") and item["dst"] != "default":
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(item["dst"], strict=False))
            for a in item.get("addr_info", []):
                with contextlib.suppress(ValueError, KeyError):
                    used.append(
                        ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                    )
    for i in range(1, 255):
        net = ipaddress.IPv4Network(f"10.214.{i}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    raise RuntimeError("no free /24 in 10.214.0.0/16")


@dataclass
class Result:
    baseline: list[float] = field(default_factory=list)  # the same pods straight through CRI
    baseline_all: float = 0.0
    latencies: list[float] = field(default_factory=list)
    all_running: float = 0.0
    cpu_start: dict[str, float] = field(default_factory=dict)
    steady_cpu: float = 0.0
    steady_rss: int = 0
    ctd_steady_cpu: float = 0.0
    deleted: float = 0.0


class Child:
    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kybern", *self.args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = await pred()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def running(pod: Obj) -> bool:
    st = pod.get("status") or {}
    cs = st.get("containerStatuses") or []
    return st.get("phase") == "Running" and bool(cs) and all("running" in c["state"] for c in cs)


def pod_obj(name: str, ns: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": busybox.BUSYBOX_IMAGE, "command": ["sleep", "3600"]}
            ],
        },
    }


async def one_run(args: argparse.Namespace, base: Path, ctd: Containerd) -> Result:
    subnet = free_subnet()
    suffix = uuid.uuid4().hex[:6]
    bridge = f"kbb{suffix}"
    server = Child(
        ["server", "--data-dir", str(base / "server"), "--port", "0", "--cluster-cidr",
         str(subnet), "--disable-controllers", "nodelifecycle"],
        base / "server.log",
    )  # fmt: skip
    node = f"bench-{suffix}"
    agent = Child(
        ["agent", "--kubeconfig", str(base / "server" / "kubeconfig"),
         "--container-runtime-endpoint", ctd.endpoint, "--node-name", node,
         "--data-dir", str(base / "agent"), "--pod-logs-dir", str(base / "logs"),
         "--cni-conf-dir", str(ctd.config.cni_conf_dir), "--cni-bin-dir", "/usr/lib/cni",
         "--cni-network-name", f"kybench-{suffix}", "--cni-bridge", bridge,
         "--cgroup-root", f"/kybern-bench-{suffix}", "--node-ip", "127.0.0.1", "--port", "0",
         *args.agent_arg],
        base / "agent.log",
    )  # fmt: skip
    res = Result()
    try:
        server.start()
        kubeconfig = base / "server" / "kubeconfig"

        async def api() -> rest.Config | None:
            if not kubeconfig.exists():
                return None
            cfg = rest.load_kubeconfig(kubeconfig)
            async with rest.Client(cfg) as c:
                await c.request("GET", "/version")
            return cfg

        cfg = await wait_for(api, 60, "the server")
        agent.start()
        async with rest.Client(cfg, qps_limit=200) as c:

            async def ready() -> bool:
                n = await c.get(common.NODES, node)
                conds = {x["type"]: x["status"] for x in n["status"]["conditions"]}
                return conds.get("Ready") == "True"

            await wait_for(ready, 120, "the node")
            ns = f"bench-{suffix}"
            await c.create(_ns_res(), {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": ns}})  # fmt: skip
            await c.create(common.PODS, pod_obj("warmup", ns), ns)
            await wait_for(lambda: _pod_running(c, ns, "warmup"), 120, "the warm-up pod")
            await c.delete(common.PODS, "warmup", ns)
            await wait_for(lambda: _pod_gone(c, ns, "warmup"), 120, "the warm-up pod to go")
            if args.baseline_concurrency:
                res.baseline, res.baseline_all = await baseline(
                    ctd, args.pods, args.baseline_concurrency, base / "baseline"
                )
            sent: dict[str, float] = {}
            seen: dict[str, float] = {}
            done = asyncio.Event()
            names = [f"p-{i:04d}" for i in range(args.pods)]
            listed = await c.list(common.PODS, ns)
            rv = listed["metadata"]["resourceVersion"]

            async def watch() -> None:
                async for _typ, obj in c.watch(common.PODS, ns, resource_version=rv):
                    name = obj["metadata"]["name"]
                    if name in sent and name not in seen and running(obj):
                        seen[name] = time.monotonic()
                        if len(seen) == len(names):
                            done.set()
                            return

            watcher = asyncio.create_task(watch())
            sem = asyncio.Semaphore(args.creators)
            cpu0 = {k: proc_cpu(p) for k, p in (("agent", agent.pid), ("server", server.pid))}
            ctd_pid = _containerd_pid(ctd)
            cpu0["containerd"] = proc_cpu(ctd_pid)

            async def create(name: str) -> None:
                async with sem:
                    sent[name] = time.monotonic()
                    await c.create(common.PODS, pod_obj(name, ns), ns)

            t0 = time.monotonic()
            await asyncio.gather(*(create(n) for n in names))
            await asyncio.wait_for(done.wait(), args.timeout)
            res.all_running = time.monotonic() - t0
            watcher.cancel()
            res.latencies = [seen[n] - sent[n] for n in names]
            res.cpu_start = {
                "agent": proc_cpu(agent.pid) - cpu0["agent"],
                "server": proc_cpu(server.pid) - cpu0["server"],
                "containerd": proc_cpu(ctd_pid) - cpu0["containerd"],
            }
            a0, d0, t1 = proc_cpu(agent.pid), proc_cpu(ctd_pid), time.monotonic()
            rss = 0
            while time.monotonic() - t1 < args.steady:
                rss = max(rss, proc_rss(agent.pid))
                await asyncio.sleep(0.5)
            span = time.monotonic() - t1
            res.steady_cpu = (proc_cpu(agent.pid) - a0) / span * 100
            res.ctd_steady_cpu = (proc_cpu(ctd_pid) - d0) / span * 100
            res.steady_rss = rss
            t2 = time.monotonic()
            await c.request("DELETE", f"/api/v1/namespaces/{ns}/pods", timeout=120)

            async def gone() -> bool:
                return not (await c.list(common.PODS, ns)).get("items")

            await wait_for(gone, args.timeout, "every pod to be deleted")
            res.deleted = time.monotonic() - t2
    finally:
        agent.stop()
        await ctd.remove_all()
        server.stop()
        await asyncio.to_thread(subprocess.run, ["ip", "link", "del", bridge], capture_output=True)
        await asyncio.to_thread(sandbox.remove_cgroup, f"/kybern-bench-{suffix}")
    return res


async def baseline(ctd: Containerd, pods: int, conc: int, base: Path) -> tuple[list[float], float]:
    """The same pods made straight through CRI (no API server, no agent): a sandbox on the
    default network and a busybox container each, `conc` at a time. The floor the runtime and
    CNI set on this machine."""
    sem = asyncio.Semaphore(conc)
    lat: list[float] = []
    async with ctd.client() as rt:

        async def one(i: int) -> None:
            t = time.monotonic()
            async with sem:
                uid = str(uuid.uuid4())
                sc = messages.sandbox_config(
                    f"b{i}", "baseline", uid, hostname=f"b{i}", log_directory=str(base / uid)
                )
                sid = await rt.run_pod_sandbox(sc)
                cc = messages.container_config(
                    "main", busybox.BUSYBOX_IMAGE, command=["sleep", "3600"], log_path="m.log"
                )
                await rt.start_container(await rt.create_container(sid, cc, sc))
            lat.append(time.monotonic() - t)

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(pods)))
        total = time.monotonic() - t0
    await ctd.remove_all()
    return lat, total


def _ns_res() -> Any:
    from kybern.api import registry

    return registry.Registry().lookup("", "v1", "namespaces")


async def _pod_running(c: rest.Client, ns: str, name: str) -> bool:
    return running(await c.get(common.PODS, name, ns))


async def _pod_gone(c: rest.Client, ns: str, name: str) -> bool:
    try:
        await c.get(common.PODS, name, ns)
    except Exception:
        return True
    return False


def _containerd_pid(ctd: Containerd) -> int:
    proc = ctd._proc  # the child this process started
    return proc.pid if proc is not None else 0


def table(results: list[Result], pods: int) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    lat = [r.latencies for r in results]
    base = [r.baseline for r in results]
    rows = [
        ("pods created at once", f"{pods}"),
        ("CRI only: latency p50 (s)", f"{med([percentile(x, 0.5) for x in base]):.2f}"),
        ("CRI only: latency p99 (s)", f"{med([percentile(x, 0.99) for x in base]):.2f}"),
        ("CRI only: all running after (s)", f"{med([r.baseline_all for r in results]):.2f}"),
        ("startup latency p50 (s)", f"{med([percentile(x, 0.5) for x in lat]):.2f}"),
        ("startup latency p99 (s)", f"{med([percentile(x, 0.99) for x in lat]):.2f}"),
        ("startup latency max (s)", f"{med([max(x) for x in lat]):.2f}"),
        ("all running after (s)", f"{med([r.all_running for r in results]):.2f}"),
        ("agent CPU during startup (s)", f"{med([r.cpu_start['agent'] for r in results]):.2f}"),
        ("containerd CPU during startup (s)",
         f"{med([r.cpu_start['containerd'] for r in results]):.2f}"),
        ("server CPU during startup (s)", f"{med([r.cpu_start['server'] for r in results]):.2f}"),
        ("agent CPU while running (% of a core)", f"{med([r.steady_cpu for r in results]):.1f}"),
        ("containerd CPU while running (%)", f"{med([r.ctd_steady_cpu for r in results]):.1f}"),
        ("agent RSS while running (MiB)", f"{med([r.steady_rss / 2**20 for r in results]):.0f}"),
        ("all deleted after (s)", f"{med([r.deleted for r in results]):.2f}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    bb, pause = await asyncio.to_thread(lambda: busybox.build_all(busybox.read_busybox()))
    layout = await asyncio.to_thread(oci.layout_tar, [bb, pause])
    results = []
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="kybern-bench-pods-"))
        ctd = Containerd()
        try:
            await ctd.start()
            await ctd.import_layout(layout)
            results.append(await one_run(args, base, ctd))
            r = results[-1]
            print(f"run {i + 1}: p50 {percentile(r.latencies, 0.5):.2f}s "
                  f"p99 {percentile(r.latencies, 0.99):.2f}s", file=sys.stderr)  # fmt: skip
        finally:
            await ctd.stop()
            with contextlib.suppress(Exception):
                for line in (base / "agent.log").read_text().splitlines():
                    if "level=error" in line or "Traceback" in line:
                        print(line, file=sys.stderr)
            if args.keep:
                print(f"kept {base}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
    print(table(results, args.pods))
    return 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--creators", type=int, default=20, help="concurrent create requests")
    p.add_argument("--steady", type=float, default=20.0, help="seconds to watch running pods")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--keep", action="store_true", help="keep the logs (temporary directory)")
    p.add_argument(
        "--baseline-concurrency",
        type=int,
        default=4,
        help="first make the pods straight through CRI, N at a time (0: skip)",
    )
    p.add_argument("--agent-arg", action="append", default=[], help="extra `kybern agent` flag")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
