"""API benchmark of kybern: starts its own `kybern server` for each run (fresh temporary data
directory, port 0), drives it over HTTPS on loopback with aiohttp (admin client certificate
from the kubeconfig) and prints the median, min and max over the runs of

- start to ready: process spawn to the first `/readyz` answering 200,
- idle RSS before any load, RSS after the load and the peak (VmHWM),
- creates/s (small ConfigMaps, `--clients` concurrent clients),
- gets/s (GET by name of existing objects, `--clients` concurrent clients),
- LIST latency (full LISTs of `--objects` ConfigMaps in one namespace, no limit),
- watch delivery latency (`--watchers` concurrent watch streams; the time from just before a
  write is sent to the moment each watcher has read that event),
- restart to ready with the data written (same data directory, optional),

with the count of failed requests, and the CPU the server and this client used in each phase
(the two share the machine's cores). Every request loop is bounded in count and time, only
loopback addresses are used, and the servers and temporary directories are removed at the end,
also on Ctrl-C or an error. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import dataclasses
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a kybern dependency

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads


NS = "bench"
WATCH_NS = "bench-watch"
CM_PATH = "/api/v1/namespaces/{ns}/configmaps"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
MERGE_HEADERS = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
READY_TIMEOUT = 60.0  # seconds a server may take to become ready before the run fails
REQUEST_TIMEOUT = 60.0  # seconds one ordinary request may take
PHASE_TIMEOUT = 600.0  # seconds one phase may take before it is abandoned
WATCH_DRAIN = 10.0  # seconds watchers may still take after the last write
MIB = 1024 * 1024
BUSY_RETRY_PCT = 50.0  # --retry-busy: % of a core the rest of the machine may use
T = TypeVar("T")


# ---------------------------------------------------------------- small helpers


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def client_cpu() -> float:
    """User + system CPU seconds this (client) process has used so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, main_thread: bool = False) -> float:
    """User + system CPU seconds of process `pid` (all its threads, or only its main thread,
    which runs the event loop), 0 if it is gone."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy() -> float:
    """CPU seconds all cores of the machine have been busy (not idle, not waiting on I/O)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def proc_status(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM) in bytes, 0 if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Failures:
    """Failed requests per phase (a non-2xx answer or a client-side error), with a few
    samples of each kind for the report."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.kinds: Counter[tuple[str, str]] = Counter()
        self.samples: dict[tuple[str, str], str] = {}

    def add(self, phase: str, kind: str, detail: bytes | str = b"") -> None:
        self.counts[phase] += 1
        self.kinds[(phase, kind)] += 1
        if (phase, kind) not in self.samples:
            text = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
            self.samples[(phase, kind)] = " ".join(text.split())[:300]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    phase: str,
    fails: Failures,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes | None:
    """One request; the body of a 2xx answer, or None after counting the failure."""
    try:
        async with session.request(method, url, data=data, headers=headers) as r:
            body = await r.read()
            if not 200 <= r.status < 300:
                fails.add(phase, f"HTTP {r.status}", body)
                return None
            return body
    except (aiohttp.ClientError, TimeoutError) as e:
        fails.add(phase, type(e).__name__, str(e))
        return None


@dataclasses.dataclass
class Phase:
    """Wall time and CPU (server and client) of one phase of a run."""

    name: str
    wall: float = 0.0
    server_cpu: float = 0.0
    server_loop_cpu: float = 0.0  # the server's main thread: its event loop
    client_cpu: float = 0.0
    machine_cpu: float = 0.0  # all processes
    rss_after: int = 0  # server VmRSS at the end of the phase

    @property
    def server_pct(self) -> float:
        return 100.0 * self.server_cpu / self.wall if self.wall else 0.0

    @property
    def server_loop_pct(self) -> float:
        return 100.0 * self.server_loop_cpu / self.wall if self.wall else 0.0

    @property
    def client_pct(self) -> float:
        return 100.0 * self.client_cpu / self.wall if self.wall else 0.0

    @property
    def others_pct(self) -> float:
        """Everything else on the machine: other processes, and kernel time not charged to
        the server or the client."""
        if self.wall < 0.5:  # CPU times come in clock ticks: too coarse for short phases
            return 0.0
        rest = self.machine_cpu - self.server_cpu - self.client_cpu
        return max(0.0, 100.0 * rest / self.wall)


@contextlib.contextmanager
def measured(phases: list[Phase], name: str, pid: int) -> Iterator[Phase]:
    ph = Phase(name)
    t0, s0, m0, c0 = time.perf_counter(), proc_cpu(pid), proc_cpu(pid, True), client_cpu()
    b0 = machine_busy()
    try:
        yield ph
    finally:
        ph.wall = time.perf_counter() - t0
        ph.server_cpu = proc_cpu(pid) - s0
        ph.server_loop_cpu = proc_cpu(pid, True) - m0
        ph.client_cpu = client_cpu() - c0
        ph.machine_cpu = machine_busy() - b0
        ph.rss_after = proc_status(pid, "VmRSS")
        phases.append(ph)


async def closed_loop(
    n: int, clients: int, one: Callable[[int], Awaitable[bool]]
) -> tuple[float, list[float]]:
    """Run `one(i)` for i in range(n) from `clients` concurrent tasks, each sending its next
    request as soon as the previous one is answered. (wall seconds, latencies of successes)."""
    todo = iter(range(n))
    lat: list[float] = []

    async def worker() -> None:
        for i in todo:  # shared: each task takes the next index
            t = time.perf_counter()
            if await one(i):
                lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await all_of([worker() for _ in range(clients)], PHASE_TIMEOUT)
    return time.perf_counter() - t0, lat


async def all_of(coros: list[Coroutine[Any, Any, T]], timeout: float) -> list[T]:
    """Run `coros` concurrently and return their results; on an error, a timeout or a
    cancellation, cancel them all and wait for them before raising."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            raise TimeoutError(
                f"{len(pending)} of {len(tasks)} tasks still running after {timeout}s"
            )
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------- the server under test


