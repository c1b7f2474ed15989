"""Where the metrics server's numbers come from. A `Source` scrapes one node: its own CPU and
memory usage and that of the containers of its pods (`NodeSample`). `SummarySource` asks the
node's agent, as metrics-server asks a kubelet, for the Summary API document
(`GET https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/stats/summary?only_cpu_and_memory=true`,
with a client certificate) and reads `node.cpu.usageNanoCores`, `node.memory.workingSetBytes`
and the same under `pods[].containers[]` (rates from `usageCoreNanoSeconds` between two scrapes
when an instantaneous rate is missing). `ZeroSource` reports zero usage for the node and every
running container: it is what simulated nodes get, and what a node whose agent has no stats
endpoint (404) or does not let the metrics server in (401/403) gets as the fallback; unreachable
nodes are left out, as metrics-server does, unless `fallback_unreachable` (for an agent that
serves no HTTPS at all yet)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson

log = logging.getLogger("kybern.metricsserver")
Obj = dict[str, Any]
SIMULATED = "sim.kybern.io/simulated"  # the annotation of kybern's simulated nodes
DEFAULT_AGENT_PORT = 10250
ADDRESS_TYPES = ("InternalIP", "InternalDNS", "Hostname", "ExternalIP", "ExternalDNS")
SUMMARY_PATH = "/stats/summary?only_cpu_and_memory=true"
_FRACTION = re.compile(r"\.(\d+)")


@dataclass(frozen=True)
class Usage:
    cpu_nanocores: int
    memory_bytes: int


@dataclass
class PodSample:
    namespace: str
    name: str
    containers: dict[str, Usage]
    timestamp: float  # seconds since the epoch
    window: float  # seconds


@dataclass
class NodeSample:
    node: str
    usage: Usage
    timestamp: float
    window: float
    pods: list[PodSample] = field(default_factory=list)


class Source(Protocol):
    async def scrape(self, node: Obj, pods: list[Obj]) -> NodeSample | None:
        """Usage of `node` and of `pods` (the running pods bound to it), None if unknown."""
        ...

    async def close(self) -> None: ...


def agent_url(node: Obj) -> str:
    """`https://host:port` of a node's agent from its status, "" when it names none."""
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
    for kind in ADDRESS_TYPES:
        for a in status.get("addresses") or []:
            if a.get("type") == kind and a.get("address"):
                host = str(a["address"])
                host = f"[{host}]" if ":" in host else host
                return f"https://{host}:{int(port) or DEFAULT_AGENT_PORT}"
    return ""


def is_simulated(node: Obj) -> bool:
    return (node["metadata"].get("annotations") or {}).get(SIMULATED) == "true"


