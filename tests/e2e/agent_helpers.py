"""Helpers of the node agent's end-to-end tests: a `Cluster` made of a real containerd (kybern's
busybox and pause images imported, its CNI conf dir the agent's), a real `kybern server` child
process (controllers and scheduler, minus what a test runs itself, with the cluster CIDR being a
free /24 of the host so the node's podCIDR is exactly that), and `kybern agent` as a child process
that a test can stop, kill and start again. On the way out every pod is deleted, the agent
stopped, and the test fails if anything is left: CRI containers or sandboxes, mounts, processes,
network namespaces, the bridge's ports, iptables rules, cgroups, host-local reservations."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from cni_helpers import HostNet, host_net
from containerd_helpers import build_images, require_binaries
from streaming_helpers import kubectl_env

from kybern.agent import common, network, streaming_tls
from kybern.api import registry
from kybern.apiserver import certs
from kybern.client import rest
from kybern.cri import Containerd, RuntimeClient
from kybern.images import busybox

T = TypeVar("T")
Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl"
CGROUP_FS = Path("/sys/fs/cgroup")
POD_RES = common.PODS
NODE_RES = common.NODES
NS_RES = registry.Registry().lookup("", "v1", "namespaces")


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0, what: str = "condition"
) -> T:
    """Await `probe()` until it returns something truthy; fail at the deadline (exceptions
    count as "not yet", the last one is reported)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = await probe()
            if value:
                return value
            last = value
        except (AssertionError, KeyError, IndexError, OSError) as e:
            last = e
        except Exception as e:  # a StatusError of an object not there yet
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")
        await asyncio.sleep(0.1)


