"""What the runtime holds of each pod, read through CRI: `PodRuntime` (its sandboxes and
containers, newest first, as plain records the status and sync logic work on), `RuntimeCache`
(reads one pod's state with label-filtered List calls, ContainerStatus only for containers that
are new or changed state, sandbox addresses once per sandbox, the termination message of an
exited container once) and `PLEG`, kubelet's pod lifecycle event generator: containerd 1.6 has
no event stream, so it relists every container and sandbox each period and tells the pod workers
whose pods changed, and which pods the runtime has that no worker owns (orphans)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kybern.agent import common
from kybern.cri import api, client, errors, logs, messages

log = logging.getLogger("kybern.agent")
MAX_MESSAGE = 4096  # kubelet reads at most 4 KiB of a termination message
FALLBACK_LINES = 80

RUNNING = api.CONTAINER_RUNNING
EXITED = api.CONTAINER_EXITED
CREATED = api.CONTAINER_CREATED
UNKNOWN = api.CONTAINER_UNKNOWN


@dataclass
class ContainerInfo:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    state: int
    created_at: int = 0  # ns since the epoch
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""

    @property
    def restart_count(self) -> int:
        try:
            return int(self.annotations.get(common.RESTART_COUNT, self.attempt))
        except ValueError:
            return self.attempt

    @property
    def hash(self) -> str:
        return self.annotations.get(common.CONTAINER_HASH, "")

    @property
    def kind(self) -> str:
        return self.annotations.get(common.CONTAINER_KIND, "app")

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def exited(self) -> bool:
        return self.state == EXITED


@dataclass
class SandboxInfo:
    id: str
    attempt: int
    state: int
    created_at: int = 0
    ips: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == api.SANDBOX_READY


@dataclass
class PodRuntime:
    """One pod's sandboxes and containers, newest first."""

    uid: str
    sandboxes: list[SandboxInfo] = field(default_factory=list)
    containers: list[ContainerInfo] = field(default_factory=list)

    @property
    def sandbox(self) -> SandboxInfo | None:
        return self.sandboxes[0] if self.sandboxes else None

    def of(self, name: str, kind: str = "", sandbox_id: str = "") -> list[ContainerInfo]:
        return [
            c
            for c in self.containers
            if c.name == name
            and (not kind or c.kind == kind)
            and (not sandbox_id or c.sandbox_id == sandbox_id)
        ]

    def latest(self, name: str, kind: str = "", sandbox_id: str = "") -> ContainerInfo | None:
        found = self.of(name, kind, sandbox_id)
        return found[0] if found else None

    def running(self) -> list[ContainerInfo]:
        return [c for c in self.containers if c.state in (RUNNING, CREATED, UNKNOWN)]

    def max_restart_count(self, name: str, kind: str) -> int:
        return max((c.restart_count for c in self.of(name, kind)), default=-1)


def _container_from_list(c: api.Container) -> ContainerInfo:
    return ContainerInfo(
        id=c.id,
        sandbox_id=c.pod_sandbox_id,
        name=c.metadata.name,
        attempt=c.metadata.attempt,
        state=c.state,
        created_at=c.created_at,
        image=c.image.user_specified_image or c.image.image,
        image_ref=c.image_ref,
        labels=dict(c.labels),
        annotations=dict(c.annotations),
    )


def _apply_status(info: ContainerInfo, st: api.ContainerStatus) -> None:
    info.state = st.state
    info.started_at = st.started_at
    info.finished_at = st.finished_at
    info.exit_code = st.exit_code
    info.reason = st.reason
    info.message = st.message
    info.log_path = st.log_path
    if st.image_ref:
        info.image_ref = st.image_ref


def read_termination_message(info: ContainerInfo, st: api.ContainerStatus) -> str:
    """The termination message of an exited container: the file it wrote at its
    terminationMessagePath, else (policy FallbackToLogsOnError, failed) its last log lines.
    Blocking."""
    path = info.annotations.get(common.TERMINATION_MESSAGE_PATH, "")
    host = next((m.host_path for m in st.mounts if path and m.container_path == path), "")
    message = ""
    if host:
        with contextlib.suppress(OSError), open(host, "rb") as f:
            message = f.read(MAX_MESSAGE).decode(errors="replace")
    policy = info.annotations.get(common.TERMINATION_MESSAGE_POLICY, "File")
    if not message and policy == "FallbackToLogsOnError" and st.exit_code != 0 and st.log_path:
        with contextlib.suppress(OSError):
            data = Path(st.log_path).read_bytes()[-64 * 1024 :]
            records = []
            for line in data.splitlines():
                with contextlib.suppress(logs.LogFormatError):
                    records.append(logs.parse_line(line))
            lines = [r.content for r in logs.join(records)]
            text = b"\n".join(lines[-FALLBACK_LINES:]).decode(errors="replace")
            message = text[-MAX_MESSAGE:]
    return message