def kybern_command(override: str = "") -> list[str]:
    if override:
        return shlex.split(override)
    exe = Path(sys.executable).parent / "kybern"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "kybern"]


_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_LIVE):
        with contextlib.suppress(OSError):
            p.kill()


class Server:
    """One `kybern server` subprocess on a data directory."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        command: str = "",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = kybern_command(command)
        self.extra = list(extra or [])
        self.env = env
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.spawned_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        kubeconfig = self.data_dir / "kubeconfig"
        with contextlib.suppress(FileNotFoundError):
            kubeconfig.unlink()  # a restart writes a new one when it is ready
        cmd = [*self.command, "server", "--data-dir", str(self.data_dir), "--port", "0"]
        cmd += self.extra
        with open(self.log_path, "ab") as log:
            self.spawned_at = time.perf_counter()
            # own session: a Ctrl-C in the terminal reaches only the benchmark, which then
            # stops the server in order
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir.parent,  # not the checkout: `python -m` imports from the cwd
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        _LIVE.add(self.proc)

    async def wait_ready(self, probe: aiohttp.ClientSession) -> tuple[float, float, dict[str, Any]]:
        """Seconds from spawn to the first /readyz 200, seconds from spawn to the kubeconfig,
        and the kubeconfig. The port (the server was given 0) is found from the server's
        listening sockets in /proc, so /readyz is timed on its own, not behind the kubeconfig
        (which the server writes once everything it runs has started)."""
        assert self.proc is not None
        kubeconfig = self.data_dir / "kubeconfig"
        deadline = self.spawned_at + READY_TIMEOUT
        ready_at = 0.0
        while not ready_at:
            urls = [f"https://127.0.0.1:{port}" for port in listening_ports(self.pid)]
            if not urls and kubeconfig.exists():  # e.g. listening on IPv6 only
                urls = [self._url_from(kubeconfig)]
            for url in urls:
                if await self._ready(probe, url):
                    ready_at = time.perf_counter()
                    break
            else:
                self._check_alive(deadline)
                await asyncio.sleep(0.002)
        while not kubeconfig.exists():
            self._check_alive(deadline)
            await asyncio.sleep(0.002)
        kubeconfig_at = time.perf_counter()
        cfg: dict[str, Any] = {}
        while True:  # written atomically, but be tolerant
            try:
                cfg = yaml.safe_load(kubeconfig.read_text())
                self.url = cfg["clusters"][0]["cluster"]["server"]
                break
            except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
                self._check_alive(deadline)
                await asyncio.sleep(0.002)
        return ready_at - self.spawned_at, kubeconfig_at - self.spawned_at, cfg

    @staticmethod
    def _url_from(kubeconfig: Path) -> str:
        try:
            cfg = yaml.safe_load(kubeconfig.read_text())
            url: str = cfg["clusters"][0]["cluster"]["server"]
            return url
        except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
            return ""

    @staticmethod
    async def _ready(probe: aiohttp.ClientSession, url: str) -> bool:
        if not url:
            return False
        try:
            async with probe.get(url + "/readyz", ssl=False) as r:
                await r.read()
                return r.status == 200
        except (aiohttp.ClientError, OSError):
            return False

    def _check_alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"kybern server exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"kybern server not ready in {READY_TIMEOUT:.0f}s:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> float:
        """SIGTERM, then SIGKILL after 10 s; the seconds it took to exit."""
        if self.proc is None:
            return 0.0
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _LIVE.discard(self.proc)
        return time.perf_counter() - t0


def listening_ports(pid: int) -> list[int]:
    """TCP ports (IPv4) on which process `pid` listens, from /proc."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        with open(f"/proc/{pid}/net/tcp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return []
    ports = []
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def client_ssl(cfg: dict[str, Any], into: Path) -> ssl.SSLContext:
    """A client context from the kubeconfig: its CA, and its client certificate and key."""
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    into.mkdir(parents=True, exist_ok=True)
    cert, key = into / "client.crt", into / "client.key"
    for path, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(user[field]))
    ctx.load_cert_chain(cert, key)
    return ctx


# ---------------------------------------------------------------- profiling (optional)


class Profiler:
    """py-spy attached to the server for one phase at a time; collapsed stacks in `out`."""

    def __init__(self, out: Path | None, rate: int, mode: str = "active") -> None:
        self.out = out
        self.rate = rate
        self.mode = mode
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.proc: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def phase(self, name: str, pid: int, run: int) -> Iterator[None]:
        if self.out is None:
            yield
            return
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"run{run + 1}-{name}.txt"
        cmd = [self.exe, "record", "--pid", str(pid), "--rate", str(self.rate)]
        cmd += ["--format", "raw", "--output", str(path)]
        # active: every thread not idle, without pausing the server; gil: only the thread
        # holding the GIL (where Python CPU goes); native: C frames too (uvloop, ssl, sqlite),
        # which needs py-spy's blocking mode (it pauses the server at each sample)
        cmd += {"active": ["--nonblocking"], "gil": ["--nonblocking", "--gil"]}.get(
            self.mode, ["--native"]
        )
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        _LIVE.add(self.proc)
        time.sleep(0.3)  # let it attach
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            _LIVE.discard(self.proc)


def hotspots(path: Path, top: int) -> list[str]:
    """The functions with most samples, on top of the stack (self) and anywhere in it (total),
    from py-spy's collapsed-stack output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return [f"  (no profile written to {path})"]
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return ["  (no samples)"]
    out = [f"  {total} samples; self = on top of the stack, total = anywhere in it"]
    out.append("  self%  function")
    out += [f"  {100 * c / total:5.1f}  {f}" for f, c in own.most_common(top)]
    out.append("  total% function")
    out += [f"  {100 * c / total:5.1f}  {f}" for f, c in incl.most_common(top)]
    return out


def _frame(f: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)` with kybern paths kept relative."""
    name, _, where = f.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/kybern/", "lib/python3"):
        i = file.find(marker)
        if i >= 0:
            file = file[i + len(marker) :] if marker != "/kybern/" else "kybern/" + file[i + 8 :]
            break
    return f"{name} ({file})" if file else name


# ---------------------------------------------------------------- one run


@dataclasses.dataclass
class RunResult:
    ready_s: float = float("nan")
    kubeconfig_s: float = float("nan")
    idle_rss: int = 0
    creates_per_s: float = float("nan")
    create_p50: float = float("nan")
    create_p99: float = float("nan")
    gets_per_s: float = float("nan")
    get_p50: float = float("nan")
    get_p99: float = float("nan")
    list_p50: float = float("nan")
    list_p99: float = float("nan")
    list_bytes: int = 0
    watch_p50: float = float("nan")
    watch_p99: float = float("nan")
    watch_max: float = float("nan")
    watch_write_p50: float = float("nan")
    watch_pairs: int = 0
    watch_missed: int = 0
    load_rss: int = 0
    load_rss_anon: int = 0
    load_rss_file: int = 0
    peak_rss: int = 0
    stop_s: float = float("nan")
    restart_ready_s: float = float("nan")
    restart_kubeconfig_s: float = float("nan")
    restart_rss: int = 0
    failed: int = 0
    failed_by_phase: dict[str, int] = dataclasses.field(default_factory=dict)
    failure_samples: list[str] = dataclasses.field(default_factory=list)
    phases: list[Phase] = dataclasses.field(default_factory=list)


def configmap(name: str, seq: int) -> bytes:
    return dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "kybern-bench"}},
            "data": {"seq": str(seq), "payload": "x" * 64},
        }
    )


