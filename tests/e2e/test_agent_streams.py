"""`kubectl logs`, `kubectl exec`, `kubectl port-forward` and the PyPI client's `stream()` against
pods that `kybern agent` runs on containerd: the API server reaches the agent's own HTTPS server
(a serving certificate from the cluster CA, verified by the server; the server's client
certificate verified by the agent), and the agent refuses every other caller."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agent_helpers import (
    Cluster,
    agent_get,
    in_namespace,
    is_running,
    kubectl_env,
    pod_manifest,
    running_cluster,
    wait_until,
)
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream

pytestmark = pytest.mark.asyncio(loop_scope="module")
Obj = dict[str, Any]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(Path(tmp_path_factory.mktemp("agent-streams"))) as c:
        yield c


async def run_pod(c: Cluster, name: str, script: str) -> tuple[str, Obj]:
    ns = await c.namespace()
    await c.apply(in_namespace(pod_manifest(name, ["sh", "-c", script]), ns))
    return ns, await c.wait_pod(ns, name, is_running)


async def kubectl(c: Cluster, *args: str, input: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", *args,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=kubectl_env(c.kubeconfig),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(input), 60.0)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_logs_shows_the_output(cluster: Cluster) -> None:
    ns, _ = await run_pod(cluster, "talker", "echo err >&2; echo one; echo two; sleep 3600")

    async def logs() -> str | None:
        rc, out, _ = await kubectl(cluster, "logs", "-n", ns, "talker")
        return out if rc == 0 and len(out.splitlines()) == 3 else None

    lines = (await wait_until(logs, 30.0, "kubectl logs to show all lines")).splitlines()
    assert sorted(lines) == ["err", "one", "two"]  # stdout and stderr interleave either way
    assert lines.index("one") < lines.index("two")
    rc, out, _ = await kubectl(cluster, "logs", "-n", ns, "talker", "--tail=1")
    assert (rc, out) == (0, lines[-1] + "\n")


async def test_kubectl_exec_prints_and_exits_with_the_code(cluster: Cluster) -> None:
    ns, _ = await run_pod(cluster, "shell", "sleep 3600")
    rc, out, _ = await kubectl(
        cluster, "exec", "-n", ns, "shell", "--", "sh", "-c", "echo hi; exit 3"
    )
    assert (rc, out) == (3, "hi\n")
    rc, out, _ = await kubectl(
        cluster, "exec", "-i", "-n", ns, "shell", "--", "cat", input=b"abc\n"
    )
    assert (rc, out) == (0, "abc\n")


async def test_kubernetes_client_stream_exec(cluster: Cluster) -> None:
    ns, _ = await run_pod(cluster, "streamed", "sleep 3600")

    def call() -> str:
        api_client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
        try:
            core = k8s.CoreV1Api(api_client)
            out: str = stream(
                core.connect_get_namespaced_pod_exec, "streamed", ns,
                command=["sh", "-c", "echo from-$HOSTNAME"],
                stderr=True, stdin=False, stdout=True, tty=False,
            )  # fmt: skip
            return out
        finally:
            api_client.close()

    assert (await asyncio.to_thread(call)).strip() == "from-streamed"


async def test_kubectl_port_forward_reaches_the_pod(cluster: Cluster) -> None:
    script = "mkdir -p /www && echo forwarded > /www/index.html && httpd -f -p 8080 -h /www"
    ns, _ = await run_pod(cluster, "web", script)
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "port-forward", "-n", ns, "pod/web", ":8080", "--address", "127.0.0.1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=kubectl_env(cluster.kubeconfig),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30.0)).decode()
        m = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert m, line
        url = f"http://127.0.0.1:{m.group(1)}/"

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read().decode()

        async def served() -> str | None:
            try:
                return await asyncio.to_thread(fetch)
            except OSError:
                return None

        assert await wait_until(served, 30.0, "the forwarded port") == "forwarded\n"
    finally:
        proc.terminate()
        await proc.wait()


async def test_the_agent_serves_only_the_api_and_metrics_servers(cluster: Cluster) -> None:
    node = await cluster.node_obj()
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    path = "/stats/summary?only_cpu_and_memory=true"
    assert (await agent_get(cluster, path, ""))[0] == 401
    assert (await agent_get(cluster, path, "someone-else"))[0] == 403
    status, body = await agent_get(cluster, path, "kybern-metrics-server")
    assert status == 200 and body["node"]["nodeName"] == cluster.node
