"""Helpers of the CNI end-to-end tests: a `HostNet` that owns everything a test module creates on
the host (network namespaces, the bridge, the iptables rules and chains the bridge and portmap
plugins add, IP forwarding) and removes exactly that again, a subnet picker that avoids every
address and route in use, the test plugin installer, and `wait_for` with a deadline. Traffic goes
only to addresses inside the namespaces created here and to loopback."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
REF_BIN = "/usr/lib/cni"
SHARED_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def sh(*argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")
        time.sleep(0.02)


def used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for route in json.loads(sh("ip", "-j", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(sh("ip", "-j", "addr").stdout or "[]"):
        for a in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return nets


def pick_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that overlaps no address or route of the host."""
    used = [n for n in used_networks() if n.version == 4]
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for i in candidates:
        net = ipaddress.IPv4Network(f"10.213.{i}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free test subnet in 10.213.0.0/16")


def iptables_rules(binary: str, table: str) -> list[str]:
    out = sh(binary, "-w", "-t", table, "-S", check=False)
    return out.stdout.splitlines() if out.returncode == 0 else []


def chains(binary: str, table: str) -> set[str]:
    return {line.split()[1] for line in iptables_rules(binary, table) if line.startswith("-N ")}


class HostNet:
    """The host-side resources of one test module, and their removal. Everything is named
    with a random suffix, so parallel runs and other users of the host are left alone."""

    def __init__(self, tmp: Path) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        self.tmp = tmp
        self.subnet = pick_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.bridge = f"kbc{self.suffix}"
        self.network = f"kbcni-{self.suffix}"
        self.ipam_dir = tmp / "ipam"
        self.cache_dir = tmp / "cache"
        self.netns: list[str] = []
        self.container_ids: list[str] = []
        self.ip_forward_before = IP_FORWARD.read_text().strip()
        self.shared_before = {
            b: chains(b, "nat") & set(SHARED_CHAINS) for b in ("iptables", "ip6tables")
        }

    # -- configuration ------------------------------------------------------------------------

    def default_conflist(
        self,
        *,
        extra_plugins: list[dict[str, Any]] | None = None,
        cni_version: str = "1.0.0",
        **top: Any,
    ) -> dict[str, Any]:
        """The default pod network: bridge + host-local + portmap + loopback."""
        plugins: list[dict[str, Any]] = [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(self.ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ]
        plugins.extend(extra_plugins or [])
        return {"cniVersion": cni_version, "name": self.network, "plugins": plugins, **top}

    def allocated(self) -> set[str]:
        """Addresses host-local holds for this network (one file per address)."""
        d = self.ipam_dir / self.network
        if not d.is_dir():
            return set()
        return {p.name for p in d.iterdir() if re.fullmatch(r"[0-9.]+", p.name)}

    # -- namespaces ---------------------------------------------------------------------------

    def pod(self, tag: str) -> tuple[str, str]:
        """A new namespace and a container id for it: (netns path, container id)."""
        return self.add_netns(tag), self.container_id(tag)

    def container_id(self, tag: str) -> str:
        cid = f"{self.suffix}-{tag}"
        self.container_ids.append(cid)
        return cid

    def plugin_chains(self) -> set[str]:
        """The chain names bridge (ipMasq) and portmap derive from (network, container id): the
        SHA-512 of the two, cut to iptables' 28 characters."""
        out = set()
        for cid in self.container_ids:
            digest = hashlib.sha512((self.network + cid).encode()).hexdigest()
            out |= {f"CNI-{digest[:24]}", f"CNI-DN-{digest[:21]}", f"CNI-SN-{digest[:21]}"}
        return out

    def add_netns(self, tag: str) -> str:
        name = f"kbcni-{self.suffix}-{tag}"
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        return f"/var/run/netns/{name}"

    def del_netns(self, path: str) -> None:
        name = os.path.basename(path)
        sh("ip", "netns", "del", name, check=False)
        if name in self.netns:
            self.netns.remove(name)

    def exec_in(
        self, path: str, *argv: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return sh(
            "ip", "netns", "exec", os.path.basename(path), *argv, check=False, timeout=timeout
        )

    def bridge_ports(self) -> list[str]:
        out = sh("ip", "-j", "link", "show", "master", self.bridge, check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return []
        return [link["ifname"] for link in json.loads(out.stdout)]

    def our_rules(self, binary: str, table: str) -> list[str]:
        marks = (f'name: \\"{self.network}\\"', str(self.subnet))
        return [
            r
            for r in iptables_rules(binary, table)
            if r.startswith("-A ") and any(m in r for m in marks)
        ]

    # -- teardown -----------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove everything of ours; returns what was still there (for the caller to report)."""
        leftovers: list[str] = []
        for name in list(self.netns):
            leftovers.append(f"netns {name}")
            sh("ip", "netns", "del", name, check=False)
        self.netns.clear()
        for port in self.bridge_ports():
            leftovers.append(f"link {port}")
            sh("ip", "link", "del", port, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        for binary in ("iptables", "ip6tables"):
            for table in ("nat", "filter", "mangle"):
                leftovers += self._clean_table(binary, table)
                leftovers += self._clean_named_chains(binary, table)
            leftovers += self._clean_shared(binary)
        if IP_FORWARD.read_text().strip() != self.ip_forward_before:
            IP_FORWARD.write_text(self.ip_forward_before + "\n")
        shutil.rmtree(self.ipam_dir, ignore_errors=True)  # host-local's reservations
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        return leftovers

    def _clean_table(self, binary: str, table: str) -> list[str]:
        rules = self.our_rules(binary, table)
        ours = set()
        for rule in rules:
            words = shlex.split(rule)
            if words[1].startswith("CNI-") and words[1] not in SHARED_CHAINS:
                ours.add(words[1])
            if "-j" in words:
                target = words[words.index("-j") + 1]
                if target.startswith("CNI-") and target not in SHARED_CHAINS:
                    ours.add(target)
        for rule in rules:
            words = shlex.split(rule)
            if words[1] in ours:
                continue  # goes with its chain
            sh(binary, "-w", "-t", table, "-D", *words[1:], check=False)
        for chain in ours:
            sh(binary, "-w", "-t", table, "-F", chain, check=False)
            sh(binary, "-w", "-t", table, "-X", chain, check=False)
        return [f"{binary} -t {table} {r}" for r in rules]

    def _clean_named_chains(self, binary: str, table: str) -> list[str]:
        """Our per-container chains, even empty and unreferenced ones (portmap leaves its DNAT
        chain behind when its ADD fails half-way)."""
        present = chains(binary, table) & self.plugin_chains()
        for rule in iptables_rules(binary, table):
            words = shlex.split(rule)
            if rule.startswith("-A ") and "-j" in words and words[words.index("-j") + 1] in present:
                sh(binary, "-w", "-t", table, "-D", *words[1:], check=False)
        for chain in present:
            sh(binary, "-w", "-t", table, "-F", chain, check=False)
            sh(binary, "-w", "-t", table, "-X", chain, check=False)
        return [f"{binary} -t {table} chain {c}" for c in sorted(present)]

    def _clean_shared(self, binary: str) -> list[str]:
        """portmap's shared chains: removed only if they were not there before and are empty
        of per-container jumps now (someone else may be using them)."""
        present = chains(binary, "nat") & set(SHARED_CHAINS)
        if not present or self.shared_before[binary]:
            return []
        dnat = [r for r in iptables_rules(binary, "nat") if r.startswith("-A CNI-HOSTPORT-DNAT ")]
        if dnat:
            return []
        for rule in iptables_rules(binary, "nat"):
            words = shlex.split(rule)
            if (
                rule.startswith("-A ")
                and words[1] in ("PREROUTING", "OUTPUT", "POSTROUTING")
                and ("-j" in words and words[words.index("-j") + 1] in SHARED_CHAINS)
            ):
                sh(binary, "-w", "-t", "nat", "-D", *words[1:], check=False)
        for chain in SHARED_CHAINS:
            sh(binary, "-w", "-t", "nat", "-F", chain, check=False)
        for chain in SHARED_CHAINS:
            sh(binary, "-w", "-t", "nat", "-X", chain, check=False)
        return []

    def remaining(self) -> list[str]:
        """What of ours is still on the host (empty after a clean teardown)."""
        left = [
            f"netns {n}"
            for n in sh("ip", "netns", "list").stdout.split()
            if n.startswith(f"kbcni-{self.suffix}")
        ]
        if sh("ip", "link", "show", self.bridge, check=False).returncode == 0:
            left.append(f"link {self.bridge}")
        for binary in ("iptables", "ip6tables"):
            for table in ("nat", "filter", "mangle"):
                left += [f"{binary} -t {table} {r}" for r in self.our_rules(binary, table)]
                left += [
                    f"{binary} -t {table} chain {c}"
                    for c in sorted(chains(binary, table) & self.plugin_chains())
                ]
        if IP_FORWARD.read_text().strip() != self.ip_forward_before:
            left.append("net.ipv4.ip_forward changed")
        return left


@contextlib.contextmanager
def host_net(tmp: Path) -> Iterator[HostNet]:
    net = HostNet(tmp)
    try:
        yield net
    finally:
        net.cleanup()
        left = net.remaining()
        assert not left, f"test left host resources behind: {left}"


# -- the test plugin ----------------------------------------------------------------------------


def install_test_plugin(
    bin_dir: Path,
    name: str,
    *,
    record: Path,
    state_dir: Path,
    supported: list[str] | None = None,
) -> Path:
    """Copy the test plugin into `bin_dir` as executable `name`, with its sidecar settings."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / name
    body = (HERE / "cni_test_plugin.py").read_text()
    target.write_text(f"#!{sys.executable}\n{body}")
    target.chmod(0o755)
    side: dict[str, Any] = {"record": str(record), "stateDir": str(state_dir)}
    if supported is not None:
        side["supportedVersions"] = supported
    (bin_dir / f"{name}.json").write_text(json.dumps(side))
    return target


def read_calls(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def link_ref_plugins(bin_dir: Path, *names: str) -> None:
    """Symlink reference plugins next to test plugins (one bin dir holds both)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        src = Path(REF_BIN) / n
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: install containernetworking-plugins")
        with contextlib.suppress(FileExistsError):
            (bin_dir / n).symlink_to(src)


def which(binary: str) -> str:
    found = shutil.which(binary)
    if not found:
        raise FileNotFoundError(f"{binary} is not installed")
    return found
