"""`kybern agent`: a node of a cluster named by a kubeconfig (or `--server URL --token T`), running
pods through a CRI runtime (`--container-runtime-endpoint`). `add_parser` registers the command
and its flags (kubelet's names where kubelet has the flag); `run` builds an `AgentConfig`, runs
the agent until SIGTERM/SIGINT and stops it, leaving the pods' containers running."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from kybern.agent import agent, gc, network, serving
from kybern.client import rest
from kybern.cri import client as cri_client

log = logging.getLogger("kybern.agent")


def _labels(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def add_node_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `kybern agent` and the agent inside `kybern up`."""
    p.add_argument(
        "--container-runtime-endpoint",
        default=None,
        help="the CRI runtime's socket, unix:///PATH (kybern up: none starts its own containerd)",
    )
    p.add_argument("--node-name", default="", help="the Node's name (default: the hostname)")
    p.add_argument(
        "--kubelet-registration-dir",
        default="",
        help="where CSI drivers put registration sockets (default: DATA_DIR/plugins_registry)",
    )
    p.add_argument(
        "--node-ip",
        action="append",
        default=[],
        help="the node's InternalIP (default: the default route's address, else 127.0.0.1)",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "agent", help="run a node agent (a kubelet) that runs pods through a CRI runtime"
    )
    p.add_argument("--kubeconfig", default="", help="the cluster to join")
    p.add_argument("--server", default="", help="API server URL (with --token)")
    p.add_argument("--token", default="", help="bearer token (with --server)")
    p.add_argument("--certificate-authority", default="", help="CA bundle of the API server")
    add_node_flags(p)
    p.add_argument("--data-dir", default="/var/lib/kybern/agent", help="volumes and state")
    p.add_argument("--pod-logs-dir", default="/var/log/pods", help="containers' log files")
    p.add_argument("--cni-conf-dir", default=network.DEFAULT_CONF_DIR)
    p.add_argument("--cni-bin-dir", default=":".join(network.DEFAULT_BIN_DIRS), help="DIR[:DIR...]")
    p.add_argument("--cni-network-name", default=network.NETWORK_NAME)
    p.add_argument("--cni-bridge", default=network.BRIDGE_NAME, help="the pod bridge's name")
    p.add_argument(
        "--cni-ipam-dir", default="", help="host-local's store (default: DATA_DIR/cni/networks)"
    )
    p.add_argument("--pod-manifest-path", default="", help="directory of static pod manifests")
    p.add_argument("--node-labels", type=_labels, default={}, help="KEY=VALUE,...")
    p.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs for pods")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf")
    p.add_argument("--cgroup-root", default="/", help="pods' cgroups go below ROOT/kubepods")
    p.add_argument("--port", type=int, default=10250, help="the agent's HTTPS port (0: any)")
    p.add_argument("--address", default="0.0.0.0", help="the address the HTTPS server binds")
    p.add_argument("--tls-cert-file", default="", help="serving certificate (default: self-signed)")
    p.add_argument("--tls-private-key-file", default="", help="its key")
    p.add_argument(
        "--client-ca-file",
        default="",
        help="CA of the API server's client certificate (default: the kubeconfig's CA)",
    )
    p.add_argument("--cert-dir", default="", help="where generated certificates go (DATA_DIR/pki)")
    p.add_argument(
        "--rotate-server-certificates",
        action="store_true",
        help="get the serving certificate through a CertificateSigningRequest (kubelet-serving)",
    )
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument(
        "--crashloop-backoff",
        type=float,
        default=10.0,
        help="the first CrashLoopBackOff delay in seconds (doubles up to --crashloop-backoff-max)",
    )
    p.add_argument("--crashloop-backoff-max", type=float, default=300.0)
    p.add_argument("--heartbeat-interval", type=float, default=10.0, help="Lease renew period")
    p.add_argument("--runtime-request-timeout", type=float, default=120.0)
    p.add_argument(
        "--container-gc-period", type=float, default=60.0, help="seconds between container GCs"
    )
    p.add_argument("--image-gc-high-threshold", type=int, default=85, help="disk usage percent")
    p.add_argument("--image-gc-low-threshold", type=int, default=80, help="disk usage percent")
    p.add_argument(
        "--parallel-pod-starts",
        type=int,
        default=0,
        help="pods whose sandbox and containers start at once (default: twice the CPUs)",
    )
    p.add_argument("--no-events", action="store_true", help="do not write Events")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def config_from(args: argparse.Namespace) -> agent.AgentConfig:
    data_dir = Path(os.path.abspath(os.path.expanduser(args.data_dir)))
    return agent.AgentConfig(
        node_name=args.node_name or agent.default_node_name(),
        runtime_endpoint=args.container_runtime_endpoint or cri_client.DEFAULT_ENDPOINT,
        data_dir=data_dir,
        pod_logs_dir=Path(args.pod_logs_dir) if args.pod_logs_dir else None,
        cni=network.Settings(
            conf_dir=Path(args.cni_conf_dir),
            bin_dirs=tuple(d for d in args.cni_bin_dir.split(":") if d),
            network=args.cni_network_name,
            bridge=args.cni_bridge,
            ipam_dir=args.cni_ipam_dir or str(data_dir / "cni" / "networks"),
        ),
        pod_manifest_path=Path(args.pod_manifest_path) if args.pod_manifest_path else None,
        plugin_registration_dir=(
            Path(args.kubelet_registration_dir) if args.kubelet_registration_dir else None
        ),
        node_ips=list(args.node_ip),
        node_labels=dict(args.node_labels),
        cluster_dns=[s.strip() for s in args.cluster_dns.split(",") if s.strip()],
        cluster_domain=args.cluster_domain,
        resolv_conf=Path(args.resolv_conf),
        cgroup_root=args.cgroup_root,
        kubelet_port=args.port,
        max_pods=args.max_pods,
        crashloop_base=args.crashloop_backoff,
        crashloop_cap=args.crashloop_backoff_max,
        heartbeat_interval=args.heartbeat_interval,
        runtime_timeout=args.runtime_request_timeout,
        events=not args.no_events,
        parallel_starts=args.parallel_pod_starts,
        gc=gc.Policy(
            container_period=args.container_gc_period,
            image_high=args.image_gc_high_threshold,
            image_low=args.image_gc_low_threshold,
        ),
    )


