"""Aggregation benchmark: the cost of the API server's proxy to an extension API server. It
starts a `kybern server` (API machinery only; fresh temporary data directory, port 0) and, as a
second process, an extension server built on kybern.ext (`bench.kybern.io/v1`, `things` held in
memory) that registers itself by its APIService. Then, for each run, it measures gets/s (GET by
name, `--clients` concurrent clients, bounded by `--requests` and `--seconds`) and latency

- through the aggregator: kubectl's path, `https://<api server>/apis/bench.kybern.io/v1/...`
  with the admin client certificate,
- directly against the extension server: the same GETs with the front-proxy client certificate
  and X-Remote-User/X-Remote-Group headers, i.e. what the aggregator itself sends,
- a built-in GET (a ConfigMap) on the API server, for scale,

and prints the median over the runs and the ratio aggregated/direct. The three processes share
the machine's cores. Loopback only; every process and temporary directory is removed at the
end, also on Ctrl-C or an error. See docs/aggregation.md."""

from __future__ import annotations

import argparse
import asyncio
import atexit
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kybern import ext
from kybern.api import registry
from kybern.client import rest

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, NS = "bench.kybern.io", "v1", "bench"
READY_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
_LIVE: list[subprocess.Popen[bytes]] = []


@atexit.register
def _cleanup() -> None:
    for p in _LIVE:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        p = subprocess.Popen(
            [sys.executable, *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    _LIVE.append(p)
    return p


# ---- the extension server (run as `python -m bench.aggregation --serve KUBECONFIG`) ------------


async def serve(kubeconfig: str, objects: int, port_file: str) -> None:
    cfg = await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)
    store = ext.MemoryStore()
    for i in range(objects):
        store.put(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Thing",
                "metadata": {"name": f"thing-{i}", "namespace": NS, "labels": {"i": str(i)}},
                "spec": {"value": "x" * 200},
            }
        )
    server = ext.Server(GROUP, VERSION, [ext.Resource.backed_by(store, "things", "Thing")])
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with rest.Client(cfg) as client, ext.running(server, client) as reg:
        await asyncio.to_thread(Path(port_file).write_text, str(reg.port))
        await stop.wait()


# ---- the load -------------------------------------------------------------------------------


@dataclass
class Result:
    gets_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


async def load(
    url_for: Any, ctx: ssl.SSLContext, headers: dict[str, str], clients: int, n: int, secs: float
) -> Result:
    """`clients` workers GET `url_for(i)` until `n` requests or `secs` seconds in all (after a
    short warm-up that fills the connection pool)."""
    conn = aiohttp.TCPConnector(ssl=ctx, limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=conn, headers=headers, timeout=timeout) as s:

        async def phase(total: int, limit: float) -> tuple[list[float], int, float]:
            latencies: list[float] = []
            errors = issued = 0
            deadline = time.monotonic() + limit

            async def worker() -> None:
                nonlocal issued, errors
                while issued < total and time.monotonic() < deadline:
                    i = issued
                    issued += 1
                    t0 = time.perf_counter()
                    try:
                        async with s.get(url_for(i)) as r:
                            await r.read()
                            ok = r.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        ok = False
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return latencies, errors, time.perf_counter() - start

        await phase(clients * 4, secs)
        latencies, errors, elapsed = await phase(n, secs)
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return Result(len(latencies) / elapsed, pct(0.5), pct(0.99), errors)


def client_context(ca: bytes, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.decode())
    ctx.load_cert_chain(cert, key)
    return ctx


