"""The runtime actions of a pod worker, each one step of kubelet's SyncPod/KillPod: creating a
sandbox (log directory, CRI RunPodSandbox, the managed /etc/hosts), starting one container
(image by pull policy, environment, mounts, termination message file, CreateContainer and
StartContainer, then the postStart hook; failures become the container's waiting reason and a
Warning event), killing one container (preStop hook within the grace period, then StopContainer
with what is left of it, at least 2 s as kubelet does), and tearing a pod's runtime state down
(stop and remove containers and sandboxes, remove the pod's cgroups). `Context` carries what
every worker shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kybern.agent import (
    common,
    containers,
    csivolumes,
    env,
    images,
    objects,
    runtime,
    sandbox,
    volumes,
)
from kybern.agent import probes as probing
from kybern.client import events, rest
from kybern.cri import api, errors
from kybern.cri import client as cri

log = logging.getLogger("kybern.agent")
Obj = common.Obj
MIN_GRACE = 2  # kubelet's minimumGracePeriodInSeconds
SANDBOX_CALL_GRACE = 60.0  # how long a stopping agent lets a sandbox call finish
T = TypeVar("T")


async def uncut(call: Awaitable[T]) -> T:
    """Await a sandbox call (run, stop) to its end even when the caller is cancelled meanwhile
    (the agent stopping), for up to `SANDBOX_CALL_GRACE` seconds: a call cut short makes the
    runtime kill its CNI plugins midway, which leaves addresses and NAT rules behind that no
    later DEL can find. The cancellation is raised once the call is over."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task}, timeout=SANDBOX_CALL_GRACE)
        if not task.done():
            task.cancel()
        raise


@dataclass
class Context:
    """What every pod worker shares."""

    client: rest.Client
    rt: cri.RuntimeClient
    cache: runtime.RuntimeCache
    images: images.ImageManager
    volumes: volumes.Volumes
    objects: objects.ObjectStore
    probes: probing.ProbeManager
    handlers: probing.Handlers
    node_name: str
    root: Path
    pod_logs_dir: Path
    host_ips: list[str] = field(default_factory=list)
    dns: sandbox.DNSSettings = field(default_factory=sandbox.DNSSettings)
    cgroup_root: str = "/"
    runtime_name: str = "containerd"
    memory_capacity: int = 0
    allocatable: dict[str, str] = field(default_factory=dict)
    recorder: events.EventRecorder | None = None
    network_ready: Callable[[], bool] = lambda: True
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    host_hosts: str = ""  # the host's /etc/hosts, for hostNetwork pods
    start_slots: asyncio.Semaphore | None = None  # pods starting containers at once
    csi: csivolumes.CSIVolumes | None = None  # claims and CSI inline volumes

    def event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(pod, type_, reason, message)


class StartError(Exception):
    """A container could not be started: `reason` becomes its waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def go_duration(seconds: float) -> str:
    """Go's time.Duration formatting for whole seconds (`10s`, `1m20s`, `5m0s`)."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def pod_context(ctx: Context, pod: Obj, sb: runtime.SandboxInfo | None) -> env.PodContext:
    ips = list(sb.ips) if sb is not None else []
    if common.host_network(pod):
        ips = list(ctx.host_ips[:1])
    return env.PodContext(ips, list(ctx.host_ips), ctx.allocatable)


def sandbox_inputs(ctx: Context, pod: Obj, attempt: int) -> sandbox.SandboxInputs:
    return sandbox.SandboxInputs(
        attempt=attempt,
        log_directory=sandbox.pod_log_directory(str(ctx.pod_logs_dir), pod),
        dns=ctx.dns,
        cgroup_root=ctx.cgroup_root,
    )


def sandbox_config(ctx: Context, pod: Obj, attempt: int) -> api.PodSandboxConfig:
    return sandbox.sandbox_config(pod, sandbox_inputs(ctx, pod, attempt))


