"""Helpers of the streaming end-to-end tests: a real `kybern server` child process (API machinery
only: no controller or scheduler touches the test's objects) driven from asyncio, a small REST
client with the admin certificate, `kubectl` run as an asyncio subprocess (the test's event loop
keeps serving the in-process agent meanwhile), and `CriPod`, a pod made directly through CRI
(sandbox + containers, as a kubelet names them) together with its Pod object, bound to the test
node and with a status that points at the CRI containers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from kybern.cri import RuntimeClient, api, messages
from kybern.images import busybox

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def kubectl_env(kubeconfig: Path) -> dict[str, str]:
    """The environment for a kubectl run against the server of `kubeconfig`: its discovery
    cache lives beside the kubeconfig, so a later server on a reused port never sees another
    server's API groups (kubectl keys the shared ~/.kube/cache by host:port only)."""
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(kubeconfig.parent / "kubectl-cache"),
    }


NAMESPACE = "default"


class KybernServer:
    """`python -m kybern server` on a data dir, API machinery only."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.log_path = base / "server.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._http: aiohttp.ClientSession | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.data_dir / "pki"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return ctx

    async def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kybern", "server", "--data-dir", str(self.data_dir),
                "--port", "0", "--disable-controllers=*", "--disable-scheduler",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.kubeconfig.exists():
            await self._alive(deadline)
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        self.url = cfg["clusters"][0]["cluster"]["server"]
        self._http = aiohttp.ClientSession()
        while True:
            await self._alive(deadline)
            with contextlib.suppress(aiohttp.ClientError):
                async with self._http.get(self.url + "/readyz", ssl=self.ssl_context()) as r:
                    if r.status == 200:
                        return

    async def _alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"kybern server exited: {self.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"kybern server did not start: {self.log_tail()}")
        await asyncio.sleep(0.05)

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        assert self._http is not None
        headers = {}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        async with self._http.request(
            method, self.url + path, json=body, ssl=self.ssl_context(), headers=headers, **kw
        ) as r:
            data = await r.json(content_type=None)
            if r.status >= 300:
                raise AssertionError(f"{method} {path}: {r.status} {data}")
            return data

    async def kubectl(
        self, *args: str, input: bytes | None = None, timeout: float = 60.0
    ) -> tuple[int, str, str]:
        """Run the real kubectl: (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=kubectl_env(self.kubeconfig),
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode(), err.decode()

    async def kubectl_proc(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            KUBECTL, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=kubectl_env(self.kubeconfig),
        )  # fmt: skip


async def register_node(server: KybernServer, name: str, port: int) -> None:
    """A Node whose agent listens on 127.0.0.1:`port` (what the agent's registration writes)."""
    await server.request("POST", "/api/v1/nodes", {"metadata": {"name": name}})
    status = {
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    await server.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": status})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    name: str
    command: list[str]
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False


@dataclass
class CriPod:
    """A pod run through CRI (hostNetwork sandbox) and its Pod object."""

    name: str
    uid: str = ""
    sandbox_id: str = ""
    sandbox_config: api.PodSandboxConfig | None = None
    containers: dict[str, str] = field(default_factory=dict)  # name -> current container id
    log_dir: Path = Path()

    @classmethod
    async def create(
        cls,
        server: KybernServer,
        rt: RuntimeClient,
        node: str,
        name: str,
        containers: list[Container],
        log_root: Path,
    ) -> CriPod:
        spec = {
            "nodeName": node,
            "hostNetwork": True,
            "containers": [
                {
                    "name": c.name,
                    "image": busybox.BUSYBOX_IMAGE,
                    "command": c.command,
                    "stdin": c.stdin,
                    "stdinOnce": c.stdin_once,
                    "tty": c.tty,
                }
                for c in containers
            ],
        }
        obj = await server.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            {"metadata": {"name": name}, "spec": spec},
        )
        pod = cls(name, obj["metadata"]["uid"])
        pod.log_dir = log_root / f"{NAMESPACE}_{name}_{pod.uid}"
        labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": NAMESPACE,
                  "io.kubernetes.pod.uid": pod.uid}  # fmt: skip
        pod.sandbox_config = messages.sandbox_config(
            name,
            NAMESPACE,
            pod.uid,
            host_network=True,
            log_directory=str(pod.log_dir),
            labels=labels,
        )
        pod.sandbox_id = await rt.run_pod_sandbox(pod.sandbox_config)
        for c in containers:
            await pod.run_container(rt, c)
        await pod.report(server, rt)
        return pod

    async def run_container(self, rt: RuntimeClient, c: Container, attempt: int = 0) -> str:
        assert self.sandbox_config is not None
        cc = messages.container_config(
            c.name, busybox.BUSYBOX_IMAGE, command=c.command, log_path=f"{c.name}/{attempt}.log",
            attempt=attempt, stdin=c.stdin, stdin_once=c.stdin_once, tty=c.tty,
            labels={"io.kubernetes.container.name": c.name, "io.kubernetes.pod.uid": self.uid},
        )  # fmt: skip
        cid = await rt.create_container(self.sandbox_id, cc, self.sandbox_config)
        await rt.start_container(cid)
        self.containers[c.name] = cid
        return cid

    async def report(self, server: KybernServer, rt: RuntimeClient) -> None:
        """Write the pod's status from CRI, as the agent would: Running, one status each."""
        statuses = []
        for name, cid in self.containers.items():
            s = (await rt.container_status(cid)).status
            state: dict[str, Any] = {"running": {"startedAt": _now()}}
            if s.state == api.CONTAINER_EXITED:
                state = {"terminated": {"exitCode": s.exit_code, "reason": s.reason or "Completed",
                                        "containerID": f"containerd://{cid}"}}  # fmt: skip
            statuses.append(
                {"name": name, "ready": "running" in state, "started": "running" in state,
                 "restartCount": s.metadata.attempt, "image": busybox.BUSYBOX_IMAGE,
                 "imageID": s.image_ref, "containerID": f"containerd://{cid}", "state": state}
            )  # fmt: skip
        status = {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                  "startTime": _now(), "containerStatuses": statuses}  # fmt: skip
        await server.request(
            "PATCH", f"/api/v1/namespaces/{NAMESPACE}/pods/{self.name}/status", {"status": status}
        )

    async def remove(self, rt: RuntimeClient) -> None:
        with contextlib.suppress(Exception):
            await rt.stop_pod_sandbox(self.sandbox_id)
        for c in await rt.list_containers(
            messages.container_filter(pod_sandbox_id=self.sandbox_id)
        ):
            await rt.stop_container(c.id, 0)
            await rt.remove_container(c.id)
        await rt.remove_pod_sandbox(self.sandbox_id)