async def run_once(args: argparse.Namespace, run: int, root: Path, prof: Profiler) -> RunResult:
    res = RunResult()
    fails = Failures()
    rundir = root
    data_dir = rundir / "data"
    data_dir.mkdir(parents=True)
    server = Server(
        data_dir, rundir / "server.log", args.server_cmd, args.server_arg, args.server_env
    )
    probe = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    try:
        server.spawn()
        res.ready_s, res.kubeconfig_s, cfg = await server.wait_ready(probe)
        ctx = client_ssl(cfg, rundir / "client")
        await asyncio.sleep(args.idle_wait)
        res.idle_rss = proc_status(server.pid, "VmRSS")
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        connector = aiohttp.TCPConnector(limit=args.clients, ssl=ctx)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await load(args, run, server, session, ctx, fails, res, prof)
        await asyncio.sleep(1.0)
        res.load_rss = proc_status(server.pid, "VmRSS")
        res.load_rss_anon = proc_status(server.pid, "RssAnon")
        res.load_rss_file = proc_status(server.pid, "RssFile") + proc_status(server.pid, "RssShmem")
        res.peak_rss = proc_status(server.pid, "VmHWM")
        res.stop_s = server.stop()
        if args.restart:
            server.spawn()
            res.restart_ready_s, res.restart_kubeconfig_s, _ = await server.wait_ready(probe)
            await asyncio.sleep(args.idle_wait)
            res.restart_rss = proc_status(server.pid, "VmRSS")
    finally:
        server.stop()
        await probe.close()
    if server.proc is not None and server.proc.returncode not in (0, None):
        fails.add("server", f"exit code {server.proc.returncode}", server.log_tail(5))
    res.failed = fails.total
    res.failed_by_phase = dict(fails.counts)
    res.failure_samples = [
        f"{phase}: {kind} x{fails.kinds[(phase, kind)]}: {sample}"
        for (phase, kind), sample in fails.samples.items()
    ]
    return res


async def load(
    args: argparse.Namespace,
    run: int,
    server: Server,
    session: aiohttp.ClientSession,
    ctx: ssl.SSLContext,
    fails: Failures,
    res: RunResult,
    prof: Profiler,
) -> None:
    base = server.url
    pid = server.pid
    phases = res.phases
    for ns in (NS, WATCH_NS):
        body = dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await call(
            session,
            "POST",
            base + "/api/v1/namespaces",
            "setup",
            fails,
            data=body,
            headers=JSON_HEADERS,
        )

    # warm-up, not measured: open the --clients connections (TLS handshakes) and warm both
    # sides' code paths with cheap GETs
    ns_url = f"{base}/api/v1/namespaces/{NS}"

    async def warm(i: int) -> bool:
        return (
            await call(session, "GET", ns_url, "warm-up", fails, headers=JSON_HEADERS) is not None
        )

    await closed_loop(args.clients * 50, args.clients, warm)

    # creates: --objects small ConfigMaps into one namespace
    url = base + CM_PATH.format(ns=NS)
    bodies = [configmap(f"cm-{i:06d}", i) for i in range(args.objects)]

    async def create(i: int) -> bool:
        return (
            await call(session, "POST", url, "create", fails, data=bodies[i], headers=JSON_HEADERS)
            is not None
        )

    with prof.phase("create", pid, run), measured(phases, "create", pid):
        wall, lat = await closed_loop(args.objects, args.clients, create)
    res.creates_per_s = len(lat) / wall
    res.create_p50, res.create_p99 = percentile(lat, 50), percentile(lat, 99)

    # gets: random existing names
    rng = random.Random(run)
    names = [f"{url}/cm-{rng.randrange(args.objects):06d}" for _ in range(args.gets)]

    async def get(i: int) -> bool:
        return await call(session, "GET", names[i], "get", fails, headers=JSON_HEADERS) is not None

    with prof.phase("get", pid, run), measured(phases, "get", pid):
        wall, lat = await closed_loop(args.gets, args.clients, get)
    res.gets_per_s = len(lat) / wall
    res.get_p50, res.get_p99 = percentile(lat, 50), percentile(lat, 99)

    # LIST: the whole namespace, no limit, one at a time
    list_lat: list[float] = []
    with prof.phase("list", pid, run), measured(phases, "list", pid):
        for _ in range(args.lists):
            t = time.perf_counter()
            listed = await call(session, "GET", url, "list", fails, headers=JSON_HEADERS)
            if listed is None:
                continue
            list_lat.append(time.perf_counter() - t)
            res.list_bytes = len(listed)
            n = len(loads(listed).get("items") or [])
            if n != args.objects:
                fails.add("list", "wrong item count", f"{n} items, expected {args.objects}")
    res.list_p50, res.list_p99 = percentile(list_lat, 50), percentile(list_lat, 99)

    # watch: --watchers streams on a namespace of its own, then --events spaced updates
    with prof.phase("watch", pid, run), measured(phases, "watch", pid):
        await watch_phase(args, base, session, ctx, fails, res)


