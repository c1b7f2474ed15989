"""Wires the components that run next to the API server in one process: the controller
manager and the scheduler (`kybern server` and `kybern up`), and simulated nodes
(`--sim-nodes N`). Each talks to the API server through the same REST client as any other
client would."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kybern.agent import managed, serving
from kybern.apiserver import server
from kybern.cli import agent as agent_cli
from kybern.cli import csi, metricsserver
from kybern.client import rest
from kybern.controllers import common as ctl_common
from kybern.controllers import manager
from kybern.scheduler import profile, scheduler
from kybern.simnodes import simnodes

log = logging.getLogger("kybern")
# the default profile plus the volume plugins (claims, WaitForFirstConsumer, volume topology)
PROFILE = {"plugins": {"multiPoint": {"enabled": [{"name": "VolumeBinding"}]}}}


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--disable-controllers",
        default="",
        help=f"comma-separated controllers not to run (of: {','.join(manager.NAMES)}), "
        "or * for none",
    )
    p.add_argument("--disable-scheduler", action="store_true", help="do not run the scheduler")
    p.add_argument(
        "--sim-nodes", type=int, default=0, help="also register N simulated nodes (like kwok)"
    )
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pool of the nodes' podCIDRs")
    p.add_argument("--node-cidr-mask-size", type=int, default=24, help="prefix of each podCIDR")
    if p.prog.endswith(" up"):  # the node of `kybern up`
        agent_cli.add_node_flags(p)
        p.add_argument("--disable-agent", action="store_true", help="run no node agent")
        p.add_argument(
            "--kubelet-port", type=int, default=10250, help="the node agent's HTTPS port (0: any)"
        )
        p.add_argument(
            "--csi-hostpath",
            action="store_true",
            help="also run the hostpath CSI driver, its sidecars and a default StorageClass",
        )
        p.add_argument(
            "--disable-metrics-server", action="store_true", help="no metrics.k8s.io (kubectl top)"
        )
        p.add_argument(
            "--metric-resolution",
            type=metricsserver.duration,
            default=15.0,
            help="time between metric scrapes (15s, 2s, ...)",
        )


@dataclass
class Components:
    client: rest.Client
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stop_timeout: float = 2.0

    async def stop(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                await stop()
        await self.client.close()


async def start(api: server.APIServer, args: argparse.Namespace) -> Components:
    """Start what `args` asks for next to a running API server."""
    assert api.pki is not None
    cfg = rest.Config(
        server=api.url,
        ca_data=api.pki.ca_cert.read_bytes(),
        cert_data=api.pki.admin_cert.read_bytes(),
        key_data=api.pki.admin_key.read_bytes(),
    )
    comps = Components(rest.Client(cfg, user_agent="kybern-components"))
    disabled = {n.strip() for n in args.disable_controllers.split(",") if n.strip()}
    if "*" not in disabled:
        cm = manager.ControllerManager(
            comps.client,
            disabled=disabled,
            cluster_cidr=args.cluster_cidr,
            node_cidr_mask_size=args.node_cidr_mask_size,
            options=ctl_common.Options(
                signing_ca=(api.pki.ca_cert.read_bytes(), api.pki.ca_key.read_bytes())
            ),
        )
        await cm.start()
        comps.stops.append(cm.stop)
    if not args.disable_scheduler:
        sched = scheduler.Scheduler(comps.client, profile=profile.Profile.from_config(PROFILE))
        await sched.start()
        comps.stops.append(sched.stop)
    if args.sim_nodes:
        nodes = simnodes.SimNodes(comps.client, count=args.sim_nodes)
        await nodes.start()
        comps.stops.append(nodes.stop)
    if getattr(args, "command", "") == "up" and not args.disable_metrics_server:
        comps.stops.append(
            await metricsserver.start_in_process(cfg, api.pki, resolution=args.metric_resolution)
        )
    if getattr(args, "command", "") == "up" and args.csi_hostpath:
        comps.stops.append(await _start_csi(comps.client, args))
    if getattr(args, "command", "") == "up" and not args.disable_agent:
        node = managed.LocalNode(
            rest.Client(cfg, user_agent="kybern-agent"),
            Path(args.data_dir),
            node_name=args.node_name,
            endpoint=args.container_runtime_endpoint or "",
            node_ips=list(args.node_ip),
            plugin_registration_dir=registration_dir(args),
            serving=serving.ServingConfig(
                port=args.kubelet_port,
                ca=(api.pki.ca_cert, api.pki.ca_key),
                client_ca_file=api.pki.ca_cert,
            ),
        )
        node.start()
        comps.stops.append(node.client.close)  # stops run in reverse: the node first
        comps.stops.append(node.stop)
        comps.stop_timeout = 60.0
    return comps


def registration_dir(args: argparse.Namespace) -> Path:
    """Where the node's CSI drivers register (`--kubelet-registration-dir`)."""
    return Path(args.kubelet_registration_dir or Path(args.data_dir) / "plugins_registry")


async def _start_csi(
    client: rest.Client, args: argparse.Namespace
) -> Callable[[], Awaitable[None]]:
    """`kybern up --csi-hostpath`: the driver registers in the node's registration directory."""
    data_dir = Path(args.data_dir)
    reg_dir = registration_dir(args)
    node = args.node_name or socket.gethostname().lower()
    local = csi.LocalCSI(client, data_dir, node, reg_dir)
    await local.start()
    return local.stop
