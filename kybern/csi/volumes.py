"""The node's CSI volume manager (the kubelet's CSI volume plugin and its operation executor):
`VolumeManager.mount` stages a volume once per node (`NodeStageVolume` on
`<root>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount`, when the driver has
STAGE_UNSTAGE_VOLUME) and publishes it for a pod (`NodePublishVolume` on
`<root>/pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`, or a device file below
`volumeDevices/` for block volumes), applies `fsGroup` (by the driver's VOLUME_MOUNT_GROUP, or
by setting group ownership as the kubelet does) and returns the host path to mount into the
containers; `unmount` reverses it and unstages once the last pod on the node lets go. Each step
leaves a `vol_data.json` beside its directory, so `reconstruct` rebuilds the state after an agent
restart and `cleanup` unpublishes and unstages whatever no live pod uses — no mount leaks.
`expand` (`NodeExpandVolume`) and `stats` (`NodeGetVolumeStats`) complete the set. The
`VolumeSource` of a pod volume comes from its PV (`source_from_pv`) or from a CSI ephemeral
inline volume (`source_from_inline`); drivers are looked up in a `DriverRegistry`."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kybern.csi import errors, mount, spec
from kybern.csi.drivers import Driver, DriverRegistry
from kybern.csi.gen import csi_pb2 as csi

log = logging.getLogger("kybern.csi.volumes")
PLUGIN = "kubernetes.io~csi"
DATA_FILE = "vol_data.json"
Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class VolumeSource:
    """Everything the node calls need about one volume of one pod."""

    driver: str
    volume_handle: str
    name: str  # PV name, or the pod's volume name for an inline volume
    block: bool = False
    read_only: bool = False
    fs_type: str = ""
    mount_flags: tuple[str, ...] = ()
    access_mode: str = "ReadWriteOnce"
    volume_context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    publish_context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stage_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    publish_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    expand_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ephemeral: bool = False
    fs_group: int | None = None
    fs_group_policy: str = "ReadWriteOnceWithFSType"

    def to_json(self) -> Obj:
        d = dataclasses.asdict(self)
        for k in ("stage_secrets", "publish_secrets", "expand_secrets"):
            d.pop(k)
        d["mount_flags"] = list(self.mount_flags)
        d["volume_context"] = dict(self.volume_context)
        d["publish_context"] = dict(self.publish_context)
        return d

    @classmethod
    def from_json(cls, d: Obj) -> VolumeSource:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["mount_flags"] = tuple(kw.get("mount_flags") or ())
        return cls(**kw)


def source_from_pv(
    pv: Obj,
    *,
    read_only: bool = False,
    publish_context: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    fs_group: int | None = None,
    fs_group_policy: str = "ReadWriteOnceWithFSType",
    pod: Obj | None = None,
    pod_info_on_mount: bool = False,
) -> VolumeSource:
    """The source of a pod volume backed by a CSI PersistentVolume. `publish_context` is the
    VolumeAttachment's `status.attachmentMetadata`; `secrets` the contents of the PV's
    `nodeStageSecretRef`, `nodePublishSecretRef`, `nodeExpandSecretRef` by those names;
    `pod_info_on_mount` (the CSIDriver's `podInfoOnMount`) adds the pod's identity to the
    volume context."""
    pspec = pv.get("spec") or {}
    src = pspec.get("csi")
    if not src:
        raise ValueError(f"PersistentVolume {pv['metadata']['name']} is not a CSI volume")
    modes = pspec.get("accessModes") or ["ReadWriteOnce"]
    ctx = dict(src.get("volumeAttributes") or {})
    if pod is not None and pod_info_on_mount:
        ctx.update(pod_info_context(pod))
    s = secrets or {}
    return VolumeSource(
        driver=src["driver"],
        volume_handle=src["volumeHandle"],
        name=pv["metadata"]["name"],
        block=pspec.get("volumeMode") == "Block",
        read_only=read_only or bool(src.get("readOnly")),
        fs_type=src.get("fsType") or "",
        mount_flags=tuple(pspec.get("mountOptions") or ()),
        access_mode=modes[0],
        volume_context=ctx,
        publish_context=dict(publish_context or {}),
        stage_secrets=dict(s.get("nodeStageSecretRef") or {}),
        publish_secrets=dict(s.get("nodePublishSecretRef") or {}),
        expand_secrets=dict(s.get("nodeExpandSecretRef") or {}),
        fs_group=fs_group,
        fs_group_policy=fs_group_policy,
    )


def inline_handle(pod_uid: str, volume_name: str) -> str:
    """The volume handle the kubelet makes up for a CSI ephemeral inline volume."""
    return "csi-" + hashlib.sha256(f"{pod_uid}{volume_name}".encode()).hexdigest()


def pod_info_context(pod: Obj) -> dict[str, str]:
    meta, pspec = pod["metadata"], pod.get("spec") or {}
    return {
        spec.POD_NAME: meta["name"],
        spec.POD_NAMESPACE: meta.get("namespace", ""),
        spec.POD_UID: meta.get("uid", ""),
        spec.SERVICE_ACCOUNT: pspec.get("serviceAccountName") or "default",
    }


def source_from_inline(
    pod: Obj,
    volume: Obj,
    *,
    secrets: Mapping[str, str] | None = None,
    fs_group: int | None = None,
    fs_group_policy: str = "ReadWriteOnceWithFSType",
) -> VolumeSource:
    """The source of a pod's CSI ephemeral inline volume (`volumes[].csi`); `secrets` is the
    content of its `nodePublishSecretRef`."""
    src = volume["csi"]
    ctx = {**(src.get("volumeAttributes") or {}), **pod_info_context(pod)}
    ctx[spec.EPHEMERAL_CONTEXT] = "true"
    return VolumeSource(
        driver=src["driver"],
        volume_handle=inline_handle(pod["metadata"]["uid"], volume["name"]),
        name=volume["name"],
        read_only=bool(src.get("readOnly")),
        fs_type=src.get("fsType") or "",
        volume_context=ctx,
        publish_secrets=dict(secrets or {}),
        ephemeral=True,
        fs_group=fs_group,
        fs_group_policy=fs_group_policy,
    )


@dataclasses.dataclass
class MountedVolume:
    """A volume published for a pod: `path` is what to bind into its containers."""

    pod_uid: str
    name: str
    source: VolumeSource
    path: Path
    staging: Path | None


@dataclasses.dataclass(frozen=True)
class VolumeStats:
    capacity: int
    used: int
    available: int
    inodes: int = 0
    inodes_used: int = 0
    inodes_free: int = 0
    abnormal: bool = False
    message: str = ""


def _write_json(path: Path, doc: Obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, path)


def _set_group(path: Path, gid: int) -> None:
    """The kubelet's SetVolumeOwnership: group `gid`, group rw, setgid on directories."""
    for root, dirs, files in os.walk(path):
        for p in [root, *(os.path.join(root, n) for n in dirs + files)]:
            st = os.lstat(p)
            if os.path.islink(p):
                continue
            os.chown(p, -1, gid)
            mode = st.st_mode | 0o060 | (0o2010 if os.path.isdir(p) else 0)
            os.chmod(p, mode & 0o7777)


class VolumeManager:
    """Stages and publishes CSI volumes for the pods of one node below `root` (the agent's
    data directory, where `pods/` lives)."""

    def __init__(self, root: str | Path, drivers: DriverRegistry) -> None:
        self.root = Path(root)
        self.drivers = drivers
        self.volumes: dict[tuple[str, str], MountedVolume] = {}
        self.staged: dict[Path, set[tuple[str, str]]] = {}  # staging path -> users
        self._staged_src: dict[Path, VolumeSource] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    # -- paths ----------------------------------------------------------------------------------

    def volume_dir(self, pod_uid: str, name: str, block: bool) -> Path:
        kind = "volumeDevices" if block else "volumes"
        return self.root / "pods" / pod_uid / kind / PLUGIN / name

    def target_path(self, pod_uid: str, name: str, block: bool) -> Path:
        return self.volume_dir(pod_uid, name, block) / ("dev" if block else "mount")

    def staging_path(self, driver: str, handle: str) -> Path:
        digest = hashlib.sha256(handle.encode()).hexdigest()
        return self.root / "plugins" / "kubernetes.io" / "csi" / driver / digest / "globalmount"

    def _lock(self, key: Any) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def mounted(self, pod_uid: str | None = None) -> list[MountedVolume]:
        return [v for v in self.volumes.values() if pod_uid is None or v.pod_uid == pod_uid]

    # -- capabilities ---------------------------------------------------------------------------

    @staticmethod
    def _mount_group(driver: Driver, src: VolumeSource) -> str:
        if src.fs_group is None or src.block or src.fs_group_policy == "None":
            return ""
        return str(src.fs_group) if driver.capabilities.node("VOLUME_MOUNT_GROUP") else ""

    def _capability(self, driver: Driver, src: VolumeSource) -> csi.VolumeCapability:
        return spec.volume_capability(
            src.access_mode,
            block=src.block,
            fs_type=src.fs_type,
            mount_flags=src.mount_flags,
            mount_group=self._mount_group(driver, src),
            multi_writer=driver.capabilities.node("SINGLE_NODE_MULTI_WRITER"),
        )

    @staticmethod
    def _apply_fs_group(src: VolumeSource) -> bool:
        if src.fs_group is None or src.block or src.read_only:
            return False
        if src.fs_group_policy == "File":
            return True
        return (
            src.fs_group_policy == "ReadWriteOnceWithFSType"
            and bool(src.fs_type)
            and (src.access_mode == "ReadWriteOnce")
        )

    # -- mount ----------------------------------------------------------------------------------

    async def mount(self, pod_uid: str, name: str, src: VolumeSource) -> MountedVolume:
        """Stage (once per node) and publish `src` for the pod's volume `name`; idempotent.
        Raises `CSIError` (e.g. `DriverNotRegistered`) for the agent to retry with backoff."""
        key = (pod_uid, name)
        async with self._lock(key):
            have = self.volumes.get(key)
            if have is not None and have.source.volume_handle == src.volume_handle:
                return have
            driver = self.drivers.get(src.driver)
            cap = self._capability(driver, src)
            staging: Path | None = None
            if driver.capabilities.node("STAGE_UNSTAGE_VOLUME") and not src.ephemeral:
                staging = await self._stage(driver, src, cap, key)
            vdir = self.volume_dir(pod_uid, name, src.block)
            target = self.target_path(pod_uid, name, src.block)
            doc: Obj = {"podUID": pod_uid, "specVolID": name, "source": src.to_json()}
            doc |= {"stagingPath": str(staging or ""), "targetPath": str(target)}
            await asyncio.to_thread(_write_json, vdir / DATA_FILE, doc)
            await asyncio.to_thread(
                (vdir if src.block else target.parent).mkdir, parents=True, exist_ok=True
            )
            ctx = dict(src.volume_context)
            req = csi.NodePublishVolumeRequest(
                volume_id=src.volume_handle,
                publish_context=dict(src.publish_context),
                staging_target_path=str(staging or ""),
                target_path=str(target),
                volume_capability=cap,
                readonly=src.read_only,
                secrets=dict(src.publish_secrets),
                volume_context=ctx,
            )
            try:
                await driver.client.node_publish_volume(req)
            except errors.CSIError:
                if staging is not None:
                    self.staged.get(staging, set()).discard(key)
                raise
            if self._apply_fs_group(src) and not self._mount_group(driver, src):
                assert src.fs_group is not None
                await asyncio.to_thread(_set_group, target, src.fs_group)
            mv = MountedVolume(pod_uid, name, src, target, staging)
            self.volumes[key] = mv
            return mv

    async def _stage(
        self, driver: Driver, src: VolumeSource, cap: csi.VolumeCapability, user: tuple[str, str]
    ) -> Path:
        staging = self.staging_path(src.driver, src.volume_handle)
        async with self._lock(staging):
            users = self.staged.setdefault(staging, set())
            if staging in self._staged_src:
                users.add(user)
                return staging
            doc: Obj = {"driverName": src.driver, "volumeHandle": src.volume_handle}
            doc |= {"source": src.to_json(), "stagingPath": str(staging)}
            await asyncio.to_thread(_write_json, staging.parent / DATA_FILE, doc)
            await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
            req = csi.NodeStageVolumeRequest(
                volume_id=src.volume_handle,
                publish_context=dict(src.publish_context),
                staging_target_path=str(staging),
                volume_capability=cap,
                secrets=dict(src.stage_secrets),
                volume_context=dict(src.volume_context),
            )
            await driver.client.node_stage_volume(req)
            self._staged_src[staging] = src
            users.add(user)
            return staging

    # -- unmount --------------------------------------------------------------------------------

    async def unmount(self, pod_uid: str, name: str) -> None:
        """Unpublish the pod's volume `name` and unstage it if no other pod uses it."""
        key = (pod_uid, name)
        async with self._lock(key):
            mv = self.volumes.get(key)
            if mv is None:
                return
            driver = self.drivers.get(mv.source.driver)
            try:
                await driver.client.node_unpublish_volume(mv.source.volume_handle, str(mv.path))
            except errors.NotFoundError:
                pass  # the driver no longer knows the volume: nothing of it is mounted there
            await asyncio.to_thread(self._remove_volume_dir, mv)
            del self.volumes[key]
            if mv.staging is not None:
                await self._release(driver, mv.staging, key, mv.source.volume_handle)

    def _remove_volume_dir(self, mv: MountedVolume) -> None:
        vdir = self.volume_dir(mv.pod_uid, mv.name, mv.source.block)
        if mount.unmount_all(mv.path):
            log.warning("the driver left %s mounted; unmounted it", mv.path)
        shutil.rmtree(vdir, ignore_errors=True)

    async def _release(self, driver: Driver, staging: Path, user: Any, handle: str) -> None:
        async with self._lock(staging):
            users = self.staged.get(staging, set())
            users.discard(user)
            if users:
                return
            try:
                await driver.client.node_unstage_volume(handle, str(staging))
            except errors.NotFoundError:
                pass
            self.staged.pop(staging, None)
            self._staged_src.pop(staging, None)
            await asyncio.to_thread(self._remove_staging, staging)

    @staticmethod
    def _remove_staging(staging: Path) -> None:
        if mount.unmount_all(staging):
            log.warning("the driver left %s mounted; unmounted it", staging)
        shutil.rmtree(staging.parent, ignore_errors=True)

    async def unmount_pod(self, pod_uid: str) -> None:
        for mv in self.mounted(pod_uid):
            await self.unmount(mv.pod_uid, mv.name)

    # -- expansion and statistics ---------------------------------------------------------------

    async def expand(self, pod_uid: str, name: str, required_bytes: int) -> int | None:
        """`NodeExpandVolume` of a published volume to `required_bytes`; the new size, or None
        when the driver has no node expansion (nothing to do on the node)."""
        mv = self.volumes.get((pod_uid, name))
        if mv is None:
            raise KeyError(f"volume {name} of pod {pod_uid} is not mounted")
        driver = self.drivers.get(mv.source.driver)
        if not driver.capabilities.node("EXPAND_VOLUME"):
            return None
        req = csi.NodeExpandVolumeRequest(
            volume_id=mv.source.volume_handle,
            volume_path=str(mv.path),
            staging_target_path=str(mv.staging or ""),
            capacity_range=csi.CapacityRange(required_bytes=required_bytes),
            volume_capability=self._capability(driver, mv.source),
            secrets=dict(mv.source.expand_secrets),
        )
        return await driver.client.node_expand_volume(req)

    async def stats(self, pod_uid: str, name: str) -> VolumeStats | None:
        """Usage of a published volume, or None when the driver reports none."""
        mv = self.volumes.get((pod_uid, name))
        if mv is None:
            return None
        driver = self.drivers.get(mv.source.driver)
        if not driver.capabilities.node("GET_VOLUME_STATS"):
            return None
        r = await driver.client.node_get_volume_stats(
            mv.source.volume_handle, str(mv.path), str(mv.staging or "")
        )
        by_unit = {u.unit: u for u in r.usage}
        b = by_unit.get(csi.VolumeUsage.BYTES) or csi.VolumeUsage()
        i = by_unit.get(csi.VolumeUsage.INODES) or csi.VolumeUsage()
        cond = r.volume_condition
        return VolumeStats(
            b.total, b.used, b.available, i.total, i.used, i.available, cond.abnormal, cond.message
        )

    # -- restart --------------------------------------------------------------------------------

    def _scan(self) -> tuple[list[Obj], list[Obj]]:
        pods, staged = [], []
        for kind in ("volumes", "volumeDevices"):
            for f in sorted(self.root.glob(f"pods/*/{kind}/{PLUGIN}/*/{DATA_FILE}")):
                try:
                    pods.append(json.loads(f.read_text()))
                except (OSError, ValueError):
                    log.warning("unreadable %s; leaving it", f)
        for f in sorted(self.root.glob(f"plugins/kubernetes.io/csi/*/*/{DATA_FILE}")):
            try:
                staged.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                log.warning("unreadable %s; leaving it", f)
        return pods, staged

    async def reconstruct(self) -> list[MountedVolume]:
        """Rebuild the state from the `vol_data.json` files after a restart: every volume a
        pod had (published or half-way), and every staging. Returns the pods' volumes."""
        pods, staged = await asyncio.to_thread(self._scan)
        for doc in staged:
            path = Path(doc["stagingPath"])
            self._staged_src[path] = VolumeSource.from_json(doc["source"])
            self.staged.setdefault(path, set())
        out = []
        for doc in pods:
            src = VolumeSource.from_json(doc["source"])
            staging = Path(doc["stagingPath"]) if doc.get("stagingPath") else None
            key = (doc["podUID"], doc["specVolID"])
            mv = MountedVolume(key[0], key[1], src, Path(doc["targetPath"]), staging)
            self.volumes[key] = mv
            if staging is not None:
                self.staged.setdefault(staging, set()).add(key)
            out.append(mv)
        return out

    async def cleanup(self, active_pods: set[str]) -> list[MountedVolume]:
        """Unpublish the volumes of pods not in `active_pods` and unstage stagings nobody uses.
        Returns the volumes that could not be cleaned yet (their driver is not registered)."""
        left = []
        for mv in [v for v in self.volumes.values() if v.pod_uid not in active_pods]:
            try:
                await self.unmount(mv.pod_uid, mv.name)
            except errors.CSIError as e:
                log.warning("cannot clean up %s of pod %s yet: %s", mv.name, mv.pod_uid, e)
                left.append(mv)
        for staging in [p for p, users in self.staged.items() if not users]:
            src = self._staged_src.get(staging)
            if src is None:
                continue
            try:
                driver = self.drivers.get(src.driver)
                await self._release(driver, staging, None, src.volume_handle)
            except errors.CSIError as e:
                log.warning("cannot unstage %s yet: %s", staging, e)
        return left
