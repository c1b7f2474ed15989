"""`kybern metrics-server`: run the resource metrics API against the cluster of a kubeconfig,
registered as the APIService `v1beta1.metrics.k8s.io` (a selector-less Service
`kube-system/metrics-server` and Endpoints naming this process). Agents are scraped over HTTPS
with a client certificate (`--kubelet-client-certificate/-key`) and verified with
`--kubelet-certificate-authority` (or not, with `--kubelet-insecure-tls`). `start_in_process` is
what `kybern up` runs: the same server, with a client certificate (CN `kybern-metrics-server`)
issued by the cluster CA for talking to agents."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kybern import ext
from kybern.apiserver import certs
from kybern.client import rest
from kybern.metricsserver import MetricsServer, Source, SummarySource, ZeroSource

log = logging.getLogger("kybern.metricsserver")
AGENT_CLIENT_USER = "kybern-metrics-server"  # the CN agents must let read /stats/summary
SERVICE = ("kube-system", "metrics-server")
FALLBACKS = ("zero", "omit", "zero-always")
UP_FALLBACK = "zero"  # `kybern up`: zeros for simulated nodes, the agent's own numbers for its node


def duration(text: str) -> float:
    """`15s`, `1m`, `500ms` or plain seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "metrics-server", help="serve metrics.k8s.io (kubectl top) as an aggregated API"
    )
    p.add_argument("--kubeconfig", required=True, help="the cluster to serve and register with")
    p.add_argument("--bind-address", default="127.0.0.1", help="address to serve on")
    p.add_argument("--secure-port", type=int, default=0, help="HTTPS port; 0 picks a free one")
    p.add_argument(
        "--advertise-address", default="", help="address for the Endpoints (default: bind)"
    )
    p.add_argument("--metric-resolution", type=duration, default=15.0, help="scrape interval")
    p.add_argument("--kubelet-certificate-authority", default="", help="CA of agents' certs")
    p.add_argument("--kubelet-client-certificate", default="", help="client cert for agents")
    p.add_argument("--kubelet-client-key", default="", help="its key")
    p.add_argument("--kubelet-insecure-tls", action="store_true", help="do not verify agents")
    p.add_argument(
        "--stats-fallback",
        choices=FALLBACKS,
        default="zero",
        help="nodes whose agent serves no /stats/summary (404/401/403): report zero usage, or "
        "leave them out; zero-always: zeros for unreachable agents too",
    )
    p.add_argument("--no-register", action="store_true", help="do not create the APIService")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def agent_context(
    *, ca: bytes | None, cert: bytes | None, key: bytes | None, insecure: bool
) -> ssl.SSLContext:
    """TLS towards agents (blocking: run in a thread)."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if cert and key:
        with tempfile.TemporaryDirectory(prefix="kybern-ms-") as d:
            cf, kf = Path(d) / "c.pem", Path(d) / "k.pem"
            for path, data in ((cf, cert), (kf, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(cf, kf)
    return ctx


def build_source(ctx: ssl.SSLContext, resolution: float, fallback: str) -> Source:
    return SummarySource(
        ctx,
        fallback=ZeroSource(resolution) if fallback != "omit" else None,
        fallback_unreachable=fallback == "zero-always",
        window=resolution,
    )


async def run(args: argparse.Namespace) -> int:
    cfg = await asyncio.to_thread(rest.load_kubeconfig, args.kubeconfig)

    def read(path: str) -> bytes | None:
        return Path(path).read_bytes() if path else None

    ctx = await asyncio.to_thread(
        lambda: agent_context(
            ca=read(args.kubelet_certificate_authority),
            cert=read(args.kubelet_client_certificate),
            key=read(args.kubelet_client_key),
            insecure=args.kubelet_insecure_tls,
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with rest.Client(cfg, user_agent="kybern-metrics-server") as client:
        ms = MetricsServer(
            client,
            source=build_source(ctx, args.metric_resolution, args.stats_fallback),
            resolution=args.metric_resolution,
        )
        try:
            await ms.start()
            async with ext.running(
                ms.server,
                client,
                host=args.bind_address,
                port=args.secure_port,
                advertise=args.advertise_address,
                namespace=SERVICE[0],
                service=SERVICE[1],
                register=not args.no_register,
            ) as reg:
                log.info("metrics server on %s:%d (%s)", reg.address, reg.port, reg.apiservice_name)
                await stop.wait()
        except Exception as e:
            log.error("metrics server failed: %s", e)
            return 1
        finally:
            await ms.stop()
    return 0


async def start_in_process(
    cfg: rest.Config, pki: certs.Pki, *, resolution: float = 15.0
) -> Callable[[], Awaitable[None]]:
    """The metrics server of `kybern up`, registered; returns its stop."""
    cert, key = await asyncio.to_thread(certs.issue_client_cert, pki, AGENT_CLIENT_USER, [])
    ca = await asyncio.to_thread(pki.ca_cert.read_bytes)
    ctx = await asyncio.to_thread(lambda: agent_context(ca=ca, cert=cert, key=key, insecure=False))
    client = rest.Client(cfg, user_agent="kybern-metrics-server")
    source = build_source(ctx, resolution, UP_FALLBACK)
    ms = MetricsServer(client, source=source, resolution=resolution)
    serving = ext.running(ms.server, client, namespace=SERVICE[0], service=SERVICE[1])
    try:
        await ms.start()
        await serving.__aenter__()
    except BaseException:
        await ms.stop()
        await client.close()
        raise

    async def stop() -> None:
        try:
            await serving.__aexit__(None, None, None)
        finally:
            await ms.stop()
            await client.close()

    return stop
