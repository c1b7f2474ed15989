"""The agent's `GET /stats/summary` end to end: a private containerd with real runc containers,
the agent's HTTPS server in the test's event loop with a `SummaryProvider` on that containerd,
and client certificates from a CA of the test's own. A CPU burner shows a far higher
`usageNanoCores` than an idle container after two scrapes, memory is reported, the podRef is the
sandbox's metadata, the metrics server's parser reads the document; one sandbox has a cgroup
parent (containerd then has pod sandbox stats for it), the other none (containerd fails the
whole ListPodSandboxStats, and the provider asks sandbox by sandbox). Only the API server's and
the metrics server's certificates get in. Waits are on conditions with deadlines; everything
started is stopped and nothing is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from containerd_helpers import build_images, running_containerd, wait_until

from kybern.agent import sandbox, streaming_tls
from kybern.agent.httpserver import API_SERVER_USER, METRICS_SERVER_USER, AgentServer
from kybern.agent.stats import SummaryProvider
from kybern.apiserver import certs
from kybern.cli.metricsserver import AGENT_CLIENT_USER
from kybern.cri import Containerd, RuntimeClient, api, messages
from kybern.images import busybox
from kybern.metricsserver.sources import SummaryParser

pytestmark = pytest.mark.asyncio(loop_scope="module")
NODE = "stats-node"
NAMESPACE = "stats-ns"
BURN = ["sh", "-c", "while :; do :; done"]
IDLE = ["sh", "-c", "exec sleep 3600"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctd() -> AsyncIterator[Containerd]:
    _, _, layout = await build_images()
    async with running_containerd(layout) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rt(ctd: Containerd) -> AsyncIterator[RuntimeClient]:
    async with ctd.client(timeout=60) as client:
        await client.connect()
        yield client
        # nothing of the tests' is left in the runtime
        assert await client.list_containers() == []
        assert await client.list_pod_sandbox() == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Pki:
    base = tmp_path_factory.mktemp("stats-pki")
    return await asyncio.to_thread(certs.ensure_pki, base, hosts=["127.0.0.1"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(
    rt: RuntimeClient, pki: certs.Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AgentServer]:
    base = tmp_path_factory.mktemp("stats-agent")
    cert, key = await asyncio.to_thread(
        streaming_tls.ensure_serving_cert, base, pki.ca_cert, pki.ca_key, NODE, ["127.0.0.1"]
    )
    srv = AgentServer(
        rt,
        port=0,
        cert_file=cert,
        key_file=key,
        client_ca_file=pki.ca_cert,
        allowed_users=(API_SERVER_USER, METRICS_SERVER_USER),
        summary=SummaryProvider(rt, NODE),
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client_certs(
    pki: certs.Pki, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """user -> (cert file, key file), issued by the test's CA."""
    base = tmp_path_factory.mktemp("stats-clients")

    def issue() -> dict[str, tuple[Path, Path]]:
        out = {}
        for user in (METRICS_SERVER_USER, API_SERVER_USER, "someone-else"):
            cert, key = certs.issue_client_cert(pki, user, [])
            (base / f"{user}.crt").write_bytes(cert)
            (base / f"{user}.key").write_bytes(key)
            out[user] = (base / f"{user}.crt", base / f"{user}.key")
        return out

    return await asyncio.to_thread(issue)


def ssl_context(pki: certs.Pki, files: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if files is not None:
        ctx.load_cert_chain(*files)
    return ctx


async def scrape(
    port: int, ctx: ssl.SSLContext, query: str = "?only_cpu_and_memory=true"
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"https://127.0.0.1:{port}/stats/summary{query}", ssl=ctx) as r,
    ):
        return r.status, await r.json(content_type=None)


@dataclass
class Pod:
    name: str
    uid: str
    sandbox_id: str = ""
    containers: dict[str, str] = field(default_factory=dict)  # name -> id


