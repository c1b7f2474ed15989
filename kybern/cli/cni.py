"""`kybern cni add|del|check|status|gc NETWORK NETNS`: run a named network of a conf dir against
a network namespace, as cnitool does. The conf dir comes from `--conf-dir` or `NETCONFPATH`
(default /etc/cni/net.d), plugin dirs from `--bin-dir` or `CNI_PATH` (default /opt/cni/bin and
/usr/lib/cni); `CNI_ARGS`, `CNI_IFNAME` (default eth0) and `CAP_ARGS` (runtimeConfig JSON) are
read from the environment, and the container id is cnitool's (`cnitool-` and the first 10 bytes
of the SHA-512 of the absolute netns path, in hex). `add` prints the result JSON."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from typing import Any

import orjson

from kybern import cni

DEFAULT_CONF_DIR = "/etc/cni/net.d"
COMMANDS = ("add", "del", "check", "status", "gc")


def container_id(netns: str) -> str:
    """cnitool's container id for a netns path."""
    return "cnitool-" + hashlib.sha512(os.path.abspath(netns).encode()).digest()[:10].hex()


_HELP = {
    "add": "add the namespace to the network and print the result",
    "del": "delete the namespace from the network",
    "check": "check the namespace's attachment against the cached result",
    "status": "ask every plugin of the network whether it is ready (CNI 1.1)",
    "gc": "delete cached attachments of the network that are not kept, then GC (CNI 1.1)",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `cni` (with `add`, `del`, `check`, `status`, `gc`) on the `kybern` command's
    subparsers; returns its parser. Dispatch to `run(args)`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cni",
        help="run CNI plugins on a network namespace (like cnitool)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("network", help="network name (the `name` in a file of the conf dir)")
    common.add_argument("--conf-dir", default="", help="network configs (default: $NETCONFPATH)")
    common.add_argument(
        "--bin-dir",
        action="append",
        default=[],
        help="plugin directory, repeatable or ':'-separated (default: $CNI_PATH)",
    )
    common.add_argument(
        "--cache-dir", default=cni.DEFAULT_CACHE_DIR, help="result cache (default: %(default)s)"
    )
    common.add_argument(
        "-i", "--ifname", default="", help="interface (default: $CNI_IFNAME or eth0)"
    )
    common.add_argument("--timeout", type=float, default=60.0, help="per plugin call, seconds")
    ops = p.add_subparsers(dest="cni_op", required=True, metavar="{add,del,check,status,gc}")
    for op in COMMANDS:
        sp = ops.add_parser(op, parents=[common], help=_HELP[op], description=_HELP[op])
        if op in ("add", "del", "check"):
            sp.add_argument("netns", help="network namespace path, e.g. /var/run/netns/x")
        else:
            sp.add_argument(
                "netns",
                nargs="?",
                default="",
                help="network namespace path (optional; gc keeps its attachment)",
            )
        if op == "gc":
            sp.add_argument(
                "--valid",
                action="append",
                default=[],
                metavar="CONTAINERID[/IFNAME]",
                help="an attachment to keep (repeatable; ifname defaults to the interface)",
            )
    return p


def _bin_dirs(args: argparse.Namespace) -> list[str]:
    raw = list(args.bin_dir) or [os.environ.get("CNI_PATH", "")]
    dirs = [d for item in raw for d in item.split(":") if d]
    return dirs or list(cni.DEFAULT_BIN_DIRS)


def _runtime_conf(args: argparse.Namespace, ifname: str) -> cni.RuntimeConf:
    caps: dict[str, Any] = {}
    raw_caps = os.environ.get("CAP_ARGS", "")
    if raw_caps:
        try:
            caps = orjson.loads(raw_caps)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"CAP_ARGS is not JSON: {e}") from None
        if not isinstance(caps, dict):
            raise ValueError("CAP_ARGS must be a JSON object")
    netns = os.path.abspath(args.netns) if args.netns else ""
    return cni.RuntimeConf(
        container_id=container_id(netns) if netns else "",
        netns=netns,
        ifname=ifname,
        args=cni.protocol.parse_cni_args(os.environ.get("CNI_ARGS", "")),
        capability_args=caps,
    )


def _valid(args: argparse.Namespace, rt: cni.RuntimeConf) -> list[cni.GCAttachment]:
    keep = []
    if rt.container_id:
        keep.append(cni.GCAttachment(rt.container_id, rt.ifname))
    for item in getattr(args, "valid", []):
        cid, _, ifname = item.partition("/")
        if not cid:
            raise ValueError(f"invalid --valid {item!r}")
        keep.append(cni.GCAttachment(cid, ifname or rt.ifname))
    return keep


async def _run(args: argparse.Namespace) -> int:
    conf_dir = args.conf_dir or os.environ.get("NETCONFPATH", "") or DEFAULT_CONF_DIR
    ifname = args.ifname or os.environ.get("CNI_IFNAME", "") or "eth0"
    net = await asyncio.to_thread(cni.config.find, conf_dir, args.network)
    rt = _runtime_conf(args, ifname)
    if args.cni_op in ("add", "del", "check") and not rt.netns:
        raise ValueError(f"{args.cni_op} needs a network namespace path")
    runtime = cni.Runtime(_bin_dirs(args), cache_dir=args.cache_dir, timeout=args.timeout or None)
    if args.cni_op == "add":
        result = await runtime.add(net, rt)
        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif args.cni_op == "del":
        await runtime.delete(net, rt)
    elif args.cni_op == "check":
        await runtime.check(net, rt)
    elif args.cni_op == "status":
        await runtime.status(net)
    else:
        await runtime.gc(net, _valid(args, rt))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `kybern cni ...`: 0 on success; 1 with the error on stderr when CNI or the
    configuration fails."""
    try:
        return asyncio.run(_run(args))
    except cni.CNIError as e:
        print(f"kybern cni {args.cni_op}: {e}", file=sys.stderr)
        return 1
    except (cni.ConfigError, ValueError) as e:
        print(f"kybern cni {args.cni_op}: {e}", file=sys.stderr)
        return 1
