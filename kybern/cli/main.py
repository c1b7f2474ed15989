"""Entry point of the `kybern` command: `kybern server` (control plane) and `kybern up` (a whole
one-node cluster in one process). Each command has a `run_*` coroutine; flags live here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kybern.apiserver import certs, server
from kybern.cli import agent, cni, components, csi, logs, metricsserver, simnodes, store
from kybern.storage import StorageError

log = logging.getLogger("kybern")


def _common(p: argparse.ArgumentParser, default_dir: str | None) -> None:
    p.add_argument(
        "--data-dir",
        default=default_dir,
        required=default_dir is None,
        help="state, certificates and kubeconfig live here",
    )
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port; 0 picks a free one")
    p.add_argument(
        "--datastore-endpoint",
        default="",
        help="sqlite:///PATH (default: DATA_DIR/state.db), etcd://HOST:PORT[,HOST:PORT...] "
        "or etcds://... (TLS)",
    )
    p.add_argument("--etcd-cafile", default="", help="CA bundle to verify etcd members (etcds://)")
    p.add_argument("--etcd-certfile", default="", help="client certificate for etcd (etcds://)")
    p.add_argument("--etcd-keyfile", default="", help="client key for etcd (etcds://)")
    p.add_argument("--service-cidr", default="10.96.0.0/12")
    p.add_argument(
        "--tls-san",
        action="append",
        default=[],
        help="extra host name or IP for the serving certificate",
    )
    p.add_argument(
        "--kubelet-certificate-authority",
        default="",
        help="CA that agents' serving certificates must chain to (kybern up: its cluster CA; "
        "kybern server: unset means not verified, as kube-apiserver does)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    components.add_flags(p)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kybern", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a whole one-node cluster in this process")
    _common(up, str(Path.home() / ".kybern"))
    srv = sub.add_parser("server", help="run the control plane")
    _common(srv, None)
    sub.add_parser("version", help="print the version")
    agent.add_parser(sub)
    cni.add_parser(sub)
    csi.add_parsers(sub)
    metricsserver.add_parser(sub)
    simnodes.add_parser(sub)
    store.add_parser(sub)
    return p


async def run_server(args: argparse.Namespace, *, up: bool) -> int:
    data_dir: Path = args.data_dir
    cfg = server.Config(
        data_dir=data_dir,
        bind_address=args.bind_address,
        port=args.port,
        datastore_endpoint=args.datastore_endpoint,
        service_cidr=args.service_cidr,
        advertise_hosts=tuple(args.tls_san),
        etcd_cafile=args.etcd_cafile,
        etcd_certfile=args.etcd_certfile,
        etcd_keyfile=args.etcd_keyfile,
        kubelet_certificate_authority=args.kubelet_certificate_authority
        or (str(certs.Pki(data_dir / "pki").ca_cert) if args.command == "up" else ""),
    )
    api = server.APIServer(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await api.start()
    except (OSError, ValueError, StorageError) as e:
        log.error("cannot start: %s", e)
        await api.stop()
        return 1
    assert api.pki is not None
    try:
        comps = await components.start(api, args)
    except ValueError as e:  # e.g. an unknown controller name
        log.error("cannot start: %s", e)
        await api.stop()
        return 1
    kubeconfig = data_dir / "kubeconfig"
    await asyncio.to_thread(certs.write_kubeconfig, kubeconfig, server_url=api.url, pki=api.pki)
    log.info(
        "kybern %s is ready at %s; kubeconfig: %s",
        "cluster" if up else "server",
        api.url,
        kubeconfig,
    )
    if up:
        print(
            f"kybern is up. Point kubectl at it with:\n  export KUBECONFIG={kubeconfig}\n"
            f"  kubectl get namespaces",
            file=sys.stderr,
            flush=True,
        )
    await stop.wait()
    log.info("stopping")
    try:
        await asyncio.wait_for(comps.stop(), comps.stop_timeout)
    except TimeoutError:
        log.warning("components took too long to stop")
    try:
        await asyncio.wait_for(api.stop(), 2.5)
    except TimeoutError:
        log.warning("stop took too long; exiting anyway")
    return 0


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "version":
        from kybern import __version__

        print(f"kybern {__version__}")
        return
    if args.command == "cni":
        sys.exit(cni.run(args))
    logs.setup(getattr(args, "verbose", False))
    if args.command == "sim-nodes":
        sys.exit(_run(simnodes.run(args)))
    if args.command == "store":
        sys.exit(_run(store.run(args)))
    if args.command == "agent":
        sys.exit(_run(agent.run(args)))
    if args.command == "metrics-server":
        sys.exit(_run(metricsserver.run(args)))
    if args.command == "csi-hostpath":
        sys.exit(_run(csi.run_hostpath(args)))
    if args.command == "csi-sidecars":
        sys.exit(_run(csi.run_sidecars(args)))
    args.data_dir = Path(os.path.abspath(os.path.expanduser(args.data_dir)))
    sys.exit(_run(run_server(args, up=args.command == "up")))


if __name__ == "__main__":
    main()
