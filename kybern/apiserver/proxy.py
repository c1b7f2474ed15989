"""The API server's proxy to node agents for the pod subresources that reach into containers:
`pods/log` (a streamed GET with follow, tail, since, timestamps, previous, limitBytes) and
`pods/exec`, `pods/attach`, `pods/portforward` (upgrades: WebSocket or SPDY, relayed byte for
byte after the agent's `101`, so any protocol the agent and the client agree on — v5/v4 channel
protocols, SPDY, SPDY tunnelled in WebSocket — passes). As kube-apiserver does, it checks the pod,
the container and the node first (404 for a missing pod, 400 for an invalid container or a pod
without a node), translates the options into the kubelet's URL (`/containerLogs`, `/exec`,
`/attach`, `/portForward` on `https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>`), and
authenticates to the agent with a client certificate (CN `kybern-apiserver`) from the cluster CA,
verifying the agent's serving certificate against the same CA."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import urllib.parse
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from kybern.api import errors, registry
from kybern.apiserver import certs
from kybern.apiserver import store as storemod
from kybern.client import upgrade

SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward"})
AGENT_CLIENT_USER = "kybern-apiserver"
DEFAULT_AGENT_PORT = 10250
ADDRESS_TYPES = ("InternalIP", "InternalDNS", "Hostname", "ExternalIP", "ExternalDNS")
CONNECT_TIMEOUT = 10.0
UPGRADE_TIMEOUT = 60.0  # for the agent's answer to an upgrade (it sets up the runtime side first)
_FORWARDED = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "x-stream-protocol-version",
        "user-agent",
    }
)
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("", "0", "f", "F", "false", "FALSE", "False")
Obj = dict[str, Any]


def _bool(query: Any, name: str) -> bool:
    value = query.get(name, "")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f'invalid value for {name}: strconv.ParseBool: parsing "{value}"')


def _int(query: Any, name: str) -> int | None:
    value = query.get(name, "")
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(
            f'invalid value for {name}: "{value}": must be an integer'
        ) from None


def log_params(query: Any, name: str) -> dict[str, str]:
    """The kubelet's `containerLogs` query for a `pods/log` request (PodLogOptions, validated
    as kube-apiserver does: 422 Invalid for out-of-range values)."""
    out: dict[str, str] = {}
    for flag in ("follow", "previous", "timestamps"):
        if _bool(query, flag):
            out[flag] = "true"
    tail, since, limit = (
        _int(query, "tailLines"),
        _int(query, "sinceSeconds"),
        _int(query, "limitBytes"),
    )
    since_time = query.get("sinceTime", "")
    problems = []
    if tail is not None and tail < 0:
        problems.append(
            errors.invalid_value("tailLines", tail, "must be greater than or equal to 0")
        )
    if limit is not None and limit < 1:
        problems.append(errors.invalid_value("limitBytes", limit, "must be greater than 0"))
    if since is not None and since < 1:
        problems.append(errors.invalid_value("sinceSeconds", since, "must be greater than 0"))
    if since is not None and since_time:
        problems.append(
            errors.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified")
        )
    if problems:
        raise errors.invalid("PodLogOptions", "", name, problems)
    if since_time:
        try:
            when = datetime.datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        except ValueError:
            raise errors.bad_request(f'invalid value for sinceTime: "{since_time}"') from None
        out["sinceTime"] = when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for key, value in (("sinceSeconds", since), ("tailLines", tail), ("limitBytes", limit)):
        if value is not None:
            out[key] = str(value)
    return out


def stream_params(query: Any, sub: str) -> list[tuple[str, str]]:
    """The kubelet's query for exec/attach (booleans as "1", each command word) or
    port-forward (`port=80,8080`)."""
    if sub == "portforward":
        ports = []
        for value in query.getall("ports", []):
            for p in str(value).split(","):
                if not p.strip().isdigit() or not 0 < int(p) < 65536:
                    raise errors.bad_request(f"invalid port {p!r}: must be between 1 and 65535")
                ports.append(p.strip())
        return [("port", ",".join(ports))] if ports else []
    out = [(flag, "1") for flag in ("stdin", "stdout", "stderr", "tty") if _bool(query, flag)]
    if sub == "exec":
        out += [("command", c) for c in query.getall("command", [])]
    return out


def _names(containers: list[Obj]) -> str:
    return " ".join(str(c.get("name", "")) for c in containers)


def pick_container(pod: Obj, wanted: str) -> str:
    """The container a request means: the named one (400 unless the pod has it), or the only
    container of the pod."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = list(spec.get("containers") or [])
    every = containers + list(spec.get("initContainers") or [])
    every += list(spec.get("ephemeralContainers") or [])
    if wanted:
        if not any(c.get("name") == wanted for c in every):
            raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    if len(containers) == 1:
        return str(containers[0].get("name", ""))
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    message = (
        f"a container name must be specified for pod {name}, choose one of: [{_names(containers)}]"
    )
    if spec.get("initContainers"):
        message += f" or one of the init containers: [{_names(spec['initContainers'])}]"
    raise errors.bad_request(message)


