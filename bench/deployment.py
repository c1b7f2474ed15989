"""Deployment benchmark of kybern: for each run it starts its own `kybern server` (fresh
temporary data directory, port 0, every controller and the scheduler in process, and
`--sim-nodes` simulated nodes in the same process), waits for the kubeconfig, `/readyz`, the
nodes and the leaders, then creates one Deployment of `--replicas` replicas (100m CPU, 128Mi
each) over HTTPS with `kybern.client.rest` and watches its pods. It reports the time from the
create request to all pods `status.phase == Running`, the time until all pods existed and were
bound, and the CPU seconds the server process used meanwhile (from /proc/PID/stat: API server,
controllers, scheduler and simulated nodes together, as they share the process).

The server is stopped and the temporary directory removed at the end of each run, also on
Ctrl-C or an error. The median of `--runs` runs is printed as a table (see docs/controllers.md).

Run: `.venv/bin/python -m bench.deployment [--replicas 1000 --nodes 20 --runs 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scheduler import Child, proc_cpu

READY_TIMEOUT = 120.0
Obj = dict[str, Any]


async def wait_for(
    probe: Callable[[], Awaitable[object]], what: str, timeout: float = READY_TIMEOUT
) -> None:
    """Poll `probe` until it returns something true (exceptions count as not yet) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if await probe():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


def deployment(name: str, replicas: int) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        }
                    ]
                },
            },
        },
    }


