"""`kybern.cni` against the real reference plugins (Debian's containernetworking-plugins in
/usr/lib/cni) on network namespaces the tests create: the default pod network (bridge +
host-local + portmap + loopback) gives addresses, namespaces reach each other, the host reaches a
server in a namespace (directly and through a portmap hostPort on loopback), CHECK notices a
deleted veth, DEL is idempotent and releases the address, a failing plugin mid-chain leaves
nothing after DEL, a chain with a 0.4.0-only plugin runs at 0.4.0, GC removes attachments that
are not valid, and many pods come up at once. Needs root; everything made is removed again."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_helpers import (
    REF_BIN,
    HostNet,
    host_net,
    install_test_plugin,
    read_calls,
    sh,
    wait_for,
)

from kybern import cni


@pytest.fixture(scope="module")
def hostnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostNet]:
    assert Path(REF_BIN, "bridge").exists(), "install containernetworking-plugins"
    with host_net(tmp_path_factory.mktemp("cni-bridge")) as net:
        yield net


@pytest.fixture
async def runtime(hostnet: HostNet) -> AsyncIterator[cni.Runtime]:
    yield cni.Runtime([REF_BIN], cache_dir=hostnet.cache_dir, timeout=30)


def net_of(conf: dict[str, Any]) -> cni.NetworkConfigList:
    return cni.config.parse(json.dumps(conf))


def addresses(hostnet: HostNet, netns: str, ifname: str = "eth0") -> list[str]:
    out = hostnet.exec_in(netns, "ip", "-j", "addr", "show", "dev", ifname)
    assert out.returncode == 0, out.stderr
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(out.stdout)
        for a in link["addr_info"]
        if a["family"] == "inet"
    ]


def rules_of(container_id: str) -> list[str]:
    mark = f'id: \\"{container_id}\\"'
    out = []
    for table in ("nat", "filter"):
        rules = sh("iptables", "-w", "-t", table, "-S").stdout.splitlines()
        out += [r for r in rules if mark in r]
    return out


def link_exists(name: str) -> bool:
    return sh("ip", "link", "show", name, check=False).returncode == 0


def host_veth(result: cni.Result) -> str:
    return next(i.name for i in result.interfaces if not i.sandbox and i.name.startswith("veth"))


def ping(hostnet: HostNet, netns: str, ip: str) -> bool:
    return hostnet.exec_in(netns, "ping", "-c1", "-W1", ip).returncode == 0


class Server:
    """A TCP server inside a namespace (python under `ip netns exec`) greeting each client."""

    def __init__(self, netns: str, port: int) -> None:
        code = (
            "import socket,sys\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {port})); s.listen()\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    c, a = s.accept(); c.sendall(b'hello from the pod'); c.close()\n"
        )
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", os.path.basename(netns), sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        try:
            ready, _, _ = select.select([self.proc.stdout], [], [], 15)
            assert ready, "server in the namespace did not start within 15s"
            assert self.proc.stdout.readline().strip() == b"ready"
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def fetch(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        return s.recv(100)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_add_gives_address_and_del_twice_releases_it(
    hostnet: HostNet, runtime: cni.Runtime
) -> None:
    net = net_of(hostnet.default_conflist())
    ns, cid = hostnet.pod("a")
    rt = cni.RuntimeConf(container_id=cid, netns=ns, ifname="eth0")
    result = await runtime.add(net, rt)

    assert result.cni_version == "1.0.0"
    [ip] = result.ips
    assert ip.gateway == hostnet.gateway
    assert ip.ip in {str(a) for a in hostnet.subnet.hosts()}
    assert result.interfaces[ip.interface or 0].sandbox == ns
    assert addresses(hostnet, ns) == [ip.address]
    lo = hostnet.exec_in(ns, "ip", "-j", "link", "show", "lo")
    assert "UP" in json.loads(lo.stdout)[0]["flags"], "loopback plugin brought lo up"
    assert ip.ip in hostnet.allocated()
    owner = (hostnet.ipam_dir / hostnet.network / ip.ip).read_text().split()
    assert owner[0] == rt.container_id
    assert rules_of(rt.container_id), "bridge ipMasq rules"
    cached = await runtime.cached_result(net, rt)
    assert cached == result

    veth = host_veth(result)
    await runtime.delete(net, rt)
    assert ip.ip not in hostnet.allocated(), "host-local released the address"
    assert not link_exists(veth)
    assert rules_of(rt.container_id) == []
    assert await runtime.cached_attachment(net, rt) is None
    await runtime.delete(net, rt)  # DEL twice: still fine
    hostnet.del_netns(ns)
    await runtime.delete(net, rt)  # and once more with the namespace gone
    assert ip.ip not in hostnet.allocated()


async def test_two_namespaces_ping_each_other(hostnet: HostNet, runtime: cni.Runtime) -> None:
    net = net_of(hostnet.default_conflist())
    (ns_a, cid_a), (ns_b, cid_b) = hostnet.pod("pa"), hostnet.pod("pb")
    rt_a, rt_b = cni.RuntimeConf(cid_a, ns_a), cni.RuntimeConf(cid_b, ns_b)
    a, b = await asyncio.gather(runtime.add(net, rt_a), runtime.add(net, rt_b))
    ip_a, ip_b = a.ips[0].ip, b.ips[0].ip
    assert ip_a != ip_b
    try:
        wait_for(lambda: ping(hostnet, ns_a, ip_b), timeout=10, what=f"{ip_a} -> {ip_b}")
        wait_for(lambda: ping(hostnet, ns_b, ip_a), timeout=10, what=f"{ip_b} -> {ip_a}")
    finally:
        await runtime.delete(net, rt_a)
        await runtime.delete(net, rt_b)
        hostnet.del_netns(ns_a)
        hostnet.del_netns(ns_b)
    assert {ip_a, ip_b}.isdisjoint(hostnet.allocated())


async def test_host_reaches_server_in_namespace_and_hostport(
    hostnet: HostNet, runtime: cni.Runtime
) -> None:
    net = net_of(hostnet.default_conflist())
    ns, cid = hostnet.pod("srv")
    host_port = free_port()
    rt = cni.RuntimeConf(
        cid,
        ns,
        capability_args={
            "portMappings": [{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]
        },
    )
    result = await runtime.add(net, rt)
    pod_ip = result.ips[0].ip
    server = Server(ns, 8080)
    try:
        assert wait_for(lambda: fetch(pod_ip, 8080), what="pod server") == b"hello from the pod"
        assert wait_for(lambda: fetch("127.0.0.1", host_port), what="hostPort via portmap") == (
            b"hello from the pod"
        )
        dnat = [r for r in rules_of(rt.container_id) if "dnat name" in r]
        assert dnat and str(host_port) in dnat[0]
    finally:
        server.stop()
        # DEL without capability arguments: the cached portMappings reach portmap again.
        await runtime.delete(net, cni.RuntimeConf(rt.container_id, ns))
        hostnet.del_netns(ns)
    assert rules_of(rt.container_id) == [], "portmap and bridge rules are gone"


async def test_check_passes_then_fails_after_veth_is_deleted(
    hostnet: HostNet, runtime: cni.Runtime
) -> None:
    net = net_of(hostnet.default_conflist())
    ns, cid = hostnet.pod("chk")
    rt = cni.RuntimeConf(cid, ns)
    result = await runtime.add(net, rt)
    await runtime.check(net, rt)

    sh("ip", "link", "del", host_veth(result))
    with pytest.raises(cni.CNIError) as info:
        await runtime.check(net, rt)
    assert info.value.plugin == "bridge"
    assert info.value.command == "CHECK"
    assert hostnet.network in str(info.value)

    await runtime.delete(net, rt)
    assert result.ips[0].ip not in hostnet.allocated()
    hostnet.del_netns(ns)


async def test_failing_plugin_in_chain_fails_add_and_del_leaves_nothing(
    hostnet: HostNet, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    install_test_plugin(
        bin_dir, "kbtest", record=tmp_path / "calls.jsonl", state_dir=tmp_path / "state"
    )
    conf = hostnet.default_conflist()
    failing = {
        "type": "kbtest",
        "fail": {"code": 123, "msg": "no luck today", "details": "the test asked for it"},
    }
    conf["plugins"].insert(2, failing)  # after bridge and portmap, before loopback
    net = net_of(conf)
    runtime = cni.Runtime([bin_dir, REF_BIN], cache_dir=hostnet.cache_dir, timeout=30)
    ns, cid = hostnet.pod("fail")
    mapping = {"hostPort": free_port(), "containerPort": 80, "protocol": "tcp"}
    rt = cni.RuntimeConf(cid, ns, capability_args={"portMappings": [mapping]})
    with pytest.raises(cni.CNIError) as info:
        await runtime.add(net, rt)
    err = info.value
    assert (err.code, err.msg, err.details) == (123, "no luck today", "the test asked for it")
    assert err.plugin == "kbtest" and err.command == "ADD"
    assert "no luck today" in str(err) and "'kbtest'" in str(err)
    assert len(hostnet.allocated()) >= 1 and rules_of(rt.container_id), "half done"
    entry = await runtime.cached_attachment(net, rt)
    assert entry is not None and entry.result is None, "the failed ADD is recorded"

    await runtime.delete(net, cni.RuntimeConf(rt.container_id, ns))
    assert rules_of(rt.container_id) == []
    assert not any(
        (hostnet.ipam_dir / hostnet.network / a).read_text().startswith(rt.container_id)
        for a in hostnet.allocated()
    )
    assert hostnet.exec_in(ns, "ip", "link", "show", "eth0").returncode != 0
    assert await runtime.cached_attachment(net, rt) is None
    hostnet.del_netns(ns)


async def test_chain_with_a_0_4_0_plugin_runs_at_0_4_0(hostnet: HostNet, tmp_path: Path) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    install_test_plugin(
        bin_dir, "old", record=record, state_dir=tmp_path / "state", supported=["0.3.1", "0.4.0"]
    )
    runtime = cni.Runtime([REF_BIN, bin_dir], cache_dir=hostnet.cache_dir, timeout=30)
    conf = hostnet.default_conflist(extra_plugins=[{"type": "old"}], cniVersions=["0.4.0"])
    net = net_of(conf)
    assert net.cni_version == "1.0.0" and await runtime.negotiate(net) == "0.4.0"
    ns, cid = hostnet.pod("old")
    rt = cni.RuntimeConf(cid, ns)
    result = await runtime.add(net, rt)
    assert result.cni_version == "0.4.0"
    assert result.to_json()["ips"][0]["version"] == "4"
    [add] = [c for c in read_calls(record) if c["command"] == "ADD"]
    assert add["stdin"]["cniVersion"] == "0.4.0"
    assert add["stdin"]["prevResult"] == result.to_json(), "bridge's result, passed on at 0.4.0"
    await runtime.check(net, rt)
    await runtime.delete(net, rt)
    hostnet.del_netns(ns)

    only_new = net_of(hostnet.default_conflist(extra_plugins=[{"type": "old"}]))
    ns, cid = hostnet.pod("old2")
    with pytest.raises(cni.CNIError) as info:
        await runtime.add(only_new, cni.RuntimeConf(cid, ns))
    assert info.value.code == cni.Code.INCOMPATIBLE_VERSION
    assert info.value.plugin == "old"
    assert hostnet.exec_in(ns, "ip", "link", "show", "eth0").returncode != 0, "nothing ran"
    hostnet.del_netns(ns)


async def test_gc_removes_attachments_not_in_the_valid_list(
    hostnet: HostNet, runtime: cni.Runtime
) -> None:
    net = net_of(hostnet.default_conflist())
    keep_ns, keep_cid = hostnet.pod("keep")
    keep = cni.RuntimeConf(keep_cid, keep_ns)
    gone = [cni.RuntimeConf(cid, ns) for ns, cid in (hostnet.pod(f"gc{i}") for i in range(2))]
    kept = await runtime.add(net, keep)
    results = [await runtime.add(net, rt) for rt in gone]

    await runtime.gc(net, [cni.GCAttachment(keep.container_id, "eth0")])
    for rt, res in zip(gone, results, strict=True):
        assert res.ips[0].ip not in hostnet.allocated()
        assert not link_exists(host_veth(res))
        assert rules_of(rt.container_id) == []
        assert await runtime.cached_attachment(net, rt) is None
    assert kept.ips[0].ip in hostnet.allocated()
    await runtime.check(net, keep)

    no_gc = net_of(hostnet.default_conflist(disableGC=True))
    await runtime.gc(no_gc, [])  # disableGC: nothing happens
    await runtime.check(net, keep)
    await runtime.delete(net, keep)
    for rt in [keep, *gone]:
        hostnet.del_netns(rt.netns)


async def test_many_pods_at_once(hostnet: HostNet, runtime: cni.Runtime) -> None:
    net = net_of(hostnet.default_conflist())
    rts = [cni.RuntimeConf(cid, ns) for ns, cid in (hostnet.pod(f"m{i}") for i in range(8))]
    results = await asyncio.gather(*(runtime.add(net, rt) for rt in rts))
    ips = {r.ips[0].ip for r in results}
    assert len(ips) == 8 and ips <= hostnet.allocated()
    await asyncio.gather(*(runtime.delete(net, rt) for rt in rts))
    assert ips.isdisjoint(hostnet.allocated())
    for rt in rts:
        hostnet.del_netns(rt.netns)