def check_log_state(pod: Obj, container: str) -> None:
    """400 when the pod's status says the container waits and never ran (the kubelet's words)."""
    status = pod.get("status") or {}
    every = list(status.get("containerStatuses") or []) + list(
        status.get("initContainerStatuses") or []
    )
    every += list(status.get("ephemeralContainerStatuses") or [])
    cs = next((c for c in every if c.get("name") == container), None)
    if cs is None:
        return
    waiting = (cs.get("state") or {}).get("waiting")
    if waiting is None or ((cs.get("lastState") or {}).get("terminated") or {}).get("containerID"):
        return
    reason = waiting.get("reason") or "ContainerCreating"
    reason = {
        "ErrImagePull": "image can't be pulled",
        "ImagePullBackOff": "trying and failing to pull image",
    }.get(reason, reason)
    name = pod["metadata"]["name"]
    raise errors.bad_request(
        f'container "{container}" in pod "{name}" is waiting to start: {reason}'
    )


def agent_address(node: Obj) -> tuple[str, int]:
    """(host, port) of a node's agent, from its status."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
    for kind in ADDRESS_TYPES:
        for a in addresses:
            if a.get("type") == kind and a.get("address"):
                return str(a["address"]), int(port) or DEFAULT_AGENT_PORT
    known = [a.get("address") for a in addresses]
    raise errors.StatusError(
        500, "InternalError", f"no preferred addresses found; known addresses: {known}"
    )


def _agent_error(status: int, body: bytes) -> errors.StatusError:
    """The agent's error answer as a Status error (its own Status when it sent one)."""
    with contextlib.suppress(ValueError):
        doc = orjson.loads(body)
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            reason, message = str(doc.get("reason", "")), str(doc.get("message", ""))
            return errors.StatusError(int(doc.get("code") or status), reason, message)
    reason = {400: "BadRequest", 404: "NotFound", 403: "Forbidden"}.get(status, "InternalError")
    return errors.StatusError(status, reason, body.decode("utf-8", "replace").strip())


