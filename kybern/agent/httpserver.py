"""The node agent's HTTPS server (port 10250 by default), the endpoints a kubelet serves to the API
server: `GET /containerLogs/{namespace}/{pod}/{container}` (the CRI log file, with follow, tail,
since, timestamps, previous and limitBytes), `/exec/...` and `/attach/...` (WebSocket channel
protocols bridged to the runtime's SPDY streams, or the client's SPDY passed through) and
`/portForward/{namespace}/{pod}` (SPDY, tunnelled SPDY, or the runtime's WebSocket), and
`GET /stats/summary` (the kubelet Summary API, `only_cpu_and_memory=true` for the metrics
server's part; 404 when the server has no `SummaryProvider`). Pods are found through CRI alone
(sandbox and container metadata), so the server works beside any pod lifecycle. Only clients
with a certificate from the cluster CA whose CN is an allowed user (the API server, the metrics
server) are served: 401 without a certificate, 403 for another user. Errors are `Status`
objects, which the API server passes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kybern.agent import streaming_exec as sx
from kybern.agent import streaming_logs, streaming_tls
from kybern.agent.stats import SummaryProvider
from kybern.api import errors
from kybern.cri import RuntimeClient, api
from kybern.cri import errors as cri_errors

log = logging.getLogger("kybern.agent.httpserver")
DEFAULT_PORT = 10250
API_SERVER_USER = "kybern-apiserver"
METRICS_SERVER_USER = "kybern-metrics-server"  # the CN the metrics server scrapes /stats with
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
}
LogDirFor = Callable[[str, str, str, str], Path]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AgentError(Exception):
    """An error answered as a `Status` with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def status_response(code: int, message: str) -> web.Response:
    st = errors.StatusError(code, _REASONS.get(code, "InternalError"), message).status()
    return web.json_response(st, status=code)


