"""Wires the components that run next to the API server in one process: the controller
manager and the scheduler (`kybern server` and `kybern up`), and simulated nodes
(`--sim-nodes N`). Each talks to the API server through the same REST client as any other
client would."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kybern.apiserver import server
from kybern.client import rest
from kybern.controllers import manager
from kybern.scheduler import scheduler
from kybern.simnodes import simnodes

log = logging.getLogger("kybern")


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


@dataclass
class Components:
    client: rest.Client
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

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
        cm = manager.ControllerManager(comps.client, disabled=disabled)
        await cm.start()
        comps.stops.append(cm.stop)
    if not args.disable_scheduler:
        sched = scheduler.Scheduler(comps.client)
        await sched.start()
        comps.stops.append(sched.stop)
    if args.sim_nodes:
        nodes = simnodes.SimNodes(comps.client, count=args.sim_nodes)
        await nodes.start()
        comps.stops.append(nodes.stop)
    return comps
