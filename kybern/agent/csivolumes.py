"""The agent's CSI volumes (the kubelet's volume manager for `persistentVolumeClaim` and CSI
ephemeral inline volumes), on the `kybern.csi` library: at start a `CSINodePublisher`, a
`DriverRegistry` and a `PluginWatcher` on the plugin registration directory, and a
`VolumeManager` below the agent's data dir that `reconstruct`s what an earlier run mounted; for a
pod, each claim must be Bound to a PV (a CSI PV is staged and published once its
VolumeAttachment `csi-<sha256(handle + driver + node)>` is attached when the CSIDriver requires
attachment; hostPath and local PVs are their path), secrets, fsGroup, `fsGroupPolicy` and
`podInfoOnMount` are passed on, and the published paths are what the containers mount. A volume
that cannot be mounted yet raises `MountPending` with a back-off; claims, PVs, attachments,
CSIDrivers (informers, started with the first pod that has such volumes) and driver
registrations wake the pods waiting on them. `teardown` unpublishes a pod's volumes, `expand`
finishes a claim's `FileSystemResizePending` (`NodeExpandVolume`, then the claim's status
capacity), `stats` reports `NodeGetVolumeStats` per pod volume. The pure helpers at the top are
unit-tested."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kybern.agent import common
from kybern.api import errors as api_errors
from kybern.api import registry
from kybern.client import informer, rest
from kybern.csi import drivers, errors, registration
from kybern.csi import volumes as csivol

log = logging.getLogger("kybern.agent")
Obj = common.Obj
_REG = registry.Registry()


def _res(group: str, plural: str) -> registry.Resource:
    r = _REG.lookup(group, "v1", plural)
    assert r is not None, plural
    return r


PVCS = _res("", "persistentvolumeclaims")
PVS = _res("", "persistentvolumes")
CSINODES = _res("storage.k8s.io", "csinodes")
CSIDRIVERS = _res("storage.k8s.io", "csidrivers")
VOLUMEATTACHMENTS = _res("storage.k8s.io", "volumeattachments")

FS_PENDING = "FileSystemResizePending"
RESIZING = "Resizing"
BACKOFF_BASE = 0.5  # seconds; doubling per failed attempt, as kubelet's operation back-off
BACKOFF_CAP = 30.0
SYNC_TIMEOUT = 30.0
VolumeStats = csivol.VolumeStats
StatsRow = tuple[str, str, str, str, str, VolumeStats]


# ---- pure helpers --------------------------------------------------------------------------


def attachment_name(handle: str, driver: str, node: str) -> str:
    """The VolumeAttachment the attach-detach controller makes for a CSI volume on a node
    (kubelet's CSI plugin formula; the controller's `attachment_name` is the same)."""
    return "csi-" + hashlib.sha256(f"{handle}{driver}{node}".encode()).hexdigest()


def claim_volumes(pod: Obj) -> list[Obj]:
    """The pod's volumes the CSI part provides: persistentVolumeClaim and csi (inline)."""
    return [
        v
        for v in common.spec(pod).get("volumes") or []
        if isinstance(v, dict)
        and v.get("name")
        and (isinstance(v.get("persistentVolumeClaim"), dict) or isinstance(v.get("csi"), dict))
    ]


def has_csi_volumes(pod: Obj) -> bool:
    return bool(claim_volumes(pod))


def fs_group(pod: Obj) -> int | None:
    value = (common.spec(pod).get("securityContext") or {}).get("fsGroup")
    return int(value) if value is not None else None


@dataclass(frozen=True)
class DriverPolicy:
    """What the CSIDriver object says (kubelet's defaults when there is none)."""

    attach_required: bool = True
    pod_info_on_mount: bool = False
    fs_group_policy: str = "ReadWriteOnceWithFSType"
    modes: tuple[str, ...] = ("Persistent",)


def driver_policy(csidriver: Obj | None) -> DriverPolicy:
    if csidriver is None:
        return DriverPolicy()
    s = common.spec(csidriver)
    ar = s.get("attachRequired")
    return DriverPolicy(
        attach_required=True if ar is None else bool(ar),
        pod_info_on_mount=bool(s.get("podInfoOnMount")),
        fs_group_policy=str(s.get("fsGroupPolicy") or "ReadWriteOnceWithFSType"),
        modes=tuple(s.get("volumeLifecycleModes") or ("Persistent",)),
    )


