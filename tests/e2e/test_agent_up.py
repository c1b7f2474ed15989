"""`kybern up` with a runtime of its own, as k3s does it: without `--container-runtime-endpoint`
it starts containerd below its data dir (kybern's images imported), registers the machine's node,
runs pods with addresses from the node's podCIDR, and on SIGTERM stops everything: no containerd,
shim or container process, no mount below the data dir, no bridge, no iptables rule of the pod
network and no pod cgroup is left."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Process, is_running, kubectl_env, pod_manifest, wait_until
from cni_helpers import iptables_rules, pick_subnet, sh

from kybern.agent import common, network
from kybern.api import registry
from kybern.api.errors import StatusError
from kybern.client import rest
from kybern.cri import containerd

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]
PVCS = registry.Registry().lookup("", "v1", "persistentvolumeclaims")


def ready(node: Obj) -> bool:
    conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
    return conds.get("Ready") == "True"


async def test_up_runs_pods_on_its_own_containerd(tmp_path: Path) -> None:
    if sh("ip", "link", "show", network.BRIDGE_NAME, check=False).returncode == 0:
        pytest.fail(f"{network.BRIDGE_NAME} exists already: another kybern up runs here")
    subnet = pick_subnet()
    # a short data dir: sockets below it (CSI registration) must fit a unix socket path
    data = Path(tempfile.mkdtemp(prefix="kyb-up-", dir="/tmp"))
    try:
        await run_up(tmp_path, data, subnet)
    finally:  # never below a mount that is still there (the test has failed on it then)
        mounts = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
        if not containerd.mounts_below(data, mounts):
            await asyncio.to_thread(shutil.rmtree, data, True)


async def run_up(tmp_path: Path, data: Path, subnet: ipaddress.IPv4Network) -> None:
    proc = Process(
        ["up", "--data-dir", str(data), "--port", "0", "--cluster-cidr", str(subnet),
         "--node-name", "up-node", "--node-ip", "127.0.0.1", "--kubelet-port", "0",
         "--metric-resolution", "2s", "--csi-hostpath"],
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
            await pods_on_up(c, data / "kubeconfig", subnet, data)
    finally:  # SIGTERM also when an assertion failed: kybern up then removes its pods
        code = await proc.stop(60.0)
    assert code == 0, proc.log_tail()
    sock = str(data / "containerd" / "containerd.sock")
    assert await asyncio.to_thread(containerd.processes_mentioning, sock) == []
    mounts = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
    assert containerd.mounts_below(data, mounts) == []
    assert sh("ip", "link", "show", network.BRIDGE_NAME, check=False).returncode != 0
    for table in ("nat", "filter"):
        rules = [r for r in iptables_rules("iptables", table) if str(subnet) in r]
        assert rules == [], rules
    hostport = [r for r in iptables_rules("iptables", "nat") if "CNI-HOSTPORT" in r]
    assert hostport == [], hostport  # portmap's shared chains go with the last hostPort

    def pod_cgroups() -> list[str]:
        kubepods = [h / "kubepods" for h in Path("/sys/fs/cgroup").iterdir()]
        return [str(d) for d in kubepods if d.exists() and any(d.glob("**/pod*"))]

    assert await asyncio.to_thread(pod_cgroups) == []


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    """(exit code, stdout) of the real kubectl."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=kubectl_env(kubeconfig),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60.0)
    return proc.returncode or 0, out.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def millicores(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


async def pods_on_up(
    c: rest.Client, kubeconfig: Path, subnet: ipaddress.IPv4Network, data: Path
) -> None:
    """Pods of `kybern up` get addresses of the node's podCIDR and reach each other, a hostPort
    answers on the host's loopback, `kubectl logs`/`exec` reach the containers, `kubectl top`
    shows a CPU burner above an idle pod, and deleted pods give their addresses back."""
    serve = (
        "mkdir /www && echo {0} >/www/index.html && echo serving-{0} && httpd -f -p 8080 -h /www"
    )
    host_port = free_port()
    specs = {
        "a": pod_manifest("a", ["sh", "-c", serve.format("a")]),
        "b": pod_manifest(
            "b", ["sh", "-c", serve.format("b")],
            container={"ports": [{"containerPort": 8080, "hostPort": host_port}]},
        ),
        "burner": pod_manifest("burner", ["sh", "-c", "while :; do :; done"]),
    }  # fmt: skip
    for pod in specs.values():
        pod["metadata"]["namespace"] = "default"
        await c.create(common.PODS, pod, "default")

    async def running(name: str) -> Obj | None:
        p = await c.get(common.PODS, name, "default")
        return p if is_running(p) else None

    ips = {}
    for name in specs:
        p = await wait_until(functools.partial(running, name), 90.0, f"pod {name} to run")
        ips[name] = ipaddress.ip_address(p["status"]["podIP"])
        assert ips[name] in subnet
    rc, out = await kubectl(
        kubeconfig, "exec", "a", "--", "wget", "-qO-", f"http://{ips['b']}:8080/"
    )
    assert (rc, out) == (0, "b\n"), out
    rc, out = await kubectl(kubeconfig, "exec", "a", "--", "sh", "-c", "echo hi; exit 3")
    assert (rc, out) == (3, "hi\n"), out

    async def logs() -> str | None:
        rc, out = await kubectl(kubeconfig, "logs", "b")
        return out if rc == 0 and out else None

    assert await wait_until(logs, 30.0, "kubectl logs b") == "serving-b\n"

    async def via_host_port() -> str | None:
        try:
            return await asyncio.to_thread(fetch, f"http://127.0.0.1:{host_port}/")
        except OSError:
            return None

    assert await wait_until(via_host_port, 30.0, "the hostPort on loopback") == "b\n"

    async def top() -> dict[str, int] | None:
        rc, out = await kubectl(kubeconfig, "top", "pods", "--no-headers")
        if rc != 0:
            return None
        usage = {line.split()[0]: millicores(line.split()[1]) for line in out.splitlines()}
        if set(specs) - set(usage) or usage["burner"] < 200:
            return None
        return usage

    usage = await wait_until(top, 60.0, "kubectl top pods to show the burner's CPU")
    assert usage["burner"] > 4 * max(usage["a"], usage["b"], 1), usage
    rc, out = await kubectl(kubeconfig, "top", "nodes", "--no-headers")
    assert rc == 0 and out.split()[0] == "up-node" and millicores(out.split()[1]) >= 200, out
    await claim_on_up(c, kubeconfig)
    for name in specs:
        await c.delete(common.PODS, name, "default")

    async def released() -> bool:
        nets = data / "agent" / "cni" / "networks"
        files = await asyncio.to_thread(lambda: [f.name for f in nets.glob("*/*")])
        return not [f for f in files if f in {str(ip) for ip in ips.values()}]

    await wait_until(released, 60.0, "host-local to release the pods' addresses")


async def claim_on_up(c: rest.Client, kubeconfig: Path) -> None:
    """A claim of the default StorageClass (`--csi-hostpath`) is provisioned, mounted into a pod
    by the agent and keeps what the pod wrote for the next pod."""
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Mi"}}},
    }  # fmt: skip
    assert PVCS is not None
    await c.create(PVCS, pvc, "default")
    for name, script in (("writer", "echo kept > /data/f; sleep 3600"), ("reader", "sleep 3600")):
        pod = pod_manifest(name, ["sh", "-c", script])
        pod["metadata"]["namespace"] = "default"
        pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        await c.create(common.PODS, pod, "default")

        async def running(name: str = name) -> Obj | None:
            p = await c.get(common.PODS, name, "default")
            return p if is_running(p) else None

        await wait_until(running, 90.0, f"claim pod {name} to run")
        if name == "writer":

            async def written() -> bool:
                return await kubectl(kubeconfig, "exec", "writer", "--", "cat", "/data/f") == (
                    0,
                    "kept\n",
                )

            await wait_until(written, 30.0, "the writer's file")
        else:
            assert await kubectl(kubeconfig, "exec", name, "--", "cat", "/data/f") == (0, "kept\n")
        await c.delete(common.PODS, name, "default", grace_period=0)

        async def gone(name: str = name) -> bool:
            try:
                await c.get(common.PODS, name, "default")
            except StatusError as e:
                return e.code == 404
            return False

        await wait_until(gone, 60.0, f"claim pod {name} to go")
