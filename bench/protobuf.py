"""Protobuf vs JSON benchmark of kybern's API: starts its own `kybern server` (fresh temporary
data directory, port 0), drives it over HTTPS on loopback with aiohttp (admin client
certificate from the kubeconfig) and prints, for each wire format, creates/s (small ConfigMaps
or Pods, `--clients` concurrent clients), gets/s (GET by name of the created objects, the
first GET of each: its protobuf encoding is not cached yet), warm gets/s (the same GETs again)
and the latency of a full LIST, as the median over `--runs` rounds in which the two formats
alternate in small batches, and the median of the per-round ratios; and the server's CPU time
per request of each phase (from /proc, which other load on a shared machine hardly disturbs).
Request bodies are encoded before the clock starts and
responses are only read inside it (the first of each phase is decoded and checked afterwards):
this measures the server, not this Python client's decoder (Go clients decode protobuf faster
than JSON). Every loop is bounded in count and time, only loopback is used, and the server and
its directory are removed at the end, also on Ctrl-C or an error.

    .venv/bin/python -m bench.protobuf [--objects 300] [--clients 8] [--runs 6] [--kind pod]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from kybern.api import protobuf

REPO = Path(__file__).resolve().parent.parent
JSON = "application/json"
PROTO = protobuf.MEDIA_TYPE
READY_TIMEOUT = 60.0
PHASE_TIMEOUT = 300.0


def make_object(kind: str, name: str) -> dict[str, Any]:
    if kind == "pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        "env": [{"name": "MODE", "value": "bench"}],
                    }
                ],
            },
        }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"key": "value", "other": "x" * 64},
    }


class Server:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kybern-bench-pb-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ssl: ssl.SSLContext | None = None

    def start(self) -> None:
        data = self.dir / "data"
        with open(self.dir / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kybern", "server", "--data-dir", str(data), "--port", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        kubeconfig = data / "kubeconfig"
        deadline = time.monotonic() + READY_TIMEOUT
        while not kubeconfig.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + self.log_tail())
            time.sleep(0.05)
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        self.url = cluster["server"]
        files = {}
        for name, key in (
            ("ca.crt", cluster["certificate-authority-data"]),
            ("client.crt", user["client-certificate-data"]),
            ("client.key", user["client-key-data"]),
        ):
            files[name] = self.dir / name
            files[name].write_bytes(base64.b64decode(key))
        self.ssl = ssl.create_default_context(cafile=str(files["ca.crt"]))
        self.ssl.load_cert_chain(str(files["client.crt"]), str(files["client.key"]))

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.dir / "server.log").read_text().splitlines()[-30:])
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def headers(fmt: str) -> dict[str, str]:
    if fmt == "protobuf":
        return {"Content-Type": PROTO, "Accept": f"{PROTO},{JSON}"}
    return {"Content-Type": JSON, "Accept": JSON}


def encode(fmt: str, obj: dict[str, Any]) -> bytes:
    return protobuf.encode_object(obj) if fmt == "protobuf" else orjson.dumps(obj)


def decode(fmt: str, body: bytes) -> dict[str, Any]:
    if fmt == "protobuf":
        return protobuf.decode_object(body)
    out: dict[str, Any] = orjson.loads(body)
    return out


def server_cpu(srv: Server) -> float:
    """CPU seconds (user + system) the server process has used so far; 0 off Linux."""
    assert srv.proc is not None
    try:
        fields = Path(f"/proc/{srv.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_clients(
    n: int, clients: int, work: Callable[[int], Awaitable[None]]
) -> tuple[float, int]:
    """Run `work(i)` for i in range(n) on `clients` concurrent workers; (seconds, failures)."""
    next_i = 0
    failures = 0

    async def worker() -> None:
        nonlocal next_i, failures
        while next_i < n:
            i = next_i
            next_i += 1
            try:
                await work(i)
            except Exception:
                failures += 1

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), PHASE_TIMEOUT)
    return time.perf_counter() - start, failures


async def one_round(
    srv: Server, http: aiohttp.ClientSession, rnd: int, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Both formats, each in its own namespace, in alternating batches of `--batch` requests
    (so that load from elsewhere on the machine hits both alike): per format, its rates and
    LIST latency."""
    fmts = ("json", "protobuf")
    plural = "pods" if args.kind == "pod" else "configmaps"
    base: dict[str, str] = {}
    bodies: dict[str, list[bytes]] = {}
    for fmt in fmts:
        ns = f"bench-{fmt}-{rnd}"
        await http.post(
            f"{srv.url}/api/v1/namespaces",
            data=orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            headers=headers("json"),
        )
        base[fmt] = f"{srv.url}/api/v1/namespaces/{ns}/{plural}"
        bodies[fmt] = [encode(fmt, make_object(args.kind, f"o-{i}")) for i in range(args.objects)]
    first: dict[tuple[str, str], bytes] = {}

    def create(fmt: str, offset: int) -> Callable[[int], Awaitable[None]]:
        async def work(j: int) -> None:
            i = offset + j
            async with http.post(base[fmt], data=bodies[fmt][i], headers=headers(fmt)) as r:
                body = await r.read()
                if r.status != 201:
                    raise RuntimeError(f"create: {r.status} {body[:200]!r}")
                first.setdefault((fmt, "create"), body)

        return work

    def get(fmt: str, offset: int) -> Callable[[int], Awaitable[None]]:
        async def work(j: int) -> None:
            async with http.get(f"{base[fmt]}/o-{offset + j}", headers=headers(fmt)) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"get: {r.status}")
                first.setdefault((fmt, "get"), body)

        return work

    spent = {(fmt, phase): 0.0 for fmt in fmts for phase in ("create", "get", "warm")}
    cpu_spent = dict.fromkeys(spent, 0.0)
    failures = dict.fromkeys(fmts, 0)
    for phase, make in (("create", create), ("get", get), ("warm", get)):
        for k, start in enumerate(range(0, args.objects, args.batch)):
            n = min(args.batch, args.objects - start)
            for fmt in fmts if (k + rnd) % 2 == 0 else fmts[::-1]:
                cpu = server_cpu(srv)
                seconds, failed = await run_clients(n, args.clients, make(fmt, start))
                cpu_spent[fmt, phase] += server_cpu(srv) - cpu
                spent[fmt, phase] += seconds
                failures[fmt] += failed
    lists: dict[str, list[float]] = {fmt: [] for fmt in fmts}
    for k in range(6):
        fmt = fmts[k % 2]
        begin = time.perf_counter()
        async with http.get(base[fmt], headers=headers(fmt)) as r:
            first[fmt, "list"] = await r.read()
        lists[fmt].append(time.perf_counter() - begin)
    for (fmt, phase), body in first.items():  # the right format and content, off the clock
        obj = decode(fmt, body)
        assert obj["kind"] in ("ConfigMap", "Pod", "ConfigMapList", "PodList"), (phase, obj)
        if phase == "list":
            assert len(obj["items"]) == args.objects
    return {
        fmt: {
            "creates/s": args.objects / spent[fmt, "create"],
            "gets/s": args.objects / spent[fmt, "get"],
            "warm gets/s": args.objects / spent[fmt, "warm"],
            "list ms": min(lists[fmt]) * 1000,
            "failures": failures[fmt],
            "cpu create us": cpu_spent[fmt, "create"] / args.objects * 1e6,
            "cpu get us": cpu_spent[fmt, "get"] / args.objects * 1e6,
            "cpu warm us": cpu_spent[fmt, "warm"] / args.objects * 1e6,
        }
        for fmt in fmts
    }


