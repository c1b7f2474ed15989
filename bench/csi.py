"""CSI benchmark: many claims and pods at once through the whole CSI path. It starts a `kybern
server` (controllers, scheduler, one simulated node `sim-0` that plays the pods) and `kybern
csi-sidecars` as child processes, and in this process the hostpath driver (its server-side
handler times and call counts are the "time in the driver"), the agent's plugin registration
library (CSINode for `sim-0`) and the agent's CSI volume manager; then

- creates `--volumes` claims of a WaitForFirstConsumer class and as many pods using them at once
  (`--creators` concurrent clients), in a namespace of its own;
- times: all claims Bound (scheduler picks the node, provisioner `CreateVolume`s, binder binds),
  all VolumeAttachments attached (attach-detach controller, attacher `ControllerPublishVolume`),
  all volumes published for their pods (volume manager: `NodeStageVolume` + `NodePublishVolume`,
  started as each attachment completes — the node agent's part, minus containers);
- counts the CSI calls per volume by method, the time the driver spent in its handlers, and the
  CPU seconds of the API server process (API, controllers, scheduler, simulated node) and of the
  sidecars process — the time in kybern;
- then unmounts everything, deletes pods and claims and times until the last PV is gone
  (`DeleteVolume`), and checks nothing is left mounted.

With `--agent` it runs real pods instead: its own containerd (kybern's busybox and pause images),
a `kybern server` and a `kybern agent` as child processes, the hostpath driver in this process
registered through the agent's plugin registration directory and the sidecars as a process;
`--volumes` claims and as many busybox pods using them (each writes a file to its volume) are
created at once, and it times all claims Bound, all attached, all pods Running (the agent
staged, published and bind-mounted every volume), then deletes the pods and claims and times
until the pods are gone and nothing is mounted below the agent's data dir.

Run: `.venv/bin/python -m bench.csi [--volumes 50 --creators 10 --runs 1] [--agent]` (as root:
mounts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kybern.api import registry
from kybern.client import rest
from kybern.csi import drivers, mount, registration
from kybern.csi.client import CallStats
from kybern.csi.hostpath import DRIVER_NAME, Config, HostpathDriver
from kybern.csi.volumes import VolumeManager, source_from_pv

REPO = Path(__file__).resolve().parents[1]
_CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE = "sim-0"
Obj = dict[str, Any]
REG = registry.Registry()


def _res(group: str, plural: str) -> registry.Resource:
    r = REG.lookup(group, "v1", plural)
    assert r is not None
    return r


NODES, PODS, PVS, PVCS, NAMESPACES = (
    _res("", p)
    for p in ("nodes", "pods", "persistentvolumes", "persistentvolumeclaims", "namespaces")
)
CLASSES, CSINODES, VAS, CSIDRIVERS = (
    _res("storage.k8s.io", p)
    for p in ("storageclasses", "csinodes", "volumeattachments", "csidrivers")
)


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class Child:
    def __init__(self, args: list[str], log: Path) -> None:
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kybern", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def create_pairs(
    client: rest.Client,
    ns: str,
    cls: str,
    n: int,
    sem: asyncio.Semaphore,
    container: Obj,
    **spec: Any,
) -> None:
    """`n` claims `data-<i>` of class `cls` and pods `pod-<i>` using them, `sem` at a time."""

    async def create(i: int) -> None:
        async with sem:
            await client.create(PVCS, {
                "metadata": {"name": f"data-{i}"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                         "resources": {"requests": {"storage": "16Mi"}}},
            }, ns)  # fmt: skip
            await client.create(PODS, {
                "metadata": {"name": f"pod-{i}"},
                "spec": {**spec, "containers": [container],
                         "volumes": [{"name": "data",
                                      "persistentVolumeClaim": {"claimName": f"data-{i}"}}]},
            }, ns)  # fmt: skip

    await asyncio.gather(*(create(i) for i in range(n)))


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


@dataclass
class Result:
    bound: float = 0.0
    attached: float = 0.0
    published: float = 0.0
    deleted: float = 0.0
    calls: CallStats = field(default_factory=CallStats)
    cpu: dict[str, float] = field(default_factory=dict)
    leaked: list[str] = field(default_factory=list)


async def one_run(args: argparse.Namespace, base: Path) -> Result:
    result = Result()
    server = Child(
        ["server", "--data-dir", str(base / "server"), "--port", "0", "--sim-nodes", "1"],
        base / "server.log",
    )
    kubeconfig = base / "server" / "kubeconfig"
    sidecars: Child | None = None
    driver = HostpathDriver(
        Config(base / "hostpath", NODE), f"unix://{base}/csi.sock", registration_dir=base / "reg"
    )
    try:
        cfg = await wait_for(
            lambda: asyncio.to_thread(rest.load_kubeconfig, kubeconfig), 60, "the kubeconfig"
        )
        async with rest.Client(cfg) as client:
            await wait_for(lambda: client.get(NODES, NODE), 60, "the simulated node")
            await driver.start()
            publisher = drivers.CSINodePublisher(client, NODE, nodes=NODES, csinodes=CSINODES)
            reg = drivers.DriverRegistry(publisher)
            watcher = registration.PluginWatcher(base / "reg", reg)
            await watcher.start()
            try:
                await watcher.wait_for(DRIVER_NAME, 30)
                sidecars = Child(
                    ["csi-sidecars", "--csi-address", driver.endpoint, "--kubeconfig",
                     str(kubeconfig)],
                    base / "sidecars.log",
                )  # fmt: skip
                await run_volumes(args, client, reg, base, result, server, sidecars)
            finally:
                await watcher.stop()
                await reg.close()
    finally:
        if sidecars is not None:
            sidecars.stop()
        await driver.stop()
        server.stop()
        result.calls = driver.stats
        result.leaked = mount.mounts_below(base)
        mount.unmount_all(base)
    return result


async def run_volumes(
    args: argparse.Namespace,
    client: rest.Client,
    reg: drivers.DriverRegistry,
    base: Path,
    result: Result,
    server: Child,
    sidecars: Child,
) -> None:
    ns = f"bench-csi-{uuid.uuid4().hex[:6]}"
    cls = f"bench-{uuid.uuid4().hex[:6]}"
    await client.create(NAMESPACES, {"metadata": {"name": ns}})
    await client.create(
        CLASSES,
        {
            "metadata": {"name": cls},
            "provisioner": DRIVER_NAME,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    )
    n = args.volumes
    cpu0 = {"server": proc_cpu(server.proc.pid), "sidecars": proc_cpu(sidecars.proc.pid)}
    sem = asyncio.Semaphore(args.creators)
    t0 = time.monotonic()

    await create_pairs(client, ns, cls, n, sem, {"name": "c", "image": "busybox"})

    async def all_bound() -> bool:
        items = (await client.list(PVCS, ns))["items"]
        return sum((p.get("status") or {}).get("phase") == "Bound" for p in items) == n

    await wait_for(all_bound, args.timeout, "all claims Bound")
    result.bound = time.monotonic() - t0
    vm = VolumeManager(base / "agent", reg)
    mounts: dict[str, asyncio.Task[Any]] = {}
    pvs: dict[str, Obj] = {}

    async def attached() -> bool:
        vas = (await client.list(VAS))["items"]
        done = [va for va in vas if (va.get("status") or {}).get("attached")]
        for va in done:
            pv_name = va["spec"]["source"]["persistentVolumeName"]
            if pv_name in mounts:
                continue
            pv = pvs.get(pv_name) or await client.get(PVS, pv_name)
            pvs[pv_name] = pv
            claim = pv["spec"]["claimRef"]["name"]
            uid = f"pod-{claim.removeprefix('data-')}"
            src = source_from_pv(pv, publish_context=va["status"].get("attachmentMetadata"))
            mounts[pv_name] = asyncio.create_task(vm.mount(uid, "data", src))
        return len(mounts) == n

    await wait_for(attached, args.timeout, "all VolumeAttachments attached")
    result.attached = time.monotonic() - t0
    await asyncio.gather(*mounts.values())
    result.published = time.monotonic() - t0
    result.cpu = {
        "server": proc_cpu(server.proc.pid) - cpu0["server"],
        "sidecars": proc_cpu(sidecars.proc.pid) - cpu0["sidecars"],
    }
    for mv in vm.mounted():
        await vm.unmount(mv.pod_uid, mv.name)
    t1 = time.monotonic()
    for i in range(n):
        await client.delete(PODS, f"pod-{i}", ns, grace_period=0)
        await client.delete(PVCS, f"data-{i}", ns)

    async def all_gone() -> bool:
        items = (await client.list(PVS))["items"]
        return not [p for p in items if p["spec"].get("storageClassName") == cls]

    await wait_for(all_gone, args.timeout, "all PVs deleted")
    result.deleted = time.monotonic() - t1


def table(results: list[Result], volumes: int) -> str:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    lines = [
        f"CSI: {volumes} claims + pods at once (hostpath driver, 1 node; mean of {len(results)})",
        "",
        "| phase | seconds after create |",
        "|---|---|",
        f"| all claims Bound | {mean([r.bound for r in results]):.2f} |",
        f"| all VolumeAttachments attached | {mean([r.attached for r in results]):.2f} |",
        f"| all volumes staged and published | {mean([r.published for r in results]):.2f} |",
        f"| delete: all PVs and volumes gone | {mean([r.deleted for r in results]):.2f} |",
        "",
        "| CSI method | calls per volume | driver ms per call |",
        "|---|---|---|",
    ]
    total = CallStats()
    for r in results:
        total.merge(r.calls)
    runs = len(results)
    for method in sorted(total.calls, key=lambda m: -total.calls[m]):
        calls = total.calls[method]
        per = calls / runs / volumes
        ms = total.seconds[method] / calls * 1000
        lines.append(f"| {method} | {per:.2f} | {ms:.2f} |")
    driver = total.total_seconds / runs
    server = mean([r.cpu.get("server", 0.0) for r in results])
    side = mean([r.cpu.get("sidecars", 0.0) for r in results])
    lines += [
        "",
        "| where the time went | seconds |",
        "|---|---|",
        f"| in the driver: handler time, summed over concurrent calls (whole run) | {driver:.2f} |",
        "| kybern API server + controllers + scheduler + sim node: CPU, create to published "
        f"| {server:.2f} |",
        f"| kybern CSI sidecars: CPU, create to published | {side:.2f} |",
        f"| calls per volume, all methods | {total.total_calls / runs / volumes:.2f} |",
    ]
    return "\n".join(lines)


@dataclass
class AgentResult:
    bound: float = 0.0
    attached: float = 0.0
    running: float = 0.0
    pods_gone: float = 0.0
    unmounted: float = 0.0
    calls: CallStats = field(default_factory=CallStats)
    cpu: dict[str, float] = field(default_factory=dict)
    leaked: list[str] = field(default_factory=list)


def _running(pod: Obj) -> bool:
    st = pod.get("status") or {}
    cs = st.get("containerStatuses") or []
    return st.get("phase") == "Running" and bool(cs) and all("running" in c["state"] for c in cs)


async def agent_run(args: argparse.Namespace, base: Path) -> AgentResult:
    """One run of real pods with claims on a `kybern agent` (see the module docstring)."""
    from bench.pods import free_subnet
    from kybern.agent import sandbox
    from kybern.cri import Containerd
    from kybern.images import busybox, oci

    res = AgentResult()
    bb, pause = await asyncio.to_thread(lambda: busybox.build_all(busybox.read_busybox()))
    layout = await asyncio.to_thread(oci.layout_tar, [bb, pause])
    ctd = Containerd()
    suffix = uuid.uuid4().hex[:6]
    bridge, cgroup = f"kbc{suffix}", f"/kybern-bench-csi-{suffix}"
    agent_dir = base / "agent"
    kubeconfig = base / "server" / "kubeconfig"
    server: Child | None = None
    agent: Child | None = None
    sidecars: Child | None = None
    driver: HostpathDriver | None = None
    try:
        await ctd.start()
        await ctd.import_layout(layout)
        server = Child(
            ["server", "--data-dir", str(base / "server"), "--port", "0", "--cluster-cidr",
             str(free_subnet()), "--disable-controllers", "nodelifecycle"],
            base / "server.log",
        )  # fmt: skip
        cfg = await wait_for(
            lambda: asyncio.to_thread(rest.load_kubeconfig, kubeconfig), 60, "the kubeconfig"
        )
        node = f"bench-{suffix}"
        agent = Child(
            ["agent", "--kubeconfig", str(kubeconfig), "--container-runtime-endpoint",
             ctd.endpoint, "--node-name", node, "--data-dir", str(agent_dir),
             "--pod-logs-dir", str(base / "logs"), "--cni-conf-dir", str(ctd.config.cni_conf_dir),
             "--cni-bin-dir", "/usr/lib/cni", "--cni-network-name", f"kybench-{suffix}",
             "--cni-bridge", bridge, "--cgroup-root", cgroup, "--node-ip", "127.0.0.1",
             "--port", "0"],
            base / "agent.log",
        )  # fmt: skip
        async with rest.Client(cfg, qps_limit=200) as client:

            async def ready() -> bool:
                n = await client.get(NODES, node)
                conds = {x["type"]: x["status"] for x in n["status"]["conditions"]}
                return conds.get("Ready") == "True"

            await wait_for(ready, 120, "the node")
            driver = HostpathDriver(
                Config(base / "hostpath", node),
                f"unix://{base}/csi.sock",
                registration_dir=agent_dir / "plugins_registry",
            )
            await driver.start()
            await client.create(CSIDRIVERS, {
                "metadata": {"name": DRIVER_NAME},
                "spec": {"attachRequired": True, "podInfoOnMount": True,
                         "volumeLifecycleModes": ["Persistent"]},
            })  # fmt: skip

            async def registered() -> bool:
                cn = await client.get(CSINODES, node)
                return DRIVER_NAME in [d["name"] for d in cn["spec"].get("drivers") or []]

            await wait_for(registered, 60, "the driver's registration with the agent")
            sidecars = Child(
                ["csi-sidecars", "--csi-address", driver.endpoint, "--kubeconfig",
                 str(kubeconfig)],
                base / "sidecars.log",
            )  # fmt: skip
            await agent_pods(args, client, res, {"server": server, "agent": agent,
                                                 "sidecars": sidecars}, agent_dir)  # fmt: skip
    finally:
        if agent is not None:
            agent.stop()
        if sidecars is not None:
            sidecars.stop()
        if driver is not None:
            res.calls = driver.stats
            await driver.stop()
        await ctd.remove_all()
        await ctd.stop()
        if server is not None:
            server.stop()
        await asyncio.to_thread(subprocess.run, ["ip", "link", "del", bridge], capture_output=True)
        await asyncio.to_thread(sandbox.remove_cgroup, cgroup)
        res.leaked = mount.mounts_below(base)
        mount.unmount_all(base)
    return res


async def agent_pods(
    args: argparse.Namespace,
    client: rest.Client,
    res: AgentResult,
    procs: dict[str, Child],
    agent_dir: Path,
) -> None:
    from kybern.images import busybox

    ns = f"bench-csi-{uuid.uuid4().hex[:6]}"
    cls = f"bench-{uuid.uuid4().hex[:6]}"
    await client.create(NAMESPACES, {"metadata": {"name": ns}})
    await client.create(CLASSES, {
        "metadata": {"name": cls}, "provisioner": DRIVER_NAME,
        "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete",
    })  # fmt: skip
    n = args.volumes
    cpu0 = {k: proc_cpu(c.proc.pid) for k, c in procs.items()}
    sem = asyncio.Semaphore(args.creators)
    t0 = time.monotonic()

    container = {
        "name": "c", "image": busybox.BUSYBOX_IMAGE,
        "command": ["sh", "-c", "date > /data/f; sleep 3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }  # fmt: skip
    await create_pairs(client, ns, cls, n, sem, container, terminationGracePeriodSeconds=1)
    marks: dict[str, float] = {}

    async def progress() -> bool:
        if "bound" not in marks:
            items = (await client.list(PVCS, ns))["items"]
            if sum((p.get("status") or {}).get("phase") == "Bound" for p in items) == n:
                marks["bound"] = time.monotonic() - t0
        if "attached" not in marks:
            vas = (await client.list(VAS))["items"]
            if sum(bool((va.get("status") or {}).get("attached")) for va in vas) >= n:
                marks["attached"] = time.monotonic() - t0
        pods = (await client.list(PODS, ns))["items"]
        if sum(_running(p) for p in pods) == n:
            marks["running"] = time.monotonic() - t0
            marks.setdefault("bound", marks["running"])
            marks.setdefault("attached", marks["running"])
            return True
        return False

    await wait_for(progress, args.timeout, "all pods Running")
    res.bound, res.attached, res.running = marks["bound"], marks["attached"], marks["running"]
    res.cpu = {k: proc_cpu(c.proc.pid) - cpu0[k] for k, c in procs.items()}
    t1 = time.monotonic()
    await client.request("DELETE", f"/api/v1/namespaces/{ns}/pods", timeout=120)

    async def pods_gone() -> bool:
        return not (await client.list(PODS, ns)).get("items")

    await wait_for(pods_gone, args.timeout, "every pod to be deleted")
    res.pods_gone = time.monotonic() - t1

    async def unmounted() -> bool:
        return not await asyncio.to_thread(mount.mounts_below, agent_dir)

    await wait_for(unmounted, args.timeout, "every volume unmounted")
    res.unmounted = time.monotonic() - t1
    await client.request("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims")

    async def pvs_gone() -> bool:
        items = (await client.list(PVS))["items"]
        return not [p for p in items if p["spec"].get("storageClassName") == cls]

    await wait_for(pvs_gone, args.timeout, "all PVs deleted")


def agent_table(results: list[AgentResult], volumes: int) -> str:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    lines = [
        f"CSI on the agent: {volumes} claims + busybox pods at once (hostpath driver, "
        f"containerd, 1 node; mean of {len(results)})",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| all claims Bound (after create) | {mean([r.bound for r in results]):.2f} |",
        f"| all VolumeAttachments attached (after create) | "
        f"{mean([r.attached for r in results]):.2f} |",
        f"| **all pods Running** (after create) | {mean([r.running for r in results]):.2f} |",
        f"| delete: all pods gone (after DELETE) | {mean([r.pods_gone for r in results]):.2f} |",
        f"| delete: nothing mounted below the agent's data dir | "
        f"{mean([r.unmounted for r in results]):.2f} |",
        "",
        "| CSI method | calls per volume | driver ms per call |",
        "|---|---|---|",
    ]
    total = CallStats()
    for r in results:
        total.merge(r.calls)
    runs = len(results)
    for method in sorted(total.calls, key=lambda m: -total.calls[m]):
        calls = total.calls[method]
        lines.append(
            f"| {method} | {calls / runs / volumes:.2f} | "
            f"{total.seconds[method] / calls * 1000:.2f} |"
        )
    lines += ["", "| CPU seconds, create to all Running | seconds |", "|---|---|"]
    for k in ("agent", "server", "sidecars"):
        lines.append(f"| {k} | {mean([r.cpu.get(k, 0.0) for r in results]):.2f} |")
    lines.append(f"| in the driver (handler time, whole run) | {total.total_seconds / runs:.2f} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench.csi mounts volumes: run it as root", file=sys.stderr)
        return 2
    if args.agent:
        return await main_agent(args)
    results = []
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="kybern-bench-csi-"))
        try:
            r = await one_run(args, base)
            results.append(r)
            print(
                f"run {i + 1}: bound {r.bound:.2f}s published {r.published:.2f}s", file=sys.stderr
            )
            if r.leaked:
                print(f"mounts left behind (now removed): {r.leaked}", file=sys.stderr)
        finally:
            for name in ("server.log", "sidecars.log"):
                with contextlib.suppress(OSError):
                    for line in (base / name).read_text().splitlines():
                        if "Traceback" in line or " ERROR " in line:
                            print(f"{name}: {line}", file=sys.stderr)
            if args.keep:
                print(f"kept {base}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
    print(table(results, args.volumes))
    return 0


async def main_agent(args: argparse.Namespace) -> int:
    results = []
    for i in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="kybern-bench-csi-"))
        try:
            r = await agent_run(args, base)
            results.append(r)
            print(f"run {i + 1}: all running {r.running:.2f}s", file=sys.stderr)
            if r.leaked:
                print(f"mounts left behind (now removed): {r.leaked}", file=sys.stderr)
        finally:
            for name in ("server.log", "sidecars.log", "agent.log"):
                with contextlib.suppress(OSError):
                    for line in (base / name).read_text().splitlines():
                        if "Traceback" in line or "level=error" in line:
                            print(f"{name}: {line}", file=sys.stderr)
            if args.keep:
                print(f"kept {base}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
    print(agent_table(results, args.volumes))
    return 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--volumes", type=int, default=50)
    p.add_argument("--creators", type=int, default=10, help="concurrent create requests")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--keep", action="store_true", help="keep the logs (temporary directory)")
    p.add_argument("--agent", action="store_true", help="real pods on a `kybern agent`")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
