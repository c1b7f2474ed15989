"""Builders for the CRI messages every caller assembles, so that a sandbox or container config
reads as the Kubernetes concepts it carries: `sandbox_config` (pod name/namespace/uid/attempt,
hostname, log directory, DNS, port mappings, host network/PID/IPC namespaces, cgroup parent,
labels and annotations) and `container_config` (image, command/args, env, working dir, mounts,
log path, tty/stdin), plus filters and the names of states. Pure functions over
`kybern.cri.api`; the agent builds pods' configs on top of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kybern.cri.gen import api_pb2 as api


def namespace_options(
    *, host_network: bool = False, host_pid: bool = False, host_ipc: bool = False
) -> api.NamespaceOption:
    """Namespaces as a kubelet sets them: NODE for host*, else POD network/IPC and CONTAINER
    PID (a v1 pod without shareProcessNamespace)."""
    return api.NamespaceOption(
        network=api.NODE if host_network else api.POD,
        pid=api.NODE if host_pid else api.CONTAINER,
        ipc=api.NODE if host_ipc else api.POD,
    )


def sandbox_config(
    name: str,
    namespace: str,
    uid: str,
    *,
    attempt: int = 0,
    hostname: str = "",
    log_directory: str = "",
    host_network: bool = False,
    host_pid: bool = False,
    host_ipc: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    cgroup_parent: str = "",
    dns: api.DNSConfig | None = None,
    port_mappings: Iterable[api.PortMapping] = (),
    sysctls: Mapping[str, str] | None = None,
) -> api.PodSandboxConfig:
    """A PodSandboxConfig for one pod. As a kubelet does, a host-network pod gets no hostname
    (it shares the node's UTS namespace; runc refuses to set a hostname there)."""
    security = api.LinuxSandboxSecurityContext(
        namespace_options=namespace_options(
            host_network=host_network, host_pid=host_pid, host_ipc=host_ipc
        )
    )
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=attempt),
        hostname="" if host_network else hostname,
        log_directory=log_directory,
        dns_config=dns,
        port_mappings=list(port_mappings),
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent, security_context=security, sysctls=dict(sysctls or {})
        ),
    )


def container_config(
    name: str,
    image: str,
    *,
    command: Iterable[str] = (),
    args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    working_dir: str = "",
    log_path: str = "",
    attempt: int = 0,
    mounts: Iterable[api.Mount] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    tty: bool = False,
    stdin: bool = False,
    stdin_once: bool = False,
    linux: api.LinuxContainerConfig | None = None,
) -> api.ContainerConfig:
    """A ContainerConfig; `command`/`args` override the image's Entrypoint/Cmd as in a pod.
    `env` keeps its order (a Kubernetes env list may refer to earlier entries)."""
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=attempt),
        image=api.ImageSpec(image=image, user_specified_image=image),
        command=list(command),
        args=list(args),
        envs=[api.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
        working_dir=working_dir,
        log_path=log_path,
        mounts=list(mounts),
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
        tty=tty,
        stdin=stdin,
        stdin_once=stdin_once,
        linux=linux,
    )


def container_filter(
    *,
    id: str = "",
    pod_sandbox_id: str = "",
    state: api.ContainerState | None = None,
    labels: Mapping[str, str] | None = None,
) -> api.ContainerFilter:
    return api.ContainerFilter(
        id=id,
        pod_sandbox_id=pod_sandbox_id,
        state=api.ContainerStateValue(state=state) if state is not None else None,
        label_selector=dict(labels or {}),
    )


def sandbox_filter(
    *,
    id: str = "",
    state: api.PodSandboxState | None = None,
    labels: Mapping[str, str] | None = None,
) -> api.PodSandboxFilter:
    return api.PodSandboxFilter(
        id=id,
        state=api.PodSandboxStateValue(state=state) if state is not None else None,
        label_selector=dict(labels or {}),
    )


def container_state_name(state: int) -> str:
    """`CONTAINER_RUNNING` etc. for a ContainerState value."""
    return api.ContainerState.Name(state)


def sandbox_state_name(state: int) -> str:
    """`SANDBOX_READY` / `SANDBOX_NOTREADY` for a PodSandboxState value."""
    return api.PodSandboxState.Name(state)