async def run_sandbox(ctx: Context, pod: Obj, attempt: int) -> str:
    """RunPodSandbox for `pod` (attempt `attempt`); returns the sandbox id."""
    cfg = sandbox_config(ctx, pod, attempt)
    await asyncio.to_thread(Path(cfg.log_directory).mkdir, parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        sid = await uncut(ctx.rt.run_pod_sandbox(cfg))
        log.debug("pod %s: sandbox in %.3fs", common.pod_key(pod), time.monotonic() - started)
        return sid
    except errors.CRIError as e:
        msg = f"Failed to create pod sandbox: {e.details or e}"
        ctx.event(pod, "Warning", "FailedCreatePodSandBox", msg)
        raise StartError("ContainerCreating", msg) from None


async def write_hosts(ctx: Context, pod: Obj, sb: runtime.SandboxInfo) -> str:
    """Write the pod's managed /etc/hosts; returns its host path."""
    path = ctx.volumes.pod_dir(common.pod_uid(pod)) / "etc-hosts"
    text = sandbox.hosts_file(pod, sb.ips, ctx.dns.cluster_domain, ctx.host_hosts)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".etc-hosts.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    await asyncio.to_thread(write)
    return str(path)


async def _termination_file(ctx: Context, pod: Obj, name: str) -> str:
    d = ctx.volumes.pod_dir(common.pod_uid(pod)) / "containers" / name
    path = d / secrets.token_hex(4)

    def create() -> None:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
        os.close(fd)
        os.chmod(path, 0o666)

    await asyncio.to_thread(create)
    return str(path)


async def start_container(
    ctx: Context,
    pod: Obj,
    spec: Obj,
    kind: str,
    sb: runtime.SandboxInfo,
    restart_count: int,
    volume_paths: dict[str, str],
    etc_hosts: str,
    devices: dict[str, str] | None = None,
    read_only: set[str] | None = None,
) -> str:
    """Pull, create and start one container (and run its postStart hook); returns its id.
    `devices` are the pod's block volumes (name -> device file), `read_only` the volumes
    mounted read-only whatever the volumeMount says. Raises StartError with the waiting reason
    on failure."""
    name = str(spec.get("name", ""))
    ns = str(common.meta(pod).get("namespace", ""))
    sb_cfg = sandbox_config(ctx, pod, sb.attempt)
    pull_secrets: dict[str, Obj] = {}
    for ref in common.spec(pod).get("imagePullSecrets") or []:
        s = ctx.objects.secret(ns, str(ref.get("name", "")))
        if s is not None:
            pull_secrets[str(ref.get("name"))] = s
    try:
        image = await ctx.images.ensure(
            pod,
            spec,
            pull_secrets,
            sb_cfg,
            on_pull=lambda img: ctx.event(pod, "Normal", "Pulling", f'Pulling image "{img}"'),
        )
    except images.ImageError as e:
        typ = "Warning"
        ctx.event(pod, typ, "Failed", e.message)
        if e.reason == "ImagePullBackOff":
            ctx.event(pod, "Normal", "BackOff", e.message)
        raise StartError(e.reason, e.message) from None
    pctx = pod_context(ctx, pod, sb)
    try:
        environment = env.container_env(
            pod, spec, ctx.objects, pctx, env.service_env(pod, ctx.objects.service_list())
        )
        containers.check_non_root(
            pod, spec, image.uid.value if image.HasField("uid") else None, image.username
        )
        files = containers.PodFiles(etc_hosts=etc_hosts)
        if containers.termination_message_path(spec):
            files.termination_log = await _termination_file(ctx, pod, name)
        mounts = containers.mounts(
            pod, spec, volume_paths, files, dict(environment), read_only=read_only or ()
        )
        devs = containers.devices(spec, devices or {})
    except env.ConfigError as e:
        ctx.event(pod, "Warning", "Failed", f"Error: {e}")
        raise StartError("CreateContainerConfigError", str(e)) from None
    for m in mounts:  # a subPath must exist before the runtime bind-mounts it
        if m.host_path.startswith(str(ctx.volumes.pod_dir(common.pod_uid(pod)))):
            await asyncio.to_thread(_ensure_exists, m.host_path)
    cfg = containers.container_config(
        pod,
        spec,
        containers.Inputs(
            kind=kind,
            restart_count=restart_count,
            image=image.id,
            env=environment,
            mounts=mounts,
            devices=devs,
            memory_capacity=ctx.memory_capacity,
        ),
    )
    await asyncio.to_thread((Path(sb_cfg.log_directory) / name).mkdir, parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        cid = await ctx.rt.create_container(sb.id, cfg, sb_cfg)
    except errors.CRIError as e:
        msg = e.details or str(e)
        ctx.event(pod, "Warning", "Failed", f"Error: {msg}")
        raise StartError("CreateContainerError", msg) from None
    ctx.event(pod, "Normal", "Created", f"Created container {name}")
    try:
        await ctx.rt.start_container(cid)
    except errors.CRIError as e:
        msg = e.details or str(e)
        ctx.event(pod, "Warning", "Failed", f"Error: {msg}")
        raise StartError("RunContainerError", msg) from None
    ctx.event(pod, "Normal", "Started", f"Started container {name}")
    log.debug(
        "pod %s: container %s created and started in %.3fs",
        common.pod_key(pod),
        name,
        time.monotonic() - started,
    )
    hook = (spec.get("lifecycle") or {}).get("postStart")
    if isinstance(hook, dict):
        host = "127.0.0.1" if common.host_network(pod) else (sb.ips[0] if sb.ips else "")
        outcome = await ctx.handlers.run(hook, spec, cid, host, float(common.grace_period(pod)))
        if not outcome.ok:
            msg = f"PostStartHook failed: {outcome.message}"
            ctx.event(pod, "Warning", "FailedPostStartHook", msg)
            with contextlib.suppress(errors.CRIError):
                await ctx.rt.stop_container(cid, common.grace_period(pod))
            raise StartError("PostStartHookError", msg)
    return cid


def _ensure_exists(path: str) -> None:
    p = Path(path)
    if not p.exists():
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, 0o777)


async def kill_container(
    ctx: Context,
    pod: Obj,
    info: runtime.ContainerInfo,
    grace: int,
    message: str = "",
) -> None:
    """Stop one container: its preStop hook first (within `grace`), then StopContainer with the
    remaining grace period."""
    spec = next(
        (
            c
            for c in common.containers(pod) + common.containers(pod, "initContainers")
            if c.get("name") == info.name
        ),
        {},
    )
    ctx.event(pod, "Normal", "Killing", message or f"Stopping container {info.name}")
    started = time.monotonic()
    hook = (spec.get("lifecycle") or {}).get("preStop")
    if isinstance(hook, dict) and info.running and grace > 0:
        host = "127.0.0.1" if common.host_network(pod) else ""
        if not host:
            with contextlib.suppress(errors.CRIError):
                rtp = await ctx.cache.pod(info.labels.get(common.POD_UID_LABEL, ""))
                sb = next((s for s in rtp.sandboxes if s.id == info.sandbox_id), None)
                host = sb.ips[0] if sb and sb.ips else "127.0.0.1"
        try:
            outcome = await asyncio.wait_for(
                ctx.handlers.run(hook, spec, info.id, host, float(grace)), grace
            )
            if not outcome.ok:
                ctx.event(pod, "Warning", "FailedPreStopHook", outcome.message)
        except TimeoutError:
            ctx.event(pod, "Warning", "FailedPreStopHook", "preStop hook timed out")
    remaining = max(int(grace - (time.monotonic() - started)), MIN_GRACE)
    try:
        await ctx.rt.stop_container(info.id, remaining)
    except errors.NotFoundError:
        pass
    ctx.probes.results.forget(info.id)


async def kill_all(ctx: Context, pod: Obj, rtp: runtime.PodRuntime, grace: int) -> None:
    """Stop every live container of the pod at once (each with the grace period)."""
    live = rtp.running()
    await asyncio.gather(*(kill_container(ctx, pod, c, grace) for c in live))


async def stop_sandboxes(ctx: Context, rtp: runtime.PodRuntime) -> None:
    for sb in rtp.sandboxes:
        if sb.ready:
            with contextlib.suppress(errors.NotFoundError):
                await uncut(ctx.rt.stop_pod_sandbox(sb.id))


async def remove_all(ctx: Context, rtp: runtime.PodRuntime) -> None:
    """Remove every container and sandbox of the pod (stopping what still runs)."""
    for c in rtp.containers:
        with contextlib.suppress(errors.NotFoundError):
            if c.state != runtime.EXITED:
                await ctx.rt.stop_container(c.id, 0)
            await ctx.rt.remove_container(c.id)
    for sb in rtp.sandboxes:
        with contextlib.suppress(errors.NotFoundError):
            await uncut(ctx.rt.stop_pod_sandbox(sb.id))
            await ctx.rt.remove_pod_sandbox(sb.id)
    ctx.cache.forget([c.id for c in rtp.containers] + [s.id for s in rtp.sandboxes])


async def cleanup_pod(ctx: Context, uid: str, pod: Obj | None) -> None:
    """Everything of a pod on the node after its containers are gone: volumes, the pod's log
    directory, its cgroups, watches, probe workers, image pull back-off. CSI volumes are
    unpublished first; if a driver cannot do that yet (CSIError) nothing else is removed and
    the caller retries."""
    await ctx.probes.stop_pod(uid)
    if ctx.csi is not None:
        await ctx.csi.teardown(uid)
    await ctx.volumes.teardown(uid)
    await ctx.objects.release(uid)
    ctx.images.forget_pod(uid)
    if pod is not None:
        parents = [sandbox.cgroup_parent(pod, ctx.cgroup_root)]
    else:  # an orphan: its QoS class is unknown, try each
        root = ctx.cgroup_root.rstrip("/")
        parents = [f"{root}/kubepods{q}/pod{uid}" for q in ("", "/burstable", "/besteffort")]
    logs_dir = ctx.pod_logs_dir

    def remove_files() -> None:
        for parent in parents:
            sandbox.remove_cgroup(parent)
        with contextlib.suppress(OSError):
            for d in logs_dir.iterdir():
                if d.name.endswith("_" + uid):
                    shutil.rmtree(d, ignore_errors=True)

    await asyncio.to_thread(remove_files)
