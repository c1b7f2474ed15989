"""`kybern up` with a runtime of its own, as k3s does it: without `--container-runtime-endpoint`
it starts containerd below its data dir (kybern's images imported), registers the machine's node,
runs pods with addresses from the node's podCIDR, and on SIGTERM stops everything: no containerd,
shim or container process, no mount below the data dir, no bridge, no iptables rule of the pod
network and no pod cgroup is left."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Process, is_running, pod_manifest, wait_until
from cni_helpers import iptables_rules, pick_subnet, sh

from kybern.agent import common, network
from kybern.client import rest
from kybern.cri import containerd

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]


def ready(node: Obj) -> bool:
    conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
    return conds.get("Ready") == "True"


async def test_up_runs_pods_on_its_own_containerd(tmp_path: Path) -> None:
    if sh("ip", "link", "show", network.BRIDGE_NAME, check=False).returncode == 0:
        pytest.fail(f"{network.BRIDGE_NAME} exists already: another kybern up runs here")
    subnet = pick_subnet()
    data = tmp_path / "up"
    proc = Process(
        ["up", "--data-dir", str(data), "--port", "0", "--cluster-cidr", str(subnet),
         "--node-name", "up-node"],
        tmp_path / "up.log",
    )  # fmt: skip
    await proc.start()
    kubeconfig = data / "kubeconfig"
    try:

        async def api() -> rest.Config | None:
            assert proc.running, proc.log_tail()
            if not kubeconfig.exists():
                return None
            return await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)

        cfg = await wait_until(api, 60.0, "kybern up's kubeconfig")
        async with rest.Client(cfg) as c:

            async def node() -> Obj | None:
                assert proc.running, proc.log_tail()
                n = await c.get(common.NODES, "up-node")
                return n if ready(n) else None

            n = await wait_until(node, 120.0, "the node of kybern up to be Ready")
            assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
            pod = pod_manifest("hello", ["sleep", "3600"])
            pod["metadata"]["namespace"] = "default"
            await c.create(common.PODS, pod, "default")

            async def running() -> Obj | None:
                p = await c.get(common.PODS, "hello", "default")
                return p if is_running(p) else None

            p = await wait_until(running, 60.0, "the pod to run")
            assert ipaddress.ip_address(p["status"]["podIP"]) in subnet
        assert await proc.stop(60.0) == 0, proc.log_tail()
    finally:
        await proc.kill()
    sock = str(data / "containerd" / "containerd.sock")
    assert await asyncio.to_thread(containerd.processes_mentioning, sock) == []
    mounts = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
    assert containerd.mounts_below(data, mounts) == []
    assert sh("ip", "link", "show", network.BRIDGE_NAME, check=False).returncode != 0
    for table in ("nat", "filter"):
        rules = [r for r in iptables_rules("iptables", table) if str(subnet) in r]
        assert rules == [], rules

    def pod_cgroups() -> list[str]:
        kubepods = [h / "kubepods" for h in Path("/sys/fs/cgroup").iterdir()]
        return [str(d) for d in kubepods if d.exists() and any(d.glob("**/pod*"))]

    assert await asyncio.to_thread(pod_cgroups) == []
