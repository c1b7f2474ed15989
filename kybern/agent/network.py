"""The node's pod network configuration, where the CRI runtime reads it: once the node has its
podCIDR, the agent writes a CNI network list into its CNI conf dir (bridge with host-local IPAM on
the podCIDR, a gateway on the bridge and masquerading of outbound traffic, then portmap for
hostPorts (`portMappings` capability) and loopback), atomically and mode 0644. A configuration
the user put there (any network that is not kybern's own or the runtime's loopback placeholder)
is left untouched and used as it is. Also checks that the plugins are present in the CNI bin
dirs. The runtime (containerd) invokes the plugins itself."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kybern.cni import config as cni_config
from kybern.cni import errors as cni_errors

log = logging.getLogger("kybern.agent")
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
NETWORK_NAME = "kybern"
BRIDGE_NAME = "kybern0"
CONF_FILE = "05-kybern.conflist"  # sorts before the runtime's loopback placeholder
PLACEHOLDER_NETWORKS = ("kybern-loopback",)
PLUGINS = ("bridge", "host-local", "portmap", "loopback")


@dataclass(frozen=True)
class Settings:
    conf_dir: Path = Path(DEFAULT_CONF_DIR)
    bin_dirs: tuple[str, ...] = DEFAULT_BIN_DIRS
    network: str = NETWORK_NAME
    bridge: str = BRIDGE_NAME
    ipam_dir: str = ""  # host-local's store (default: its own, /var/lib/cni/networks)
    mtu: int = 0


def conflist(cidrs: Sequence[str], s: Settings) -> dict[str, object]:
    """The default network list for a node whose pods get addresses from `cidrs`."""
    ranges = []
    routes = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        ranges.append([{"subnet": str(net), "gateway": str(net.network_address + 1)}])
        routes.append({"dst": "0.0.0.0/0" if net.version == 4 else "::/0"})
    ipam: dict[str, object] = {"type": "host-local", "ranges": ranges, "routes": routes}
    if s.ipam_dir:
        ipam["dataDir"] = s.ipam_dir
    bridge: dict[str, object] = {
        "type": "bridge",
        "bridge": s.bridge,
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": ipam,
    }
    if s.mtu:
        bridge["mtu"] = s.mtu
    return {
        "cniVersion": "1.0.0",
        "name": s.network,
        "plugins": [
            bridge,
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "loopback"},
        ],
    }


def render(cidrs: Sequence[str], s: Settings) -> bytes:
    return (json.dumps(conflist(cidrs, s), indent=2) + "\n").encode()


def user_config(conf_dir: Path, own: str = NETWORK_NAME) -> tuple[Path, str] | None:
    """(file, network name) of the first configuration in `conf_dir` that is neither ours nor a
    placeholder: the user's own network, left alone. Blocking."""
    for path in cni_config.conf_files(conf_dir):
        try:
            net = cni_config.load_file(path)
        except (cni_errors.ConfigError, OSError):
            return path, ""  # not ours to judge: leave it and everything else alone
        if net.name != own and net.name not in PLACEHOLDER_NETWORKS:
            return path, net.name
    return None


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Replace `path` with `data` in one rename; False if it already holds exactly that."""
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def missing_plugins(bin_dirs: Sequence[str], plugins: Sequence[str] = PLUGINS) -> list[str]:
    """The plugins of the default network found in none of `bin_dirs`. Blocking."""
    return [p for p in plugins if not any(os.access(Path(d) / p, os.X_OK) for d in bin_dirs)]


@dataclass(frozen=True)
class State:
    ready: bool
    message: str = ""
    network: str = ""  # the pod network the runtime should load ("" unknown)


def ensure(cidrs: Sequence[str], s: Settings) -> State:
    """Write the node's network list unless the user has their own. Blocking."""
    user = user_config(s.conf_dir, s.network)
    if user is not None:
        return State(True, f"using the CNI configuration {user[0]}", user[1])
    if not cidrs:
        return State(False, "network not ready: waiting for the node's podCIDR")
    missing = missing_plugins(s.bin_dirs)
    if missing:
        log.warning("CNI plugins %s not found in %s", missing, ":".join(s.bin_dirs))
    if write_atomic(s.conf_dir / CONF_FILE, render(cidrs, s)):
        log.info("wrote %s for pod CIDR %s", s.conf_dir / CONF_FILE, ", ".join(cidrs))
    return State(True, "", s.network)


