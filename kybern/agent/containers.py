"""The CRI `ContainerConfig` of one container of a pod, as a kubelet builds it: metadata and the
kubelet's labels/annotations (pod and container names, restart count, spec hash, termination
message settings, grace period), command and args with `$(VAR)` expansion, the environment, the
working directory, mounts (the pod's volumes with subPath, the kubelet-managed /etc/hosts and
the termination message file), devices (block volumes' volumeDevices), the log path, tty/stdin,
resources (CPU shares, quota and period, memory limit, OOM score) and the Linux security context
(user, group, supplemental groups, privileged, capabilities, read-only root, no_new_privs,
seccomp, masked paths). Pure: the caller has already resolved the environment and the volumes'
host paths."""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kybern.agent import common, env
from kybern.cri import api, messages

Obj = common.Obj

CPU_PERIOD = 100_000  # µs, the CFS period kubelet uses
MIN_SHARES = 2
MIN_QUOTA = 1_000
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# kubelet's default masked and read-only paths (the runtime's defaults for unprivileged containers)
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
_PROPAGATION = {
    "None": api.PROPAGATION_PRIVATE,
    "HostToContainer": api.PROPAGATION_HOST_TO_CONTAINER,
    "Bidirectional": api.PROPAGATION_BIDIRECTIONAL,
}


class MountError(env.ConfigError):
    """A volumeMount names no volume of the pod, or a subPath escapes its volume."""


