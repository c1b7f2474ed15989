"""Static pods: pod manifests in a directory (`--pod-manifest-path`) that the agent runs without
the API server, as kubelet's file source does. Each manifest (YAML or JSON, one Pod per file;
hidden files ignored) becomes a pod named `<name>-<node>` in its namespace (default `default`)
whose uid is a hash of the manifest, the node and the file, annotated with
`kubernetes.io/config.source: file` and `config.hash`; the directory is rescanned every few
seconds and a changed manifest replaces its pod. Each static pod is mirrored into the API (a pod
with `kubernetes.io/config.mirror`, owned by the Node) that carries its status; a mirror deleted
or out of date is recreated, and mirrors of manifests that went away are deleted."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import json
import logging
import time
from pathlib import Path

import aiohttp
import yaml

from kybern.agent import common, pods, workers
from kybern.api import defaults, errors
from kybern.client import rest

log = logging.getLogger("kybern.agent")
Obj = common.Obj
EXTENSIONS = (".yaml", ".yml", ".json")
TRANSIENT = (TimeoutError, aiohttp.ClientError, OSError)


def read_manifests(directory: Path) -> dict[str, Obj]:
    """file name -> Pod manifest, for every readable manifest in `directory`. Blocking."""
    out: dict[str, Obj] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return out
    for p in entries:
        if p.name.startswith(".") or not p.name.endswith(EXTENSIONS) or not p.is_file():
            continue
        try:
            doc = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError) as e:
            log.warning("static pod manifest %s: %s", p, e)
            continue
        if isinstance(doc, dict) and doc.get("kind", "Pod") == "Pod":
            out[p.name] = doc
        else:
            log.warning("static pod manifest %s is not a Pod", p)
    return out


def static_pod(manifest: Obj, node: str, source: str) -> Obj:
    """The pod the agent runs for `manifest` (defaults applied, uid from its hash)."""
    pod = copy.deepcopy(manifest)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    m = pod.setdefault("metadata", {})
    m["namespace"] = m.get("namespace") or "default"
    m["name"] = f"{m.get('name', '')}-{node}"
    digest = hashlib.md5(
        json.dumps([manifest, node, source], sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()
    m["uid"] = digest
    annotations = m.setdefault("annotations", {})
    annotations[common.CONFIG_SOURCE] = "file"
    annotations[common.CONFIG_HASH] = digest
    annotations[common.CONFIG_SEEN] = common.rfc3339(time.time())
    for key in ("resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
        m.pop(key, None)
    pod.setdefault("spec", {})["nodeName"] = node
    pod.pop("status", None)
    defaults.apply_defaults("Pod", pod)
    pod["status"] = {"phase": "Pending", "qosClass": common.qos_class(pod)}
    return pod


def mirror_of(pod: Obj, node_uid: str) -> Obj:
    """The mirror pod to create in the API for static pod `pod`."""
    mirror = copy.deepcopy(pod)
    m = mirror["metadata"]
    uid = m.pop("uid")
    m["annotations"][common.CONFIG_MIRROR] = uid
    m["annotations"].pop(common.CONFIG_SEEN, None)
    if node_uid:
        m["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": pod["spec"]["nodeName"],
                "uid": node_uid,
                "controller": True,
            }
        ]
    mirror.pop("status", None)
    return mirror


class StaticPods:
    def __init__(
        self,
        client: rest.Client,
        workers: workers.PodWorkers,
        node: str,
        directory: Path,
        *,
        node_uid: str = "",
        interval: float = 5.0,
    ) -> None:
        self.client = client
        self.workers = workers
        self.node = node
        self.directory = directory
        self.node_uid = node_uid
        self.interval = interval
        self.pods: dict[str, Obj] = {}  # uid -> static pod
        self.mirrors: dict[str, Obj] = {}  # config.mirror (static uid) -> mirror pod
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def uids(self) -> set[str]:
        return set(self.pods)

    async def start(self) -> None:
        await self.scan()
        self._task = asyncio.create_task(self._run(), name="static-pods")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()
            try:
                await self.scan()
                await self.sync_mirrors()
            except (errors.StatusError, *TRANSIENT) as e:
                log.warning("static pods: %s", e)

    async def scan(self) -> None:
        manifests = await asyncio.to_thread(read_manifests, self.directory)
        want: dict[str, Obj] = {}
        for source, manifest in manifests.items():
            pod = static_pod(manifest, self.node, source)
            want[common.pod_uid(pod)] = pod
        for uid in set(self.pods) - set(want):
            log.info("static pod %s removed", common.pod_key(self.pods[uid]))
            self.workers.remove(uid)
            del self.pods[uid]
        for uid, pod in want.items():
            if uid in self.pods:
                continue
            log.info("static pod %s added", common.pod_key(pod))
            self.pods[uid] = pod
            self.workers.forget_finished(uid)
            self.workers.update(
                pod,
                target=pods.StatusTarget(functools.partial(self._live_mirror, uid)),
                delete_from_api=False,
            )

    def _live_mirror(self, uid: str) -> Obj | None:
        mirror = self.mirrors.get(uid)
        if mirror is None or common.meta(mirror).get("deletionTimestamp"):
            return None
        return mirror

    # ---- mirror pods (fed by the agent's pod informer) ------------------------------------------

    def on_mirror(self, mirror: Obj) -> None:
        key = (common.meta(mirror).get("annotations") or {}).get(common.CONFIG_MIRROR, "")
        self.mirrors[key] = mirror
        w = self.workers.workers.get(key)
        if w is not None:
            w.wake()
        self._kick.set()

    def on_mirror_deleted(self, mirror: Obj) -> None:
        key = (common.meta(mirror).get("annotations") or {}).get(common.CONFIG_MIRROR, "")
        if self.mirrors.get(key, {}).get("metadata", {}).get("uid") == common.pod_uid(mirror):
            del self.mirrors[key]
        self._kick.set()

    async def sync_mirrors(self) -> None:
        for key, mirror in list(self.mirrors.items()):
            m = common.meta(mirror)
            stale = key not in self.pods or m.get("deletionTimestamp")
            static = self.pods.get(key)
            if static is not None and m.get("name") != common.meta(static).get("name"):
                stale = True
            if stale:
                with contextlib.suppress(errors.StatusError):
                    await self.client.delete(
                        common.PODS,
                        str(m.get("name")),
                        str(m.get("namespace")),
                        grace_period=0,
                        uid=common.pod_uid(mirror),
                    )
                self.mirrors.pop(key, None)
        for uid, pod in self.pods.items():
            if uid in self.mirrors:
                continue
            try:
                created = await self.client.create(common.PODS, mirror_of(pod, self.node_uid))
            except errors.StatusError as e:
                if e.code == 409:
                    await self._replace_conflicting(pod)
                    continue
                key = common.pod_key(pod)
                log.warning("static pod %s: cannot create its mirror: %s", key, e.message)
                continue
            self.mirrors[uid] = created
            w = self.workers.workers.get(uid)
            if w is not None:
                w.wake()

    async def _replace_conflicting(self, pod: Obj) -> None:
        """A pod of the mirror's name exists but is not its mirror: delete it if it is a stale
        mirror of this node (another manifest version), else leave it."""
        m = common.meta(pod)
        try:
            other = await self.client.get(common.PODS, str(m["name"]), str(m["namespace"]))
        except errors.StatusError:
            return
        if common.is_mirror(other) and common.spec(other).get("nodeName") == self.node:
            with contextlib.suppress(errors.StatusError):
                await self.client.delete(
                    common.PODS,
                    str(m["name"]),
                    str(m["namespace"]),
                    grace_period=0,
                    uid=common.pod_uid(other),
                )
