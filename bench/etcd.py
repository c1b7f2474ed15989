"""Store benchmark: kybern on `sqlite://` vs `etcd://` in the same run, and etcd without kybern.
Starts a 1-member etcd (Debian's `etcd`, loopback, data dir on /dev/shm when there is one) and,
per store and run, a fresh `kybern server` (port 0, temp data dir; each etcd run under a key
prefix of its own), then drives it over HTTPS with aiohttp: creates/s (small ConfigMaps,
`--clients` concurrent), gets/s (by name), and watch latency (from just before a write is sent
to the moment a watch stream has read its event, sequential writes). Raw etcd puts/s come from
the same Python client kybern uses (`EtcdClient`, `--clients` concurrent puts) and creates/s of
the storage backend alone (`EtcdBackend.create`, which also waits for its watch event), so the
API server's overhead over its store is a ratio. Prints the median of `--runs` runs; every loop
is bounded; etcd, the servers and the temp dirs are removed at the end.

    .venv/bin/python -m bench.etcd [--runs 3] [--objects 1000] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import yaml

from kybern.storage.etcd import EtcdBackend
from kybern.storage.etcd_client import EtcdClient

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0


def _support() -> ModuleType:
    path = REPO / "tests" / "integration" / "test_etcd_support.py"
    spec = importlib.util.spec_from_file_location("kybern_etcd_support", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Server:
    """A `kybern server` child on `store`, with an aiohttp client for it."""

    def __init__(self, store: str, base: Path) -> None:
        self.base = base
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ssl: ssl.SSLContext | None = None

    def start(self) -> None:
        data = self.base / "data"
        data.mkdir(parents=True)
        cmd = [sys.executable, "-m", "kybern", "server", "--data-dir", str(data), "--port", "0"]
        if self.store:
            cmd += ["--datastore-endpoint", self.store]
        with open(self.base / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
            )
        deadline = time.monotonic() + START_TIMEOUT
        kubeconfig = data / "kubeconfig"
        while not kubeconfig.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start: {(self.base / 'server.log').read_text()}"
                )
            time.sleep(0.05)
        cfg = yaml.safe_load(kubeconfig.read_text())
        self.url = cfg["clusters"][0]["cluster"]["server"]
        files = {}
        for name, data_b64 in (
            ("ca.crt", cfg["clusters"][0]["cluster"]["certificate-authority-data"]),
            ("client.crt", cfg["users"][0]["user"]["client-certificate-data"]),
            ("client.key", cfg["users"][0]["user"]["client-key-data"]),
        ):
            files[name] = self.base / name
            files[name].write_bytes(base64.b64decode(data_b64))
        ctx = ssl.create_default_context(cafile=str(files["ca.crt"]))
        ctx.load_cert_chain(str(files["client.crt"]), str(files["client.key"]))
        self.ssl = ctx

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def configmap(name: str, label: str = "") -> bytes:
    meta: dict[str, Any] = {"name": name}
    if label:
        meta["labels"] = {"bench": label}
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v" * 64}}
    ).encode()


async def closed_loop(
    n: int, clients: int, op: Callable[[int], Awaitable[None]], limit: float = 120.0
) -> float:
    """Run op(0..n-1) with `clients` workers; operations per second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), limit)
    return n / (time.perf_counter() - start)