def serving_from(args: argparse.Namespace) -> serving.ServingConfig:
    def path(value: str) -> Path | None:
        return Path(value) if value else None

    return serving.ServingConfig(
        bind=args.address,
        port=args.port,
        cert_file=path(args.tls_cert_file),
        key_file=path(args.tls_private_key_file),
        client_ca_file=path(args.client_ca_file),
        cert_dir=path(args.cert_dir),
        rotate=args.rotate_server_certificates,
    )


async def _client_config(args: argparse.Namespace) -> rest.Config:
    if args.kubeconfig:
        return await asyncio.to_thread(rest.load_kubeconfig, args.kubeconfig)
    if not (args.server and args.token):
        raise ValueError("give --kubeconfig, or --server and --token")
    ca = b""
    if args.certificate_authority:
        ca = await asyncio.to_thread(Path(args.certificate_authority).read_bytes)
    else:
        log.warning("no --certificate-authority: the API server's certificate is not verified")
    return rest.Config(
        server=args.server.rstrip("/"), token=args.token, ca_data=ca, insecure=not ca
    )


async def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from(args)
        client_cfg = await _client_config(args)
    except (ValueError, OSError) as e:
        log.error("cannot start: %s", e)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with rest.Client(client_cfg, user_agent=f"kybern-agent/{cfg.node_name}") as c:
        node = agent.Agent(c, cfg)
        waiter = asyncio.create_task(stop.wait())
        serving_up = asyncio.create_task(
            serving.start(node, serving_from(args), client_cfg.ca_data)
        )  # may wait for a certificate's approval: stoppable meanwhile
        await asyncio.wait({serving_up, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not serving_up.done():
            serving_up.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving_up
            return 0
        try:
            server = serving_up.result()
        except (ValueError, OSError) as e:
            log.error("cannot start the agent's HTTPS server: %s", e)
            waiter.cancel()
            return 2
        starting = asyncio.create_task(node.start())
        await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        else:
            try:
                starting.result()
            except Exception as e:
                log.error("cannot start the agent: %s", e)
                await server.stop()
                await node.stop()
                waiter.cancel()
                return 1
            await waiter
        log.info("stopping the agent (the pods keep running)")
        await server.stop()
        await node.stop()
    return 0