@pytest_asyncio.fixture(loop_scope="module")
async def pods(rt: RuntimeClient, tmp_path: Path) -> AsyncIterator[Any]:
    """A factory of host-network pods made through CRI, as a kubelet names them; `cgroup`
    puts the pod below a cgroup parent of the test's own. All removed after the test."""
    made: list[Pod] = []
    cgroup_root = f"/kybern-stats-e2e-{uuid.uuid4().hex[:8]}"

    async def make(containers: dict[str, list[str]], cgroup: bool) -> Pod:
        uid = str(uuid.uuid4())
        pod = Pod(f"p-{uid[:8]}", uid)
        made.append(pod)
        labels = {"io.kubernetes.pod.name": pod.name, "io.kubernetes.pod.namespace": NAMESPACE,
                  "io.kubernetes.pod.uid": uid}  # fmt: skip
        config = messages.sandbox_config(
            pod.name, NAMESPACE, uid, host_network=True, labels=labels,
            log_directory=str(tmp_path / f"{NAMESPACE}_{pod.name}_{uid}"),
            cgroup_parent=f"{cgroup_root}/pod{uid}" if cgroup else "",
        )  # fmt: skip
        pod.sandbox_id = await rt.run_pod_sandbox(config)
        for name, command in containers.items():
            cc = messages.container_config(
                name, busybox.BUSYBOX_IMAGE, command=command, log_path=f"{name}/0.log",
                labels={"io.kubernetes.container.name": name, "io.kubernetes.pod.uid": uid},
            )  # fmt: skip
            cid = await rt.create_container(pod.sandbox_id, cc, config)
            await rt.start_container(cid)
            pod.containers[name] = cid
        return pod

    try:
        yield make
    finally:
        for pod in made:
            if not pod.sandbox_id:
                continue
            with contextlib.suppress(Exception):
                await rt.stop_pod_sandbox(pod.sandbox_id)
            filt = messages.container_filter(pod_sandbox_id=pod.sandbox_id)
            for c in await rt.list_containers(filt):
                await rt.stop_container(c.id, 0)
                await rt.remove_container(c.id)
            await rt.remove_pod_sandbox(pod.sandbox_id)
        left = await asyncio.to_thread(sandbox.remove_cgroup, cgroup_root)
        assert left == [], f"cgroups left: {left}"


def find_pod(doc: Any, pod: Pod) -> Any:
    found = [p for p in doc["pods"] if p["podRef"]["uid"] == pod.uid]
    assert len(found) == 1, doc["pods"]
    return found[0]


def container(doc_pod: Any, name: str) -> Any:
    return next(c for c in doc_pod["containers"] if c["name"] == name)


async def test_summary_shows_the_cpu_burner(
    agent: AgentServer,
    rt: RuntimeClient,
    pki: certs.Pki,
    client_certs: dict[str, tuple[Path, Path]],
    pods: Any,
) -> None:
    assert AGENT_CLIENT_USER == METRICS_SERVER_USER  # the CN the metrics server presents
    busy = await pods({"burner": BURN, "idle": IDLE}, cgroup=True)
    quiet = await pods({"idle": IDLE}, cgroup=False)
    ctx = ssl_context(pki, client_certs[METRICS_SERVER_USER])

    code, first = await scrape(agent.port, ctx)
    assert code == 200, first
    assert first["node"]["nodeName"] == NODE
    assert first["node"]["memory"]["workingSetBytes"] > 0
    burner = container(find_pod(first, busy), "burner")
    # the provider's first sample of a container: cumulative time, no rate yet
    assert "usageNanoCores" not in burner["cpu"]
    assert burner["cpu"]["usageCoreNanoSeconds"] >= 0

    # let the burner burn a measurable amount (a condition, not a sleep)
    async def burned() -> bool:
        got = await rt.list_container_stats(api.ContainerStatsFilter(id=busy.containers["burner"]))
        used = got[0].cpu.usage_core_nano_seconds.value if got else 0
        return used - burner["cpu"]["usageCoreNanoSeconds"] >= 200_000_000

    await wait_until(burned, timeout=60, what="the burner to use 0.2 CPU-seconds")
    code, second = await scrape(agent.port, ctx)
    assert code == 200, second

    for doc_pod, pod in ((find_pod(second, busy), busy), (find_pod(second, quiet), quiet)):
        status = (await rt.pod_sandbox_status(pod.sandbox_id)).status
        ref = {"name": status.metadata.name, "namespace": status.metadata.namespace,
               "uid": status.metadata.uid}  # fmt: skip
        assert doc_pod["podRef"] == ref == {"name": pod.name, "namespace": NAMESPACE,
                                            "uid": pod.uid}  # fmt: skip
        assert sorted(c["name"] for c in doc_pod["containers"]) == sorted(pod.containers)
        for c in doc_pod["containers"]:
            assert c["memory"]["workingSetBytes"] > 0, c
            assert "usageNanoCores" in c["cpu"], c
        assert doc_pod["memory"]["workingSetBytes"] > 0
        assert set(doc_pod) == {"podRef", "startTime", "containers", "cpu", "memory"}
    busy_doc = find_pod(second, busy)
    hot = container(busy_doc, "burner")["cpu"]["usageNanoCores"]
    cold = container(busy_doc, "idle")["cpu"]["usageNanoCores"]
    cold_too = container(find_pod(second, quiet), "idle")["cpu"]["usageNanoCores"]
    assert hot > 0 and hot > 10 * cold and hot > 10 * cold_too, (hot, cold, cold_too)
    # the pod below a cgroup parent has the runtime's pod-level figures, which include it
    assert busy_doc["cpu"]["usageNanoCores"] > 10 * cold
    assert "usageNanoCores" in second["node"]["cpu"]
    assert second["node"]["memory"]["availableBytes"] > 0

    # what the metrics server makes of two scrapes
    parser = SummaryParser()
    parser.parse(first, 15.0)
    sample = parser.parse(second, 15.0)
    assert sample is not None and sample.node == NODE
    got = {(p.namespace, p.name): p for p in sample.pods}
    assert (NAMESPACE, busy.name) in got and (NAMESPACE, quiet.name) in got
    usage = got[(NAMESPACE, busy.name)].containers
    assert usage["burner"].cpu_nanocores == hot and usage["burner"].memory_bytes > 0
    assert sample.usage.memory_bytes == second["node"]["memory"]["workingSetBytes"]