class AgentServer:
    """The agent's HTTPS server on `bind:port` (0 picks a free port; `port` has it once
    started), serving pods of the CRI runtime behind `runtime`."""

    def __init__(
        self,
        runtime: RuntimeClient,
        *,
        bind: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        cert_file: Path | str,
        key_file: Path | str,
        client_ca_file: Path | str,
        allowed_users: Iterable[str] = (API_SERVER_USER,),
        log_dir_for: LogDirFor | None = None,
        summary: SummaryProvider | None = None,
    ) -> None:
        self.runtime = runtime
        self.bind = bind
        self.port = port
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self.allowed_users = frozenset(allowed_users)
        self.log_dir_for = log_dir_for
        self.summary = summary
        self.active = 0  # requests being served, open streams included (diagnostics, tests)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        ctx = await asyncio.to_thread(
            streaming_tls.server_context, self.cert_file, self.key_file, self.client_ca_file
        )
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_route("GET", "/healthz", self._healthz)
        r.add_route("GET", "/stats/summary", self._stats_summary)
        r.add_route("GET", "/containerLogs/{namespace}/{pod}/{container}", self._logs)
        for verb in ("exec", "attach"):
            for path in ("/{namespace}/{pod}/{container}", "/{namespace}/{pod}/{uid}/{container}"):
                r.add_route("*", f"/{verb}{path}", self._remote_command)
        r.add_route("*", "/portForward/{namespace}/{pod}", self._port_forward)
        r.add_route("*", "/portForward/{namespace}/{pod}/{uid}", self._port_forward)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port, ssl_context=ctx, reuse_address=True)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> AgentServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- authentication, errors ---------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path != "/healthz":
                transport = request.transport
                cert = transport.get_extra_info("peercert") if transport is not None else None
                user = streaming_tls.peer_user(cert)
                if user is None:
                    return status_response(401, "Unauthorized")
                if user[0] not in self.allowed_users:
                    resource = request.path.strip("/").split("/")[0]
                    return status_response(
                        403,
                        f"Forbidden (user={user[0]}, verb={request.method.lower()}, "
                        f"resource=nodes, subresource={resource})",
                    )
            self.active += 1
            try:
                return await handler(request)
            finally:
                self.active -= 1
        except AgentError as e:
            return status_response(e.code, str(e))
        except sx.StreamRequestError as e:
            return status_response(400, str(e))
        except sx.RuntimeStreamError as e:
            return status_response(e.status, str(e))
        except cri_errors.NotFoundError as e:
            return status_response(404, e.details or str(e))
        except cri_errors.CRIError as e:
            return status_response(500, e.details or str(e))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except web.HTTPException:
            raise
        except Exception as e:
            log.exception("agent request %s %s failed", request.method, request.path)
            return status_response(500, str(e))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _stats_summary(self, request: web.Request) -> web.Response:
        if self.summary is None:
            raise AgentError(404, "the Summary API (/stats/summary) is not served by this agent")
        # as the kubelet: exactly one `only_cpu_and_memory=true` selects the short document
        only = request.query.getall("only_cpu_and_memory", []) == ["true"]
        doc = await self.summary.summary(only_cpu_and_memory=only)
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    # ---- finding pods through CRI -------------------------------------------------------

    async def _sandboxes(self, namespace: str, pod: str, uid: str = "") -> list[api.PodSandbox]:
        """The pod's sandboxes, newest pod first (ready ones first within it)."""
        found = [
            s
            for s in await self.runtime.list_pod_sandbox()
            if s.metadata.namespace == namespace
            and s.metadata.name == pod
            and (not uid or s.metadata.uid == uid)
        ]
        if not found:
            raise AgentError(404, f'pod "{pod}" does not exist')
        newest = max(found, key=lambda s: s.created_at).metadata.uid
        found = [s for s in found if s.metadata.uid == newest]
        found.sort(key=lambda s: (s.state == api.SANDBOX_READY, s.created_at), reverse=True)
        return found

    async def _containers(
        self, namespace: str, pod: str, uid: str, container: str
    ) -> list[api.Container]:
        """The instances of one container of the pod, newest attempt first."""
        ids = {s.id for s in await self._sandboxes(namespace, pod, uid)}
        found = [
            c
            for c in await self.runtime.list_containers()
            if c.pod_sandbox_id in ids and c.metadata.name == container
        ]
        found.sort(key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)
        return found

    async def _running_container(self, request: web.Request) -> str:
        m = request.match_info
        for c in await self._containers(m["namespace"], m["pod"], m.get("uid", ""), m["container"]):
            if c.state == api.CONTAINER_RUNNING:
                return c.id
        raise AgentError(404, f'container not found ("{m["container"]}")')

    # ---- logs ---------------------------------------------------------------------------

    async def _log_path(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> tuple[str, Path]:
        found = await self._containers(namespace, pod, "", container)
        if previous:
            found = found[1:]
            if not found:
                raise AgentError(
                    400, f'previous terminated container "{container}" in pod "{pod}" not found'
                )
        if not found or found[0].state == api.CONTAINER_CREATED:
            raise AgentError(
                400,
                f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating',
            )
        c = found[0]
        status = (await self.runtime.container_status(c.id)).status
        path = Path(status.log_path) if status.log_path else None
        if (path is None or not await asyncio.to_thread(path.exists)) and self.log_dir_for:
            sandbox = (await self._sandboxes(namespace, pod))[0].metadata
            directory = self.log_dir_for(namespace, pod, sandbox.uid, container)
            path = directory / f"{c.metadata.attempt}.log"
        if path is None:
            raise AgentError(400, f'container "{container}" in pod "{pod}" has no log file')
        return c.id, path

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            opts = streaming_logs.LogOptions.from_query(request.query)
        except ValueError as e:
            raise AgentError(400, str(e)) from None
        cid, path = await self._log_path(m["namespace"], m["pod"], m["container"], opts.previous)
        if opts.previous:
            opts.follow = False

        async def running() -> bool:
            try:
                status = (await self.runtime.container_status(cid)).status
            except cri_errors.NotFoundError:
                return False
            return status.state == api.CONTAINER_RUNNING

        def gone() -> bool:
            return request.transport is None or request.transport.is_closing()

        if not await asyncio.to_thread(path.is_file):
            raise AgentError(404, f'log file of container "{m["container"]}" not found: {path}')
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await streaming_logs.stream_log(path, opts, resp.write, running, gone)
            await resp.write_eof()
        return resp

    # ---- exec, attach, port-forward ------------------------------------------------------

    async def _remote_command(self, request: web.Request) -> web.StreamResponse:
        kind = request.path.split("/")[1]
        opts = sx.StreamOptions.from_query(
            request.query, request.query.getall("command", []), exec=kind == "exec"
        )
        protocol = ""
        if sx.is_websocket(request):
            offered = sx.requested_protocols(request)
            protocol = next((p for p in offered if p in sx.REMOTE_COMMAND_PROTOCOLS), "")
            if not protocol:
                raise AgentError(
                    400,
                    f"unable to upgrade: requested protocols {offered} are not supported; "
                    f"use one of {list(sx.REMOTE_COMMAND_PROTOCOLS)}",
                )
        elif not sx.is_spdy(request):
            raise AgentError(400, "Upgrade request required")
        cid = await self._running_container(request)
        if kind == "exec":
            url = await self.runtime.exec(
                api.ExecRequest(
                    container_id=cid,
                    cmd=opts.command,
                    tty=opts.tty,
                    stdin=opts.stdin,
                    stdout=opts.stdout,
                    stderr=opts.stderr,
                )
            )
        else:
            url = await self.runtime.attach(
                api.AttachRequest(
                    container_id=cid,
                    stdin=opts.stdin,
                    tty=opts.tty,
                    stdout=opts.stdout,
                    stderr=opts.stderr,
                )
            )
        if not protocol:
            return await sx.pass_spdy(request, url)
        rc = await sx.open_remote_command(url, opts)
        return await sx.bridge_remote_command(request, protocol, rc)

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        ports: list[int] = []
        for value in request.query.getall("port", []):
            for p in value.split(","):
                if not p.strip().isdigit() or not 0 < int(p) < 65536:
                    raise AgentError(400, f"invalid port: {p!r}")
                ports.append(int(p))
        sandboxes = await self._sandboxes(m["namespace"], m["pod"], m.get("uid", ""))
        if sandboxes[0].state != api.SANDBOX_READY:
            raise AgentError(400, f'pod "{m["pod"]}" is not running')
        offered = sx.requested_protocols(request)
        if not (sx.is_websocket(request) or sx.is_spdy(request)):
            raise AgentError(400, "Upgrade request required")
        url = await self.runtime.port_forward(sandboxes[0].id, ports)
        if sx.is_spdy(request):
            return await sx.pass_spdy(request, url)
        if sx.PORT_FORWARD_TUNNEL in offered:
            return await sx.tunnel_port_forward(request, url)
        if not ports:
            raise AgentError(400, "port-forward over WebSocket needs the ports in the URL (?port=)")
        return await sx.relay_websocket(request, url, offered)