def decode_secret(secret: Obj) -> dict[str, str]:
    """A Secret's data, decoded (stringData too, for objects not written through the API)."""
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v) for k, v in (secret.get("stringData") or {}).items()})
    return out


def _storage(resources: Obj | None) -> int:
    return common.int_bytes((resources or {}).get("storage"))


def expansion_target(pvc: Obj, pv: Obj) -> int | None:
    """Bytes to expand the node's side of the claim's volume to, or None: the claim is
    `FileSystemResizePending`, or its `allocatedResources` exceed its `capacity` while the PV
    already has them and no controller resize is under way."""
    st = common.status(pvc)
    conds = {c.get("type") for c in st.get("conditions") or [] if isinstance(c, dict)}
    pv_size = _storage(common.spec(pv).get("capacity"))
    if FS_PENDING in conds:
        return pv_size or None
    allocated = _storage(st.get("allocatedResources"))
    capacity = _storage(st.get("capacity"))
    if RESIZING not in conds and allocated > capacity and pv_size >= allocated:
        return pv_size
    return None


def resized_status(pvc: Obj, pv: Obj) -> Obj:
    """The claim's status patch once the node finished: the PV's capacity, the pending
    condition gone (kubelet's MarkFSResizeFinished)."""
    conds = [
        c
        for c in common.status(pvc).get("conditions") or []
        if isinstance(c, dict) and c.get("type") != FS_PENDING
    ]
    return {
        "capacity": {"storage": (common.spec(pv).get("capacity") or {}).get("storage")},
        "conditions": conds or None,
    }


def backoff(failures: int) -> float:
    return float(min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_CAP))