class Process:
    """A `python -m kybern ...` child process with its log in a file."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kybern", *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, size: int = 6000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit code (SIGKILL and an error if it does not go in time)."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.args[0]} ignored SIGTERM:\n{self.log_tail()}") from None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Cluster:
    base: Path
    net: HostNet
    ctd: Containerd
    server: Process
    agent: Process
    node: str
    client: rest.Client
    rt: RuntimeClient
    cgroup_root: str
    data_dir: Path
    extra_agent_args: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.base / "server" / "kubeconfig"

    @property
    def ipam_dir(self) -> Path:
        return self.net.ipam_dir

    async def kubectl(self, *args: str, input: str | None = None, timeout: float = 120.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=kubectl_env(self.kubeconfig),
        )  # fmt: skip
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {err.decode()}")
        return out.decode()

    async def apply(self, obj: Obj) -> None:
        await self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    async def pod(self, namespace: str, name: str) -> Obj:
        return await self.client.get(POD_RES, name, namespace)

    async def wait_pod(
        self,
        namespace: str,
        name: str,
        check: Callable[[Obj], bool],
        timeout: float = 60.0,
        what: str = "",
    ) -> Obj:
        async def probe() -> Obj | None:
            pod = await self.pod(namespace, name)
            return pod if check(pod) else None

        return await wait_until(probe, timeout, what or f"pod {namespace}/{name}")

    async def node_obj(self) -> Obj:
        return await self.client.get(NODE_RES, self.node)

    async def namespace(self, prefix: str = "e2e") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        await self.client.create(NS_RES, {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": name}})  # fmt: skip
        return name

    def agent_args(self) -> list[str]:
        return [
            "agent",
            "--kubeconfig", str(self.kubeconfig),
            "--container-runtime-endpoint", self.ctd.endpoint,
            "--node-name", self.node,
            "--data-dir", str(self.data_dir),
            "--pod-logs-dir", str(self.base / "pod-logs"),
            "--cni-conf-dir", str(self.ctd.config.cni_conf_dir),
            "--cni-bin-dir", "/usr/lib/cni",
            "--cni-network-name", self.net.network,
            "--cni-bridge", self.net.bridge,
            "--cni-ipam-dir", str(self.net.ipam_dir),
            "--cgroup-root", self.cgroup_root,
            "--node-ip", "127.0.0.1",
            "--crashloop-backoff", "1",
            "--crashloop-backoff-max", "8",
            "--heartbeat-interval", "1",
            "--container-gc-period", "2",
            "--port", "0",
            "--address", "127.0.0.1",
            "--tls-cert-file", str(self.base / "agent-pki" / streaming_tls.CERT_FILE),
            "--tls-private-key-file", str(self.base / "agent-pki" / streaming_tls.KEY_FILE),
            "-v",
            *self.extra_agent_args,
        ]  # fmt: skip

    async def start_agent(self) -> None:
        """Start `kybern agent` with a serving certificate from the cluster CA (what an
        operator copies to a node), so the API server verifies it."""
        pki = self.base / "server" / "pki"
        await asyncio.to_thread(
            streaming_tls.ensure_serving_cert,
            self.base / "agent-pki", pki / "ca.crt", pki / "ca.key", self.node, ["127.0.0.1"],
        )  # fmt: skip
        self.agent.args = self.agent_args()
        await self.agent.start()

    async def wait_node_ready(self, timeout: float = 60.0) -> Obj:
        async def ready() -> Obj | None:
            if not self.agent.running:
                raise AssertionError(f"the agent exited:\n{self.agent.log_tail()}")
            node = await self.node_obj()
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            return node if conds.get("Ready") == "True" else None

        return await wait_until(ready, timeout, "the node to be Ready")

    def pod_cidr(self) -> ipaddress.IPv4Network:
        return self.net.subnet

    async def leftovers(self) -> list[str]:
        """What of the pods is still on the host (after every pod is gone)."""
        left = []
        sandboxes = await self.rt.list_pod_sandbox()
        conts = await self.rt.list_containers()
        left += [f"sandbox {s.metadata.namespace}/{s.metadata.name}" for s in sandboxes]
        left += [f"container {c.metadata.name}" for c in conts]
        mounts = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
        left += [
            f"mount {line.split()[4]}"
            for line in mounts.splitlines()
            if line.split()[4].startswith(str(self.data_dir))
        ]
        pod_dirs = self.data_dir / "pods"
        if await asyncio.to_thread(pod_dirs.exists):
            left += [
                f"pod dir {p}" for p in await asyncio.to_thread(lambda: list(pod_dirs.iterdir()))
            ]
        left += [f"veth {p}" for p in await asyncio.to_thread(self.net.bridge_ports)]
        left += [f"ip {ip}" for ip in await asyncio.to_thread(self.net.allocated)]
        return left

    def cgroups_left(self) -> list[str]:
        rel = self.cgroup_root.strip("/")
        return [str(h / rel) for h in CGROUP_FS.iterdir() if (h / rel).exists()]


async def _server(base: Path, cidr: str, extra: list[str]) -> Process:
    data = base / "server"
    data.mkdir(parents=True, exist_ok=True)
    proc = Process(
        ["server", "--data-dir", str(data), "--port", "0", "--cluster-cidr", cidr,
         "--node-cidr-mask-size", "24",
         "--kubelet-certificate-authority", str(data / "pki" / "ca.crt"), *extra],
        base / "server.log",
    )  # fmt: skip
    await proc.start()
    kubeconfig = data / "kubeconfig"

    async def up() -> bool:
        if not proc.running:
            raise RuntimeError(f"the server exited:\n{proc.log_tail()}")
        if not kubeconfig.exists():
            return False
        cfg = await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)
        async with rest.Client(cfg) as c:
            await c.request("GET", "/version")
        return True

    try:
        await wait_until(up, 60.0, "the kybern server")
    except BaseException:
        await proc.kill()
        raise
    return proc


@contextlib.asynccontextmanager
async def running_cluster(
    base: Path,
    *,
    server_args: tuple[str, ...] = ("--disable-controllers", "nodelifecycle"),
    agent_args: tuple[str, ...] = (),
) -> AsyncIterator[Cluster]:
    require_binaries()
    suffix = uuid.uuid4().hex[:6]
    with host_net(base / "net") as net:
        _, _, layout = await build_images()
        ctd = Containerd()
        await ctd.start()
        server: Process | None = None
        cluster: Cluster | None = None
        try:
            await ctd.import_layout(layout)
            server = await _server(base, str(net.subnet), list(server_args))
            cfg = await asyncio.to_thread(rest.load_kubeconfig, base / "server" / "kubeconfig")
            async with rest.Client(cfg) as client, ctd.client(timeout=60) as rt:
                await rt.connect()
                cluster = Cluster(
                    base=base,
                    net=net,
                    ctd=ctd,
                    server=server,
                    agent=Process([], base / "agent.log"),
                    node=f"kyb-e2e-{suffix}",
                    client=client,
                    rt=rt,
                    cgroup_root=f"/kybern-e2e-{suffix}",
                    data_dir=base / "agent",
                    extra_agent_args=list(agent_args),
                )
                await cluster.start_agent()
                await cluster.wait_node_ready()
                yield cluster
                await _teardown(cluster)
        finally:
            if cluster is not None:
                await cluster.agent.kill()
            await ctd.stop()

            async def gone() -> bool:  # a shim may take a moment to exit after containerd
                return not await ctd.leftovers()

            with contextlib.suppress(AssertionError):
                await wait_until(gone, 10.0, "containerd's processes to exit")
            left = await ctd.leftovers()
            if server is not None:
                await server.stop()
            await network.remove_idle_hostport_chains()  # portmap never removes its own
            assert not left, f"containerd left {left}"


async def _teardown(c: Cluster) -> None:
    """Delete every pod, let the agent clean up, stop it; fail on anything left behind."""
    if not c.agent.running:
        await c.start_agent()
    pods = await c.client.list(POD_RES)
    for p in pods.get("items") or []:
        m = p["metadata"]
        with contextlib.suppress(Exception):
            await c.client.delete(POD_RES, m["name"], m["namespace"], grace_period=1)
    namespaces = (await c.client.list(NS_RES)).get("items") or []
    for ns in namespaces:
        name = ns["metadata"]["name"]
        if name.startswith("e2e-"):
            await c.kubectl("delete", "namespace", name, "--wait=false")

    async def no_pods() -> bool:
        items = (await c.client.list(POD_RES)).get("items") or []
        return not items

    await wait_until(no_pods, 120.0, "every pod to be deleted")

    async def clean() -> bool:
        return not await c.leftovers()

    try:
        await wait_until(clean, 60.0, "the node to be clean")
    except AssertionError:
        raise AssertionError(f"left behind: {await c.leftovers()}\n{c.agent.log_tail()}") from None
    rc = await c.agent.stop()
    assert rc == 0, f"agent exited with {rc}:\n{c.agent.log_tail()}"
    left = await asyncio.to_thread(c.cgroups_left)
    assert not left, f"cgroups left: {left}"


def pod_manifest(
    name: str,
    command: list[str],
    *,
    image: str = busybox.BUSYBOX_IMAGE,
    **spec: Any,
) -> Obj:
    container = {"name": spec.pop("container_name", "main"), "image": image, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 2, **spec},
    }


def container_status(pod: Obj, name: str = "main") -> Obj:
    for st in pod.get("status", {}).get("containerStatuses") or []:
        if st["name"] == name:
            return st
    return {}


def is_running(pod: Obj) -> bool:
    st = pod.get("status", {})
    return st.get("phase") == "Running" and all(
        "running" in (s.get("state") or {}) for s in st.get("containerStatuses") or [{}]
    )


def is_ready(pod: Obj) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
    return conds.get("Ready") == "True"


def container_id(pod: Obj, name: str = "main") -> str:
    return str(container_status(pod, name).get("containerID", "")).split("://", 1)[-1]


async def exec_in(c: Cluster, pod: Obj, cmd: list[str], name: str = "main") -> tuple[int, str]:
    """Run `cmd` in a container of `pod` through CRI ExecSync: (exit code, stdout)."""
    r = await c.rt.exec_sync(container_id(pod, name), cmd, exec_timeout=30)
    return r.exit_code, r.stdout.decode()


def in_namespace(obj: Obj, namespace: str) -> Obj:
    return {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}


def dump_yaml(obj: Obj) -> str:
    return yaml.safe_dump(obj)


def agent_ssl(c: Cluster, user: str) -> ssl.SSLContext:
    """TLS to the node's agent: trusting the cluster CA, presenting a client certificate for
    `user` from it ("": none). Blocking."""
    pki = certs.Pki(c.base / "server" / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if user:
        cert, key = certs.issue_client_cert(pki, user, [])
        cert_file, key_file = c.base / f"{user}.crt", c.base / f"{user}.key"
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


async def agent_get(c: Cluster, path: str, user: str = "kybern-metrics-server") -> tuple[int, Any]:
    """(status, JSON body) of a GET to the node's agent as `user`."""
    node = await c.node_obj()
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    ctx = await asyncio.to_thread(agent_ssl, c, user)
    async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}{path}", ssl=ctx) as r:
        return r.status, await r.json()
