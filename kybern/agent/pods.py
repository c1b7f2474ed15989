"""The pod workers: one task per pod on the node, level-based like kubelet's pod workers. Each
sync reads the pod's runtime state and brings it toward the spec: volumes, a (new) sandbox,
init containers in order, then the app containers, restarting exited ones by `restartPolicy`
with CrashLoopBackOff, killing those whose liveness/startup probe failed or whose spec changed;
`activeDeadlineSeconds` fails the pod; a terminal pod keeps its containers but loses its
sandbox; a pod marked for deletion is stopped within its grace period, its status written one
last time, its runtime state and volumes removed and then the pod deleted with grace 0 and a
uid precondition. Status is patched only when it changed. Workers wake on pod updates, runtime
changes (PLEG), probe results and their own timers (back-off, deadline, token renewal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from kybern.agent import (
    actions,
    backoff,
    common,
    containers,
    csivolumes,
    payload,
    runtime,
    status,
)
from kybern.api import errors
from kybern.cri import errors as cri_errors
from kybern.csi import errors as csi_errors

log = logging.getLogger("kybern.agent")
Obj = common.Obj
RESYNC = 30.0
RETRY = 2.0
TRANSIENT = (TimeoutError, aiohttp.ClientError, OSError, cri_errors.CRIError, csi_errors.CSIError)
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def should_restart(policy: str, exit_code: int) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


@dataclass
class StatusTarget:
    """Where a worker writes status: the pod itself, or a static pod's mirror."""

    get: Callable[[], Obj | None]


@dataclass
class _State:
    waiting: dict[str, status.Waiting] = field(default_factory=dict)
    volumes_ready: bool = False
    volumes_dirty: bool = True
    etc_hosts: dict[str, str] = field(default_factory=dict)  # sandbox id -> path
    written: Obj | None = None  # the status last written while its event is awaited
    awaiting_rv: str = ""
    awaiting_since: float = 0.0
    forced_phase: str = ""
    forced_reason: str = ""
    first_seen: float = field(default_factory=time.time)