async def watch_phase(
    args: argparse.Namespace,
    base: str,
    session: aiohttp.ClientSession,
    ctx: ssl.SSLContext,
    fails: Failures,
    res: RunResult,
) -> None:
    wurl = base + CM_PATH.format(ns=WATCH_NS)
    created = await call(
        session,
        "POST",
        wurl,
        "watch-write",
        fails,
        data=configmap("watched", -1),
        headers=JSON_HEADERS,
    )
    if created is None:
        return
    rv = loads(created)["metadata"]["resourceVersion"]
    sent: dict[int, float] = {}
    got: list[dict[int, float]] = [{} for _ in range(args.watchers)]
    events = args.events
    # the watch streams need a connection each: a session of their own
    wconn = aiohttp.TCPConnector(limit=args.watchers + 1, ssl=ctx)
    wtimeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
    wsession = aiohttp.ClientSession(connector=wconn, timeout=wtimeout)
    streams: list[aiohttp.ClientResponse] = []
    readers: list[asyncio.Task[None]] = []
    params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "300"}

    async def open_stream() -> aiohttp.ClientResponse | None:
        try:
            r = await wsession.get(wurl, params=params, headers={"Accept": "application/json"})
        except (aiohttp.ClientError, TimeoutError) as e:
            fails.add("watch-open", type(e).__name__, str(e))
            return None
        if r.status != 200:
            fails.add("watch-open", f"HTTP {r.status}", await r.read())
            r.release()
            return None
        return r

    async def reader(r: aiohttp.ClientResponse, mine: dict[int, float]) -> None:
        while len(mine) < events:
            line = await r.content.readline()
            t = time.perf_counter()
            if not line:
                fails.add("watch-stream", "stream ended early", f"after {len(mine)} events")
                return
            ev = loads(line)
            if ev.get("type") != "MODIFIED":
                fails.add("watch-stream", f"unexpected {ev.get('type')} event", line[:300])
                continue
            seq = int(ev["object"]["data"]["seq"])
            if seq in sent:
                mine.setdefault(seq, t)

    try:
        # headers come back once the server has registered the watcher: after this gather
        # every stream sees every later write
        opened = await all_of([open_stream() for _ in range(args.watchers)], PHASE_TIMEOUT)
        for i, r in enumerate(opened):
            if r is not None:
                streams.append(r)
                readers.append(asyncio.create_task(reader(r, got[i])))
        write_lat: list[float] = []
        start = time.perf_counter()
        for seq in range(events):
            patch = dumps({"data": {"seq": str(seq)}})
            t = time.perf_counter()
            sent[seq] = t
            if (
                await call(
                    session,
                    "PATCH",
                    wurl + "/watched",
                    "watch-write",
                    fails,
                    data=patch,
                    headers=MERGE_HEADERS,
                )
                is not None
            ):
                write_lat.append(time.perf_counter() - t)
            delay = start + (seq + 1) * args.event_interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if readers:
            await asyncio.wait(readers, timeout=WATCH_DRAIN)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for r in streams:
            r.close()
        await wsession.close()
    lat = [mine[s] - sent[s] for mine in got for s in mine]
    res.watch_pairs = len(lat)
    res.watch_missed = len(streams) * len(sent) - len(lat)
    if res.watch_missed:
        fails.add("watch-stream", "events not delivered", f"{res.watch_missed} watcher×event pairs")
    res.watch_p50, res.watch_p99 = percentile(lat, 50), percentile(lat, 99)
    res.watch_max = max(lat) if lat else float("nan")
    res.watch_write_p50 = percentile(write_lat, 50)


# ---------------------------------------------------------------- report


@dataclasses.dataclass
class Row:
    label: str
    value: Callable[[RunResult], float]
    fmt: str
    target: str = ""
    ok: Callable[[float], bool] | None = None


