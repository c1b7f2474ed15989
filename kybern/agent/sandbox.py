"""A pod's CRI sandbox as a kubelet configures it: the PodSandboxConfig (metadata and attempt,
hostname and subdomain, log directory, DNS config by `dnsPolicy` and `dnsConfig`, host port
mappings, labels and annotations, the cgroup parent of the pod's QoS class under the cgroupfs
driver, sysctls and the sandbox security context), the kubelet-managed /etc/hosts, and the pod
cgroup paths the agent removes once the pod is gone (runc creates them; nothing else would remove
the empty directories). Pure except for `remove_pod_cgroups` (blocking; run it in a thread)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kybern.agent import common
from kybern.cri import api, messages

Obj = common.Obj
CGROUP_FS = Path("/sys/fs/cgroup")
MAX_DNS_SEARCH = 32
MAX_DNS_SERVERS = 3
_PROTOCOLS = {"TCP": api.TCP, "UDP": api.UDP, "SCTP": api.SCTP}


@dataclass
class DNSSettings:
    """The node's DNS facts: cluster DNS servers and domain (kubelet's --cluster-dns and
    --cluster-domain) and the host's resolv.conf contents (for `Default`)."""

    cluster_dns: Sequence[str] = ()
    cluster_domain: str = "cluster.local"
    host_servers: Sequence[str] = ()
    host_searches: Sequence[str] = ()
    host_options: Sequence[str] = ()


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return servers, searches, options


def _merge_options(base: Iterable[str], extra: Iterable[Obj]) -> list[str]:
    out: dict[str, str] = {}
    for opt in base:
        out[opt.partition(":")[0]] = opt
    for item in extra:
        name = str(item.get("name", ""))
        if not name:
            continue
        value = item.get("value")
        out[name] = f"{name}:{value}" if value is not None else name
    return list(out.values())


def dns_config(pod: Obj, dns: DNSSettings) -> api.DNSConfig:
    """The sandbox DNS config for `pod` (kubelet's GetPodDNS)."""
    spec = common.spec(pod)
    policy = str(spec.get("dnsPolicy") or "ClusterFirst")
    host_net = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirst" and host_net:
        policy = "Default"
    elif policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy == "ClusterFirst" and not dns.cluster_dns:
        policy = "Default"  # kubelet falls back when no cluster DNS is configured
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirst":
        ns = common.meta(pod).get("namespace", "")
        domain = dns.cluster_domain
        servers = list(dns.cluster_dns)
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain, *dns.host_searches]
        options = ["ndots:5"]
    elif policy == "Default":
        servers = list(dns.host_servers)
        searches = list(dns.host_searches)
        options = list(dns.host_options)
    extra = spec.get("dnsConfig") or {}
    for s in extra.get("nameservers") or []:
        if s not in servers:
            servers.append(str(s))
    for s in extra.get("searches") or []:
        if s not in searches:
            searches.append(str(s))
    options = _merge_options(options, extra.get("options") or [])
    return api.DNSConfig(
        servers=servers[:MAX_DNS_SERVERS],
        searches=list(dict.fromkeys(searches))[:MAX_DNS_SEARCH],
        options=options,
    )


def port_mappings(pod: Obj) -> list[api.PortMapping]:
    """Host port mappings of every container port with a hostPort (hostNetwork pods need none:
    the port is the host's already)."""
    if common.host_network(pod):
        return []
    out = []
    for c in common.containers(pod) + common.containers(pod, "initContainers"):
        for p in c.get("ports") or []:
            if not isinstance(p, dict) or not p.get("hostPort"):
                continue
            out.append(
                api.PortMapping(
                    protocol=_PROTOCOLS.get(str(p.get("protocol") or "TCP"), api.TCP),
                    container_port=int(p.get("containerPort", 0)),
                    host_port=int(p["hostPort"]),
                    host_ip=str(p.get("hostIP") or ""),
                )
            )
    return out


def hostname(pod: Obj) -> tuple[str, str]:
    """(hostname, subdomain FQDN suffix or "") of the pod: spec.hostname or the pod's name cut
    to 63 characters."""
    spec = common.spec(pod)
    name = str(spec.get("hostname") or common.meta(pod).get("name", ""))[:63].rstrip("-.")
    return name, str(spec.get("subdomain") or "")


def fqdn(pod: Obj, cluster_domain: str) -> str:
    name, sub = hostname(pod)
    if not sub:
        return ""
    ns = common.meta(pod).get("namespace", "")
    return f"{name}.{sub}.{ns}.svc.{cluster_domain}"


def cgroup_parent(pod: Obj, root: str = "/") -> str:
    """The pod's cgroup under the cgroupfs driver: `<root>/kubepods[/burstable|/besteffort]/
    pod<uid>` (Guaranteed pods sit directly under kubepods)."""
    qos = common.qos_class(pod)
    parts = [root.rstrip("/"), "kubepods"]
    if qos != "Guaranteed":
        parts.append(qos.lower())
    parts.append(f"pod{common.pod_uid(pod)}")
    return "/".join(parts) if parts[0] else "/" + "/".join(parts[1:])