class PodWatch:
    """One watch over the pods of namespace `ns`: when each was first seen, bound and Running."""

    def __init__(self, client: Any, ns: str) -> None:
        from kybern.controllers import common

        self.c, self.ns, self.res = client, ns, common.PODS
        self.seen: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self._target = 0
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.c.list(self.res, self.ns)
        rv = listed["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for typ, obj in self.c.watch(self.res, self.ns, resource_version=rv):
                    rv = obj["metadata"].get("resourceVersion", rv)
                    name = obj["metadata"].get("name", "")
                    if typ in ("BOOKMARK", "DELETED") or not name:
                        continue
                    now = time.monotonic()
                    self.seen.setdefault(name, now)
                    if (obj.get("spec") or {}).get("nodeName"):
                        self.bound.setdefault(name, now)
                    if (obj.get("status") or {}).get("phase") == "Running":
                        self.running.setdefault(name, now)
                        if self._target and len(self.running) >= self._target:
                            self._done.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                print(f"  watch: {e!r}; resuming", flush=True)

    async def wait_running(self, count: int, timeout: float) -> None:
        self._target = count
        if len(self.running) >= count:
            return
        await asyncio.wait_for(self._done.wait(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def progress(self, t0: float) -> str:
        return (
            f"  {time.monotonic() - t0:5.0f}s: {len(self.seen)} pods, "
            f"{len(self.bound)} bound, {len(self.running)} running"
        )


async def report_progress(watch: PodWatch, t0: float, every: float = 10.0) -> None:
    while True:
        await asyncio.sleep(every)
        print(watch.progress(t0), flush=True)


class Cluster:
    """A `kybern server` child on loopback and an admin client for it."""

    def __init__(self, base: Path, extra: list[str]) -> None:
        self.base = base
        self.data = base / "data"
        self.data.mkdir(parents=True)
        self.kubeconfig = self.data / "kubeconfig"
        self.server = Child(
            "server",
            ["-m", "kybern", "server", "--data-dir", str(self.data), "--port", "0", *extra],
            base / "server.log",
        )
        self.children: list[Child] = [self.server]
        self.client: Any = None

    async def connect(self) -> Any:
        from kybern.client import rest

        async def kubeconfig() -> bool:
            if self.server.proc.poll() is not None:
                raise SystemExit(f"the server exited; see {self.base / 'server.log'}")
            return self.kubeconfig.exists()

        deadline = time.monotonic() + READY_TIMEOUT
        while not await kubeconfig():
            if time.monotonic() > deadline:
                raise TimeoutError("timed out waiting for the kubeconfig")
            await asyncio.sleep(0.2)
        cfg = await asyncio.to_thread(rest.load_kubeconfig, self.kubeconfig)
        self.client = rest.Client(cfg, user_agent="bench", qps_limit=64)

        async def ready() -> bool:
            async with self.client.session.get(cfg.server + "/readyz") as r:
                return bool(r.status == 200)

        await wait_for(ready, "/readyz")
        return self.client

    async def wait_nodes_ready(self, count: int, timeout: float) -> None:
        from kybern.controllers import common

        async def nodes_ready() -> bool:
            items = (await self.client.list(common.NODES))["items"]
            ready = [
                n
                for n in items
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            ]
            return len(ready) >= count

        await wait_for(nodes_ready, f"{count} Ready nodes", timeout)

    async def wait_leaders(self) -> None:
        from kybern.controllers import common

        for lease in ("kybern-controller-manager", "kybern-scheduler"):

            async def held(name: str = lease) -> bool:
                obj = await self.client.get(common.LEASES, name, "kube-system")
                return bool(obj["spec"].get("holderIdentity"))

            await wait_for(held, f"the {lease} lease")

    async def namespace(self, name: str) -> None:
        """Create namespace `name` and wait for its `default` ServiceAccount."""
        from kybern.controllers import common

        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await self.client.create(common.NAMESPACES, ns)
        await wait_for(
            lambda: self.client.get(common.SERVICEACCOUNTS, "default", name),
            f"the default ServiceAccount of {name}",
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        for ch in reversed(self.children):
            ch.stop()


@dataclass
class Run:
    all_running: float = 0.0  # create sent -> last pod seen Running
    all_created: float = 0.0  # create sent -> last pod seen
    all_bound: float = 0.0  # create sent -> last pod seen bound
    first_running: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of the server process, create -> all Running
    load: float = 0.0  # 1-minute load average at the end


async def one_run(args: argparse.Namespace, base: Path) -> Run:
    from kybern.controllers import common

    cluster = Cluster(base, ["--sim-nodes", str(args.nodes)])
    try:
        client = await cluster.connect()
        await cluster.wait_nodes_ready(args.nodes, READY_TIMEOUT)
        await cluster.wait_leaders()
        await cluster.namespace("bench")
        await asyncio.sleep(args.settle)  # the registration burst is over
        watch = PodWatch(client, "bench")
        await watch.start()
        cpu0 = proc_cpu(cluster.server.pid)
        t0 = time.monotonic()
        reporter = asyncio.create_task(report_progress(watch, t0))
        try:
            await client.create(common.DEPLOYMENTS, deployment("web", args.replicas), "bench")
            await watch.wait_running(args.replicas, args.timeout)
        finally:
            reporter.cancel()
        run = Run(
            all_running=max(watch.running.values()) - t0,
            all_created=max(watch.seen.values()) - t0,
            all_bound=max(watch.bound.values()) - t0,
            first_running=min(watch.running.values()) - t0,
            server_cpu=proc_cpu(cluster.server.pid) - cpu0,
            load=os.getloadavg()[0],
        )
        await watch.close()
        return run
    finally:
        await cluster.close()


def row(label: str, values: list[float], fmt: str) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"| {label} | {fmt.format(med)} | {fmt.format(lo)} | {fmt.format(hi)} |"


def table(runs: list[Run], args: argparse.Namespace) -> str:
    n = args.replicas
    return "\n".join(
        [
            f"deployment benchmark: 1 Deployment of {n} replicas, {args.nodes} simulated nodes "
            f"(110 pods each), {len(runs)} runs; {os.cpu_count()} CPUs",
            "",
            "| metric | median | min | max |",
            "|---|---|---|---|",
            row("create -> all pods Running (s)", [r.all_running for r in runs], "{:.1f}"),
            row("  create -> first pod Running (s)", [r.first_running for r in runs], "{:.2f}"),
            row(f"  create -> all {n} pods exist (s)", [r.all_created for r in runs], "{:.1f}"),
            row("  create -> all pods bound (s)", [r.all_bound for r in runs], "{:.1f}"),
            row(
                "  pods Running per second",
                [n / r.all_running for r in runs],
                "{:.0f}",
            ),
            row(
                "server CPU, create -> all Running (CPU s)",
                [r.server_cpu for r in runs],
                "{:.1f}",
            ),
            row(
                "  server CPU per pod (ms)",
                [1000 * r.server_cpu / n for r in runs],
                "{:.1f}",
            ),
            row(
                "  server CPU meanwhile (% of one core)",
                [100 * r.server_cpu / r.all_running for r in runs],
                "{:.0f}",
            ),
            row("load average (1 min) at the end", [r.load for r in runs], "{:.1f}"),
        ]
    )


async def drive(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="kybern-bench-deploy-"))
        print(f"run {i + 1}/{args.runs} in {base}", flush=True)
        try:
            r = await one_run(args, base)
            runs.append(r)
            print(
                f"  all {args.replicas} Running after {r.all_running:.1f}s, "
                f"server CPU {r.server_cpu:.1f}s",
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
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=20, help="simulated nodes (110 pods each)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--settle", type=float, default=5.0, help="seconds before the create")
    p.add_argument("--timeout", type=float, default=300.0, help="limit of one rollout")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = p.parse_args()
    if args.replicas > 110 * args.nodes:
        p.error(f"{args.replicas} replicas do not fit on {args.nodes} nodes of 110 pods")
    run: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    sys.exit(run(drive(args)))


if __name__ == "__main__":
    main()