def parse_time(text: str, default: float) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanosecond fractions allowed)."""
    if not text:
        return default
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


class ZeroSource:
    """Zero usage for the node and each container of its running pods."""

    def __init__(self, window: float = 15.0) -> None:
        self.window = window

    async def scrape(self, node: Obj, pods: list[Obj]) -> NodeSample | None:
        now = time.time()
        out = NodeSample(node["metadata"]["name"], Usage(0, 0), now, self.window)
        for p in pods:
            m = p["metadata"]
            containers = {
                str(c.get("name")): Usage(0, 0)
                for c in (p.get("spec") or {}).get("containers") or []
            }
            out.pods.append(
                PodSample(m.get("namespace", ""), m["name"], containers, now, self.window)
            )
        return out

    async def close(self) -> None:
        return None


@dataclass
class _Cumulative:
    value: int  # usageCoreNanoSeconds
    at: float


class SummaryParser:
    """Reads Summary API documents; keeps each node's cumulative CPU counters (those seen in
    its latest document only) to derive rates."""

    def __init__(self) -> None:
        self._prev: dict[str, dict[tuple[str, ...], _Cumulative]] = {}

    @staticmethod
    def _cpu(
        key: tuple[str, ...],
        cpu: Obj,
        now: float,
        prev: dict[tuple[str, ...], _Cumulative],
        seen: dict[tuple[str, ...], _Cumulative],
    ) -> tuple[int, float, float] | None:
        """(nanocores, timestamp, window) of a CPUStats, None when not known yet."""
        at = parse_time(str(cpu.get("time") or ""), now)
        total = cpu.get("usageCoreNanoSeconds")
        before = prev.get(key)
        if isinstance(total, int):
            seen[key] = _Cumulative(total, at)
        if isinstance(cpu.get("usageNanoCores"), int):
            return int(cpu["usageNanoCores"]), at, 0.0
        if isinstance(total, int) and before is not None and at > before.at:
            if total >= before.value:
                return int((total - before.value) / (at - before.at)), at, at - before.at
        return None

    def parse(self, doc: Obj, default_window: float, now: float | None = None) -> NodeSample | None:
        now = time.time() if now is None else now
        node = doc.get("node") or {}
        name = str(node.get("nodeName") or "")
        prev = self._prev.get(name, {})
        seen: dict[tuple[str, ...], _Cumulative] = {}
        mem = (node.get("memory") or {}).get("workingSetBytes")
        cpu = self._cpu(("node",), node.get("cpu") or {}, now, prev, seen)
        pods: list[PodSample] = []
        for p in doc.get("pods") or []:
            ref = p.get("podRef") or {}
            ns, pod = str(ref.get("namespace") or ""), str(ref.get("name") or "")
            containers: dict[str, Usage] = {}
            complete = True
            stamp, window = now, default_window
            for c in p.get("containers") or []:
                cname = str(c.get("name") or "")
                ccpu = self._cpu(("pod", ns, pod, cname), c.get("cpu") or {}, now, prev, seen)
                cmem = (c.get("memory") or {}).get("workingSetBytes")
                if ccpu is None or not isinstance(cmem, int):
                    complete = False  # as metrics-server: a pod is reported whole or not at all
                    continue
                containers[cname] = Usage(ccpu[0], cmem)
                stamp, window = ccpu[1], ccpu[2] or default_window
            if pod and containers and complete:
                pods.append(PodSample(ns, pod, containers, stamp, window))
        if name:
            self._prev[name] = seen
        if not name or cpu is None or not isinstance(mem, int):
            return None
        return NodeSample(name, Usage(cpu[0], mem), cpu[1], cpu[2] or default_window, pods)


class SummarySource:
    """Scrapes agents' `/stats/summary`; `fallback` serves nodes without stats for us."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | bool,
        *,
        fallback: Source | None = None,
        fallback_unreachable: bool = False,
        window: float = 15.0,
        timeout: float = 10.0,
    ) -> None:
        self.ssl = ssl_context
        self.fallback = fallback
        self.fallback_unreachable = fallback_unreachable
        self.window = window
        self.timeout = timeout
        self.parser = SummaryParser()
        self._session: aiohttp.ClientSession | None = None
        self._warned: set[tuple[str, str]] = set()

    def _warn_once(self, node: str, what: str, message: str) -> None:
        if (node, what) not in self._warned:
            self._warned.add((node, what))
            log.warning("node %s: %s", node, message)

    async def scrape(self, node: Obj, pods: list[Obj]) -> NodeSample | None:
        name = node["metadata"]["name"]
        base = agent_url(node)
        if is_simulated(node) or not base:
            return await self.fallback.scrape(node, pods) if self.fallback else None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(base + SUMMARY_PATH, ssl=self.ssl) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as e:
            detail = str(getattr(e, "os_error", "") or e)
            if self.fallback is not None and self.fallback_unreachable:
                self._warn_once(name, "unreachable", f"cannot scrape {base} ({detail}); zeros")
                return await self.fallback.scrape(node, pods)
            self._warn_once(name, "unreachable", f"cannot scrape {base}: {detail}")
            return None
        if status in (401, 403, 404):
            self._warn_once(
                name,
                str(status),
                f"{base}/stats/summary answered {status}; "
                + ("reporting zero usage" if self.fallback else "no metrics for it"),
            )
            return await self.fallback.scrape(node, pods) if self.fallback else None
        if status != 200:
            self._warn_once(name, "status", f"{base}/stats/summary answered {status}")
            return None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._warn_once(name, "json", f"{base}/stats/summary is not JSON")
            return None
        self._warned = {w for w in self._warned if w[0] != name}
        sample = self.parser.parse(doc, self.window)
        if sample is not None:
            sample.node = name
            known = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]) for p in pods}
            sample.pods = [s for s in sample.pods if (s.namespace, s.name) in known]
        return sample

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.fallback is not None:
            await self.fallback.close()