def loaded_pod_network(cniconfig: str) -> str | None:
    """The name of the network containerd sets up a pod's eth0 with, from the `cniconfig` of
    its verbose CRI status (None when the text says nothing)."""
    try:
        doc = json.loads(cniconfig)
    except ValueError:
        return None
    for net in doc.get("Networks") or [] if isinstance(doc, dict) else []:
        if isinstance(net, dict) and net.get("IFName") == "eth0":
            return str((net.get("Config") or {}).get("Name", ""))
    return ""


def remove(s: Settings) -> None:
    """Remove the network list the agent wrote (not the user's). Blocking."""
    with contextlib.suppress(OSError):
        os.unlink(s.conf_dir / CONF_FILE)


async def _iptables(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {err.decode().strip()}")
    return out.decode()


async def remove_leftover_rules(network: str = NETWORK_NAME) -> list[str]:
    """Remove the NAT chains that the bridge (masquerading) and portmap (hostPort) plugins made
    for containers of `network`, and the rules jumping to them: what a DEL cut short (a plugin
    killed when its caller went away) leaves behind. Only for when none of the network's
    containers exists any more (`kybern up` after its runtime stopped). Returns the chains."""
    marker = f'name: "{network}" id: '
    dump = await _iptables("iptables-save", "-t", "nat")
    rules = [shlex.split(line) for line in dump.splitlines() if line.startswith("-A ")]
    chains = {
        r[1]
        for r in rules
        if r[1].startswith("CNI-")
        and not r[1].startswith("CNI-HOSTPORT-")
        and any(marker in word for word in r)
    }
    for r in rules:
        target = r[r.index("-j") + 1] if "-j" in r else ""
        if target in chains and r[1] not in chains:
            with contextlib.suppress(OSError):
                await _iptables("iptables", "-t", "nat", "-D", *r[1:])
    for chain in sorted(chains):
        with contextlib.suppress(OSError):
            await _iptables("iptables", "-t", "nat", "-F", chain)
            await _iptables("iptables", "-t", "nat", "-X", chain)
    if chains:
        log.info("removed %d iptables chains left by CNI plugins of %s", len(chains), network)
    return sorted(chains)


HOSTPORT_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


async def remove_idle_hostport_chains() -> bool:
    """Remove the portmap plugin's shared NAT chains (and the jumps to them) when no container
    on the host has a hostPort any more: the plugin makes them on first use and never removes
    them, and makes them again when next needed. True when they were removed."""
    dump = await _iptables("iptables-save", "-t", "nat")
    rules = [shlex.split(line) for line in dump.splitlines() if line.startswith("-A ")]
    present = {line[1:].split()[0] for line in dump.splitlines() if line.startswith(":")}
    if not present & set(HOSTPORT_CHAINS):
        return False
    busy = [r for r in rules if r[1] == "CNI-HOSTPORT-DNAT"]
    setmark_users = [
        r
        for r in rules
        if "-j" in r
        and r[r.index("-j") + 1] == "CNI-HOSTPORT-SETMARK"
        and r[1] not in HOSTPORT_CHAINS
    ]
    if busy or setmark_users:
        return False
    for r in rules:
        target = r[r.index("-j") + 1] if "-j" in r else ""
        if target in HOSTPORT_CHAINS and r[1] not in HOSTPORT_CHAINS:
            with contextlib.suppress(OSError):
                await _iptables("iptables", "-t", "nat", "-D", *r[1:])
    for chain in HOSTPORT_CHAINS:
        if chain in present:
            with contextlib.suppress(OSError):
                await _iptables("iptables", "-t", "nat", "-F", chain)
                await _iptables("iptables", "-t", "nat", "-X", chain)
    return True
