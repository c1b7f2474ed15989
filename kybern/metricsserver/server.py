"""`MetricsServer`: the resource metrics API (`metrics.k8s.io/v1beta1`, what `kubectl top` and
autoscalers read) as an aggregated API server built on `kybern.ext`. It follows Nodes and Pods
through informers, scrapes every node through a `Source` each `resolution` seconds and when a
node appears (the nodes in parallel, a bounded number at a time) and serves the latest samples:
`NodeMetrics` (`nodes`, cluster-scoped) and `PodMetrics` (`pods`, namespaced), get and list with
label selectors (the labels of the Node or Pod), field selectors on name and namespace, and
Tables with CPU, memory and window columns. Quantities are written as Kubernetes writes them
(`123456n` CPU, binary-SI memory)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from kybern import ext
from kybern.api import registry
from kybern.client import informer, rest
from kybern.metricsserver.sources import NodeSample, PodSample, Source, Usage, ZeroSource

log = logging.getLogger("kybern.metricsserver")
Obj = dict[str, Any]
GROUP, VERSION = "metrics.k8s.io", "v1beta1"
NODES = next(r for r in registry.BUILTIN if r.plural == "nodes")
PODS = next(r for r in registry.BUILTIN if r.plural == "pods")
PARALLEL_SCRAPES = 16
_CPU_UNITS = (("", 10**9), ("m", 10**6), ("u", 10**3), ("n", 1))
_MEM_UNITS = (
    ("Ei", 2**60),
    ("Pi", 2**50),
    ("Ti", 2**40),
    ("Gi", 2**30),
    ("Mi", 2**20),
    ("Ki", 2**10),
)


def cpu_quantity(nanocores: int) -> str:
    """Canonical decimal-SI form: 0, 2, 250m, 1500u, 123456n."""
    if nanocores <= 0:
        return "0"
    for suffix, scale in _CPU_UNITS:
        if nanocores % scale == 0:
            return f"{nanocores // scale}{suffix}"
    return f"{nanocores}n"


def memory_quantity(value: int) -> str:
    """Canonical binary-SI form: 0, 1Mi, 1536Ki, 1234 (bytes not a multiple of 1024)."""
    if value <= 0:
        return "0"
    for suffix, scale in _MEM_UNITS:
        if value % scale == 0:
            return f"{value // scale}{suffix}"
    return str(value)


def go_duration(seconds: float) -> str:
    """A window as Go prints a time.Duration: 15s, 1.5s, 1m0s, 2m30.5s."""
    ms = max(0, round(seconds * 1000))
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if not minutes:
        return f"{secs}s" if ms else "0s"
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(u: Usage) -> Obj:
    return {"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)}


def node_metrics(sample: NodeSample, node: Obj, now: float) -> Obj:
    return {
        "kind": "NodeMetrics",
        "apiVersion": f"{GROUP}/{VERSION}",
        "metadata": {
            "name": sample.node,
            "labels": dict(node["metadata"].get("labels") or {}),
            "creationTimestamp": _rfc3339(now),
        },
        "timestamp": _rfc3339(sample.timestamp),
        "window": go_duration(sample.window),
        "usage": _usage(sample.usage),
    }


def pod_metrics(sample: PodSample, pod: Obj, now: float) -> Obj:
    return {
        "kind": "PodMetrics",
        "apiVersion": f"{GROUP}/{VERSION}",
        "metadata": {
            "name": sample.name,
            "namespace": sample.namespace,
            "labels": dict(pod["metadata"].get("labels") or {}),
            "creationTimestamp": _rfc3339(now),
        },
        "timestamp": _rfc3339(sample.timestamp),
        "window": go_duration(sample.window),
        "containers": [{"name": n, "usage": _usage(u)} for n, u in sample.containers.items()],
    }


def _pod_total(o: Obj) -> tuple[str, str]:
    cpu = sum(_nanocores(c["usage"]["cpu"]) for c in o.get("containers") or [])
    mem = sum(_bytes(c["usage"]["memory"]) for c in o.get("containers") or [])
    return cpu_quantity(cpu), memory_quantity(mem)


def _nanocores(q: str) -> int:
    for suffix, scale in reversed(_CPU_UNITS):
        if suffix and q.endswith(suffix):
            return int(q[: -len(suffix)]) * scale
    return int(q) * 10**9


def _bytes(q: str) -> int:
    for suffix, scale in _MEM_UNITS:
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * scale
    return int(q)


class MetricsServer:
    """Scrapes nodes through `source` and serves metrics.k8s.io/v1beta1 (see module doc)."""

    def __init__(
        self, client: rest.Client, *, source: Source | None = None, resolution: float = 15.0
    ) -> None:
        self.client = client
        self.resolution = resolution
        self.source: Source = source or ZeroSource(resolution)
        self.samples: dict[str, NodeSample] = {}
        self._pods_by_key: dict[tuple[str, str], PodSample] = {}
        factory = informer.InformerFactory(client)
        self._factory = factory
        self.nodes = factory.informer(NODES)
        self.pods = factory.informer(PODS)
        self.pods.add_indexer("node", lambda p: [(p.get("spec") or {}).get("nodeName") or ""])
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a new node: scrape now rather than at the next tick
        self.nodes.add_handlers(informer.Handlers(on_add=lambda _: self._wake.set()))
        self.scrapes = 0  # completed rounds (diagnostics, tests)
        self.server = ext.Server(GROUP, VERSION, self._resources())

    def _resources(self) -> list[ext.Resource]:
        cols = (
            ext.Column("CPU", lambda o: o["usage"]["cpu"]),
            ext.Column("Memory", lambda o: o["usage"]["memory"]),
            ext.Column("Window", lambda o: o["window"]),
        )
        pod_cols = (
            ext.Column("CPU", lambda o: _pod_total(o)[0]),
            ext.Column("Memory", lambda o: _pod_total(o)[1]),
            ext.Column("Window", lambda o: o["window"]),
        )
        return [
            ext.Resource("nodes", "NodeMetrics", self._list_nodes, self._get_node,
                         namespaced=False, singular="", columns=cols),
            ext.Resource("pods", "PodMetrics", self._list_pods, self._get_pod, columns=pod_cols),
        ]  # fmt: skip

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self, first_scrape_timeout: float = 30.0) -> None:
        """Follow nodes and pods, scrape once (bounded wait), then every `resolution`."""
        self._factory.start()
        await self._factory.wait_synced()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(first_scrape_timeout):
                await self.scrape_once()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._factory.stop()
        await self.source.close()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resolution)
            self._wake.clear()
            try:
                await self.scrape_once()
            except Exception:
                log.exception("scrape failed")

    def _running_pods(self, node: str) -> list[Obj]:
        return [
            p
            for p in self.pods.by_index("node", node)
            if (p.get("status") or {}).get("phase") == "Running"
        ]

    async def scrape_once(self) -> None:
        """One round over every node; a node that fails keeps no sample."""
        limit = asyncio.Semaphore(PARALLEL_SCRAPES)

        async def one(node: Obj) -> NodeSample | None:
            async with limit:
                try:
                    return await self.source.scrape(
                        node, self._running_pods(node["metadata"]["name"])
                    )
                except Exception:
                    log.exception("scraping node %s failed", node["metadata"]["name"])
                    return None

        nodes = self.nodes.list()
        results = await asyncio.gather(*(one(n) for n in nodes))
        self.samples = {
            n["metadata"]["name"]: s for n, s in zip(nodes, results, strict=True) if s is not None
        }
        self._pods_by_key = {
            (p.namespace, p.name): p for s in self.samples.values() for p in s.pods
        }
        self.scrapes += 1

    # ---- handlers ---------------------------------------------------------------------

    async def _list_nodes(self, ctx: ext.Context) -> list[Obj]:
        now = dt.datetime.now(dt.UTC).timestamp()
        out = []
        for name, sample in self.samples.items():
            node = self.nodes.get(name)
            if node is not None:
                out.append(node_metrics(sample, node, now))
        return out

    async def _get_node(self, ctx: ext.Context, name: str) -> Obj | None:
        sample, node = self.samples.get(name), self.nodes.get(name)
        if sample is None or node is None:
            return None
        return node_metrics(sample, node, dt.datetime.now(dt.UTC).timestamp())

    async def _list_pods(self, ctx: ext.Context) -> list[Obj]:
        now = dt.datetime.now(dt.UTC).timestamp()
        out = []
        for (ns, name), sample in self._pods_by_key.items():
            if ctx.namespace and ns != ctx.namespace:
                continue
            pod = self.pods.get(name, ns)
            if pod is not None:
                out.append(pod_metrics(sample, pod, now))
        return out

    async def _get_pod(self, ctx: ext.Context, name: str) -> Obj | None:
        sample = self._pods_by_key.get((ctx.namespace, name))
        pod = self.pods.get(name, ctx.namespace)
        if sample is None or pod is None:
            return None
        return pod_metrics(sample, pod, dt.datetime.now(dt.UTC).timestamp())