class RuntimeCache:
    """Reads pods' runtime state through CRI, remembering what does not change: a container's
    status while its state is the same, a sandbox's addresses."""

    def __init__(self, rt: client.RuntimeClient) -> None:
        self.rt = rt
        self._statuses: dict[str, tuple[int, ContainerInfo]] = {}
        self._ips: dict[str, list[str]] = {}

    async def pod(self, uid: str) -> PodRuntime:
        labels = {common.POD_UID_LABEL: uid}
        sandboxes, conts = await asyncio.gather(
            self.rt.list_pod_sandbox(messages.sandbox_filter(labels=labels)),
            self.rt.list_containers(messages.container_filter(labels=labels)),
        )
        out = PodRuntime(uid)
        for s in sorted(sandboxes, key=lambda s: (s.metadata.attempt, s.created_at), reverse=True):
            info = SandboxInfo(
                s.id, s.metadata.attempt, s.state, s.created_at, labels=dict(s.labels)
            )
            if info.ready:
                info.ips = await self._sandbox_ips(s.id)
            out.sandboxes.append(info)
        infos = await asyncio.gather(*(self._container(c) for c in conts))
        out.containers = sorted(
            (i for i in infos if i is not None), key=lambda c: c.created_at, reverse=True
        )
        return out

    async def _sandbox_ips(self, sid: str) -> list[str]:
        ips = self._ips.get(sid)
        if ips is None:
            try:
                st = (await self.rt.pod_sandbox_status(sid)).status
            except errors.NotFoundError:
                return []
            ips = [st.network.ip] if st.network.ip else []
            ips += [p.ip for p in st.network.additional_ips if p.ip]
            self._ips[sid] = ips
        return ips

    async def _container(self, c: api.Container) -> ContainerInfo | None:
        cached = self._statuses.get(c.id)
        if cached is not None and cached[0] == c.state and c.state in (RUNNING, EXITED):
            return cached[1]
        info = _container_from_list(c)
        try:
            st = (await self.rt.container_status(c.id)).status
        except errors.NotFoundError:
            return None
        _apply_status(info, st)
        if st.state == EXITED:
            info.message = st.message or await asyncio.to_thread(read_termination_message, info, st)
        self._statuses[c.id] = (info.state, info)
        return info

    def forget(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._statuses.pop(i, None)
            self._ips.pop(i, None)


@dataclass
class Snapshot:
    """One relist: state of every container and sandbox that carries a pod uid label."""

    containers: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (uid, state)
    sandboxes: dict[str, tuple[str, int]] = field(default_factory=dict)

    def uids(self) -> set[str]:
        return {u for u, _ in self.containers.values()} | {u for u, _ in self.sandboxes.values()}


def changed_pods(old: Snapshot, new: Snapshot) -> set[str]:
    """Pods whose containers or sandboxes appeared, disappeared or changed state."""
    out: set[str] = set()
    for mine, theirs in ((old.containers, new.containers), (old.sandboxes, new.sandboxes)):
        for key in mine.keys() | theirs.keys():
            if mine.get(key) != theirs.get(key):
                out.add((mine.get(key) or theirs.get(key) or ("", 0))[0])
    out.discard("")
    return out


class PLEG:
    """Relists the runtime every `period` seconds and calls `on_change(uids)` with the pods
    whose runtime state changed since the last relist."""

    def __init__(
        self,
        rt: client.RuntimeClient,
        on_change: Callable[[set[str]], None],
        period: float = 1.0,
    ) -> None:
        self.rt = rt
        self.on_change = on_change
        self.period = period
        self.snapshot = Snapshot()
        self.relists = 0
        self.healthy = True
        self._task: asyncio.Task[None] | None = None

    async def relist(self) -> Snapshot:
        sandboxes, conts = await asyncio.gather(
            self.rt.list_pod_sandbox(), self.rt.list_containers()
        )
        snap = Snapshot()
        for s in sandboxes:
            uid = s.labels.get(common.POD_UID_LABEL)
            if uid:
                snap.sandboxes[s.id] = (uid, s.state)
        for c in conts:
            uid = c.labels.get(common.POD_UID_LABEL)
            if uid:
                snap.containers[c.id] = (uid, c.state)
        changed = changed_pods(self.snapshot, snap)
        self.snapshot = snap
        self.relists += 1
        if changed:
            self.on_change(changed)
        return snap

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pleg")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.relist()
                self.healthy = True
            except errors.CRIError as e:
                self.healthy = False
                log.warning("PLEG relist failed: %s", e)
            await asyncio.sleep(self.period)
