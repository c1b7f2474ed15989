"""CRD benchmark (`python -m bench.crd`): creates/s of a custom resource whose CRD has a 30-field
schema and 3 CEL rules, against the same object under a CRD with only
`x-kubernetes-preserve-unknown-fields` — the cost of structural validation, pruning, defaulting
and CEL on the write path. Starts its own `kybern server` (temporary data directory, port 0,
loopback only), runs `--runs` rounds of `--objects` creates with `--clients` concurrent clients
per CRD (alternating), and prints the median, min and max creates/s, the relative cost of
validation, and the in-process time of validating one object. Every loop is bounded; the server
and its directory are removed at the end."""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

GROUP = "bench.kybern.io"
READY_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
TARGET_OVERHEAD_PCT = 30.0
Obj = dict[str, Any]


def fields() -> tuple[Obj, Obj]:
    """(30 property schemas, a matching spec value)."""
    props: Obj = {}
    spec: Obj = {}
    for i in range(10):
        props[f"name{i}"] = {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9-]+$"}
        spec[f"name{i}"] = f"value-{i}"
        props[f"count{i}"] = {"type": "integer", "minimum": 0, "maximum": 1000}
        spec[f"count{i}"] = i * 10
        props[f"mode{i}"] = {"type": "string", "enum": ["fast", "safe", "off"], "default": "safe"}
        spec[f"mode{i}"] = "fast"
    return props, spec


def crd(plural: str, kind: str, validated: bool) -> Obj:
    props, _ = fields()
    spec_schema: Obj = (
        {
            "type": "object",
            "properties": props,
            "x-kubernetes-validations": [
                {"rule": "self.count0 <= self.count9", "message": "count0 above count9"},
                {"rule": "self.name0 != self.name1"},
                {"rule": "self.mode0 != 'off' || self.count1 == 0"},
            ],
        }
        if validated
        else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}
                    },
                }
            ],
        },
    }


class Server:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kybern-bench-crd-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ssl: ssl.SSLContext | None = None

    def _spawn(self, data: Path) -> subprocess.Popen[bytes]:
        with open(self.dir / "server.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "kybern", "server", "--data-dir", str(data), "--port", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def start(self) -> None:
        data = self.dir / "data"
        self.proc = await asyncio.to_thread(self._spawn, data)
        deadline = time.monotonic() + READY_TIMEOUT
        kubeconfig = data / "kubeconfig"
        while not kubeconfig.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.05)
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        self.url = cluster["server"]
        for name, key in (
            ("ca.crt", cluster["certificate-authority-data"]),
            ("client.crt", user["client-certificate-data"]),
            ("client.key", user["client-key-data"]),
        ):
            (self.dir / name).write_bytes(base64.b64decode(key))
        self.ssl = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        self.ssl.load_cert_chain(self.dir / "client.crt", self.dir / "client.key")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def wait_served(session: aiohttp.ClientSession, srv: Server, plural: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        async with session.get(f"{srv.url}/apis/{GROUP}/v1/{plural}", ssl=srv.ssl) as r:
            if r.status == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{plural} not served")


async def creates(
    session: aiohttp.ClientSession, srv: Server, plural: str, kind: str, tag: str, n: int, c: int
) -> tuple[float, int]:
    _, spec = fields()
    url = f"{srv.url}/apis/{GROUP}/v1/namespaces/default/{plural}"
    queue = list(range(n))
    failed = 0

    async def client() -> None:
        nonlocal failed
        while queue:
            i = queue.pop()
            body = {
                "apiVersion": f"{GROUP}/v1",
                "kind": kind,
                "metadata": {"name": f"{tag}-{i}"},
                "spec": spec,
            }
            async with session.post(url, json=body, ssl=srv.ssl) as r:
                await r.read()
                if r.status != 201:
                    failed += 1

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(c))), REQUEST_TIMEOUT * 10)
    return n / (time.perf_counter() - start), failed


def in_process_cost(repeat: int = 2000) -> tuple[float, float]:
    """µs to prune, default and validate one object (schema only, and with CEL)."""
    from kybern.api import cel, crdschema, crdschema_apply

    raw = crd("x", "X", True)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node = crdschema.compile_schema(raw)
    cel.compile_rules(node, "")
    _, spec = fields()
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "X", "metadata": {"name": "a"}, "spec": spec}
    start = time.perf_counter()
    for _ in range(repeat):
        o = {**obj, "spec": dict(spec)}
        crdschema_apply.prune(node, o)
        crdschema_apply.apply_defaults(node, o)
        crdschema.validate(node, o)
    schema_us = (time.perf_counter() - start) / repeat * 1e6
    start = time.perf_counter()
    for _ in range(repeat):
        cel.evaluate(node, obj)
    return schema_us, (time.perf_counter() - start) / repeat * 1e6


async def main(args: argparse.Namespace) -> int:
    srv = Server()
    try:
        await srv.start()
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        ) as session:
            kinds = {"validated": ("checked", "Checked"), "preserve-unknown": ("loose", "Loose")}
            for label, (plural, kind) in kinds.items():
                async with session.post(
                    f"{srv.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                    json=crd(plural, kind, label == "validated"),
                    ssl=srv.ssl,
                ) as r:
                    if r.status != 201:
                        raise RuntimeError(await r.text())
                await wait_served(session, srv, plural)
            results: dict[str, list[float]] = {k: [] for k in kinds}
            fails = 0
            for run in range(args.runs):
                for label, (plural, kind) in kinds.items():
                    rate, failed = await creates(
                        session, srv, plural, kind, f"r{run}", args.objects, args.clients
                    )
                    results[label].append(rate)
                    fails += failed
    finally:
        srv.stop()
    print(f"creates/s, {args.objects} objects x {args.runs} runs, {args.clients} clients")
    print(f"{'CRD':<22}{'median':>10}{'min':>10}{'max':>10}")
    for label, rates in results.items():
        print(f"{label:<22}{statistics.median(rates):>10.0f}{min(rates):>10.0f}{max(rates):>10.0f}")
    v = statistics.median(results["validated"])
    p = statistics.median(results["preserve-unknown"])
    overhead = (1 - v / p) * 100 if p else 0.0
    verdict = "ok" if overhead < TARGET_OVERHEAD_PCT else "ABOVE TARGET"
    print(
        f"validation cost: {overhead:.1f}% of throughput "
        f"(target < {TARGET_OVERHEAD_PCT:.0f}%: {verdict})"
    )
    schema_us, cel_us = in_process_cost()
    print(
        f"in process, one object: schema+prune+defaults {schema_us:.0f} µs, "
        f"3 CEL rules {cel_us:.0f} µs"
    )
    print(f"failed requests: {fails}")
    return 1 if fails else 0


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=1000, help="creates per run and CRD")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--runs", type=int, default=3, help="rounds (the median is reported)")
    sys.exit(asyncio.run(main(ap.parse_args())))


if __name__ == "__main__":
    cli()
