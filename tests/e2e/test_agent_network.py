"""Pod networking through the agent's CNI configuration (bridge + host-local on the node's
podCIDR + portmap + loopback, invoked by containerd): two pods reach each other over the bridge,
the host reaches a pod at its address, a hostPort is reachable on the host's 127.0.0.1, a
hostNetwork pod shares the host's network, and deleting pods gives their addresses back to
host-local. Traffic goes only to pod addresses and loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agent_helpers import (
    Cluster,
    exec_in,
    in_namespace,
    is_running,
    pod_manifest,
    running_cluster,
    wait_until,
)

from kybern.agent import network

pytestmark = pytest.mark.asyncio(loop_scope="module")
Obj = dict[str, Any]
SERVE = "mkdir -p /www && echo {text} > /www/index.html && httpd -f -p 8080 -h /www"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(Path(tmp_path_factory.mktemp("agent-net"))) as c:
        yield c


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(c: Cluster, ns: str, name: str, **spec: Any) -> Obj:
    pod = pod_manifest(name, ["sh", "-c", SERVE.format(text=name)], **spec)
    await c.apply(in_namespace(pod, ns))
    return await c.wait_pod(ns, name, is_running)


async def test_the_network_config_written_for_the_node(cluster: Cluster) -> None:
    conf = cluster.ctd.config.cni_conf_dir / network.CONF_FILE
    doc = json.loads(conf.read_text())
    assert [p["type"] for p in doc["plugins"]] == ["bridge", "portmap", "loopback"]
    assert doc["plugins"][0]["ipam"]["ranges"] == [
        [
            {
                "subnet": str(cluster.pod_cidr()),
                "gateway": str(cluster.pod_cidr().network_address + 1),
            }
        ]
    ]
    assert oct(conf.stat().st_mode & 0o777) == "0o644"


async def test_pods_reach_each_other_and_the_host_reaches_them(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    a = await serve(cluster, ns, "a")
    b = await serve(cluster, ns, "b")
    ip_a, ip_b = a["status"]["podIP"], b["status"]["podIP"]
    for ip in (ip_a, ip_b):
        assert ipaddress.ip_address(ip) in cluster.pod_cidr()
    assert await exec_in(cluster, b, ["wget", "-qO-", f"http://{ip_a}:8080/"]) == (0, "a\n")
    assert await exec_in(cluster, a, ["wget", "-qO-", f"http://{ip_b}:8080/"]) == (0, "b\n")

    async def from_host() -> str:
        return await asyncio.to_thread(fetch, f"http://{ip_a}:8080/")

    assert await wait_until(from_host, 20.0, "the host to reach pod a") == "a\n"


async def test_host_port_is_reachable_on_loopback(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    port = free_port()
    await serve(cluster, ns, "hp", container={"ports": [{"containerPort": 8080, "hostPort": port}]})

    async def via_host_port() -> str:
        return await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/")

    assert await wait_until(via_host_port, 20.0, "the hostPort") == "hp\n"


async def test_host_network_pod_uses_the_host_network(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    port = free_port()
    pod = pod_manifest(
        "hn", ["sh", "-c", f"echo hn > /tmp/i && httpd -f -p 127.0.0.1:{port} -h /tmp"],
        hostNetwork=True,
    )  # fmt: skip
    await cluster.apply(in_namespace(pod, ns))
    p = await cluster.wait_pod(ns, "hn", is_running)
    assert p["status"]["podIP"] == "127.0.0.1"

    async def on_host() -> str:
        return await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/i")

    assert await wait_until(on_host, 20.0, "the hostNetwork server") == "hn\n"


async def test_deleting_pods_releases_their_addresses(cluster: Cluster) -> None:
    ns = await cluster.namespace()
    pods = [await serve(cluster, ns, f"r{i}") for i in range(3)]
    ips = {p["status"]["podIP"] for p in pods}
    assert ips <= await asyncio.to_thread(cluster.net.allocated)
    await cluster.kubectl("delete", "pods", "--all", "-n", ns, "--timeout=60s")

    async def released() -> bool:
        return not ips & await asyncio.to_thread(cluster.net.allocated)

    await wait_until(released, 30.0, "host-local to release the addresses")