class PodStreams:
    """Serves the four subresources for the API server (`pki` is set once the PKI exists)."""

    def __init__(self, st: storemod.Store, reg: registry.Registry) -> None:
        self.store = st
        pods, nodes = reg.lookup("", "v1", "pods"), reg.lookup("", "v1", "nodes")
        assert pods is not None and nodes is not None
        self.pods, self.nodes = pods, nodes
        self.pki: certs.Pki | None = None
        self.kubelet_ca = ""  # verify agents' serving certificates against this CA file ("": no)
        self._ssl: ssl.SSLContext | None = None

    def client_context(self) -> ssl.SSLContext:
        """TLS towards agents: their serving certificates verified against `kubelet_ca` (not
        at all without one, as kube-apiserver without `--kubelet-certificate-authority`), and a
        client certificate for CN `kybern-apiserver` from the cluster CA (issued on first use,
        kept in the PKI directory)."""
        if self._ssl is None:
            if self.pki is None:
                raise errors.service_unavailable("the API server has no PKI yet")
            pki = self.pki
            cert_pem, key_pem = certs.issue_client_cert(pki, AGENT_CLIENT_USER, [])
            cert_file, key_file = pki.dir / "agent-client.crt", pki.dir / "agent-client.key"
            certs.write_atomic(key_file, key_pem, 0o600)
            certs.write_atomic(cert_file, cert_pem, 0o644)
            if self.kubelet_ca:
                ctx = ssl.create_default_context(cafile=self.kubelet_ca)
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.load_cert_chain(cert_file, key_file)
            self._ssl = ctx
        return self._ssl

    async def _locate(
        self, namespace: str, name: str, sub: str, container: str
    ) -> tuple[Obj, str, str]:
        """(pod, container, agent base URL); "" as URL for a pod without a node."""
        pod = (await self.store.get(self.pods, namespace, name)).obj
        if sub != "portforward":
            container = pick_container(pod, container)
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        if not node_name:
            if sub == "log":
                return pod, container, ""
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        node = (await self.store.get(self.nodes, "", node_name)).obj
        host, port = agent_address(node)
        if ":" in host:
            host = f"[{host}]"
        return pod, container, f"https://{host}:{port}"

    async def serve(
        self, request: web.Request, namespace: str, name: str, sub: str
    ) -> web.StreamResponse:
        method = request.method
        if sub == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            return await self._log(request, namespace, name)
        if method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        return await self._upgrade(request, namespace, name, sub)

    async def _log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        params = log_params(request.query, name)
        pod, container, base = await self._locate(
            namespace, name, "log", request.query.get("container", "")
        )
        if not base:
            return web.Response(status=204)
        if "previous" not in params:
            check_log_state(pod, container)
        path = f"/containerLogs/{_q(namespace)}/{_q(name)}/{_q(container)}"
        url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                upstream = await http.get(url, ssl=self.client_context())
            except aiohttp.ClientError as e:
                raise errors.StatusError(
                    500, "InternalError", f"error dialing agent: {e}"
                ) from None
            async with upstream:
                if upstream.status != 200:
                    raise _agent_error(upstream.status, await upstream.content.read(64 * 1024))
                out = web.StreamResponse(headers={"Content-Type": "text/plain"})
                await out.prepare(request)
                await copy_until_gone(request, upstream, out)
        return out

    async def _upgrade(
        self, request: web.Request, namespace: str, name: str, sub: str
    ) -> web.StreamResponse:
        if "upgrade" not in request.headers.get("Connection", "").lower():
            raise errors.bad_request("Upgrade request required")
        params = stream_params(request.query, sub)
        _, container, base = await self._locate(
            namespace, name, sub, request.query.get("container", "")
        )
        if sub == "portforward":
            path = f"/portForward/{_q(namespace)}/{_q(name)}"
        else:
            path = f"/{sub}/{_q(namespace)}/{_q(name)}/{_q(container)}"
        url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() in _FORWARDED]
        try:
            up = await upgrade.dial_upgrade(
                url,
                request.method,
                headers,
                ssl_context=self.client_context(),
                timeout=UPGRADE_TIMEOUT,
            )
        except upgrade.UpgradeError as e:
            raise errors.StatusError(500, "InternalError", f"error dialing agent: {e}") from None
        return await upgrade.pass_through(request, up)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


async def copy_until_gone(
    request: web.Request, upstream: aiohttp.ClientResponse, out: web.StreamResponse
) -> None:
    """Copy an upstream's stream (an agent's, an aggregated server's) to the client until it
    ends or the client goes away (checked while the stream is idle, so a followed log of a
    quiet container or a quiet watch does not outlive it)."""

    async def copy() -> None:
        async for chunk in upstream.content.iter_any():
            await out.write(chunk)

    task = asyncio.ensure_future(copy())
    try:
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            transport = request.transport
            if not task.done() and (transport is None or transport.is_closing()):
                break
        if task.done() and task.exception() is None:
            await out.write_eof()
    except (ConnectionError, aiohttp.ClientError):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
