"""Garbage collection on the node, as kubelet does it: dead containers beyond the newest
`max_per_container` of each container of a pod (the newest stays for `kubectl logs --previous`),
sandboxes that are neither ready nor their pod's newest, everything of pods the agent no longer
has (orphans: left by a crash or a pod deleted while the agent was down), pod directories
without a pod (their CSI volumes unpublished first, retried at each collection), and unused
images when the image filesystem is fuller than the high threshold (least recently used first,
down to the low threshold). `plan_*` are pure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from kybern.agent import actions, common, payload
from kybern.cri import api, errors, messages
from kybern.csi import errors as csi_errors

log = logging.getLogger("kybern.agent")


@dataclass
class Policy:
    max_per_container: int = 1  # kubelet's MaxPerPodContainer
    image_high: int = 85  # percent of the image filesystem
    image_low: int = 80
    container_period: float = 60.0
    image_period: float = 300.0


def plan_containers(conts: Iterable[api.Container], keep: int, live_uids: set[str]) -> list[str]:
    """Ids of exited containers to remove: all of pods not in `live_uids`, else those beyond
    the newest `keep` per (pod, container name, kind)."""
    groups: dict[tuple[str, str, str], list[api.Container]] = {}
    out = []
    for c in conts:
        uid = c.labels.get(common.POD_UID_LABEL)
        if not uid or c.state != api.CONTAINER_EXITED:
            continue
        if uid not in live_uids:
            out.append(c.id)
            continue
        kind = c.annotations.get(common.CONTAINER_KIND, "app")
        groups.setdefault((uid, c.metadata.name, kind), []).append(c)
    for group in groups.values():
        group.sort(key=lambda c: c.created_at, reverse=True)
        out += [c.id for c in group[keep:]]
    return out


def plan_sandboxes(sandboxes: Iterable[api.PodSandbox], live_uids: set[str]) -> list[str]:
    """Ids of not-ready sandboxes to remove: those of pods not in `live_uids`, and every one
    but the newest of each live pod."""
    by_uid: dict[str, list[api.PodSandbox]] = {}
    for s in sandboxes:
        uid = s.labels.get(common.POD_UID_LABEL)
        if uid:
            by_uid.setdefault(uid, []).append(s)
    out = []
    for uid, group in by_uid.items():
        group.sort(key=lambda s: (s.metadata.attempt, s.created_at), reverse=True)
        for i, s in enumerate(group):
            if s.state == api.SANDBOX_READY:
                continue
            if uid not in live_uids or i > 0:
                out.append(s.id)
    return out


def plan_images(
    images: Iterable[api.Image],
    in_use: set[str],
    last_used: Mapping[str, float],
    to_free: int,
    pinned: Iterable[str] = (),
) -> list[str]:
    """Ids of unused images to remove, least recently used first, until `to_free` bytes."""
    keep = set(pinned)
    candidates = [
        i for i in images if i.id not in in_use and not i.pinned and not set(i.repo_tags) & keep
    ]
    candidates.sort(key=lambda i: last_used.get(i.id, 0.0))
    out, freed = [], 0
    for i in candidates:
        if freed >= to_free:
            break
        out.append(i.id)
        freed += i.size
    return out


def fs_usage(path: str) -> tuple[int, int]:
    """(used, capacity) bytes of the filesystem holding `path`. Blocking."""
    st = os.statvfs(path)
    cap = st.f_blocks * st.f_frsize
    return cap - st.f_bavail * st.f_frsize, cap


class GarbageCollector:
    def __init__(
        self,
        ctx: actions.Context,
        live_uids: Callable[[], set[str]],
        policy: Policy | None = None,
        pinned_images: Iterable[str] = (),
    ) -> None:
        self.ctx = ctx
        self.live_uids = live_uids
        self.policy = policy or Policy()
        self.pinned = set(pinned_images)
        self.removed_containers = 0
        self.removed_sandboxes = 0
        self.removed_images = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(self.collect_containers, self.policy.container_period)),
            asyncio.create_task(self._loop(self.collect_images, self.policy.image_period)),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def _loop(self, fn: Callable[[], Awaitable[None]], period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await fn()
            except (errors.CRIError, OSError) as e:
                log.warning("garbage collection failed: %s", e)

    async def collect_containers(self) -> None:
        rt = self.ctx.rt
        live = self.live_uids()
        conts = await rt.list_containers()
        dead = plan_containers(conts, self.policy.max_per_container, live)
        for cid in dead:
            with contextlib.suppress(errors.NotFoundError):
                await rt.remove_container(cid)
                self.removed_containers += 1
        self.ctx.cache.forget(dead)
        sandboxes = await rt.list_pod_sandbox()
        for sid in plan_sandboxes(sandboxes, live):
            with contextlib.suppress(errors.NotFoundError):
                left = await rt.list_containers(messages.container_filter(pod_sandbox_id=sid))
                for c in left:
                    await rt.stop_container(c.id, 0)
                    await rt.remove_container(c.id)
                await actions.uncut(rt.stop_pod_sandbox(sid))
                await rt.remove_pod_sandbox(sid)
                self.ctx.cache.forget([sid, *(c.id for c in left)])
                self.removed_sandboxes += 1
        runtime_uids = {s.labels.get(common.POD_UID_LABEL, "") for s in sandboxes}
        await self.cleanup_orphan_dirs(self.live_uids() | runtime_uids)

    async def cleanup_orphans(self, runtime_uids: set[str]) -> None:
        """Stop and remove everything of pods the runtime has but the agent does not."""
        live = self.live_uids()
        for uid in runtime_uids - live:
            log.info("removing the runtime state of orphaned pod %s", uid)
            rtp = await self.ctx.cache.pod(uid)
            await actions.remove_all(self.ctx, rtp)
            await self._cleanup_pod(uid)
        await self.cleanup_orphan_dirs(live | runtime_uids)

    async def cleanup_orphan_dirs(self, keep: set[str]) -> None:
        """Remove the directories (and volumes) of pods neither running nor known; a CSI
        volume whose driver cannot unpublish it yet keeps its pod's directory until a later
        collection."""
        for uid in await self.ctx.volumes.orphaned_dirs(keep):
            if uid in self.live_uids():  # a pod that arrived meanwhile
                continue
            log.info("removing the directory of orphaned pod %s", uid)
            await self._cleanup_pod(uid)

    async def _cleanup_pod(self, uid: str) -> None:
        try:
            await actions.cleanup_pod(self.ctx, uid, None)
        except (csi_errors.CSIError, payload.VolumeError) as e:
            log.warning("cannot clean up the volumes of orphaned pod %s yet: %s", uid, e)

    async def collect_images(self) -> None:
        rt = self.ctx.rt
        fs = await rt.image_fs_info()
        mounts = [f.fs_id.mountpoint for f in fs.image_filesystems if f.fs_id.mountpoint]
        if not mounts:
            return
        used, cap = await asyncio.to_thread(fs_usage, mounts[0])
        if cap <= 0 or used * 100 < self.policy.image_high * cap:
            return
        to_free = used - cap * self.policy.image_low // 100
        conts = await rt.list_containers()
        in_use = {c.image_ref for c in conts} | {c.image.image for c in conts}
        images = await rt.list_images()
        for image_id in plan_images(
            images, in_use, self.ctx.images.last_used, to_free, self.pinned
        ):
            try:
                await rt.remove_image(image_id)
                self.removed_images += 1
            except errors.CRIError as e:
                log.warning("image GC: cannot remove %s: %s", image_id, e)