async def main_async(args: argparse.Namespace) -> None:
    srv = Server()
    try:
        srv.start()
        assert srv.ssl is not None
        conn = aiohttp.TCPConnector(ssl=srv.ssl, limit=args.clients + 2)
        async with aiohttp.ClientSession(connector=conn) as http:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{srv.url}/readyz") as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("not ready:\n" + srv.log_tail())
                await asyncio.sleep(0.05)
            results: dict[str, list[dict[str, float]]] = {"json": [], "protobuf": []}
            for rnd in range(args.runs):
                for fmt, res in (await one_round(srv, http, rnd, args)).items():
                    results[fmt].append(res)
        print(f"{args.objects} {args.kind}s, {args.clients} clients, median of {args.runs} rounds")
        print(
            f"{'':10}{'creates/s':>12}{'gets/s':>12}{'warm gets/s':>12}{'LIST ms':>12}"
            f"{'failures':>10}"
        )
        for fmt, rounds in results.items():
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(
                f"{fmt:10}{med['creates/s']:12.0f}{med['gets/s']:12.0f}"
                f"{med['warm gets/s']:12.0f}{med['list ms']:12.1f}"
                f"{sum(r['failures'] for r in rounds):10.0f}"
            )
        print(f"server CPU per request (us){'create':>12}{'get':>12}{'warm get':>12}")
        for fmt, rounds in results.items():
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(
                f"{fmt:27}{med['cpu create us']:12.0f}{med['cpu get us']:12.0f}"
                f"{med['cpu warm us']:12.0f}"
            )
        # the two formats of one round ran back to back: their ratio cancels the machine's
        # load, which shifts between rounds on a shared machine
        pairs = list(zip(results["protobuf"], results["json"], strict=True))
        ratios = {
            k: statistics.median(p[k] / j[k] for p, j in pairs)
            for k in ("creates/s", "gets/s", "warm gets/s", "list ms")
        }
        print(
            f"{'pb/json':10}{ratios['creates/s']:12.2f}{ratios['gets/s']:12.2f}"
            f"{ratios['warm gets/s']:12.2f}{ratios['list ms']:12.2f}"
            "   (median of the per-round ratios)"
        )
    finally:
        srv.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=300)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--kind", choices=("configmap", "pod"), default="configmap")
    p.add_argument("--batch", type=int, default=25, help="requests per alternating batch")
    args = p.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