def sandbox_security(pod: Obj) -> api.LinuxSandboxSecurityContext:
    spec = common.spec(pod)
    psc = spec.get("securityContext") or {}
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    privileged = any(
        bool((c.get("securityContext") or {}).get("privileged"))
        for c in common.containers(pod) + common.containers(pod, "initContainers")
    )
    out = api.LinuxSandboxSecurityContext(
        namespace_options=messages.namespace_options(
            host_network=bool(spec.get("hostNetwork")),
            host_pid=bool(spec.get("hostPID")),
            host_ipc=bool(spec.get("hostIPC")),
        ),
        supplemental_groups=sorted(set(groups)),
        privileged=privileged,
        seccomp=api.SecurityProfile(profile_type=api.SecurityProfile.Unconfined),
    )
    if spec.get("shareProcessNamespace"):
        out.namespace_options.pid = api.POD
    if psc.get("runAsUser") is not None:
        out.run_as_user.CopyFrom(api.Int64Value(value=int(psc["runAsUser"])))
    if psc.get("runAsGroup") is not None:
        out.run_as_group.CopyFrom(api.Int64Value(value=int(psc["runAsGroup"])))
    return out


@dataclass
class SandboxInputs:
    attempt: int = 0
    log_directory: str = ""
    dns: DNSSettings = field(default_factory=DNSSettings)
    cgroup_root: str = "/"


def pod_log_directory(base: str, pod: Obj) -> str:
    """kubelet's `/var/log/pods/<namespace>_<name>_<uid>` below `base`."""
    m = common.meta(pod)
    return f"{base.rstrip('/')}/{m.get('namespace', '')}_{m.get('name', '')}_{m.get('uid', '')}"


def sandbox_config(pod: Obj, inputs: SandboxInputs) -> api.PodSandboxConfig:
    m = common.meta(pod)
    spec = common.spec(pod)
    name, _ = hostname(pod)
    full = fqdn(pod, inputs.dns.cluster_domain)
    if spec.get("setHostnameAsFQDN") and full:
        name = full[:64]
    labels = {str(k): str(v) for k, v in (m.get("labels") or {}).items()}
    labels.update(
        {
            common.POD_NAME_LABEL: str(m.get("name", "")),
            common.POD_NAMESPACE_LABEL: str(m.get("namespace", "")),
            common.POD_UID_LABEL: str(m.get("uid", "")),
        }
    )
    annotations = {str(k): str(v) for k, v in (m.get("annotations") or {}).items()}
    sysctls = {
        str(s.get("name")): str(s.get("value", ""))
        for s in (spec.get("securityContext") or {}).get("sysctls") or []
        if isinstance(s, dict) and s.get("name")
    }
    cfg = messages.sandbox_config(
        str(m.get("name", "")),
        str(m.get("namespace", "")),
        str(m.get("uid", "")),
        attempt=inputs.attempt,
        hostname=name,
        log_directory=inputs.log_directory,
        host_network=bool(spec.get("hostNetwork")),
        host_pid=bool(spec.get("hostPID")),
        host_ipc=bool(spec.get("hostIPC")),
        labels=labels,
        annotations=annotations,
        cgroup_parent=cgroup_parent(pod, inputs.cgroup_root),
        dns=dns_config(pod, inputs.dns),
        port_mappings=port_mappings(pod),
        sysctls=sysctls,
    )
    cfg.linux.security_context.CopyFrom(sandbox_security(pod))
    return cfg


# ---- /etc/hosts ------------------------------------------------------------------------------

_HOSTS_HEADER = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def hosts_file(pod: Obj, pod_ips: Sequence[str], cluster_domain: str, host_text: str = "") -> str:
    """The /etc/hosts kubelet gives a pod's containers: the standard entries and the pod's
    addresses with its hostname (FQDN first when it has a subdomain), or for a hostNetwork pod
    the host's own file; then the pod's hostAliases."""
    if common.host_network(pod):
        out = "# Kubernetes-managed hosts file (host network).\n" + host_text
        if out and not out.endswith("\n"):
            out += "\n"
    else:
        out = _HOSTS_HEADER
        name, _ = hostname(pod)
        full = fqdn(pod, cluster_domain)
        for ip in pod_ips:
            out += f"{ip}\t{full}\t{name}\n" if full else f"{ip}\t{name}\n"
    aliases = [a for a in common.spec(pod).get("hostAliases") or [] if isinstance(a, dict)]
    if aliases:
        out += "\n# Entries added by HostAliases.\n"
        for a in aliases:
            out += f"{a.get('ip', '')}\t{chr(9).join(a.get('hostnames') or [])}\n"
    return out


# ---- cgroups ---------------------------------------------------------------------------------


def cgroup_dirs(parent: str, root: Path = CGROUP_FS) -> list[Path]:
    """The directories of cgroup path `parent` in every mounted hierarchy below `root` (one for
    the unified cgroup v2 hierarchy, one per controller for v1)."""
    rel = parent.strip("/")
    if (root / "cgroup.controllers").exists():  # cgroup v2 mounted at the root
        return [root / rel]
    out: list[Path] = []
    with contextlib.suppress(OSError):
        for h in sorted(root.iterdir()):
            if h.is_dir() and not h.is_symlink():
                out.append(h / rel)
    return out


def remove_cgroup(parent: str, root: Path = CGROUP_FS) -> list[str]:
    """rmdir `parent` (and its empty children, deepest first) in every hierarchy; returns what
    could not be removed (still in use). Blocking."""
    left = []
    for d in cgroup_dirs(parent, root):
        if not d.exists():
            continue
        subdirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for p in [*subdirs, d]:
            try:
                os.rmdir(p)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(str(p))
    return left


def remove_if_empty(parent: str, root: Path = CGROUP_FS) -> None:
    """rmdir `parent` in every hierarchy where it has no child cgroups. Blocking."""
    for d in cgroup_dirs(parent, root):
        with contextlib.suppress(OSError):
            os.rmdir(d)