async def measure_server(srv: Server, objects: int, clients: int) -> dict[str, float]:
    ns_url = f"{srv.url}/api/v1/namespaces/default/configmaps"
    run = uuid.uuid4().hex[:6]
    conn = aiohttp.TCPConnector(ssl=srv.ssl, limit=clients + 4)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=conn) as http:
        for _ in range(200):  # ready?
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{srv.url}/readyz") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.1)

        async def create(i: int) -> None:
            async with http.post(ns_url, data=configmap(f"b{run}-{i}"), headers=headers) as r:
                if r.status != 201:
                    raise RuntimeError(f"create: {r.status} {await r.text()}")

        async def get(i: int) -> None:
            async with http.get(f"{ns_url}/b{run}-{i % objects}") as r:
                if r.status != 200:
                    raise RuntimeError(f"get: {r.status}")

        creates = await closed_loop(objects, clients, create)
        gets = await closed_loop(objects * 2, clients, get)
        latencies = []
        label = f"w{run}"
        async with http.get(
            ns_url, params={"watch": "1", "labelSelector": f"bench={label}"}, timeout=None
        ) as stream:
            for i in range(100):
                t0 = time.perf_counter()
                async with http.post(
                    ns_url, data=configmap(f"w{run}-{i}", label), headers=headers
                ) as r:
                    assert r.status == 201
                line = await asyncio.wait_for(stream.content.readline(), 30)
                latencies.append(time.perf_counter() - t0)
                assert json.loads(line)["type"] == "ADDED"
    return {
        "creates/s": creates,
        "gets/s": gets,
        "watch latency p50 (ms)": statistics.median(latencies) * 1000,
    }


async def raw_etcd(endpoints: list[str], objects: int, clients: int) -> dict[str, float]:
    client = EtcdClient(endpoints)
    await client.start()
    prefix = f"/raw-{uuid.uuid4().hex[:6]}/"
    try:

        async def put(i: int) -> None:
            await client.put(f"{prefix}{i}".encode(), configmap(str(i)))

        puts = await closed_loop(objects * 5, clients, put)
    finally:
        await client.close()
    backend = EtcdBackend(endpoints, key_prefix=f"/rawb-{uuid.uuid4().hex[:6]}", compact_interval=0)
    await backend.start()
    try:

        async def create(i: int) -> None:
            await backend.create(f"/registry/configmaps/default/b{i}", configmap(str(i)))

        creates = await closed_loop(objects * 2, clients, create)
    finally:
        await backend.close()
    return {"puts/s": puts, "backend creates/s": creates}


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kybern-bench-etcd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.etcd", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--objects", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    args = p.parse_args(argv)
    support = _support()
    if not support.etcd_available():
        print("etcd is not installed (apt-get install etcd-server)", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "etcd": []}
    raw: list[dict[str, float]] = []
    with support.etcd_cluster(1) as cluster, temp_dir() as root:
        endpoints = [m.endpoint for m in cluster.members]
        for run in range(args.runs):
            for store in ("sqlite", "etcd"):
                url = "" if store == "sqlite" else f"{cluster.url}?prefix=/bench-{run}"
                srv = Server(url, root / f"{store}-{run}")
                try:
                    srv.start()
                    results[store].append(
                        asyncio.run(measure_server(srv, args.objects, args.clients))
                    )
                finally:
                    srv.stop()
                print(f"run {run + 1} {store}: {results[store][-1]}", file=sys.stderr)
            raw.append(asyncio.run(raw_etcd(endpoints, args.objects, args.clients)))
            print(f"run {run + 1} raw etcd: {raw[-1]}", file=sys.stderr)
    sq, et, rw = median_of(results["sqlite"]), median_of(results["etcd"]), median_of(raw)
    print(
        f"\nkybern store benchmark (median of {args.runs}; {args.objects} objects, "
        f"{args.clients} clients, {os.cpu_count()} cores)\n"
    )
    print(f"| {'metric':<24} | {'sqlite://':>10} | {'etcd://':>10} |")
    print(f"|{'-' * 26}|{'-' * 12}|{'-' * 12}|")
    for k in sq:
        print(f"| {k:<24} | {sq[k]:>10.1f} | {et[k]:>10.1f} |")
    print(f"| {'raw etcd puts/s':<24} | {'':>10} | {rw['puts/s']:>10.1f} |")
    print(f"| {'EtcdBackend creates/s':<24} | {'':>10} | {rw['backend creates/s']:>10.1f} |")
    print(
        f"\nkybern creates/s on etcd are {et['creates/s'] / rw['puts/s']:.1%} of raw etcd puts/s "
        f"from the same client ({et['creates/s'] / rw['backend creates/s']:.1%} of the backend's "
        "own creates/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
