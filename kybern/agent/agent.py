"""The node agent, wired: `Agent(client, AgentConfig(...))` connects to the CRI runtime, registers
the node and keeps its Lease and status, waits for the node's podCIDR and writes the CNI
configuration, watches the pods bound to the node (`spec.nodeName=<node>`) and the static pod
manifests, runs one worker per pod, relists the runtime (PLEG), probes containers, collects
garbage, and on start adopts what the runtime already runs (its containers keep running; orphans
of pods that are gone are removed). CSI drivers register in the plugin registration directory
and the pods' claims and inline CSI volumes are staged and published through them
(`csivolumes`); volumes an earlier run mounted are reconstructed, and those no pod uses any more
cleaned up. `stop()` leaves the containers (and their volumes) in place, as a kubelet that exits
does. Lookup helpers (`find_container`, `pod`, `volume_stats`) serve the agent's HTTPS server and
statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from kybern.agent import (
    actions,
    backoff,
    common,
    csivolumes,
    gc,
    images,
    network,
    node,
    objects,
    payload,
    probes,
    runtime,
    sandbox,
    static,
    volumes,
    workers,
)
from kybern.client import events, informer, rest
from kybern.cri import client, errors

log = logging.getLogger("kybern.agent")
Obj = common.Obj
RUNTIME_CHECK = 5.0
CNI_LOAD_TIMEOUT = 10.0


@dataclass
class AgentConfig:
    node_name: str
    runtime_endpoint: str
    data_dir: Path
    pod_logs_dir: Path | None = None  # default: <data_dir>/pod-logs
    cni: network.Settings = field(default_factory=network.Settings)
    pod_manifest_path: Path | None = None
    plugin_registration_dir: Path | None = None  # CSI sockets; default: <data_dir>/plugins_registry
    node_ips: list[str] = field(default_factory=list)  # default: the default route's address
    node_labels: dict[str, str] = field(default_factory=dict)
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    resolv_conf: Path = Path("/etc/resolv.conf")
    cgroup_root: str = "/"
    kubelet_port: int = 10250
    max_pods: int = node.MAX_PODS
    crashloop_base: float = backoff.DEFAULT_BASE
    crashloop_cap: float = backoff.DEFAULT_CAP
    heartbeat_interval: float = 10.0
    status_update_interval: float = 10.0
    pleg_period: float = 1.0
    runtime_timeout: float = 120.0
    runtime_wait: float = 60.0  # how long to wait for the runtime at start
    events: bool = True
    gc: gc.Policy = field(default_factory=gc.Policy)
    pinned_images: tuple[str, ...] = ()
    parallel_starts: int = 0  # pods starting at once (0: twice the CPUs)

    @property
    def logs_dir(self) -> Path:
        return self.pod_logs_dir or self.data_dir / "pod-logs"

    @property
    def registration_dir(self) -> Path:
        return self.plugin_registration_dir or self.data_dir / "plugins_registry"


@dataclass
class ContainerRef:
    """A container the HTTPS server serves logs/exec/attach for."""

    pod: Obj
    name: str
    container_id: str
    sandbox_id: str
    log_path: str
    previous_log_path: str = ""
    running: bool = False


class Agent:
    def __init__(self, client_: rest.Client, cfg: AgentConfig) -> None:
        self.client = client_
        self.cfg = cfg
        self.rt = client.RuntimeClient(cfg.runtime_endpoint, timeout=cfg.runtime_timeout)
        self.version: client.RuntimeVersion | None = None
        self.health = node.Health()
        self.ready = asyncio.Event()  # set once the agent runs pods
        self._session: aiohttp.ClientSession | None = None
        self._watch_client: rest.Client | None = None
        self._broadcaster: events.EventBroadcaster | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._image_list: list[Obj] = []
        self.node: node.NodeManager | None = None
        self.workers: workers.PodWorkers | None = None
        self.static: static.StaticPods | None = None
        self.pleg: runtime.PLEG | None = None
        self.gc: gc.GarbageCollector | None = None
        self.ctx: actions.Context | None = None
        self.objects: objects.ObjectStore | None = None
        self.pod_informer: informer.Informer | None = None
        self.csi: csivolumes.CSIVolumes | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        self.version = await self.rt.wait_ready(cfg.runtime_wait)
        log.info(
            "node %s: runtime %s %s at %s",
            cfg.node_name,
            self.version.runtime_name,
            self.version.runtime_version,
            cfg.runtime_endpoint,
        )
        for d in (cfg.data_dir, cfg.logs_dir):
            await asyncio.to_thread(d.mkdir, parents=True, exist_ok=True)
        host_ips = cfg.node_ips or [await asyncio.to_thread(node.default_address)]
        await self._check_runtime()
        self.node = node.NodeManager(
            self.client,
            node.NodeConfig(
                name=cfg.node_name,
                data_dir=cfg.data_dir,
                addresses=host_ips,
                labels=cfg.node_labels,
                kubelet_port=cfg.kubelet_port,
                max_pods=cfg.max_pods,
                heartbeat_interval=cfg.heartbeat_interval,
                status_update_interval=cfg.status_update_interval,
            ),
            runtime_version=self._runtime_version,
            health=lambda: self.health,
            images=lambda: self._image_list,
        )
        await self._refresh_images()
        await self.node.start()
        machine = self.node.machine
        _, allocatable = node.capacity(machine, cfg.max_pods)
        if cfg.events:
            self._broadcaster = events.EventBroadcaster(self.client)
            self._broadcaster.start()
        recorder = (
            self._broadcaster.new_recorder("kubelet", cfg.node_name)
            if self._broadcaster is not None
            else None
        )
        # probes open a connection each time, as kubelet's do (no keep-alive into pods)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        # watches of configMaps/secrets hold a connection each: a pool of their own, unbounded
        self._watch_client = rest.Client(
            self.client.cfg, user_agent=self.client.user_agent, qps_limit=0
        )
        self.objects = objects.ObjectStore(self._watch_client, self._object_changed)
        self.objects.start()
        handlers = probes.Handlers(self.rt, self._session)
        cache = runtime.RuntimeCache(self.rt)
        self.ctx = actions.Context(
            client=self.client,
            rt=self.rt,
            cache=cache,
            images=images.ImageManager(
                self.rt, backoff_base=cfg.crashloop_base, backoff_cap=cfg.crashloop_cap
            ),
            volumes=volumes.Volumes(self.client, cfg.data_dir, self.objects),
            objects=self.objects,
            probes=probes.ProbeManager(handlers, self._probe_changed, self._probe_failed),
            handlers=handlers,
            node_name=cfg.node_name,
            root=cfg.data_dir,
            pod_logs_dir=cfg.logs_dir,
            host_ips=host_ips,
            dns=await asyncio.to_thread(self._dns_settings),
            cgroup_root=cfg.cgroup_root,
            runtime_name=self.version.runtime_name,
            memory_capacity=machine.memory,
            allocatable=allocatable,
            recorder=recorder,
            network_ready=lambda: self.health.network_ready,
            backoff_base=cfg.crashloop_base,
            backoff_cap=cfg.crashloop_cap,
            host_hosts=await asyncio.to_thread(_read_text, Path("/etc/hosts")),
            start_slots=asyncio.Semaphore(cfg.parallel_starts or 2 * machine.cpus),
        )
        self.csi = csivolumes.CSIVolumes(
            self.client,
            self._watch_client,
            cfg.data_dir,
            cfg.node_name,
            cfg.registration_dir,
            wake=self._csi_changed,
            event=self.ctx.event,
        )
        await self.csi.start()  # drivers registered, earlier mounts reconstructed: before pods
        self.ctx.csi = self.csi
        self.workers = workers.PodWorkers(
            self.ctx, backoff.CrashLoopBackOff(cfg.crashloop_base, cfg.crashloop_cap)
        )
        self._tasks.append(asyncio.create_task(self._network_loop(), name="agent-network"))
        if cfg.pod_manifest_path is not None:
            node_uid = str(common.meta(self.node.node or {}).get("uid", ""))
            self.static = static.StaticPods(
                self.client, self.workers, cfg.node_name, cfg.pod_manifest_path, node_uid=node_uid
            )
            await self.static.start()
        self.pod_informer = informer.Informer(
            self.client, common.PODS, field_selector=f"spec.nodeName={cfg.node_name}"
        )
        self.pod_informer.add_handlers(
            informer.Handlers(self._on_pod, lambda _, p: self._on_pod(p), self._on_pod_deleted)
        )
        self.pod_informer.start()
        await self.pod_informer.wait_synced(60.0)
        self.pleg = runtime.PLEG(self.rt, self._runtime_changed, cfg.pleg_period)
        snapshot = await self.pleg.relist()
        pinned = (*cfg.pinned_images, *await self._sandbox_image())
        self.gc = gc.GarbageCollector(self.ctx, self._live_uids, cfg.gc, pinned_images=pinned)
        await self.gc.cleanup_orphans(snapshot.uids())
        runtime_uids = snapshot.uids()
        await self.csi.adopt(lambda: self._live_uids() | runtime_uids)
        self.pleg.start()
        self.gc.start()
        self._tasks.append(asyncio.create_task(self._runtime_loop(), name="agent-runtime"))
        self.ready.set()
        log.info("node %s: agent running", cfg.node_name)

    async def stop(self) -> None:
        """Stop the agent; the pods' containers keep running."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self.pod_informer is not None:
            await self.pod_informer.stop()
        if self.static is not None:
            await self.static.stop()
        if self.pleg is not None:
            await self.pleg.stop()
        if self.gc is not None:
            await self.gc.stop()
        if self.workers is not None:
            await self.workers.stop()
        if self.ctx is not None:
            await self.ctx.probes.stop()
        if self.csi is not None:
            await self.csi.stop()  # the pods' volumes stay mounted
        if self.objects is not None:
            await self.objects.stop()
        if self.node is not None:
            await self.node.stop()
        if self._broadcaster is not None:
            with contextlib.suppress(Exception):
                await self._broadcaster.flush(timeout=2.0)
            await self._broadcaster.stop()
        if self._session is not None:
            await self._session.close()
        if self._watch_client is not None:
            await self._watch_client.close()
        await asyncio.to_thread(
            sandbox.remove_if_empty, f"{self.cfg.cgroup_root.rstrip('/')}/kubepods/besteffort"
        )
        await asyncio.to_thread(
            sandbox.remove_if_empty, f"{self.cfg.cgroup_root.rstrip('/')}/kubepods/burstable"
        )
        await asyncio.to_thread(
            sandbox.remove_if_empty, f"{self.cfg.cgroup_root.rstrip('/')}/kubepods"
        )
        if self.cfg.cgroup_root.strip("/"):
            await asyncio.to_thread(sandbox.remove_if_empty, self.cfg.cgroup_root)
        await self.rt.close()

    # ---- event routing -----------------------------------------------------------------------

    def _on_pod(self, pod: Obj) -> None:
        if common.is_mirror(pod):
            if self.static is not None:
                self.static.on_mirror(pod)
            return
        if self.workers is not None:
            self.workers.update(pod)

    def _on_pod_deleted(self, pod: Obj) -> None:
        if common.is_mirror(pod):
            if self.static is not None:
                self.static.on_mirror_deleted(pod)
            return
        if self.workers is not None:
            self.workers.remove(common.pod_uid(pod), pod)

    def _runtime_changed(self, uids: set[str]) -> None:
        if self.workers is None:
            return
        self.workers.wake(uids)
        unknown = uids - self._live_uids()
        if unknown and self.gc is not None:
            self._tasks.append(asyncio.create_task(self._cleanup(unknown)))

    async def _cleanup(self, uids: set[str]) -> None:
        if self.gc is not None:
            with contextlib.suppress(errors.CRIError, OSError):
                await self.gc.cleanup_orphans(uids)

    def _probe_changed(self, uid: str) -> None:
        if self.workers is not None:
            self.workers.wake([uid])

    def _probe_failed(self, pod: Obj, container: Obj, kind: str, message: str) -> None:
        if self.ctx is not None:
            what = kind.removesuffix("Probe").capitalize()
            self.ctx.event(pod, "Warning", "Unhealthy", f"{what} probe failed: {message}")

    def _object_changed(self, kind: str, namespace: str, name: str) -> None:
        if self.workers is None:
            return
        uids = [
            uid
            for uid, w in self.workers.workers.items()
            if common.meta(w.pod).get("namespace") == namespace
            and (kind, name) in payload.referenced_objects(w.pod)
        ]
        self.workers.wake(uids, refresh_volumes=True)

    def _csi_changed(self, uids: set[str]) -> None:
        if self.workers is not None:
            self.workers.wake(uids)

    def _live_uids(self) -> set[str]:
        return set(self.workers.workers) if self.workers is not None else set()

    # ---- runtime and network -----------------------------------------------------------------

    def _runtime_version(self) -> str:
        v = self.version
        return f"{v.runtime_name}://{v.runtime_version}" if v else ""

    def _dns_settings(self) -> sandbox.DNSSettings:
        servers, searches, options = sandbox.parse_resolv_conf(_read_text(self.cfg.resolv_conf))
        return sandbox.DNSSettings(
            cluster_dns=tuple(self.cfg.cluster_dns),
            cluster_domain=self.cfg.cluster_domain,
            host_servers=tuple(servers),
            host_searches=tuple(searches),
            host_options=tuple(options),
        )

    async def _check_runtime(self) -> bool:
        """Read the runtime's conditions; True if they changed."""
        st = await self.rt.status()
        conds = {c.type: c for c in st.status.conditions}
        rr = conds.get("RuntimeReady")
        runtime_ready = bool(rr and rr.status)
        changed = runtime_ready != self.health.runtime_ready
        self.health.runtime_ready = runtime_ready
        if not runtime_ready:
            self.health.message = (
                f"container runtime is down: {rr.reason if rr else ''} {rr.message if rr else ''}"
            )
        return changed

    async def _sandbox_image(self) -> list[str]:
        """The runtime's sandbox image, never garbage collected (containerd says it in its
        verbose status)."""
        with contextlib.suppress(errors.CRIError, ValueError, AttributeError):
            st = await self.rt.status(verbose=True)
            image = json.loads(st.info.get("config", "{}")).get("sandboxImage")
            return [str(image)] if image else []
        return []

    async def _refresh_images(self) -> None:
        with contextlib.suppress(errors.CRIError):
            imgs = await self.rt.list_images()
            imgs.sort(key=lambda i: i.size, reverse=True)
            self._image_list = [
                {"names": list(i.repo_tags) + list(i.repo_digests), "sizeBytes": i.size}
                for i in imgs
            ]

    async def _runtime_loop(self) -> None:
        while True:
            await asyncio.sleep(RUNTIME_CHECK)
            try:
                if await self._check_runtime() and self.node is not None:
                    self.node.update_now()
                await self._refresh_images()
            except errors.CRIError as e:
                if self.health.runtime_ready:
                    self.health.runtime_ready = False
                    self.health.message = f"container runtime is down: {e}"
                    if self.node is not None:
                        self.node.update_now()

    async def _network_loop(self) -> None:
        """Wait for the node's podCIDR, write the CNI config, wait until the runtime loaded
        it; keep it in place afterwards."""
        assert self.node is not None
        settings = self.cfg.cni
        pushed = ""
        while True:
            cidrs = self.node.pod_cidrs()
            try:
                state = await asyncio.to_thread(network.ensure, cidrs, settings)
            except OSError as e:
                state = network.State(False, f"cannot write the CNI configuration: {e}")
            if state.ready and cidrs and pushed != cidrs[0]:
                with contextlib.suppress(errors.CRIError):
                    await self.rt.update_runtime_config(cidrs[0])
                pushed = cidrs[0]
            if state.ready and not self.health.network_ready:
                await self._wait_cni_loaded(state.network)
            if state.ready != self.health.network_ready:
                self.health.network_ready = state.ready
                if not state.ready:
                    self.health.message = state.message
                self.node.update_now()
                if state.ready and self.workers is not None:
                    self.workers.wake(list(self.workers.workers))
            elif not state.ready:
                self.health.message = state.message
            self.node.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.node.changed.wait(), 30.0)

    async def _wait_cni_loaded(self, name: str) -> None:
        """Until the runtime reports `name` as the pod network it loaded (containerd's verbose
        status says), or a short timeout (other runtimes do not say)."""
        deadline = time.monotonic() + CNI_LOAD_TIMEOUT
        while time.monotonic() < deadline:
            try:
                st = await self.rt.status(verbose=True)
            except errors.CRIError:
                return
            loaded = network.loaded_pod_network(st.info.get("cniconfig", ""))
            if loaded is None or (loaded and (loaded == name or not name)):
                if not name and loaded in network.PLACEHOLDER_NETWORKS:
                    await asyncio.sleep(0.2)
                    continue
                return
            await asyncio.sleep(0.2)
        log.warning("the runtime has not loaded the CNI network %r yet", name)

    def pod_cgroups(self) -> list[str]:
        """The cgroup parents of the pods the agent runs (for a runtime stopped with them)."""
        if self.workers is None:
            return []
        return [
            sandbox.cgroup_parent(w.pod, self.cfg.cgroup_root)
            for w in self.workers.workers.values()
        ]

    # ---- lookups for the HTTPS server and statistics ------------------------------------------

    async def volume_stats(self) -> list[csivolumes.StatsRow]:
        """(pod uid, pod namespace, pod name, volume name, claim name or "", VolumeStats) of
        every CSI volume of the node's pods whose driver reports usage (NodeGetVolumeStats)."""
        return await self.csi.stats() if self.csi is not None else []

    def pod(self, namespace: str, name: str) -> Obj | None:
        """A pod of this node by namespace and name (API pods and static pods)."""
        if self.workers is not None:
            for w in self.workers.workers.values():
                m = common.meta(w.pod)
                if m.get("namespace") == namespace and m.get("name") == name:
                    return w.pod
        return None

    async def find_container(
        self, namespace: str, name: str, container: str = ""
    ) -> ContainerRef | None:
        """The runtime ids and log files of a container of a pod on this node (the pod's first
        container when `container` is empty); None when there is no such pod or container."""
        pod = self.pod(namespace, name)
        if pod is None or self.ctx is None:
            return None
        names = [str(c.get("name", "")) for c in common.containers(pod)]
        inits = [str(c.get("name", "")) for c in common.containers(pod, "initContainers")]
        want = container or (names[0] if names else "")
        kind = "init" if want in inits and want not in names else "app"
        rtp = await self.ctx.cache.pod(common.pod_uid(pod))
        found = rtp.of(want, kind)
        if not found:
            return None
        cur = found[0]
        prev = found[1] if len(found) > 1 else None
        return ContainerRef(
            pod=pod,
            name=want,
            container_id=cur.id,
            sandbox_id=cur.sandbox_id,
            log_path=cur.log_path,
            previous_log_path=prev.log_path if prev else "",
            running=cur.running,
        )


def _read_text(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text()
    return ""


def default_node_name() -> str:
    return socket.gethostname().lower()