def rows(args: argparse.Namespace) -> list[Row]:
    def ms(f: Callable[[RunResult], float]) -> Callable[[RunResult], float]:
        return lambda r: 1000.0 * f(r)

    out = [
        Row("start -> /readyz 200 (s)", lambda r: r.ready_s, "{:.3f}", "<= 1", lambda v: v <= 1),
        Row("start -> kubeconfig written (s)", lambda r: r.kubeconfig_s, "{:.3f}"),
        Row("idle RSS (MiB)", lambda r: r.idle_rss / MIB, "{:.1f}", "<= 100", lambda v: v <= 100),
        Row(
            f"creates/s ({args.clients} clients)",
            lambda r: r.creates_per_s,
            "{:.0f}",
            ">= 2000",
            lambda v: v >= 2000,
        ),
        Row("  create latency p50 (ms)", ms(lambda r: r.create_p50), "{:.1f}"),
        Row("  create latency p99 (ms)", ms(lambda r: r.create_p99), "{:.1f}"),
        Row(
            f"gets/s ({args.clients} clients)",
            lambda r: r.gets_per_s,
            "{:.0f}",
            ">= 5000",
            lambda v: v >= 5000,
        ),
        Row("  get latency p50 (ms)", ms(lambda r: r.get_p50), "{:.1f}"),
        Row("  get latency p99 (ms)", ms(lambda r: r.get_p99), "{:.1f}"),
        Row(f"LIST of {args.objects} p50 (ms)", ms(lambda r: r.list_p50), "{:.0f}"),
        Row(f"LIST of {args.objects} p99 (ms)", ms(lambda r: r.list_p99), "{:.0f}"),
        Row("  LIST body (MiB)", lambda r: r.list_bytes / MIB, "{:.2f}"),
        Row(
            f"watch delivery p50, {args.watchers} watchers (ms)",
            ms(lambda r: r.watch_p50),
            "{:.1f}",
        ),
        Row(
            f"watch delivery p99, {args.watchers} watchers (ms)",
            ms(lambda r: r.watch_p99),
            "{:.1f}",
            "<= 50",
            lambda v: v <= 50,
        ),
        Row("  watch delivery max (ms)", ms(lambda r: r.watch_max), "{:.1f}"),
        Row("  watched write (PATCH) p50 (ms)", ms(lambda r: r.watch_write_p50), "{:.1f}"),
        Row("RSS after load (MiB)", lambda r: r.load_rss / MIB, "{:.1f}"),
        Row("  of which anonymous (MiB)", lambda r: r.load_rss_anon / MIB, "{:.1f}"),
        Row("  of which file-backed (MiB)", lambda r: r.load_rss_file / MIB, "{:.1f}"),
        Row("peak RSS, VmHWM (MiB)", lambda r: r.peak_rss / MIB, "{:.1f}"),
        Row("stop, SIGTERM -> exit (s)", lambda r: r.stop_s, "{:.3f}"),
    ]
    if args.restart:
        out += [
            Row(
                f"restart -> /readyz 200, {args.objects}+ objects (s)",
                lambda r: r.restart_ready_s,
                "{:.3f}",
            ),
            Row("  restart -> kubeconfig written (s)", lambda r: r.restart_kubeconfig_s, "{:.3f}"),
            Row("  idle RSS after restart (MiB)", lambda r: r.restart_rss / MIB, "{:.1f}"),
        ]
    return out


def _machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        repo = Path(__file__).resolve().parent.parent
        rev = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, bench/ at {rev or '?'}"
    )