class MountPending(Exception):
    """The pod's CSI volumes cannot be mounted yet; retry in `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = BACKOFF_BASE) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class PodVolume:
    """A pod volume provided here: `path` goes into the containers (a device file if
    `block`)."""

    name: str
    path: str
    read_only: bool = False
    block: bool = False
    claim: str = ""


class _Registry(drivers.DriverRegistry):
    """The driver registry, telling the agent when a driver comes (pods may wait for it)."""

    def __init__(
        self, publisher: drivers.CSINodePublisher, on_register: Callable[[str], None]
    ) -> None:
        super().__init__(publisher)
        self.on_register = on_register

    async def register(self, plugin: registration.Plugin) -> None:
        await super().register(plugin)
        self.on_register(plugin.name)


class CSIVolumes:
    """The CSI volumes of the node's pods. `wake(uids)` nudges pod workers; `event(obj, type,
    reason, message)` records an Event."""

    def __init__(
        self,
        client: rest.Client,
        watch_client: rest.Client,
        root: Path,
        node_name: str,
        registration_dir: Path,
        *,
        wake: Callable[[set[str]], None] = lambda _: None,
        event: Callable[[Obj, str, str, str], None] = lambda *_: None,
    ) -> None:
        self.client = client
        self.watch_client = watch_client
        self.node_name = node_name
        self.registration_dir = registration_dir
        self.wake = wake
        self.event = event
        self.publisher = drivers.CSINodePublisher(
            client, node_name, nodes=common.NODES, csinodes=CSINODES
        )
        self.registry = _Registry(self.publisher, self._driver_registered)
        self.watcher = registration.PluginWatcher(registration_dir, self.registry)
        self.vm = csivol.VolumeManager(root, self.registry)
        self._pods: dict[str, Obj] = {}  # pods with such volumes, by uid
        self._volumes: dict[str, dict[str, PodVolume]] = {}  # uid -> name -> volume
        self._waits: dict[str, set[str]] = {}  # uid -> what it waits for ("pvc:ns/n", ...)
        self._failures: dict[str, int] = {}
        self._informers: dict[str, informer.Informer] = {}
        self._informers_ready: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Publish the CSINode, find the registered drivers, rebuild what an earlier run
        mounted (call before any pod worker runs)."""
        await asyncio.to_thread(self.registration_dir.mkdir, parents=True, exist_ok=True)
        try:
            await self.publisher.ensure()
        except api_errors.StatusError as e:  # a driver's registration creates it later
            log.warning("cannot create the node's CSINode: %s", e)
        await self.watcher.start()
        found = await self.vm.reconstruct()
        if found:
            log.info("reconstructed %d CSI volume(s) of earlier pods", len(found))
        for mv in found:
            self._volumes.setdefault(mv.pod_uid, {})[mv.name] = PodVolume(
                mv.name, str(mv.path), mv.source.read_only, mv.source.block
            )

    async def adopt(self, active: Callable[[], set[str]]) -> None:
        """Once the agent knows its pods: unpublish and unstage what none of them uses;
        what waits for its driver is retried in the background."""
        left = await self.vm.cleanup(active())
        for uid in {mv.pod_uid for mv in self.vm.volumes.values()} - active():
            self._volumes.pop(uid, None)
        if left:
            self._retry = asyncio.create_task(self._retry_cleanup(active), name="csi-cleanup")

    async def _retry_cleanup(self, active: Callable[[], set[str]]) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)
            try:
                if not await self.vm.cleanup(active()):
                    return
            except Exception as e:  # the API or a driver: try again later
                log.warning("CSI cleanup failed: %s", e)

    async def stop(self) -> None:
        """Stop watching; mounts of running pods stay (a restarted agent reconstructs them)."""
        for t in (self._retry, self._informers_ready):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        await self.watcher.stop()
        for inf in self._informers.values():
            await inf.stop()
        self._informers.clear()
        await self.registry.close()

    # ---- informers and wake-ups -------------------------------------------------------------

    async def _ensure_informers(self) -> None:
        t = self._informers_ready
        if t is None or (t.done() and (t.cancelled() or t.exception() is not None)):
            t = self._informers_ready = asyncio.create_task(self._start_informers())
        await asyncio.shield(t)

    async def _start_informers(self) -> None:
        def keyed(prefix: str) -> informer.Handlers:
            def changed(obj: Obj) -> None:
                self._changed(f"{prefix}:{informer.key_of(obj)}")

            return informer.Handlers(changed, lambda _, new: changed(new), changed)

        for prefix, res in (
            ("pvc", PVCS),
            ("pv", PVS),
            ("va", VOLUMEATTACHMENTS),
            ("csidriver", CSIDRIVERS),
        ):
            if prefix in self._informers:
                continue
            inf = informer.Informer(self.watch_client, res)
            inf.add_handlers(keyed(prefix))
            self._informers[prefix] = inf
            inf.start()
        await asyncio.gather(*(i.wait_synced(SYNC_TIMEOUT) for i in self._informers.values()))

    def _changed(self, key: str) -> None:
        uids = {uid for uid, keys in self._waits.items() if key in keys}
        if uids:
            self.wake(uids)

    def _driver_registered(self, name: str) -> None:
        self._changed(f"driver:{name}")

    def _get(self, prefix: str, name: str, namespace: str = "") -> Obj | None:
        inf = self._informers.get(prefix)
        return inf.get(name, namespace) if inf is not None else None

    async def _secret(self, ref: Obj | None, default_ns: str) -> dict[str, str]:
        if not ref or not ref.get("name"):
            return {}
        ns = str(ref.get("namespace") or default_ns)
        try:
            s = await self.client.get(common.SECRETS, str(ref["name"]), ns)
        except api_errors.StatusError as e:
            if e.code == 404:
                raise MountPending(f'secret "{ns}/{ref["name"]}" not found') from None
            raise
        return decode_secret(s)

    # ---- a pod's volumes ----------------------------------------------------------------------

    def paths(self, uid: str) -> dict[str, str]:
        """Volume name -> host path of the pod's mounted filesystem volumes."""
        return {n: v.path for n, v in self._volumes.get(uid, {}).items() if not v.block}

    def devices(self, uid: str) -> dict[str, str]:
        """Volume name -> device file of the pod's block volumes."""
        return {n: v.path for n, v in self._volumes.get(uid, {}).items() if v.block}

    def read_only(self, uid: str) -> set[str]:
        return {n for n, v in self._volumes.get(uid, {}).items() if v.read_only}

    async def setup(self, pod: Obj) -> dict[str, PodVolume]:
        """Mount every claim and inline CSI volume of `pod`; raises MountPending (with the
        back-off before the next try) when one cannot be mounted yet."""
        uid = common.pod_uid(pod)
        wanted = claim_volumes(pod)
        if not wanted:
            return {}
        self._pods[uid] = pod
        await self._ensure_informers()
        waits: set[str] = set()
        self._waits[uid] = waits
        have = self._volumes.setdefault(uid, {})
        problems: list[tuple[str, str]] = []
        for v in wanted:
            name = str(v["name"])
            try:
                have[name] = await self._mount(pod, v, waits)
            except MountPending as e:
                problems.append((name, e.message))
            except errors.CSIError as e:
                problems.append((name, f"MountVolume.SetUp failed for volume {name!r}: {e}"))
        if problems:
            n = self._failures[uid] = self._failures.get(uid, 0) + 1
            names = ", ".join(p[0] for p in problems)
            detail = "; ".join(p[1] for p in problems)
            raise MountPending(
                f"Unable to attach or mount volumes: unmounted volumes=[{names}]: {detail}",
                backoff(n),
            )
        self._failures.pop(uid, None)
        self._waits[uid] = {k for k in waits if k.startswith("pvc:")}  # expansions
        return dict(have)

    async def _mount(self, pod: Obj, v: Obj, waits: set[str]) -> PodVolume:
        uid = common.pod_uid(pod)
        ns = str(common.meta(pod).get("namespace", ""))
        name = str(v["name"])
        group = fs_group(pod)
        if isinstance(v.get("csi"), dict):
            driver = str(v["csi"].get("driver", ""))
            waits |= {f"csidriver:{driver}", f"driver:{driver}"}
            policy = driver_policy(self._get("csidriver", driver))
            if "Ephemeral" not in policy.modes:
                raise MountPending(
                    f"volume {name!r}: CSI driver {driver} does not support ephemeral inline "
                    "volumes (volumeLifecycleModes of its CSIDriver)"
                )
            secret = await self._secret(v["csi"].get("nodePublishSecretRef"), ns)
            src = csivol.source_from_inline(
                pod, v, secrets=secret, fs_group=group, fs_group_policy=policy.fs_group_policy
            )
            mv = await self.vm.mount(uid, name, src)
            return PodVolume(name, str(mv.path), src.read_only, src.block)
        ref = v["persistentVolumeClaim"]
        claim_name = str(ref.get("claimName", ""))
        waits.add(f"pvc:{ns}/{claim_name}")
        pvc = self._get("pvc", claim_name, ns)
        if pvc is None:
            raise MountPending(f'persistentvolumeclaim "{claim_name}" not found')
        if common.meta(pvc).get("deletionTimestamp"):
            raise MountPending(f"error processing PVC {ns}/{claim_name}: PVC is being deleted")
        pv_name = str(common.spec(pvc).get("volumeName") or "")
        if common.status(pvc).get("phase") != "Bound" or not pv_name:
            raise MountPending(f"error processing PVC {ns}/{claim_name}: PVC is not bound")
        waits.add(f"pv:{pv_name}")
        pv = self._get("pv", pv_name)
        if pv is None:
            raise MountPending(f'persistentvolume "{pv_name}" not found')
        pspec = common.spec(pv)
        read_only = bool(ref.get("readOnly"))
        for local in ("hostPath", "local"):
            if isinstance(pspec.get(local), dict):
                path = str(pspec[local].get("path", ""))
                return PodVolume(name, path, read_only, claim=claim_name)
        src_csi = pspec.get("csi")
        if not isinstance(src_csi, dict):
            kinds = [k for k in pspec if isinstance(pspec[k], dict)]
            raise MountPending(f"PersistentVolume {pv_name}: unsupported volume type {kinds}")
        driver, handle = str(src_csi.get("driver", "")), str(src_csi.get("volumeHandle", ""))
        waits |= {f"csidriver:{driver}", f"driver:{driver}"}
        policy = driver_policy(self._get("csidriver", driver))
        publish_context: dict[str, str] = {}
        if policy.attach_required:
            va_name = attachment_name(handle, driver, self.node_name)
            waits.add(f"va:{va_name}")
            va = self._get("va", va_name)
            vst = common.status(va) if va is not None else {}
            if not vst.get("attached"):
                err = (vst.get("attachError") or {}).get("message")
                why = f": {err}" if err else ""
                raise MountPending(
                    f"volume {pv_name} is not attached to node {self.node_name} yet "
                    f"(VolumeAttachment {va_name}){why}"
                )
            publish_context = dict(vst.get("attachmentMetadata") or {})
        secrets = {
            key: await self._secret(src_csi.get(key), ns)
            for key in ("nodeStageSecretRef", "nodePublishSecretRef", "nodeExpandSecretRef")
            if src_csi.get(key)
        }
        src = csivol.source_from_pv(
            pv,
            read_only=read_only,
            publish_context=publish_context,
            secrets=secrets,
            fs_group=group,
            fs_group_policy=policy.fs_group_policy,
            pod=pod,
            pod_info_on_mount=policy.pod_info_on_mount,
        )
        mv = await self.vm.mount(uid, name, src)
        return PodVolume(name, str(mv.path), src.read_only, src.block, claim_name)

    async def teardown(self, uid: str) -> None:
        """Unpublish (and unstage what no other pod uses) the pod's volumes; raises CSIError
        when a driver cannot do it yet (the pod's directory must then stay)."""
        await self.vm.unmount_pod(uid)
        self._volumes.pop(uid, None)
        self._pods.pop(uid, None)
        self._waits.pop(uid, None)
        self._failures.pop(uid, None)

    # ---- expansion ----------------------------------------------------------------------------

    async def expand(self, pod: Obj) -> float | None:
        """Finish the node's part of a resize of the pod's claims; None when nothing is left,
        else the seconds until the next try."""
        uid = common.pod_uid(pod)
        ns = str(common.meta(pod).get("namespace", ""))
        retry: float | None = None
        for name, vol in list(self._volumes.get(uid, {}).items()):
            if not vol.claim:
                continue
            pvc = self._get("pvc", vol.claim, ns)
            pv = self._get("pv", str(common.spec(pvc or {}).get("volumeName") or ""))
            if pvc is None or pv is None:
                continue
            size = expansion_target(pvc, pv)
            if size is None or (uid, name) not in self.vm.volumes:
                continue
            try:
                got = await self.vm.expand(uid, name, size)
                await self.client.patch(
                    PVCS, vol.claim, {"status": resized_status(pvc, pv)}, ns, subresource="status"
                )
            except (errors.CSIError, api_errors.StatusError) as e:
                msg = f"MountVolume.NodeExpandVolume failed for volume {name!r}: {e}"
                self.event(pod, "Warning", "VolumeResizeFailed", msg)
                retry = BACKOFF_CAP / 3
                continue
            pv_name = common.meta(pv).get("name", "")
            what = "NodeExpandVolume" if got is not None else "no node expansion needed"
            log.info("pod %s: volume %s (%s) expanded to %d bytes (%s)", uid, name, pv_name,
                     size, what)  # fmt: skip
            msg = f"MountVolume.NodeExpandVolume succeeded for volume {name!r} ({pv_name})"
            self.event(pod, "Normal", "FileSystemResizeSuccessful", msg)
            claim_ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **pvc}
            self.event(claim_ref, "Normal", "FileSystemResizeSuccessful", msg)
        return retry

    # ---- statistics ---------------------------------------------------------------------------

    async def stats(self) -> list[StatsRow]:
        """(pod uid, namespace, pod name, volume name, claim name or "", stats) of every CSI
        volume whose driver reports usage."""
        out: list[StatsRow] = []
        for uid, vols in list(self._volumes.items()):
            m = common.meta(self._pods.get(uid) or {})
            for name, vol in list(vols.items()):
                try:
                    st = await self.vm.stats(uid, name)
                except errors.CSIError as e:
                    log.debug("stats of volume %s of pod %s: %s", name, uid, e)
                    continue
                if st is not None:
                    out.append(
                        (uid, str(m.get("namespace", "")), str(m.get("name", "")), name,
                         vol.claim, st)
                    )  # fmt: skip
        return out

    def known(self) -> Iterable[str]:
        return list(self._volumes)
