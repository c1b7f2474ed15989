"""The container runtime `kybern up` manages itself, as k3s does: a containerd with its config,
socket, state and log below `<data-dir>/containerd` (kybern.cri.containerd), the sandbox image
(and busybox) built by kybern from Debian's busybox-static and imported when missing, restarted
with a back-off if it exits, and on `stop` every container and sandbox removed and containerd
stopped. `LocalNode` is the node of `kybern up`: this runtime (or a given endpoint) and the agent,
started in the background; on stop it also removes the pod bridge once no pod is left."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path

from kybern.agent import agent, httpserver, network, sandbox
from kybern.agent import serving as serving_
from kybern.client import rest
from kybern.cri import containerd
from kybern.images import busybox, oci

log = logging.getLogger("kybern.agent")
RESTART_BACKOFF = (1.0, 30.0)


def build_layout() -> bytes:
    """The OCI layout tarball of kybern's busybox and pause images. Blocking."""
    bb, pause = busybox.build_all(busybox.read_busybox())
    return oci.layout_tar([bb, pause])


class ManagedRuntime:
    def __init__(self, base_dir: Path, *, log_level: str = "info") -> None:
        self.base_dir = base_dir
        self.ctd = containerd.Containerd(
            base_dir, sandbox_image=busybox.PAUSE_IMAGE, log_level=log_level
        )
        self.restarts = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return self.ctd.endpoint

    @property
    def cni_conf_dir(self) -> Path:
        return self.ctd.config.cni_conf_dir

    @property
    def cni_bin_dir(self) -> str:
        return self.ctd.config.cni_bin_dir

    async def start(self, timeout: float = 60.0) -> None:
        await asyncio.to_thread(self.base_dir.mkdir, parents=True, exist_ok=True)
        await self.ctd.start(timeout)
        await self._ensure_images()
        self._task = asyncio.create_task(self._supervise(), name="containerd-supervisor")
        log.info("containerd is running at %s", self.ctd.endpoint)

    async def _ensure_images(self) -> None:
        async with self.ctd.client() as rt:
            present = [
                await rt.image_status(i) for i in (busybox.PAUSE_IMAGE, busybox.BUSYBOX_IMAGE)
            ]
        if all(p is not None for p in present):
            return
        layout = await asyncio.to_thread(build_layout)
        await self.ctd.import_layout(layout)

    async def _supervise(self) -> None:
        delay = RESTART_BACKOFF[0]
        while True:
            code = await self.ctd.wait()
            if self._stopping:
                return
            log.error("containerd exited with %s; restarting it in %.0fs: %s", code, delay,
                      (await self.ctd.log_tail(500)).strip())  # fmt: skip
            await asyncio.sleep(delay)
            try:
                await self.ctd.start()
                self.restarts += 1
                delay = RESTART_BACKOFF[0]
            except (RuntimeError, OSError) as e:
                log.error("cannot restart containerd: %s", e)
                delay = min(delay * 2, RESTART_BACKOFF[1])

    async def stop(self) -> None:
        """Remove every container and sandbox, stop containerd (the state stays for the next
        start)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.ctd.stop()


async def delete_link(name: str) -> None:
    """`ip link del NAME` if it exists (the pod bridge once no pod uses it)."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "link", "del", name,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()


class LocalNode:
    """The node of `kybern up`: the agent against the given runtime endpoint, or against a
    containerd of its own below `data_dir/containerd`. `start` returns at once (the runtime and
    the agent come up in the background, after the API is ready); `stop` stops the agent and, if
    it is ours, the runtime with every pod."""

    def __init__(
        self,
        client: rest.Client,
        data_dir: Path,
        *,
        node_name: str = "",
        endpoint: str = "",
        node_ips: list[str] | None = None,
        plugin_registration_dir: Path | None = None,
        serving: serving_.ServingConfig | None = None,
    ) -> None:
        self.client = client
        self.node_ips = node_ips or []
        self.plugin_registration_dir = plugin_registration_dir or data_dir / "plugins_registry"
        self.serving = serving or serving_.ServingConfig()
        self.data_dir = data_dir
        self.node_name = node_name or agent.default_node_name()
        self.endpoint = endpoint
        self.runtime: ManagedRuntime | None = None
        self.agent: agent.Agent | None = None
        self.server: httpserver.AgentServer | None = None
        self.started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_logged(), name="local-node")

    async def _run_logged(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the control plane runs on without its node
            log.error("cannot start the node %s: %s", self.node_name, e)
            raise

    async def _run(self) -> None:
        endpoint = self.endpoint
        settings = network.Settings(ipam_dir=str(self.data_dir / "agent" / "cni" / "networks"))
        pinned: tuple[str, ...] = ()
        if not endpoint:
            self.runtime = ManagedRuntime(self.data_dir / "containerd")
            await self.runtime.start()
            endpoint = self.runtime.endpoint
            settings = dataclasses.replace(
                settings,
                conf_dir=self.runtime.cni_conf_dir,
                bin_dirs=(self.runtime.cni_bin_dir,),
            )
            pinned = (busybox.PAUSE_IMAGE,)
        cfg = agent.AgentConfig(
            node_name=self.node_name,
            runtime_endpoint=endpoint,
            data_dir=self.data_dir / "agent",
            cni=settings,
            pinned_images=pinned,
            node_ips=self.node_ips,
            plugin_registration_dir=self.plugin_registration_dir,
        )
        self.agent = agent.Agent(self.client, cfg)
        self.server = await serving_.start(self.agent, self.serving, b"")
        await self.agent.start()
        self.started.set()

    async def wait_started(self) -> None:
        """Until the agent runs (raises what made the start fail)."""
        assert self._task is not None
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        cgroups = self.agent.pod_cgroups() if self.agent is not None else []
        if self.server is not None:
            await self.server.stop()
        if self.agent is not None:
            await self.agent.stop()
        if self.runtime is not None:
            await self.runtime.stop()
            await delete_link(network.BRIDGE_NAME)
            with contextlib.suppress(OSError):
                await network.remove_leftover_rules(network.NETWORK_NAME)
                await network.remove_idle_hostport_chains()
            await asyncio.to_thread(_remove_cgroups, cgroups)


def _remove_cgroups(parents: list[str]) -> None:
    """The pods' cgroups and, if then empty, the QoS levels above them. Blocking."""
    for parent in parents:
        sandbox.remove_cgroup(parent)
    for level in ("/kubepods/besteffort", "/kubepods/burstable", "/kubepods"):
        sandbox.remove_if_empty(level)
