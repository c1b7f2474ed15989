"""The resource metrics API through the aggregator, read by the real `kubectl top`: a
`kybern server` with one simulated node (zero usage) and one node whose "agent" is a stand-in
HTTPS server written here that serves the kubelet Summary API (`/stats/summary`) to client
certificates of the cluster CA — the contract the node agent is to fulfil — and
`kybern metrics-server` as a separate process, registered by its APIService. When the agent
answers 404 the node falls back to zero usage. `kybern up` runs the metrics server in-process
and registers it by default."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import REPO, START_TIMEOUT, Server, running_server, wait_for
from cryptography import x509
from cryptography.x509.oid import NameOID
from test_aggregation_support import condition

from kybern import ext
from kybern.apiserver import certs
from kybern.ext.server import server_context

Obj = dict[str, Any]
APISERVICE = "v1beta1.metrics.k8s.io"
NS = "metrics-test"


class FakeAgent:
    """`/stats/summary` for node fake-0 over HTTPS, requiring a cluster client certificate."""

    def __init__(self, client_ca: str) -> None:
        self.cert = ext.self_signed(["127.0.0.1"])
        self.client_ca = client_ca
        self.mode = "summary"  # or "404": an agent without the stats endpoint
        self.clients: list[str] = []  # CNs of the callers
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._runner: web.AppRunner | None = None
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _summary(self, request: web.Request) -> web.Response:
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if der:
            cn = x509.load_der_x509_certificate(der).subject
            self.clients.append(str(cn.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value))
        if self.mode == "404":
            return web.Response(status=404, text="404 page not found")
        t = "2024-05-01T10:00:00Z"
        return web.json_response(
            {
                "node": {
                    "nodeName": "fake-0",
                    "cpu": {"time": t, "usageNanoCores": 250_000_000},
                    "memory": {"time": t, "workingSetBytes": 1 << 30},
                },
                "pods": [
                    {
                        "podRef": {"name": "burn", "namespace": NS, "uid": "x"},
                        "containers": [
                            {
                                "name": "app",
                                "cpu": {"time": t, "usageNanoCores": 100_000_000},
                                "memory": {"time": t, "workingSetBytes": 64 << 20},
                            }
                        ],
                    }
                ],
            }
        )

    async def _start(self) -> None:
        ctx = server_context(self.cert, self.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_get("/stats/summary", self._summary)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def fake_node(port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "fake-0", "labels": {"kind": "fake"}},
        "spec": {"unschedulable": True},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "10"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        },
    }


def pod(name: str, node: str = "") -> Obj:
    spec: Obj = {"containers": [{"name": "app", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": spec,
    }


@contextlib.contextmanager
def metrics_server(server: Server, agent: FakeAgent) -> Iterator[subprocess.Popen[bytes]]:
    pki = certs.Pki(server.data_dir / "pki")
    cert, key = certs.issue_client_cert(pki, "kybern-metrics-server", [])
    files = {n: server.base_dir / n for n in ("ms.crt", "ms.key", "agent-ca.crt")}
    files["ms.crt"].write_bytes(cert)
    files["ms.key"].write_bytes(key)
    files["agent-ca.crt"].write_bytes(agent.cert.ca_pem)
    log = open(server.base_dir / "metrics-server.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kybern",
            "metrics-server",
            "--kubeconfig",
            str(server.kubeconfig),
            "--metric-resolution",
            "1s",
            "--kubelet-certificate-authority",
            str(files["agent-ca.crt"]),
            "--kubelet-client-certificate",
            str(files["ms.crt"]),
            "--kubelet-client-key",
            str(files["ms.key"]),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0, "metrics-server did not exit cleanly"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Server, FakeAgent]]:
    with running_server(args=("--disable-controllers=*", "--sim-nodes=1")) as server:
        agent = FakeAgent(certs.Pki(server.data_dir / "pki").ca_cert.read_text())
        try:
            server.kubectl("create", "-f", "-", input=json.dumps(fake_node(agent.port)))
            server.kubectl("create", "namespace", NS)
            server.kubectl("create", "-f", "-", input=json.dumps(pod("burn", "fake-0")))
            server.kubectl(
                "patch", "pod", "burn", "-n", NS, "--subresource=status", "--type=merge",
                "-p", '{"status": {"phase": "Running"}}',
            )  # fmt: skip
            server.kubectl("create", "-f", "-", input=json.dumps(pod("idle")))
            wait_for(
                lambda: (
                    server.kubectl_json("get", "pod", "idle", "-n", NS)["status"].get("phase")
                    == "Running"
                ),
                message="the simulated node to run pod idle",
            )
            with metrics_server(server, agent):
                wait_for(
                    lambda: condition(server, APISERVICE).get("status") == "True",
                    START_TIMEOUT,
                    message=f"{APISERVICE} available",
                )
                yield server, agent
        finally:
            agent.close()


def top(server: Server, *args: str) -> dict[str, list[str]]:
    """`kubectl top ...` rows by their first column (retried until it has data)."""

    def rows() -> dict[str, list[str]]:
        out = server.kubectl("top", *args, "--no-headers").stdout
        return {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}

    return wait_for(rows, message=f"kubectl top {' '.join(args)}")


def test_raw_node_metrics(cluster: tuple[Server, FakeAgent]) -> None:
    server, _ = cluster
    doc = json.loads(server.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)
    assert doc["kind"] == "NodeMetricsList"
    by_name = {i["metadata"]["name"]: i for i in doc["items"]}
    assert by_name["fake-0"]["usage"] == {"cpu": "250m", "memory": "1Gi"}
    assert by_name["fake-0"]["metadata"]["labels"] == {"kind": "fake"}
    assert by_name["sim-0"]["usage"] == {"cpu": "0", "memory": "0"}
    one = server.kubectl(
        "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=kind%3Dfake"
    )
    assert [i["metadata"]["name"] for i in json.loads(one.stdout)["items"]] == ["fake-0"]


def test_api_resources_list_metrics(cluster: tuple[Server, FakeAgent]) -> None:
    server, _ = cluster
    out = server.kubectl("api-resources", "--api-group=metrics.k8s.io", "--no-headers").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["nodes"][1:] == ["metrics.k8s.io/v1beta1", "false", "NodeMetrics"]
    assert rows["pods"][1:] == ["metrics.k8s.io/v1beta1", "true", "PodMetrics"]


def test_kubectl_top_nodes(cluster: tuple[Server, FakeAgent]) -> None:
    server, agent = cluster
    rows = top(server, "nodes")
    assert rows["fake-0"][1:] == ["250m", "6%", "1024Mi", "12%"]
    assert rows["sim-0"][1] == "0m"
    assert top(server, "node", "fake-0")["fake-0"][1] == "250m"
    assert set(agent.clients) == {"kybern-metrics-server"}


def test_kubectl_top_pods(cluster: tuple[Server, FakeAgent]) -> None:
    server, _ = cluster
    rows = top(server, "pods", "-A")
    assert rows[NS][1:] in (["burn", "100m", "64Mi"], ["idle", "0m", "0Mi"])
    everything = server.kubectl("top", "pods", "-A", "--no-headers").stdout
    assert "burn" in everything and "idle" in everything
    assert list(top(server, "pods", "-n", NS, "-l", "app=burn")) == ["burn"]
    containers = server.kubectl("top", "pod", "burn", "-n", NS, "--containers", "--no-headers")
    assert containers.stdout.split() == ["burn", "app", "100m", "64Mi"]


def test_agent_without_stats_falls_back_to_zero(cluster: tuple[Server, FakeAgent]) -> None:
    server, agent = cluster
    agent.mode = "404"
    try:
        wait_for(lambda: top(server, "nodes")["fake-0"][1] == "0m", message="zero fallback")
    finally:
        agent.mode = "summary"
    wait_for(lambda: top(server, "nodes")["fake-0"][1] == "250m", message="real numbers again")


class UpServer(Server):
    """`kybern up` (instead of `kybern server`) as a child process."""

    def start(self) -> None:
        self.kubeconfig.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kybern",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        try:
            wait_for(self._kubeconfig_written, START_TIMEOUT, message="the kubeconfig")
            self._load_kubeconfig()
            wait_for(self.is_ready, START_TIMEOUT, message="/readyz")
        except BaseException:
            self.kill()
            raise


def test_kybern_up_serves_metrics_by_default() -> None:
    base = Path(tempfile.mkdtemp(prefix="kybern-it-"))
    up = UpServer(base, ("--disable-agent", "--sim-nodes=1", "--disable-controllers=*"))
    try:
        up.start()
        wait_for(
            lambda: condition(up, APISERVICE).get("status") == "True",
            START_TIMEOUT,
            message=f"{APISERVICE} available",
        )
        svc = up.kubectl_json("get", "apiservice", APISERVICE)["spec"]["service"]
        assert svc == {"namespace": "kube-system", "name": "metrics-server", "port": 443}
        assert top(up, "nodes")["sim-0"][1] == "0m"
        assert up.stop() == 0
    finally:
        up.kill()
        shutil.rmtree(base, ignore_errors=True)