class PodWorker:
    def __init__(
        self,
        ctx: actions.Context,
        pod: Obj,
        *,
        crashloop: backoff.CrashLoopBackOff,
        target: StatusTarget | None = None,
        on_done: Callable[[str], None] | None = None,
        delete_from_api: bool = True,
    ) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid = common.pod_uid(pod)
        self.removed = False  # the pod is gone from its source (API or manifest dir)
        self.target = target or StatusTarget(lambda: self.pod)
        self.on_done = on_done
        self.delete_from_api = delete_from_api
        self.crashloop = crashloop
        self.state = _State()
        self.syncs = 0
        self.status_writes = 0
        self._wake = asyncio.Event()
        self._wake.set()
        self._deadline = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-{common.pod_key(self.pod)}")

    async def stop(self) -> None:
        """Stop working on the pod (the agent stops); its containers keep running."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def update(self, pod: Obj) -> None:
        old = self.pod
        self.pod = pod
        st = self.state
        if st.awaiting_rv and common.meta(pod).get("resourceVersion") == st.awaiting_rv:
            st.awaiting_rv, st.written = "", None
        m_old, m_new = common.meta(old), common.meta(pod)
        if (m_old.get("labels"), m_old.get("annotations")) != (
            m_new.get("labels"),
            m_new.get("annotations"),
        ):
            st.volumes_dirty = True
        self.wake()

    def remove(self, last: Obj | None = None) -> None:
        """The pod is gone from its source; `last` is its final object (its deletion grace
        period, if any, applies)."""
        if last is not None and common.meta(last).get("deletionGracePeriodSeconds") is not None:
            self.pod = last
        self.removed = True
        self.wake()

    def wake(self, refresh_volumes: bool = False) -> None:
        if refresh_volumes:
            self.state.volumes_dirty = True
        self._wake.set()

    def _after(self, seconds: float) -> None:
        """Wake at the latest in `seconds`."""
        when = time.monotonic() + max(seconds, 0.0)
        if not self._deadline or when < self._deadline:
            self._deadline = when

    async def _run(self) -> None:
        try:
            while True:
                timeout = RESYNC if not self._deadline else self._deadline - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(timeout, 0.0))
                self._wake.clear()
                self._deadline = 0.0
                try:
                    done = await self.sync()
                except asyncio.CancelledError:
                    raise
                except (errors.StatusError, *TRANSIENT) as e:
                    log.warning("pod %s: sync failed: %s", common.pod_key(self.pod), e)
                    self._after(RETRY)
                    continue
                except Exception:
                    log.exception("pod %s: sync failed", common.pod_key(self.pod))
                    self._after(RETRY)
                    continue
                if done:
                    break
        finally:
            if self.on_done is not None and (self._task is None or not self._task.cancelled()):
                self.on_done(self.uid)

    # ---- one sync ---------------------------------------------------------------------------

    async def sync(self) -> bool:
        """Bring the pod one step toward what it should be; True when the worker is done."""
        self.syncs += 1
        pod = self.pod
        ctx = self.ctx
        rtp = await ctx.cache.pod(self.uid)
        if self.removed or common.meta(pod).get("deletionTimestamp"):
            await self.terminate(rtp)
            return True
        if common.is_terminal(self.target.get() or pod) or self.state.forced_phase:
            await self._wind_down(rtp)
            await self.write_status(rtp)
            return False
        if await self._deadline_exceeded(rtp):
            return False
        acted = await self._converge(rtp)
        if acted:
            rtp = await ctx.cache.pod(self.uid)
        if ctx.csi is not None and self.state.volumes_ready and csivolumes.has_csi_volumes(pod):
            retry = await ctx.csi.expand(pod)  # a claim's FileSystemResizePending
            if retry is not None:
                self._after(retry)
        self._sync_probes(rtp)
        await self.write_status(rtp)
        if common.is_terminal({"status": self._desired(rtp)}):
            await self._wind_down(rtp)
        return False

    async def _deadline_exceeded(self, rtp: runtime.PodRuntime) -> bool:
        ads = common.spec(self.pod).get("activeDeadlineSeconds")
        if ads is None:
            return False
        api_status = common.status(self.target.get() or self.pod)
        start = common.parse_time(api_status.get("startTime")) or self.state.first_seen
        left = start + int(ads) - time.time()
        if left > 0:
            self._after(left)
            return False
        self.ctx.event(self.pod, "Normal", "DeadlineExceeded", DEADLINE_MESSAGE)
        self.state.forced_phase, self.state.forced_reason = "Failed", "DeadlineExceeded"
        await actions.kill_all(self.ctx, self.pod, rtp, common.grace_period(self.pod))
        rtp = await self.ctx.cache.pod(self.uid)
        await self._wind_down(rtp)
        await self.write_status(rtp)
        return True

    async def _wind_down(self, rtp: runtime.PodRuntime) -> None:
        """A terminal pod: nothing runs, the sandbox is stopped (its address released)."""
        if rtp.running():
            await actions.kill_all(self.ctx, self.pod, rtp, common.grace_period(self.pod))
        if any(sb.ready for sb in rtp.sandboxes):
            await actions.stop_sandboxes(self.ctx, rtp)
        await self.ctx.probes.stop_pod(self.uid)

    async def _converge(self, rtp: runtime.PodRuntime) -> bool:
        """Volumes, sandbox, init containers, app containers; True if anything was done."""
        ctx, pod, st = self.ctx, self.pod, self.state
        if payload.referenced_objects(pod):
            await ctx.objects.use(self.uid, str(common.meta(pod).get("namespace", "")))
        sb = rtp.sandbox
        pctx = actions.pod_context(ctx, pod, sb)
        if not st.volumes_ready:
            try:
                await ctx.volumes.setup(pod, pctx)
                if csivolumes.has_csi_volumes(pod):
                    if ctx.csi is None:
                        raise payload.VolumeError("claims and CSI volumes are not supported here")
                    await ctx.csi.setup(pod)
                st.volumes_ready, st.volumes_dirty = True, False
            except payload.VolumeError as e:
                ctx.event(pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {e}")
                self._waiting_all("ContainerCreating")
                self._after(RETRY)
                return False
            except csivolumes.MountPending as e:  # retried with back-off (or when it changes)
                ctx.event(pod, "Warning", "FailedMount", e.message)
                self._waiting_all("ContainerCreating")
                self._after(e.retry_after)
                return False
        elif st.volumes_dirty or ctx.volumes.refresh_due(self.uid, time.time()) == 0:
            try:  # the containers run on: a failed update of their volumes is retried
                await ctx.volumes.refresh(pod, pctx)
                st.volumes_dirty = False
            except payload.VolumeError as e:
                ctx.event(pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {e}")
                self._after(RETRY)
        due = ctx.volumes.refresh_due(self.uid, time.time())
        if due != float("inf"):
            self._after(max(due, 1.0))
        if ctx.start_slots is None or not self._needs_start(rtp):
            return await self._start(rtp)
        async with ctx.start_slots:  # a bounded number of pods start at once, first come first
            return await self._start(rtp)

    def _needs_start(self, rtp: runtime.PodRuntime) -> bool:
        """Whether the pod has a sandbox or container to start (an approximation that errs
        toward yes)."""
        sb = rtp.sandbox
        if sb is None or not sb.ready:
            return True
        policy = common.restart_policy(self.pod)
        for kind, key in (("init", "initContainers"), ("app", "containers")):
            for spec in common.containers(self.pod, key):
                latest = rtp.latest(str(spec.get("name", "")), kind, sb.id)
                if latest is None or latest.state == runtime.CREATED:
                    return True
                if latest.exited and kind == "app" and should_restart(policy, latest.exit_code):
                    return True
        return False

    async def _start(self, rtp: runtime.PodRuntime) -> bool:
        """The sandbox, init containers, app containers; True if anything was done."""
        ctx, pod = self.ctx, self.pod
        sb = rtp.sandbox
        policy = common.restart_policy(pod)
        if sb is None or not sb.ready:
            ran = any(c.kind == "app" for c in rtp.containers)
            if sb is not None and policy == "Never" and ran:
                return False  # kubelet does not recreate the sandbox of a Never pod that ran
            if not common.host_network(pod) and not ctx.network_ready():
                self._waiting_all("ContainerCreating")
                self._after(RETRY)
                return False
            if rtp.running():
                await actions.kill_all(ctx, pod, rtp, common.grace_period(pod))
            await actions.stop_sandboxes(ctx, rtp)
            attempt = sb.attempt + 1 if sb is not None else 0
            try:
                await actions.run_sandbox(ctx, pod, attempt)
            except actions.StartError as e:
                self._waiting_all(e.reason, e.message)
                self._after(RETRY)
                return True
            rtp = await ctx.cache.pod(self.uid)
            sb = rtp.sandbox
            if sb is None:
                return True
        acted = await self._init_containers(rtp, sb)
        if acted is None:
            return True  # an init container runs or waits
        return await self._app_containers(rtp, sb) or acted

    def _waiting_all(self, reason: str, message: str = "") -> None:
        for c in common.containers(self.pod) + common.containers(self.pod, "initContainers"):
            self.state.waiting[str(c.get("name"))] = status.Waiting(reason, message)

    async def _start_container(
        self, rtp: runtime.PodRuntime, sb: runtime.SandboxInfo, spec: Obj, kind: str
    ) -> bool:
        name = str(spec.get("name", ""))
        restart = rtp.max_restart_count(name, kind) + 1
        hosts = self.state.etc_hosts.get(sb.id)
        if hosts is None:
            hosts = await actions.write_hosts(self.ctx, self.pod, sb)
            self.state.etc_hosts = {sb.id: hosts}
        csi = self.ctx.csi
        paths = self.ctx.volumes.paths(self.uid)
        if csi is not None:
            paths.update(csi.paths(self.uid))
        try:
            await actions.start_container(
                self.ctx,
                self.pod,
                spec,
                kind,
                sb,
                restart,
                paths,
                hosts,
                devices=csi.devices(self.uid) if csi is not None else None,
                read_only=csi.read_only(self.uid) if csi is not None else None,
            )
        except actions.StartError as e:
            self.state.waiting[name] = status.Waiting(e.reason, e.message)
            self._after(RETRY)
            return False
        self.state.waiting.pop(name, None)
        return True

    def _backoff_wait(self, kind: str, c: runtime.ContainerInfo) -> bool:
        """True if the restart of exited container `c` must wait (CrashLoopBackOff recorded
        as its waiting reason, and a wake-up set)."""
        bo = self.crashloop
        key = f"{self.uid}/{kind}/{c.name}"
        finished = (c.finished_at or c.created_at) / 1e9
        wait = bo.in_backoff(key, finished)
        if wait > 0:
            delay = actions.go_duration(bo.current(key))
            m = common.meta(self.pod)
            msg = (
                f"back-off {delay} restarting failed container={c.name} "
                f"pod={m.get('name', '')}_{m.get('namespace', '')}({self.uid})"
            )
            if self.state.waiting.get(c.name) != status.Waiting("CrashLoopBackOff", msg):
                text = f"Back-off restarting failed container {c.name}"
                self.ctx.event(self.pod, "Warning", "BackOff", text)
            self.state.waiting[c.name] = status.Waiting("CrashLoopBackOff", msg)
            self._after(wait)
            return True
        bo.restarted(key, finished)
        return False

    async def _init_containers(
        self, rtp: runtime.PodRuntime, sb: runtime.SandboxInfo
    ) -> bool | None:
        """Run init containers in order: None while one runs or waits, else whether anything
        was done (False: all completed)."""
        policy = common.restart_policy(self.pod)
        for spec in common.containers(self.pod, "initContainers"):
            name = str(spec.get("name", ""))
            latest = rtp.latest(name, "init", sb.id)
            if latest is None:
                await self._start_container(rtp, sb, spec, "init")
                return None
            if latest.state in (runtime.RUNNING, runtime.UNKNOWN):
                return None
            if latest.state == runtime.CREATED:
                with contextlib.suppress(cri_errors.CRIError):
                    await self.ctx.rt.remove_container(latest.id)
                self.ctx.cache.forget([latest.id])
                return None
            if latest.exit_code == 0:
                continue
            if policy == "Never":
                return None  # the pod failed (its phase says so)
            if self._backoff_wait("init", latest):
                return None
            await self._start_container(rtp, sb, spec, "init")
            return None
        return False

    async def _app_containers(self, rtp: runtime.PodRuntime, sb: runtime.SandboxInfo) -> bool:
        acted = False
        pod = self.pod
        policy = common.restart_policy(pod)
        grace = common.grace_period(pod)
        for spec in common.containers(pod):
            name = str(spec.get("name", ""))
            latest = rtp.latest(name, "app", sb.id)
            if latest is None:
                earlier = rtp.latest(name, "app")
                if earlier is not None and earlier.exited:
                    if not should_restart(policy, earlier.exit_code):
                        continue
                acted = await self._start_container(rtp, sb, spec, "app") or acted
                continue
            if latest.state == runtime.RUNNING:
                unhealthy = self.ctx.probes.results.unhealthy.get(latest.id)
                if latest.hash and latest.hash != containers.container_hash(spec):
                    msg = f"Container {name} definition changed, will be restarted"
                    await actions.kill_container(self.ctx, pod, latest, grace, msg)
                    acted = True
                    self.wake()
                elif unhealthy:
                    msg = f"Container {name} failed liveness probe, will be restarted"
                    await actions.kill_container(self.ctx, pod, latest, grace, msg)
                    acted = True
                    self.wake()
                continue
            if latest.state == runtime.UNKNOWN:
                continue
            if latest.state == runtime.CREATED:
                with contextlib.suppress(cri_errors.CRIError):
                    await self.ctx.rt.remove_container(latest.id)
                self.ctx.cache.forget([latest.id])
                acted = True
                self.wake()
                continue
            if not should_restart(policy, latest.exit_code):
                self.state.waiting.pop(name, None)
                continue
            if self._backoff_wait("app", latest):
                continue
            acted = await self._start_container(rtp, sb, spec, "app") or acted
        return acted

    def _sync_probes(self, rtp: runtime.PodRuntime) -> None:
        sb = rtp.sandbox
        host = sb.ips[0] if sb and sb.ips else ""
        if common.host_network(self.pod):
            host = "127.0.0.1"
        running = [c for c in rtp.containers if c.running and c.kind == "app"]
        self.ctx.probes.sync(self.pod, running, host)

    # ---- status -------------------------------------------------------------------------------

    def _desired(self, rtp: runtime.PodRuntime) -> Obj:
        target = self.target.get() or self.pod
        base = dict(self.pod)
        base["status"] = common.status(target)
        st = self.state
        inputs = status.Inputs(
            now=time.time(),
            runtime_name=self.ctx.runtime_name,
            host_ips=self.ctx.host_ips,
            waiting=st.waiting,
            ready=self.ctx.probes.results.ready,
            started=self.ctx.probes.results.started,
            phase=st.forced_phase,
            reason=st.forced_reason,
            message=DEADLINE_MESSAGE if st.forced_reason == "DeadlineExceeded" else "",
        )
        return status.pod_status(base, rtp, inputs)

    async def write_status(self, rtp: runtime.PodRuntime) -> bool:
        """Patch the pod's status if it differs from what the API has (or from what was last
        written, while the watch has not caught up with that write)."""
        target = self.target.get()
        if target is None or self.removed:
            return False
        st = self.state
        if st.awaiting_rv and time.monotonic() - st.awaiting_since > RESYNC:
            st.awaiting_rv, st.written = "", None
        current = common.status(target)
        if st.awaiting_rv and st.written is not None:
            current = st.written
        desired = self._desired(rtp)
        patch = status.status_patch(current, desired)
        if patch is None:
            return False
        m = common.meta(target)
        try:
            resp = await self.ctx.client.patch(
                common.PODS,
                str(m.get("name", "")),
                {"status": patch},
                str(m.get("namespace", "")),
                subresource="status",
            )
        except errors.StatusError as e:
            if e.code == 404:
                return False
            raise
        self.status_writes += 1
        log.debug("pod %s: status written (%s)", common.pod_key(self.pod), desired.get("phase"))
        st.written = desired
        st.awaiting_rv = str(common.meta(resp).get("resourceVersion", ""))
        st.awaiting_since = time.monotonic()
        if target is self.pod:
            self.pod = {**self.pod, "status": common.status(resp)}
        return True

    # ---- termination --------------------------------------------------------------------------

    async def terminate(self, rtp: runtime.PodRuntime) -> None:
        """Stop the pod within its grace period, report it, remove everything of it, then
        delete it from the API (grace 0, uid precondition)."""
        ctx, pod = self.ctx, self.pod
        grace = common.grace_period(pod)
        if rtp.running():
            await actions.kill_all(ctx, pod, rtp, grace)
            rtp = await ctx.cache.pod(self.uid)
        await actions.stop_sandboxes(ctx, rtp)
        if not self.removed:
            apps = [rtp.latest(str(c.get("name")), "app") for c in common.containers(pod)]
            ok = all(c is not None and c.exited and c.exit_code == 0 for c in apps)
            self.state.forced_phase = self.state.forced_phase or ("Succeeded" if ok else "Failed")
            with contextlib.suppress(errors.StatusError, *TRANSIENT):
                await self.write_status(rtp)
        await actions.remove_all(ctx, rtp)
        await actions.cleanup_pod(ctx, self.uid, pod)
        self.crashloop.forget_prefix(self.uid + "/")
        if self.removed or not self.delete_from_api:
            return
        m = common.meta(pod)
        try:
            await ctx.client.delete(
                common.PODS,
                str(m.get("name", "")),
                str(m.get("namespace", "")),
                grace_period=0,
                uid=self.uid,
            )
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise
