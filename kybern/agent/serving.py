"""The agent's HTTPS server as a node runs it: `start(agent, ServingConfig(...), client_ca)`
picks the serving certificate (the operator's `--tls-cert-file`/`--tls-private-key-file`, one
issued from the cluster CA when the CA key is at hand as in `kybern up`, one asked of the
certificates API with `--rotate-server-certificates`, else a self-signed one kept in the cert
dir, as a kubelet does), the CA that client certificates must chain to
(`--client-ca-file`, else the cluster CA the agent's kubeconfig trusts), starts `AgentServer`
on the runtime of the agent and tells the agent the port it got (so `--port 0` works and the
Node's `daemonEndpoints` names the real port). Only the API server and the metrics server are
served."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kybern.agent import agent, bootstrap, common, httpserver, node, stats, streaming_tls

log = logging.getLogger("kybern.agent.serving")
CLIENT_CA_FILE = "client-ca.crt"


@dataclass
class ServingConfig:
    bind: str = "0.0.0.0"
    port: int = httpserver.DEFAULT_PORT
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    cert_dir: Path | None = None  # default: <data_dir>/pki
    ca: tuple[Path, Path] | None = None  # (CA cert, CA key) to issue the serving cert from
    rotate: bool = False  # no cert files: ask the certificates API (--rotate-server-certificates)
    allowed_users: tuple[str, ...] = (httpserver.API_SERVER_USER, httpserver.METRICS_SERVER_USER)


def _files(
    sc: ServingConfig, node_name: str, hosts: list[str], cert_dir: Path, client_ca: bytes
) -> tuple[Path, Path, Path]:
    """(cert, key, client CA) files. Blocking."""
    if (sc.cert_file is None) != (sc.key_file is None):
        raise ValueError("give both --tls-cert-file and --tls-private-key-file, or neither")
    if sc.cert_file is not None and sc.key_file is not None:
        cert, key = sc.cert_file, sc.key_file
    else:
        ca_cert, ca_key = sc.ca if sc.ca is not None else (None, None)
        cert, key = streaming_tls.ensure_serving_cert(cert_dir, ca_cert, ca_key, node_name, hosts)
    if sc.client_ca_file is not None:
        return cert, key, sc.client_ca_file
    if not client_ca:
        raise ValueError(
            "the agent's HTTPS server needs the CA of the API server's client certificate: "
            "give --client-ca-file (or a kubeconfig with certificate-authority data)"
        )
    ca_file = cert_dir / CLIENT_CA_FILE
    cert_dir.mkdir(parents=True, exist_ok=True)
    if not ca_file.exists() or ca_file.read_bytes() != client_ca:
        tmp = ca_file.with_suffix(".tmp")
        tmp.write_bytes(client_ca)
        tmp.replace(ca_file)
    return cert, key, ca_file


def _volume_stats(a: agent.Agent) -> stats.VolumeStatsFn:
    """The Summary API's `pods[].volume` entries from the agent's CSI volumes."""

    async def collect() -> dict[str, list[dict[str, Any]]]:
        now = common.rfc3339(time.time())
        out: dict[str, list[dict[str, Any]]] = {}
        for uid, namespace, _pod, name, claim, st in await a.volume_stats():
            doc: dict[str, Any] = {
                "time": now,
                "name": name,
                "availableBytes": st.available,
                "capacityBytes": st.capacity,
                "usedBytes": st.used,
                "inodesFree": st.inodes_free,
                "inodes": st.inodes,
                "inodesUsed": st.inodes_used,
                "volumeHealthStats": {"abnormal": st.abnormal},
            }
            if claim:
                doc["pvcRef"] = {"name": claim, "namespace": namespace}
            out.setdefault(uid, []).append(doc)
        return out

    return collect


async def start(a: agent.Agent, sc: ServingConfig, client_ca: bytes) -> httpserver.AgentServer:
    """Start the agent's HTTPS server; call before `a.start()` (it sets the port the agent
    publishes)."""
    cfg = a.cfg
    hosts = list(cfg.node_ips) or [await asyncio.to_thread(node.default_address)]
    if sc.bind not in ("0.0.0.0", "::", ""):
        hosts.append(sc.bind)
    cert_dir = sc.cert_dir or cfg.data_dir / "pki"
    if sc.rotate and sc.cert_file is None and sc.ca is None:
        if not client_ca:
            raise ValueError("--rotate-server-certificates needs the cluster CA (kubeconfig)")
        got = await bootstrap.ensure(a.client, cfg.node_name, hosts, cert_dir, client_ca)
        sc = dataclasses.replace(sc, cert_file=got[0], key_file=got[1])
    cert, key, ca = await asyncio.to_thread(_files, sc, cfg.node_name, hosts, cert_dir, client_ca)
    server = httpserver.AgentServer(
        a.rt,
        bind=sc.bind or "0.0.0.0",
        port=sc.port,
        cert_file=cert,
        key_file=key,
        client_ca_file=ca,
        allowed_users=sc.allowed_users,
        summary=stats.SummaryProvider(a.rt, cfg.node_name, volume_stats=_volume_stats(a)),
    )
    await server.start()
    cfg.kubelet_port = server.port
    log.info("node %s: serving on %s:%d", cfg.node_name, server.bind, server.port)
    return server
