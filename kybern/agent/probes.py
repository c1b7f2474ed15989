"""Container probes and lifecycle hooks, as kubelet's prober runs them: the handlers (exec through
CRI ExecSync; httpGet to the pod's IP, or 127.0.0.1 for a hostNetwork pod, 2xx/3xx is success;
tcpSocket connects; grpc asks the standard `grpc.health.v1.Health/Check`; hooks also `sleep`),
and one worker per probe of each running container: it waits `initialDelaySeconds` from the
container's start, probes every `periodSeconds` with `timeoutSeconds`, and flips the result only
after `successThreshold` / `failureThreshold` consecutive outcomes. Readiness starts false,
liveness and startup true; liveness and readiness wait for the startup probe to succeed. The
pod worker reads the results and is woken when one changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import grpc

from kybern.agent import common, runtime
from kybern.cri import client, errors

log = logging.getLogger("kybern.agent")
Obj = common.Obj
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
GRPC_SERVING = 1
MAX_BODY = 10 * 1024


@dataclass
class Outcome:
    ok: bool
    message: str = ""


def resolve_port(port: object, container: Obj) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p.get("containerPort", 0))
    raise ValueError(f"port {text!r} is not a port of the container")


def _encode_service(service: str) -> bytes:
    data = service.encode()
    return b"\x0a" + bytes([len(data)]) + data if data else b""


def _decode_status(data: bytes) -> int:
    # HealthCheckResponse { ServingStatus status = 1; } — a single varint field
    if len(data) >= 2 and data[0] == 0x08:
        return data[1]
    return 0


class Handlers:
    """Runs probe and hook handlers of one pod's containers."""

    def __init__(self, rt: client.RuntimeClient, session: aiohttp.ClientSession) -> None:
        """`session` should not keep connections alive (a probe is one connection)."""
        self.rt = rt
        self.session = session

    async def run(
        self, handler: Obj, container: Obj, container_id: str, host: str, timeout: float
    ) -> Outcome:
        try:
            if isinstance(handler.get("exec"), dict):
                return await self._exec(handler["exec"], container_id, timeout)
            if isinstance(handler.get("httpGet"), dict):
                return await self._http(handler["httpGet"], container, host, timeout)
            if isinstance(handler.get("tcpSocket"), dict):
                return await self._tcp(handler["tcpSocket"], container, host, timeout)
            if isinstance(handler.get("grpc"), dict):
                return await self._grpc(handler["grpc"], host, timeout)
            if isinstance(handler.get("sleep"), dict):
                await asyncio.sleep(float(handler["sleep"].get("seconds", 0)))
                return Outcome(True)
        except (ValueError, OSError) as e:
            return Outcome(False, str(e))
        return Outcome(False, "no handler")

    async def _exec(self, action: Obj, container_id: str, timeout: float) -> Outcome:
        cmd = [str(c) for c in action.get("command") or []]
        try:
            r = await self.rt.exec_sync(container_id, cmd, max(int(timeout), 1))
        except errors.CRITimeoutError:
            return Outcome(False, f"command timed out after {timeout:g}s")
        except errors.CRIError as e:
            return Outcome(False, e.details or str(e))
        if r.exit_code == 0:
            return Outcome(True)
        out = (r.stdout + r.stderr).decode(errors="replace").strip()
        return Outcome(False, f"command {cmd!r} exited with {r.exit_code}: {out}")

    async def _http(self, action: Obj, container: Obj, host: str, timeout: float) -> Outcome:
        port = resolve_port(action.get("port"), container)
        target = action.get("host") or host
        scheme = str(action.get("scheme") or "HTTP").lower()
        path = str(action.get("path") or "/")
        if not path.startswith("/"):
            path = "/" + path
        hostport = f"[{target}]:{port}" if ":" in str(target) else f"{target}:{port}"
        url = f"{scheme}://{hostport}{path}"
        headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*"}
        for h in action.get("httpHeaders") or []:
            headers[str(h.get("name", ""))] = str(h.get("value", ""))
        ctx: ssl.SSLContext | bool = False
        if scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            async with self.session.get(
                url,
                headers=headers,
                ssl=ctx,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=True,
                max_redirects=10,
            ) as resp:
                body = await resp.content.read(MAX_BODY)
                if 200 <= resp.status < 400:
                    return Outcome(True)
                text = body.decode(errors="replace")
                return Outcome(False, f"HTTP probe failed with statuscode: {resp.status} {text}")
        except TimeoutError:
            return Outcome(False, f"Get {url!r}: context deadline exceeded")
        except aiohttp.ClientError as e:
            return Outcome(False, f"Get {url!r}: {e}")

    async def _tcp(self, action: Obj, container: Obj, host: str, timeout: float) -> Outcome:
        port = resolve_port(action.get("port"), container)
        target = str(action.get("host") or host)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout)
        except TimeoutError:
            return Outcome(False, f"dial tcp {target}:{port}: i/o timeout")
        except OSError as e:
            return Outcome(False, f"dial tcp {target}:{port}: {e.strerror or e}")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Outcome(True)

    async def _grpc(self, action: Obj, host: str, timeout: float) -> Outcome:
        port = int(action.get("port", 0))
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(
                HEALTH_CHECK,
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            try:
                data = await call(
                    _encode_service(str(action.get("service") or "")), timeout=timeout
                )
            except grpc.aio.AioRpcError as e:
                return Outcome(False, f"rpc error: code = {e.code().name} desc = {e.details()}")
        status = _decode_status(data)
        if status == GRPC_SERVING:
            return Outcome(True)
        return Outcome(False, f"service unhealthy (responded with {status})")


@dataclass
class Results:
    """What the probe workers found, per container id."""

    ready: dict[str, bool] = field(default_factory=dict)
    started: dict[str, bool] = field(default_factory=dict)
    unhealthy: dict[str, str] = field(default_factory=dict)  # liveness/startup failure message

    def forget(self, cid: str) -> None:
        self.ready.pop(cid, None)
        self.started.pop(cid, None)
        self.unhealthy.pop(cid, None)


class _Worker:
    def __init__(
        self,
        owner: ProbeManager,
        pod: Obj,
        container: Obj,
        info: runtime.ContainerInfo,
        kind: str,
        host: str,
    ) -> None:
        self.owner, self.pod, self.container, self.info = owner, pod, container, info
        self.kind, self.host = kind, host
        self.probe: Obj = container.get(kind) or {}
        if kind == "readinessProbe":
            owner.results.ready.setdefault(info.id, False)
        elif kind == "startupProbe":
            owner.results.started.setdefault(info.id, False)
        self.task = asyncio.create_task(self._run(), name=f"probe-{kind}-{info.id[:12]}")

    def _int(self, key: str, default: int) -> int:
        value = self.probe.get(key)
        return default if value is None else int(value)

    async def _run(self) -> None:
        res = self.owner.results
        cid = self.info.id
        started = self.info.started_at / 1e9 if self.info.started_at else time.time()
        delay = started + self._int("initialDelaySeconds", 0) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        period = max(self._int("periodSeconds", 10), 1)
        timeout = max(self._int("timeoutSeconds", 1), 1)
        need_ok = max(self._int("successThreshold", 1), 1)
        need_fail = max(self._int("failureThreshold", 3), 1)
        oks = fails = 0
        while True:
            if self.kind != "startupProbe" and "startupProbe" in self.container:
                if not res.started.get(cid, False):
                    await asyncio.sleep(period)
                    continue
            outcome = await self.owner.handlers.run(
                self.probe, self.container, cid, self.host, timeout
            )
            if outcome.ok:
                oks, fails = oks + 1, 0
            else:
                oks, fails = 0, fails + 1
                self.owner.unhealthy_event(self.pod, self.container, self.kind, outcome.message)
            if self.kind == "readinessProbe":
                want = res.ready.get(cid, False)
                if oks >= need_ok:
                    want = True
                elif fails >= need_fail:
                    want = False
                if want != res.ready.get(cid):
                    res.ready[cid] = want
                    self.owner.changed(self.pod)
            elif self.kind == "startupProbe":
                if oks >= need_ok:
                    res.started[cid] = True
                    self.owner.changed(self.pod)
                    return
                if fails >= need_fail:
                    res.unhealthy[cid] = f"Startup probe failed: {outcome.message}"
                    self.owner.changed(self.pod)
                    return
            elif fails >= need_fail:
                res.unhealthy[cid] = f"Liveness probe failed: {outcome.message}"
                self.owner.changed(self.pod)
                return
            await asyncio.sleep(period)


class ProbeManager:
    """Keeps one worker per probe of every running container of every pod."""

    def __init__(
        self,
        handlers: Handlers,
        on_change: Callable[[str], None],
        on_unhealthy: Callable[[Obj, Obj, str, str], None] | None = None,
    ) -> None:
        self.handlers = handlers
        self.on_change = on_change
        self.on_unhealthy = on_unhealthy
        self.results = Results()
        self._workers: dict[str, dict[tuple[str, str], _Worker]] = {}  # uid -> (cid, kind)

    def changed(self, pod: Obj) -> None:
        self.on_change(common.pod_uid(pod))

    def unhealthy_event(self, pod: Obj, container: Obj, kind: str, message: str) -> None:
        if self.on_unhealthy is not None:
            self.on_unhealthy(pod, container, kind, message)

    def sync(self, pod: Obj, running: list[runtime.ContainerInfo], host: str) -> None:
        """Probe exactly the running app containers in `running`."""
        uid = common.pod_uid(pod)
        specs = {c.get("name"): c for c in common.containers(pod)}
        want: dict[tuple[str, str], tuple[Obj, runtime.ContainerInfo]] = {}
        for info in running:
            spec = specs.get(info.name)
            if spec is None or info.kind != "app":
                continue
            for kind in PROBES:
                if isinstance(spec.get(kind), dict):
                    want[(info.id, kind)] = (spec, info)
        workers = self._workers.setdefault(uid, {})
        for key in [k for k in workers if k not in want]:
            workers.pop(key).task.cancel()
            self.results.forget(key[0])
        for key, (spec, info) in want.items():
            if key not in workers:
                workers[key] = _Worker(self, pod, spec, info, key[1], host)
            else:
                workers[key].pod = pod

    async def stop_pod(self, uid: str) -> None:
        workers = self._workers.pop(uid, {})
        for w in workers.values():
            w.task.cancel()
        for (cid, _), w in workers.items():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await w.task
            self.results.forget(cid)

    async def stop(self) -> None:
        for uid in list(self._workers):
            await self.stop_pod(uid)