async def wait_for(check: Any, what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def bench(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="kybern-bench-agg-"))
    try:
        data = base / "data"
        api = _spawn(
            ["-m", "kybern", "server", "--data-dir", str(data), "--port", "0",
             "--disable-controllers=*", "--disable-scheduler"],
            base / "server.log",
        )  # fmt: skip
        kubeconfig = data / "kubeconfig"

        async def written() -> bool:
            if api.poll() is not None:
                raise SystemExit(f"server exited; see {base / 'server.log'}")
            return kubeconfig.exists()

        await wait_for(written, "the kubeconfig")
        cfg = await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)
        port_file = base / "ext.port"
        _spawn(
            ["-m", "bench.aggregation", "--serve", str(kubeconfig), "--objects",
             str(args.objects), "--port-file", str(port_file)],
            base / "ext.log",
        )  # fmt: skip
        admin = ssl.create_default_context(cadata=cfg.ca_data.decode())
        (base / "admin.crt").write_bytes(cfg.cert_data)
        (base / "admin.key").write_bytes(cfg.key_data)
        admin.load_cert_chain(base / "admin.crt", base / "admin.key")
        probe_url = f"{cfg.server}/apis/{GROUP}/{VERSION}/namespaces/{NS}/things/thing-0"

        async def reachable() -> bool:
            async with aiohttp.ClientSession() as s:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(probe_url, ssl=admin) as r:
                        return r.status == 200
            return False

        await wait_for(reachable, "the extension server through the aggregator")
        async with rest.Client(cfg) as client:
            cms = next(r for r in registry.BUILTIN if r.plural == "configmaps")
            with contextlib.suppress(Exception):
                await client.create(
                    next(r for r in registry.BUILTIN if r.plural == "namespaces"),
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                )
            for i in range(args.objects):
                meta = {"name": f"thing-{i}"}
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": meta,
                    "data": {"v": "x"},
                }
                await client.create(cms, body, NS)
            aps = next(r for r in registry.BUILTIN if r.plural == "apiservices")
            bundle = (await client.get(aps, f"{VERSION}.{GROUP}"))["spec"]["caBundle"]
            ext_ca = base64.b64decode(bundle)
        pki = data / "pki"
        direct = client_context(
            ext_ca, pki / "front-proxy-client.crt", pki / "front-proxy-client.key"
        )
        ext_port = int(port_file.read_text())
        identity = {"X-Remote-User": "kybern-admin", "X-Remote-Group": "system:masters"}
        accept = {"Accept": "application/json"}
        n, secs, c = args.requests, args.seconds, args.clients

        def path(i: int) -> str:
            return f"/namespaces/{NS}/things/thing-{i % args.objects}"

        modes = {
            "through the aggregator": (
                lambda i: f"{cfg.server}/apis/{GROUP}/{VERSION}{path(i)}", admin, accept),
            "directly (front-proxy cert)": (
                lambda i: f"https://127.0.0.1:{ext_port}/apis/{GROUP}/{VERSION}{path(i)}",
                direct, {**accept, **identity}),
            "built-in ConfigMap GET": (
                lambda i: f"{cfg.server}/api/v1{path(i).replace('things', 'configmaps')}",
                admin, accept),
        }  # fmt: skip
        results: dict[str, list[Result]] = {m: [] for m in modes}
        for run in range(args.runs):
            for mode, (url_for, ctx, headers) in modes.items():
                r = await load(url_for, ctx, headers, c, n, secs)
                results[mode].append(r)
                print(f"run {run + 1}: {mode}: {r.gets_per_s:.0f} gets/s", file=sys.stderr)
        report(results, args)
    finally:
        _cleanup()
        shutil.rmtree(base, ignore_errors=True)


def report(results: dict[str, list[Result]], args: argparse.Namespace) -> None:
    print(f"\nGET by name, {args.clients} clients, median of {args.runs} runs "
          f"(≤ {args.requests} requests or {args.seconds:.0f} s each)\n")  # fmt: skip
    print(f"| {'path':<28} | {'gets/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    med: dict[str, float] = {}
    for mode, rs in results.items():
        med[mode] = statistics.median(r.gets_per_s for r in rs)
        p50 = statistics.median(r.p50_ms for r in rs)
        p99 = statistics.median(r.p99_ms for r in rs)
        errs = sum(r.errors for r in rs)
        print(f"| {mode:<28} | {med[mode]:>8.0f} | {p50:>7.2f} | {p99:>7.2f} | {errs:>6} |")
    agg, direct = med["through the aggregator"], med["directly (front-proxy cert)"]
    if direct:
        print(f"\nratio aggregated/direct: {agg / direct:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--requests", type=int, default=5000, help="GETs per phase at most")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per phase at most")
    p.add_argument("--objects", type=int, default=100, help="objects to GET in turn")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--serve", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.objects, args.port_file))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
