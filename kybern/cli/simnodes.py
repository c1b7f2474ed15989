"""`kybern sim-nodes`: run simulated nodes against any API server named by a kubeconfig.
`add_parser` registers the command and its flags; `run` registers the nodes, keeps them alive
until SIGTERM/SIGINT, and leaves them in place (they go NotReady) unless `--cleanup`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from kybern.client import rest
from kybern.simnodes import SimNodes

log = logging.getLogger("kybern.simnodes")


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sim-nodes", help="register simulated nodes that run pods without containers"
    )
    p.add_argument("--kubeconfig", required=True, help="the cluster to join")
    p.add_argument("--count", type=int, required=True, help="how many nodes")
    p.add_argument("--cpu", default="32", help="CPU capacity of each node")
    p.add_argument("--memory", default="256Gi", help="memory capacity of each node")
    p.add_argument("--pods", type=int, default=110, help="pod capacity of each node")
    p.add_argument("--name-prefix", default="sim-", help="nodes are PREFIX0, PREFIX1, ...")
    p.add_argument(
        "--label", type=_label, action="append", default=[], help="KEY=VALUE on every node"
    )
    p.add_argument("--zones", type=int, default=0, help="spread nodes over N zone labels")
    p.add_argument("--pod-cidr", default="10.128.0.0/9", help="pool of per-node /24 pod CIDRs")
    p.add_argument("--heartbeat-interval", type=float, default=10.0, help="lease renew period")
    p.add_argument("--cleanup", action="store_true", help="delete the nodes on exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def run(args: argparse.Namespace) -> int:
    cfg = await asyncio.to_thread(rest.load_kubeconfig, args.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with rest.Client(cfg, user_agent="kybern-sim-nodes") as client:
        sim = SimNodes(
            client,
            count=args.count,
            cpu=args.cpu,
            memory=args.memory,
            pods=args.pods,
            name_prefix=args.name_prefix,
            labels=dict(args.label),
            zones=args.zones,
            pod_cidr=args.pod_cidr,
            heartbeat_interval=args.heartbeat_interval,
        )
        try:
            await sim.start()
        except Exception as e:
            log.error("cannot register the nodes: %s", e)
            await sim.stop()
            return 1
        log.info("%d simulated nodes %s0..%d are up", args.count, args.name_prefix, args.count - 1)
        await stop.wait()
        log.info("stopping%s", " and removing the nodes" if args.cleanup else "")
        await sim.stop(cleanup=args.cleanup)
    return 0