async def test_full_summary(
    agent: AgentServer,
    pki: certs.Pki,
    client_certs: dict[str, tuple[Path, Path]],
    pods: Any,
) -> None:
    pod = await pods({"talk": ["sh", "-c", "echo hello; exec sleep 3600"]}, cgroup=True)
    ctx = ssl_context(pki, client_certs[API_SERVER_USER])

    async def logged() -> Any:
        code, doc = await scrape(agent.port, ctx, "")
        assert code == 200, doc
        logs = container(find_pod(doc, pod), "talk").get("logs") or {}
        return doc if logs.get("usedBytes", 0) > 0 else None

    doc = await wait_until(logged, what="the container's log in the summary")
    node = doc["node"]
    assert {"nodeName", "startTime", "cpu", "memory", "fs", "runtime", "rlimit"} <= set(node)
    assert node["fs"]["capacityBytes"] >= node["fs"]["availableBytes"] > 0
    image_fs = node["runtime"]["imageFs"]
    assert image_fs["capacityBytes"] > 0 and "usedBytes" in image_fs
    assert node["rlimit"]["maxpid"] > 0 and node["rlimit"]["curproc"] > 0
    p = find_pod(doc, pod)
    talk = container(p, "talk")
    assert {"name", "startTime", "cpu", "memory", "rootfs", "logs"} <= set(talk)
    assert talk["rootfs"]["capacityBytes"] > 0 and "usedBytes" in talk["rootfs"]
    assert talk["logs"]["inodesUsed"] >= 1
    eph = p["ephemeral-storage"]
    assert eph["usedBytes"] >= talk["logs"]["usedBytes"] and eph["capacityBytes"] > 0
    assert p["process_stats"]["process_count"] >= 1  # from the runtime's pod sandbox stats
    for net in [n for n in (node.get("network"), p.get("network")) if n]:
        assert "interfaces" in net and all("name" in i for i in net["interfaces"])
    # the short document is the cpu-and-memory part of it
    code, short = await scrape(agent.port, ctx, "?only_cpu_and_memory=true")
    assert code == 200
    assert set(short["node"]) == {"nodeName", "startTime", "cpu", "memory"}


async def test_only_allowed_users_get_the_summary(
    agent: AgentServer,
    rt: RuntimeClient,
    pki: certs.Pki,
    client_certs: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    code, body = await scrape(agent.port, ssl_context(pki, client_certs["someone-else"]))
    assert code == 403 and body["kind"] == "Status" and body["reason"] == "Forbidden", body
    assert "someone-else" in body["message"]
    code, body = await scrape(agent.port, ssl_context(pki, None))
    assert code == 401 and body["reason"] == "Unauthorized", body
    for user in (METRICS_SERVER_USER, API_SERVER_USER):
        code, body = await scrape(agent.port, ssl_context(pki, client_certs[user]))
        assert code == 200 and body["node"]["nodeName"] == NODE, (user, body)

    # an agent without a provider answers 404, which the metrics server takes as "no stats"
    cert, key = await asyncio.to_thread(
        streaming_tls.ensure_serving_cert, tmp_path, pki.ca_cert, pki.ca_key, NODE, ["127.0.0.1"]
    )
    async with AgentServer(
        rt, port=0, cert_file=cert, key_file=key, client_ca_file=pki.ca_cert,
        allowed_users=(METRICS_SERVER_USER,),
    ) as bare:  # fmt: skip
        code, body = await scrape(bare.port, ssl_context(pki, client_certs[METRICS_SERVER_USER]))
        assert code == 404 and body["reason"] == "NotFound", body
        # and the API server's own CN is refused where it is not allowed
        code, body = await scrape(bare.port, ssl_context(pki, client_certs[API_SERVER_USER]))
        assert code == 403, body