def container_hash(container: Obj) -> str:
    """A stable hash of a container's spec (without resources, which may change in place): a
    running container whose hash differs from its spec's is restarted."""
    spec = {k: v for k, v in container.items() if k != "resources"}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def cpu_shares(milli: int) -> int:
    """kubelet's MilliCPUToShares: 1024 shares per CPU, at least 2."""
    return max(milli * 1024 // 1000, MIN_SHARES) if milli else MIN_SHARES


def cpu_quota(milli: int, period: int = CPU_PERIOD) -> int:
    """kubelet's MilliCPUToQuota (0: no limit), at least 1 ms per period."""
    if not milli:
        return 0
    return max(milli * period // 1000, MIN_QUOTA)


def oom_score_adj(qos: str, memory_request: int, memory_capacity: int) -> int:
    """kubelet's OOM score policy: Guaranteed -997, BestEffort 1000, Burstable by share of the
    node's memory it requests (2..999)."""
    if qos == "Guaranteed":
        return -997
    if qos == "BestEffort":
        return 1000
    if memory_capacity <= 0:
        return 999
    adj = 1000 - (1000 * memory_request) // memory_capacity
    return min(max(adj, 2), 999)


def linux_resources(
    pod: Obj, container: Obj, memory_capacity: int = 0
) -> api.LinuxContainerResources:
    requests, limits = common.resources(container)
    cpu_request = common.milli_cpu(requests.get("cpu"))
    cpu_limit = common.milli_cpu(limits.get("cpu"))
    if not cpu_request and cpu_limit:
        cpu_request = cpu_limit
    return api.LinuxContainerResources(
        cpu_period=CPU_PERIOD if cpu_limit else 0,
        cpu_quota=cpu_quota(cpu_limit),
        cpu_shares=cpu_shares(cpu_request),
        memory_limit_in_bytes=common.int_bytes(limits.get("memory")),
        oom_score_adj=oom_score_adj(
            common.qos_class(pod), common.int_bytes(requests.get("memory")), memory_capacity
        ),
    )


def _seccomp(sc: Obj | None, pod_sc: Obj) -> api.SecurityProfile:
    profile = (sc or {}).get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    typ = profile.get("type")
    if typ == "RuntimeDefault":
        return api.SecurityProfile(profile_type=api.SecurityProfile.RuntimeDefault)
    if typ == "Localhost":
        return api.SecurityProfile(
            profile_type=api.SecurityProfile.Localhost,
            localhost_ref=str(profile.get("localhostProfile", "")),
        )
    return api.SecurityProfile(profile_type=api.SecurityProfile.Unconfined)


def effective_user(pod: Obj, container: Obj) -> tuple[int | None, int | None]:
    """(runAsUser, runAsGroup): the container's, else the pod's."""
    sc = container.get("securityContext") or {}
    pod_sc = common.spec(pod).get("securityContext") or {}
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    return (None if user is None else int(user)), (None if group is None else int(group))


def check_non_root(pod: Obj, container: Obj, image_uid: int | None, image_user: str) -> None:
    """`runAsNonRoot`: refuse a container that would run as root (kubelet's verifyRunAsNonRoot)."""
    sc = container.get("securityContext") or {}
    pod_sc = common.spec(pod).get("securityContext") or {}
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        return
    user, _ = effective_user(pod, container)
    if user is not None:
        if user == 0:
            raise env.ConfigError("container's runAsUser breaks non-root policy")
        return
    if image_uid is not None:
        if image_uid == 0:
            raise env.ConfigError("container has runAsNonRoot and image will run as root")
        return
    if image_user and not image_user.isdigit():
        raise env.ConfigError(
            f"container has runAsNonRoot and image has non-numeric user ({image_user}), "
            "cannot verify user is non-root"
        )
    raise env.ConfigError("container has runAsNonRoot and image will run as root")


def security_context(pod: Obj, container: Obj) -> api.LinuxContainerSecurityContext:
    spec = common.spec(pod)
    sc = container.get("securityContext") or {}
    pod_sc = spec.get("securityContext") or {}
    user, group = effective_user(pod, container)
    privileged = bool(sc.get("privileged"))
    caps = sc.get("capabilities") or {}
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    allow_escalation = sc.get("allowPrivilegeEscalation")
    out = api.LinuxContainerSecurityContext(
        capabilities=api.Capability(
            add_capabilities=[str(c) for c in caps.get("add") or []],
            drop_capabilities=[str(c) for c in caps.get("drop") or []],
        ),
        privileged=privileged,
        namespace_options=messages.namespace_options(
            host_network=bool(spec.get("hostNetwork")),
            host_pid=bool(spec.get("hostPID")),
            host_ipc=bool(spec.get("hostIPC")),
        ),
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        supplemental_groups=sorted(set(groups)),
        no_new_privs=allow_escalation is False,
        seccomp=_seccomp(sc, pod_sc),
        masked_paths=[] if privileged else list(MASKED_PATHS),
        readonly_paths=[] if privileged else list(READONLY_PATHS),
    )
    if spec.get("shareProcessNamespace"):
        out.namespace_options.pid = api.POD
    if user is not None:
        out.run_as_user.CopyFrom(api.Int64Value(value=user))
    if group is not None:
        out.run_as_group.CopyFrom(api.Int64Value(value=group))
    return out


def safe_sub_path(sub_path: str) -> str:
    """A subPath relative to its volume; MountError if absolute or escaping with `..`."""
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        raise MountError(f"subPath {sub_path!r} must be a relative path without '..'")
    return posixpath.normpath(sub_path)


@dataclass
class PodFiles:
    """Host paths of the pod-level files a container may get: the managed /etc/hosts (empty:
    none) and this container's termination message file."""

    etc_hosts: str = ""
    termination_log: str = ""


def mounts(
    pod: Obj,
    container: Obj,
    volumes: Mapping[str, str],
    files: PodFiles,
    environment: Mapping[str, str] | None = None,
    *,
    read_only: Iterable[str] = (),
) -> list[api.Mount]:
    """The container's CRI mounts: its volumeMounts (host path of the volume, plus subPath or
    the expanded subPathExpr), /etc/hosts (unless the container mounts something there) and
    the termination message file. Projected kinds, claims and CSI volumes marked `readOnly` in
    the pod's volume, and the volumes in `read_only`, are mounted read-only."""
    out: list[api.Mount] = []
    readonly_volumes = {name: True for name in read_only}
    for v in common.spec(pod).get("volumes") or []:
        if any(
            isinstance(v.get(k), dict) for k in ("configMap", "secret", "downwardAPI", "projected")
        ) or any((v.get(k) or {}).get("readOnly") for k in ("persistentVolumeClaim", "csi")):
            readonly_volumes[v.get("name")] = True
    for vm in container.get("volumeMounts") or []:
        name = vm.get("name", "")
        if name not in volumes:
            raise MountError(f"volumeMount {name!r}: no such volume in the pod")
        host = volumes[name]
        sub = vm.get("subPath") or ""
        if not sub and vm.get("subPathExpr"):
            sub = env.expand(str(vm["subPathExpr"]), environment or {})
        if sub:
            host = posixpath.join(host, safe_sub_path(sub))
        out.append(
            api.Mount(
                container_path=str(vm.get("mountPath", "")),
                host_path=host,
                readonly=bool(vm.get("readOnly")) or readonly_volumes.get(name, False),
                propagation=_PROPAGATION.get(
                    str(vm.get("mountPropagation") or "None"), api.PROPAGATION_PRIVATE
                ),
            )
        )
    targets = {m.container_path for m in out}
    if files.etc_hosts and "/etc/hosts" not in targets:
        out.append(api.Mount(container_path="/etc/hosts", host_path=files.etc_hosts))
    path = termination_message_path(container)
    if files.termination_log and path and path not in targets:
        out.append(api.Mount(container_path=path, host_path=files.termination_log))
    return out


def devices(container: Obj, block_volumes: Mapping[str, str]) -> list[api.Device]:
    """The container's CRI devices: its volumeDevices (a block volume's device file on the
    host, at `devicePath` in the container)."""
    out = []
    for d in container.get("volumeDevices") or []:
        name = str(d.get("name", ""))
        if name not in block_volumes:
            raise MountError(f"volumeDevice {name!r}: no such block volume in the pod")
        out.append(
            api.Device(
                container_path=str(d.get("devicePath", "")),
                host_path=block_volumes[name],
                permissions="rwm",
            )
        )
    return out


def termination_message_path(container: Obj) -> str:
    path = container.get("terminationMessagePath")
    return DEFAULT_TERMINATION_MESSAGE_PATH if path is None else str(path)


def log_path(container_name: str, restart_count: int) -> str:
    """The container's log file relative to the pod's log directory (kubelet's layout)."""
    return f"{container_name}/{restart_count}.log"


@dataclass
class Inputs:
    """Everything a ContainerConfig is built from besides the pod and container."""

    kind: str = "app"  # "init" | "app"
    restart_count: int = 0
    image: str = ""  # the image to run (the pulled image's id or the reference)
    env: Sequence[tuple[str, str]] = ()
    mounts: Sequence[api.Mount] = ()
    devices: Sequence[api.Device] = ()
    memory_capacity: int = 0
    extra_annotations: Mapping[str, str] = field(default_factory=dict)


def container_labels(pod: Obj, container_name: str) -> dict[str, str]:
    m = common.meta(pod)
    return {
        common.POD_NAME_LABEL: str(m.get("name", "")),
        common.POD_NAMESPACE_LABEL: str(m.get("namespace", "")),
        common.POD_UID_LABEL: str(m.get("uid", "")),
        common.CONTAINER_NAME_LABEL: container_name,
    }


def container_annotations(pod: Obj, container: Obj, inputs: Inputs) -> dict[str, str]:
    out = {
        common.CONTAINER_HASH: container_hash(container),
        common.RESTART_COUNT: str(inputs.restart_count),
        common.TERMINATION_MESSAGE_PATH: termination_message_path(container),
        common.TERMINATION_MESSAGE_POLICY: str(container.get("terminationMessagePolicy") or "File"),
        common.TERMINATION_GRACE: str(common.grace_period(pod)),
        common.CONTAINER_KIND: inputs.kind,
    }
    ports = [p for p in container.get("ports") or [] if isinstance(p, dict)]
    if ports:
        out[common.CONTAINER_PORTS] = json.dumps(ports, sort_keys=True)
    out.update(inputs.extra_annotations)
    return out


def container_config(pod: Obj, container: Obj, inputs: Inputs) -> api.ContainerConfig:
    """The ContainerConfig for CreateContainer."""
    name = str(container.get("name", ""))
    environment = dict(inputs.env)
    cfg = messages.container_config(
        name,
        inputs.image or str(container.get("image", "")),
        command=env.expand_all(container.get("command") or [], environment),
        args=env.expand_all(container.get("args") or [], environment),
        env=environment,
        working_dir=str(container.get("workingDir") or ""),
        log_path=log_path(name, inputs.restart_count),
        attempt=inputs.restart_count,
        mounts=inputs.mounts,
        labels=container_labels(pod, name),
        annotations=container_annotations(pod, container, inputs),
        tty=bool(container.get("tty")),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        linux=api.LinuxContainerConfig(
            resources=linux_resources(pod, container, inputs.memory_capacity),
            security_context=security_context(pod, container),
        ),
    )
    cfg.image.user_specified_image = str(container.get("image", ""))
    cfg.devices.extend(inputs.devices)
    return cfg