def report(
    args: argparse.Namespace, results: list[RunResult], wall: float, cpu: float, loop_name: str
) -> str:
    out: list[str] = []
    out.append(
        f"kybern API benchmark: {len(results)} run(s), {args.clients} clients, "
        f"{args.objects} objects, {args.gets} gets, {args.lists} lists, "
        f"{args.watchers} watchers x {args.events} events every {args.event_interval * 1000:.0f} ms"
    )
    out.append(f"machine: {_machine()}; client loop: {loop_name}")
    server_cmd = shlex.join([*kybern_command(args.server_cmd), "server", *args.server_arg])
    out.append(f"server: {server_cmd} --data-dir TMP --port 0")
    if args.bytecode_cache:
        out.append("server bytecode: cached (PYTHONPYCACHEPREFIX, filled by an unmeasured start)")
    else:
        dont = os.environ.get("PYTHONDONTWRITEBYTECODE")
        out.append(f"server bytecode: as the environment says (PYTHONDONTWRITEBYTECODE={dont})")
    out.append(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    out.append("")
    width = max(len(r.label) for r in rows(args)) + 2
    head = f"{'metric':<{width}}{'median':>10}{'min':>10}{'max':>10}  {'target':<9}"
    out.append(head)
    out.append("-" * (len(head) + 5))
    for row in rows(args):
        vals = [row.value(r) for r in results]
        finite = [v for v in vals if v == v]
        if finite:
            med = statistics.median(finite)
            cells = [row.fmt.format(v) for v in (med, min(finite), max(finite))]
        else:
            med = float("nan")
            cells = ["n/a"] * 3
        verdict = ""
        if row.ok is not None:
            verdict = "n/a" if med != med else ("ok" if row.ok(med) else "MISSED")
        out.append(
            f"{row.label:<{width}}{cells[0]:>10}{cells[1]:>10}{cells[2]:>10}  "
            f"{row.target:<9}{verdict}"
        )
    out.append("")
    total_failed = sum(r.failed for r in results)
    by_phase: Counter[str] = Counter()
    for r in results:
        by_phase.update(r.failed_by_phase)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(by_phase.items()))
    out.append(
        f"failed requests: {total_failed} over all runs "
        f"(per run: {', '.join(str(r.failed) for r in results)})"
        + (f"; {detail}" if detail else "")
    )
    pairs = ", ".join(f"{r.watch_pairs}" for r in results)
    missed = ", ".join(f"{r.watch_missed}" for r in results)
    out.append(f"watch events received (watcher x event pairs) per run: {pairs}; missed: {missed}")
    samples = [s for r in results for s in r.failure_samples]
    for s in dict.fromkeys(samples):
        out.append(f"  {s}")
    out.append("")
    out.append(
        f"CPU per phase (median over runs; 100% = one core, the machine has {os.cpu_count()}):"
    )
    out.append(
        f"  {'phase':<8}{'wall s':>8}{'server':>9}{'of it loop':>12}{'client':>9}"
        f"{'others':>9}{'server RSS after':>18}"
    )
    for name in ("create", "get", "list", "watch"):
        phs = [p for r in results for p in r.phases if p.name == name]
        if not phs:
            continue
        out.append(
            f"  {name:<8}{statistics.median(p.wall for p in phs):>8.2f}"
            f"{statistics.median(p.server_pct for p in phs):>8.0f}%"
            f"{statistics.median(p.server_loop_pct for p in phs):>11.0f}%"
            f"{statistics.median(p.client_pct for p in phs):>8.0f}%"
            f"{statistics.median(p.others_pct for p in phs):>8.0f}%"
            f"{statistics.median(p.rss_after for p in phs) / MIB:>14.1f} MiB"
        )
    busiest = max((p.others_pct for r in results for p in r.phases), default=0.0)
    if busiest > 25:
        out.append(
            f"WARNING: the rest of the machine was busy during measured phases (up to "
            f"{busiest:.0f}% of a core, column 'others'): those figures are perturbed"
        )
    out.append(
        f"client process (this benchmark) used {cpu:.1f} s CPU in {wall:.1f} s wall "
        f"({100 * cpu / wall:.0f}% of one core) in total, on the same cores as the server"
    )
    return "\n".join(out)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.api",
        description="API benchmark of kybern: see docs/benchmarks.md and this module's docstring.",
    )
    p.add_argument("--runs", type=int, default=3, help="runs, each on a fresh server (3)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    p.add_argument(
        "--objects", type=int, default=10000, help="ConfigMaps created, then LISTed (10000)"
    )
    p.add_argument("--gets", type=int, default=20000, help="GETs by name (20000)")
    p.add_argument("--lists", type=int, default=20, help="full LISTs (20)")
    p.add_argument("--watchers", type=int, default=100, help="concurrent watch streams (100)")
    p.add_argument("--events", type=int, default=200, help="writes seen by the watchers (200)")
    p.add_argument(
        "--event-interval", type=float, default=0.02, help="seconds between those writes (0.02)"
    )
    p.add_argument(
        "--idle-wait", type=float, default=1.0, help="seconds idle before RSS is read (1)"
    )
    p.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="skip the restart of the server on its data",
    )
    p.add_argument(
        "--server-cmd",
        default="",
        metavar="CMD",
        help="command that starts kybern, before its `server ...` arguments "
        "(default: the kybern next to this Python)",
    )
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `kybern server` (repeat; e.g. --server-arg=--datastore-endpoint "
        "--server-arg=memory://)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for the rest of the machine to be quiet "
        "(under 25%% of one core busy); for shared machines (0: do not wait)",
    )
    p.add_argument(
        "--retry-busy",
        type=int,
        default=0,
        metavar="N",
        help="repeat a run (up to N times) if the rest of the machine used more than "
        f"{BUSY_RETRY_PCT:.0f}%% of a core during one of its measured phases (0)",
    )
    p.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="run the server with this environment's bytecode settings (by default it gets a "
        "bytecode cache, filled by one unmeasured start, as an installed kybern has)",
    )
    p.add_argument("--json", type=Path, help="also write the raw per-run figures here")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="attach py-spy to the server during each phase and write collapsed stacks to DIR "
        "(figures of profiled runs are perturbed)",
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s (100)")
    p.add_argument(
        "--profile-mode",
        choices=("active", "gil", "native"),
        default="active",
        help="with --profile: sample every busy thread (active), only the GIL holder (gil), or "
        "include C frames (native, pauses the server at each sample)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    for name in ("runs", "clients", "objects", "gets", "lists", "watchers", "events"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.event_interval < 0 or args.idle_wait < 0:
        p.error("intervals must not be negative")
    return args


async def warm_bytecode(args: argparse.Namespace, root: Path) -> dict[str, str]:
    """An environment in which the server caches its compiled modules under `root` even where
    PYTHONDONTWRITEBYTECODE is set (as an installed kybern has them), and one unmeasured start
    that fills that cache."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    data = root / "warm-up" / "data"
    data.mkdir(parents=True)
    server = Server(data, data.parent / "server.log", args.server_cmd, args.server_arg, env)
    probe = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    try:
        server.spawn()
        await server.wait_ready(probe)
    finally:
        server.stop()
        await probe.close()
    return env


async def wait_quiet(limit: float, busy_pct: float = 25.0) -> None:
    """Wait (at most `limit` seconds) for a second in which the machine was busy for less than
    `busy_pct` of one core."""
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        await asyncio.sleep(1.0)
        pct = 100.0 * (machine_busy() - b0) / (time.monotonic() - t0)
        if pct < busy_pct:
            return
        if time.monotonic() >= deadline:
            print(f"machine still busy ({pct:.0f}% of a core); running anyway", file=sys.stderr)
            return
        print(f"machine busy ({pct:.0f}% of a core); waiting", file=sys.stderr, flush=True)


async def amain(args: argparse.Namespace, loop_name: str) -> int:
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    prof = Profiler(args.profile, args.profile_rate, args.profile_mode)
    root = Path(tempfile.mkdtemp(prefix="kybern-apibench-"))
    args.server_env = None
    results: list[RunResult] = []
    discarded: list[RunResult] = []
    t0, c0 = time.perf_counter(), client_cpu()
    try:
        if args.bytecode_cache:
            args.server_env = await warm_bytecode(args, root)
        attempt = 0
        for run in range(args.runs):
            for retry in range(args.retry_busy + 1):
                if args.quiet_wait > 0:
                    await wait_quiet(args.quiet_wait)
                attempt += 1
                r = await run_once(args, run, root / f"attempt{attempt}", prof)
                busy = max((p.others_pct for p in r.phases), default=0.0)
                print(
                    f"run {run + 1}/{args.runs}: ready {r.ready_s:.3f}s, {r.creates_per_s:.0f} "
                    f"creates/s, {r.gets_per_s:.0f} gets/s, list p50 {r.list_p50 * 1000:.0f}ms, "
                    f"watch p99 {r.watch_p99 * 1000:.1f}ms, failed {r.failed}, "
                    f"others up to {busy:.0f}%",
                    file=sys.stderr,
                    flush=True,
                )
                if busy <= BUSY_RETRY_PCT or retry == args.retry_busy:
                    break
                discarded.append(r)
                print("  the machine was busy: run discarded, repeating", file=sys.stderr)
            results.append(r)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    wall, cpu = time.perf_counter() - t0, client_cpu() - c0
    print(report(args, results, wall, cpu, loop_name))
    if discarded:
        print(
            f"{len(discarded)} run(s) discarded because the rest of the machine used more than "
            f"{BUSY_RETRY_PCT:.0f}% of a core during a measured phase"
        )
    if args.profile is not None:
        print(f"\nserver hotspots (py-spy, {args.profile}):")
        for path in sorted(args.profile.glob("run1-*.txt")):
            print(f"phase {path.stem.split('-', 1)[1]}:")
            print("\n".join(hotspots(path, 15)))
    if args.json is not None:
        raw = [dataclasses.asdict(r) for r in results]
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: v for k, v in vars(args).items() if k != "server_env"}
                    | {"json": str(args.json), "profile": str(args.profile)},
                    "runs": raw,
                },
                indent=1,
                default=str,
            )
        )
    return 1 if any(r.failed for r in results) else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.profile is not None and not os.path.exists(Profiler(None, 0).exe):
        sys.exit("py-spy not found; install it with: .venv/bin/pip install py-spy")
    try:
        import uvloop

        runner: Callable[[Any], int] = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner, loop_name = asyncio.run, "asyncio"
    try:
        code = runner(amain(args, loop_name))
    except RuntimeError as e:  # the server did not start
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM
        print("interrupted; servers stopped, temporary files removed", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
