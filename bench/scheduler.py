"""Scheduler benchmark of kybern (kube-scheduler's SchedulingBasic shape): for each run it starts
its own `kybern server` (fresh temporary data directory, port 0), one simulated-nodes process
with `--nodes` nodes and one scheduler process, then

- measures the idle CPU of the sim-nodes process (and of the server) while the nodes only
  heartbeat, over `--idle-seconds`, before any pod exists;
- creates `--pods` pods (100m CPU, 128Mi each) with `--creators` concurrent clients, and watches
  them: throughput is pods / (last pod seen bound - first create sent), binding writes
  included; latency per pod is create sent -> bound seen on the watch (p50/p99), and the
  scheduler's own queue -> bound latency is reported by the scheduler process at exit;
- records the CPU each process used per pod (until all are bound; the server's and the
  sim-nodes' also until all are Running, as the simulated kubelets lag the binds) and the time
  until all pods are Running; the driver itself stays cheap (create bodies encoded once,
  answers not decoded, its watch only sees bound pods);
- then stops the scheduler, creates `--pods` more pods, starts a new scheduler and measures the
  backlog rate (first bind seen -> last bind seen) and the CPU of each process meanwhile;
- and runs the scheduling cycle alone in this process (no server) for its CPU cost.

Every process (server, sim-nodes, scheduler) is a child on loopback with its own event loop;
all are stopped and the temporary directories removed at the end, also on Ctrl-C or an error.
The median of `--runs` runs is printed as a table (see docs/scheduler.md).

Run: `.venv/bin/python -m bench.scheduler [--nodes 1000 --pods 10000 --runs 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
API_ONLY = ("--disable-controllers=*", "--disable-scheduler")
READY_TIMEOUT = 120.0
PHASE_TIMEOUT = 900.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ---- child roles --------------------------------------------------------------------------------


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def role_scheduler(kubeconfig: str) -> int:
    from kybern.client import rest
    from kybern.scheduler import Scheduler

    cfg = await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)
    async with rest.Client(cfg, user_agent="bench-scheduler") as client:
        sched = Scheduler(client)
        await sched.start()
        await _until_sigterm()
        st = sched.statistics()
        lat = sched.latencies
        await sched.stop()
        print(
            json.dumps(
                {
                    "scheduled": st.scheduled,
                    "failed": st.failed_attempts,
                    "errors": st.errors,
                    "p50": percentile(lat, 50),
                    "p99": percentile(lat, 99),
                }
            ),
            flush=True,
        )
    return 0


async def role_sim_nodes(kubeconfig: str, count: int) -> int:
    from kybern.client import rest
    from kybern.simnodes import SimNodes

    cfg = await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)
    async with rest.Client(cfg, user_agent="bench-sim-nodes") as client:
        sim = SimNodes(client, count=count, name_prefix="bench-")
        await sim.start()
        print("ready", flush=True)
        await _until_sigterm()
        await sim.stop()
    return 0


# ---- the scheduling cycle alone -----------------------------------------------------------------


def cycle_only(nodes: int, pods: int) -> float:
    """Pods per CPU-second of the scheduling cycle alone (filter, score, select, assume) over
    `nodes` empty nodes in this process: no API server, no informers, no binding."""
    from kybern.scheduler import framework as fw
    from kybern.scheduler import plugins
    from kybern.scheduler.cache import Cache
    from kybern.scheduler.nodeinfo import PodInfo
    from kybern.scheduler.profile import Profile
    from kybern.scheduler.runtime import Framework

    cache = Cache()
    for i in range(nodes):
        name = f"n{i}"
        cache.add_node(
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {},
                "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
            }
        )
    fwk = Framework(Profile(), plugins.in_tree(), fw.Handle(snapshot=cache))
    infos = []
    for i in range(pods):
        pod = _pod(f"p-{i}")
        pod["metadata"].update(namespace="bench", uid=str(i))
        infos.append(PodInfo(pod))
    t0 = time.process_time()
    for pi in infos:
        result = fwk.schedule_pod(fw.CycleState(), pi, cache)
        cache.assume_pod(pi.with_node(result.suggested_host))
    return pods / (time.process_time() - t0)


# ---- the driver ---------------------------------------------------------------------------------


@dataclass
class Run:
    cycle_per_s: float = 0.0  # the scheduling cycle alone, per CPU-second
    pods_per_s: float = 0.0  # end to end: first create sent -> last pod seen bound
    p50: float = 0.0
    p99: float = 0.0
    sched_p50: float = 0.0
    sched_p99: float = 0.0
    create_per_s: float = 0.0
    all_running: float = 0.0
    backlog_per_s: float = 0.0  # pods already pending: first bind seen -> last bind seen
    backlog_cpu: dict[str, float] = field(default_factory=dict)  # % of one core meanwhile
    idle_sim_pct: float = 0.0
    idle_server_pct: float = 0.0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per pod, end-to-end phase
    cpu_ms_running: dict[str, float] = field(default_factory=dict)  # ... until all Running
    errors: int = 0


class Child:
    def __init__(self, name: str, args: list[str], log: Path, stdout: bool = False) -> None:
        self.name = name
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else f,
                stderr=f,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> str:
        out = ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out_b, _ = self.proc.communicate(timeout=timeout)
                out = (out_b or b"").decode()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return out


_NAME = "NAME-PLACEHOLDER-0123456789"
# `rest.Client.request(decode=False)`; without it when driving an older kybern checkout
_NO_DECODE: dict[str, Any] = {}


def _pod_bodies(names: list[str]) -> dict[str, bytes]:
    """The encoded create bodies of `names`, from one encoding (the driver should cost little
    CPU per pod, so that the benchmark measures kybern)."""
    import orjson

    head, tail = orjson.dumps(_pod(_NAME)).split(_NAME.encode())
    return {n: head + n.encode() + tail for n in names}


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ]
        },
    }


async def _wait(probe: Any, what: str, timeout: float = READY_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            v = await probe()
            if v:
                return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Batch:
    """`count` pods in namespace `ns`: created by `creators` concurrent clients, observed by one
    watch of the bound pods (the time each was first seen bound and Running)."""

    def __init__(self, client: Any, res: Any, ns: str, count: int) -> None:
        from kybern.client import rest

        self.c, self.res, self.ns = client, res, ns
        self.names = [f"p-{i:05d}" for i in range(count)]
        self.bodies = _pod_bodies(self.names)
        if "decode" in inspect.signature(rest.Client.request).parameters:
            _NO_DECODE["decode"] = False
        self.path = rest.resource_path(res, ns)
        self.sent: dict[str, float] = {}
        self.accepted: set[str] = set()
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.errors = 0
        self.created_at = 0.0
        self._creating = True
        self._all_bound = asyncio.Event()
        self._all_running = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    async def start_watch(self) -> None:
        listed = await self.c.list(self.res, self.ns, limit=1)
        self._watch = asyncio.create_task(self._run_watch(listed["metadata"]["resourceVersion"]))

    def _check(self) -> None:
        if self._creating:
            return
        if len(self.bound) >= len(self.accepted):
            self._all_bound.set()
        if len(self.running) >= len(self.accepted):
            self._all_running.set()

    async def _run_watch(self, rv: str) -> None:
        while True:
            try:
                async for typ, obj in self.c.watch(
                    self.res, self.ns, resource_version=rv, field_selector="spec.nodeName!="
                ):
                    rv = obj["metadata"].get("resourceVersion", rv)
                    name = obj["metadata"].get("name", "")
                    if typ == "BOOKMARK" or not name:
                        continue
                    now = time.monotonic()
                    if obj["spec"].get("nodeName") and name not in self.bound:
                        self.bound[name] = now
                        self._check()
                    if (obj.get("status") or {}).get("phase") == "Running":
                        if name not in self.running:
                            self.running[name] = now
                            self._check()
            except Exception as e:
                print(f"  watch: {e!r}; resuming", flush=True)

    async def create(self, creators: int) -> None:
        it = iter(self.names)

        async def creator() -> None:
            for name in it:
                self.sent[name] = time.monotonic()
                try:
                    # the created pod is not needed: no decoding of the answer
                    await self.c.request("POST", self.path, body=self.bodies[name], **_NO_DECODE)
                    self.accepted.add(name)
                except Exception as e:
                    if not self.errors:
                        print(f"  create {name} failed: {e!r}", flush=True)
                    self.errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(creator() for _ in range(creators)))
        self.created_at = time.monotonic()
        self.create_per_s = len(self.accepted) / (self.created_at - t0)
        self._creating = False
        self._check()

    async def wait(self, running: bool) -> None:
        ev = self._all_running if running else self._all_bound
        await asyncio.wait_for(ev.wait(), PHASE_TIMEOUT)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    def progress(self, t0: float) -> str:
        return (
            f"  {time.monotonic() - t0:5.0f}s: {len(self.accepted)} created, "
            f"{len(self.bound)} bound, {len(self.running)} running"
        )


async def _reporting(batch: Batch, t0: float) -> None:
    while True:
        await asyncio.sleep(10)
        print(batch.progress(t0), flush=True)


async def one_run(args: argparse.Namespace, base: Path, index: int = 0) -> Run:
    from bench.api import Profiler
    from kybern.api import registry
    from kybern.client import informer, rest

    profilers = [Profiler(args.profile, args.profile_rate, args.profile_mode) for _ in range(3)]

    def res(kind: str) -> Any:
        return next(
            r for r in registry.BUILTIN if r.kind == kind and r.group in ("", "coordination.k8s.io")
        )

    pods_res, nodes_res, leases_res, ns_res = (
        res("Pod"),
        res("Node"),
        res("Lease"),
        res("Namespace"),
    )
    data = base / "data"
    data.mkdir(parents=True)
    kubeconfig = data / "kubeconfig"
    children: list[Child] = []
    run = Run()
    try:
        server = Child(
            "server",
            # the API machinery alone: this benchmark runs its own scheduler, and no controller
            ["-m", "kybern", "server", "--data-dir", str(data), "--port", "0", *API_ONLY],
            base / "server.log",
        )
        children.append(server)
        await _wait(lambda: asyncio.sleep(0, kubeconfig.exists()), "the kubeconfig")
        cfg = rest.load_kubeconfig(kubeconfig)
        # connections: every creator, the watches, and a few spare (aiohttp's pool is not fair)
        async with rest.Client(cfg, user_agent="bench", qps_limit=args.creators + 8) as c:

            async def ready() -> bool:
                async with c.session.get(cfg.server + "/readyz") as r:
                    return r.status == 200

            await _wait(ready, "/readyz")
            me = ["-m", "bench.scheduler", "--kubeconfig", str(kubeconfig)]
            sim = Child(
                "sim-nodes",
                [*me, "--role", "sim-nodes", "--nodes", str(args.nodes)],
                base / "sim.log",
            )
            children.append(sim)

            async def nodes_ready() -> bool:
                n = await c.list(nodes_res, limit=1)
                count = (n["metadata"].get("remainingItemCount") or 0) + len(n["items"])
                return bool(count >= args.nodes)

            t0 = time.monotonic()
            await _wait(nodes_ready, f"{args.nodes} nodes", READY_TIMEOUT * 3)
            print(f"  {args.nodes} nodes registered in {time.monotonic() - t0:.1f}s", flush=True)
            await asyncio.sleep(args.heartbeat_settle)  # the registration burst is over
            s0, v0, w0 = proc_cpu(sim.pid), proc_cpu(server.pid), time.monotonic()
            await asyncio.sleep(args.idle_seconds)
            wall = time.monotonic() - w0
            run.idle_sim_pct = 100 * (proc_cpu(sim.pid) - s0) / wall
            run.idle_server_pct = 100 * (proc_cpu(server.pid) - v0) / wall

            async def leader() -> bool:
                lease = await c.get(leases_res, "kybern-scheduler", "kube-system")
                return bool(lease["spec"].get("holderIdentity"))

            # ---- end to end: the scheduler runs while the pods are created
            sched = Child("scheduler", [*me, "--role", "scheduler"], base / "sched.log", True)
            children.append(sched)
            await _wait(leader, "the scheduler's lease")
            await c.create(
                ns_res, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "e2e"}}
            )
            batch = Batch(c, pods_res, "e2e", args.pods)
            await batch.start_watch()
            informer.tune_gc()  # the driver allocates much per pod too
            cpu0 = {ch.name: proc_cpu(ch.pid) for ch in children}
            me0 = time.process_time()
            t0 = time.monotonic()
            reporter = asyncio.create_task(_reporting(batch, t0))
            with contextlib.ExitStack() as stack:
                for prof, (what, ch) in zip(
                    profilers,
                    (("e2e", server), ("e2e-scheduler", sched), ("e2e-sim", sim)),
                    strict=True,
                ):
                    stack.enter_context(prof.phase(what, ch.pid, index))
                await batch.create(args.creators)
                await batch.wait(running=False)

            def cpu_per_pod() -> dict[str, float]:
                n = len(batch.accepted)
                out = {ch.name: 1000 * (proc_cpu(ch.pid) - cpu0[ch.name]) / n for ch in children}
                out["bench driver"] = 1000 * (time.process_time() - me0) / n
                return out

            run.cpu_ms = cpu_per_pod()
            await batch.wait(running=True)
            run.cpu_ms_running = cpu_per_pod()
            reporter.cancel()
            first = min(batch.sent.values())
            run.pods_per_s = len(batch.bound) / (max(batch.bound.values()) - first)
            lat = [batch.bound[n] - batch.sent[n] for n in batch.accepted if n in batch.bound]
            run.p50, run.p99 = percentile(lat, 50), percentile(lat, 99)
            run.create_per_s = batch.create_per_s
            run.all_running = max(batch.running.values()) - first
            run.errors = batch.errors
            await batch.close()
            for line in sched.stop().splitlines():  # also hands the lease back
                with contextlib.suppress(ValueError, KeyError):
                    stats = json.loads(line)
                    run.sched_p50, run.sched_p99 = stats["p50"], stats["p99"]
                    if stats["scheduled"] != len(batch.accepted):
                        print(f"  the scheduler bound {stats['scheduled']} pods", flush=True)
            children.remove(sched)

            # ---- backlog: the pods wait for a scheduler that starts once they all exist
            if args.backlog:
                await c.create(
                    ns_res,
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "backlog"}},
                )
                backlog = Batch(c, pods_res, "backlog", args.pods)
                await backlog.start_watch()
                await backlog.create(args.creators)
                sched = Child("scheduler", [*me, "--role", "scheduler"], base / "sched2.log", True)
                children.append(sched)
                cpu0 = {ch.name: proc_cpu(ch.pid) for ch in children}
                t0 = time.monotonic()
                await backlog.wait(running=False)
                wall = time.monotonic() - t0
                run.backlog_cpu = {
                    ch.name: 100 * (proc_cpu(ch.pid) - cpu0[ch.name]) / wall for ch in children
                }
                times = sorted(backlog.bound.values())
                run.backlog_per_s = (len(times) - 1) / (times[-1] - times[0])
                await backlog.close()
        return run
    finally:
        for ch in reversed(children):
            ch.stop()


def table(runs: list[Run], args: argparse.Namespace) -> str:
    def row(label: str, values: list[float], fmt: str) -> str:
        med, lo, hi = statistics.median(values), min(values), max(values)
        return f"| {label} | {fmt.format(med)} | {fmt.format(lo)} | {fmt.format(hi)} |"

    lines = [
        f"scheduler benchmark: {args.nodes} simulated nodes, {args.pods} pods per phase, "
        f"{len(runs)} runs; {os.cpu_count()} CPUs",
        "",
        "| metric | median | min | max |",
        "|---|---|---|---|",
        row(
            "scheduling cycle alone, in process (pods per CPU-second)",
            [r.cycle_per_s for r in runs],
            "{:.0f}",
        ),
        row(
            "end to end: first create -> all bound (pods/s)", [r.pods_per_s for r in runs], "{:.0f}"
        ),
        row("  latency p50, create sent -> bound seen (s)", [r.p50 for r in runs], "{:.2f}"),
        row("  latency p99, create sent -> bound seen (s)", [r.p99 for r in runs], "{:.2f}"),
        row("  scheduler p50, queued -> bound (s)", [r.sched_p50 for r in runs], "{:.3f}"),
        row("  scheduler p99, queued -> bound (s)", [r.sched_p99 for r in runs], "{:.3f}"),
        row("  pod creates accepted (pods/s)", [r.create_per_s for r in runs], "{:.0f}"),
        row("  first create -> all Running (s)", [r.all_running for r in runs], "{:.1f}"),
    ]
    for name in ("server", "scheduler", "sim-nodes", "bench driver"):
        ms = [r.cpu_ms.get(name, 0.0) for r in runs]
        lines.append(row(f"  {name} CPU per pod (ms)", ms, "{:.2f}"))
    lines.append(
        row("  all four CPU per pod (ms)", [sum(r.cpu_ms.values()) for r in runs], "{:.2f}")
    )
    for name in ("server", "sim-nodes"):
        ms = [r.cpu_ms_running.get(name, 0.0) for r in runs]
        lines.append(row(f"  {name} CPU per pod until all Running (ms)", ms, "{:.2f}"))
    if args.backlog:
        rate = [r.backlog_per_s for r in runs]
        lines.append(row("backlog: first bind -> last bind (pods/s)", rate, "{:.0f}"))
        for name in ("server", "scheduler", "sim-nodes"):
            pct = [r.backlog_cpu.get(name, 0.0) for r in runs]
            label = f"  {name} CPU, scheduler start -> all bound (% of one core)"
            lines.append(row(label, pct, "{:.0f}"))
    idle = f"idle: sim-nodes CPU, {args.nodes} nodes heartbeating (% of one core)"
    lines += [
        row(idle, [r.idle_sim_pct for r in runs], "{:.1f}"),
        row(
            "idle: server CPU meanwhile (% of one core)",
            [r.idle_server_pct for r in runs],
            "{:.1f}",
        ),
        row("failed creates", [float(r.errors) for r in runs], "{:.0f}"),
    ]
    return "\n".join(lines)


async def drive(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="kybern-bench-sched-"))
        print(f"run {i + 1}/{args.runs} in {base}", flush=True)
        try:
            r = await one_run(args, base, i)
            r.cycle_per_s = cycle_only(args.nodes, args.pods)
            runs.append(r)
            print(
                f"  cycle alone {r.cycle_per_s:.0f}/s, "
                f"{r.pods_per_s:.0f} pods/s end to end, p99 {r.p99:.2f}s, backlog "
                f"{r.backlog_per_s:.0f} pods/s, idle sim-nodes {r.idle_sim_pct:.1f}%",
                flush=True,
            )
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    print()
    print(table(runs, args))
    if args.profile is not None:
        from bench.api import hotspots

        for what, name in (
            ("server", "e2e"),
            ("scheduler", "e2e-scheduler"),
            ("sim-nodes", "e2e-sim"),
        ):
            print(f"\n{what} hotspots, end-to-end phase of run 1 (py-spy, {args.profile}):")
            print("\n".join(hotspots(args.profile / f"run1-{name}.txt", 30)))
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=10000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--creators", type=int, default=32, help="concurrent pod creators")
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--heartbeat-settle", type=float, default=10.0)
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument(
        "--no-backlog", dest="backlog", action="store_false", help="skip the backlog phase"
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="attach py-spy (.venv/bin/pip install py-spy) to the server, the scheduler and the\n"
        "sim-nodes process during the end-to-end phase; collapsed stacks in\n"
        "DIR/runN-e2e{,-scheduler,-sim}.txt, top functions of run 1 printed\n"
        "(perturbs the figures: profile in a separate invocation)",
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s (100)")
    p.add_argument(
        "--profile-mode",
        choices=["active", "gil", "native"],
        default="gil",
        help="with --profile: only the GIL holder (gil, default), every busy thread (active),\n"
        "or with C frames (native; pauses the server at each sample)",
    )
    p.add_argument("--role", choices=["driver", "scheduler", "sim-nodes"], default="driver")
    p.add_argument("--kubeconfig", default="")
    args = p.parse_args()
    run: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    if args.role == "scheduler":
        sys.exit(run(role_scheduler(args.kubeconfig)))
    if args.role == "sim-nodes":
        sys.exit(run(role_sim_nodes(args.kubeconfig, args.nodes)))
    sys.exit(run(drive(args)))


if __name__ == "__main__":
    main()
