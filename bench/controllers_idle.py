"""Idle benchmark of kybern's control plane: for each run it starts its own `kybern server`
(fresh temporary data directory, port 0; the API server, every controller and the scheduler
share that process) and a separate `kybern sim-nodes --count --nodes` process, so the CPU of
each can be read from /proc/PID/stat. It then

- measures both processes over `--baseline-seconds` with the nodes only (no pods yet);
- creates `--deployments` Deployments of `--replicas` replicas each (100m CPU, 128Mi; 10 x
  1,000 = 10,000 pods by default) and waits until every pod is Running (the ramp: its time
  and the CPU each process used are reported too);
- waits for the Deployments' status and `--settle` seconds more, then measures the CPU of both
  processes over `--windows` consecutive windows of `--idle-seconds` while nothing changes: the
  nodes heartbeat (a Lease renewal per node every 10 s), the controllers and the scheduler only
  hold their informers and Leases. The idle rows of the table are over every window of every
  run (the ramp of 10,000 pods is the slow part of a run, so on a busy machine `--runs 1
  --windows 3` keeps it within minutes).

The controllers cannot run in a process of their own (`kybern server` hosts them), so the
server's figure is the API server, the controller manager and the scheduler together.
Every process is stopped and the temporary directory removed at the end of each run, also on
Ctrl-C or an error. The median of `--runs` runs is printed as a table (see docs/controllers.md).

Run: `.venv/bin/python -m bench.controllers_idle [--nodes 1000 --deployments 10 --replicas 1000
--runs 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.deployment import Cluster, PodWatch, deployment, report_progress, row, wait_for
from bench.scheduler import Child, proc_cpu

READY_TIMEOUT = 300.0


@dataclass
class Run:
    baseline_server: float = 0.0  # % of one core, nodes only
    baseline_sim: float = 0.0
    ramp: float = 0.0  # first create sent -> all pods Running (s)
    ramp_server: float = 0.0  # CPU seconds during the ramp
    ramp_sim: float = 0.0
    idle_server: list[float] = field(default_factory=list)  # % of one core, per idle window
    idle_sim: list[float] = field(default_factory=list)
    load: float = 0.0


async def measure(pids: list[int], seconds: float) -> list[float]:
    """CPU of each process over `seconds` of wall time, in % of one core."""
    c0, w0 = [proc_cpu(p) for p in pids], time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - w0
    return [100 * (proc_cpu(p) - c) / wall for p, c in zip(pids, c0, strict=True)]


async def one_run(args: argparse.Namespace, base: Path) -> Run:
    from kybern.controllers import common

    cluster = Cluster(base, [])
    run = Run()
    try:
        client = await cluster.connect()
        await cluster.wait_leaders()
        sim = Child(
            "sim-nodes",
            [
                "-m",
                "kybern",
                "sim-nodes",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--count",
                str(args.nodes),
            ],
            base / "sim.log",
        )
        cluster.children.append(sim)
        t0 = time.monotonic()
        await cluster.wait_nodes_ready(args.nodes, READY_TIMEOUT)
        print(f"  {args.nodes} nodes Ready in {time.monotonic() - t0:.1f}s", flush=True)
        await cluster.namespace("bench")
        await asyncio.sleep(args.settle)  # the registration burst is over
        pids = [cluster.server.pid, sim.pid]
        run.baseline_server, run.baseline_sim = await measure(pids, args.baseline_seconds)

        total = args.deployments * args.replicas
        watch = PodWatch(client, "bench")
        await watch.start()
        cpu0 = [proc_cpu(p) for p in pids]
        t0 = time.monotonic()
        reporter = asyncio.create_task(report_progress(watch, t0))
        try:
            for i in range(args.deployments):
                d = deployment(f"app-{i}", args.replicas)
                await client.create(common.DEPLOYMENTS, d, "bench")
            await watch.wait_running(total, args.timeout)
        finally:
            reporter.cancel()
        run.ramp = max(watch.running.values()) - t0
        run.ramp_server, run.ramp_sim = (proc_cpu(p) - c for p, c in zip(pids, cpu0, strict=True))
        await watch.close()  # the benchmark's own watch is no part of the idle load
        print(f"  {total} pods Running after {run.ramp:.1f}s", flush=True)

        async def deployments_settled() -> bool:
            items = (await client.list(common.DEPLOYMENTS, "bench"))["items"]
            return all(
                (d.get("status") or {}).get("availableReplicas") == args.replicas
                and (d.get("status") or {}).get("observedGeneration")
                == d["metadata"].get("generation")
                for d in items
            )

        await wait_for(deployments_settled, "the Deployments' status", READY_TIMEOUT)
        await asyncio.sleep(args.settle)
        for w in range(args.windows):
            server_pct, sim_pct = await measure(pids, args.idle_seconds)
            run.idle_server.append(server_pct)
            run.idle_sim.append(sim_pct)
            print(
                f"  idle window {w + 1}: server {server_pct:.1f}%, sim-nodes {sim_pct:.1f}%",
                flush=True,
            )
        run.load = os.getloadavg()[0]
        return run
    finally:
        await cluster.close()


def table(runs: list[Run], args: argparse.Namespace) -> str:
    total = args.deployments * args.replicas
    pct = "{:.1f}"
    return "\n".join(
        [
            f"controllers idle benchmark: {args.nodes} simulated nodes, {args.deployments} "
            f"Deployments x {args.replicas} replicas = {total} pods, {len(runs)} runs x "
            f"{args.windows} idle windows of {args.idle_seconds:.0f}s; {os.cpu_count()} CPUs",
            "",
            "| metric | median | min | max |",
            "|---|---|---|---|",
            row(
                f"idle, {total} pods Running: server CPU (% of one core)",
                [v for r in runs for v in r.idle_server],
                pct,
            ),
            row(
                f"idle, {total} pods Running: sim-nodes CPU (% of one core)",
                [v for r in runs for v in r.idle_sim],
                pct,
            ),
            row(
                "baseline, nodes only: server CPU (% of one core)",
                [r.baseline_server for r in runs],
                pct,
            ),
            row(
                "baseline, nodes only: sim-nodes CPU (% of one core)",
                [r.baseline_sim for r in runs],
                pct,
            ),
            row(f"ramp: create -> all {total} Running (s)", [r.ramp for r in runs], "{:.0f}"),
            row(
                "  server CPU per pod during the ramp (ms)",
                [1000 * r.ramp_server / total for r in runs],
                "{:.1f}",
            ),
            row(
                "  sim-nodes CPU per pod during the ramp (ms)",
                [1000 * r.ramp_sim / total for r in runs],
                "{:.1f}",
            ),
            row("load average (1 min) at the end", [r.load for r in runs], "{:.1f}"),
        ]
    )


async def drive(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="kybern-bench-idle-"))
        print(f"run {i + 1}/{args.runs} in {base}", flush=True)
        try:
            r = await one_run(args, base)
            runs.append(r)
            print(
                f"  baseline: server {r.baseline_server:.1f}%, sim-nodes {r.baseline_sim:.1f}%",
                flush=True,
            )
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    print()
    print(table(runs, args))
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--deployments", type=int, default=10)
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--baseline-seconds", type=float, default=20.0)
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--windows", type=int, default=1, help="idle windows per run")
    p.add_argument("--settle", type=float, default=10.0, help="seconds before each measurement")
    p.add_argument("--timeout", type=float, default=1500.0, help="limit of the ramp")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = p.parse_args()
    run: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    sys.exit(run(drive(args)))


if __name__ == "__main__":
    main()
