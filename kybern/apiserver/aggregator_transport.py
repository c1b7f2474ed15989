"""API aggregation, the wire half: TLS towards a backend (`client_context`: its caBundle, or
no verification when insecure, and the front-proxy client certificate), relaying a backend's
answer to the client (`respond`: whole when small and sized, streamed otherwise — watches,
logs — until the backend ends it or the client goes away), and dialling an upgrade request
(`dial_upgrade`, verifying the service's DNS name while connecting to its endpoint's address),
whose relay is then `kybern.client.upgrade.pass_through`'s."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from kybern.apiserver import certs, proxy
from kybern.client import upgrade

UPGRADE_TIMEOUT = 60.0
BUFFER_LIMIT = 16 << 20  # answers with a Content-Length up to this are read whole
_RESPONSE_DROPPED = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


def describe(err: BaseException) -> str:
    """A connection error in a few words (aiohttp's own text names the SSLContext object)."""
    if isinstance(err, aiohttp.ClientConnectorError):
        os_error = err.os_error
        detail = getattr(os_error, "strerror", None) or str(os_error) or type(os_error).__name__
        return f"dial tcp {err.host}:{err.port}: {detail}"
    return str(err) or type(err).__name__


def client_context(pki: certs.Pki, ca_bundle: str, insecure: bool) -> ssl.SSLContext:
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_bundle:
        ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    else:
        ctx = ssl.create_default_context()
    ctx.load_cert_chain(pki.front_proxy_client_cert, pki.front_proxy_client_key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def respond(request: web.Request, resp: aiohttp.ClientResponse) -> web.StreamResponse:
    """The backend's answer to the client: whole when small and sized, streamed otherwise
    (watches, logs) until the backend ends it or the client goes away."""
    headers = CIMultiDict(
        (k, v) for k, v in resp.headers.items() if k.lower() not in _RESPONSE_DROPPED
    )
    length = resp.content_length
    if length is not None and length <= BUFFER_LIMIT:
        body = await resp.read()
        return web.Response(status=resp.status, reason=resp.reason, body=body, headers=headers)
    out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=headers)
    await out.prepare(request)
    await proxy.copy_until_gone(request, resp, out)
    return out


async def dial_upgrade(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    server_name: str,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
) -> upgrade.Upstream:
    """Send an upgrade request over TLS (verifying `server_name`, not the dialled address) and
    read the response head; the relay then belongs to `upgrade.pass_through`."""
    verify_name = server_name if ctx.check_hostname else None
    try:
        async with asyncio.timeout(UPGRADE_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=verify_name, limit=upgrade.HEAD_LIMIT
            )
    except (OSError, TimeoutError, ssl.SSLError) as e:
        raise upgrade.UpgradeError(f"cannot connect to {host}:{port}: {e}") from None
    lines = [f"{method} {target} HTTP/1.1", f"Host: {server_name}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if method in ("POST", "PUT"):
        lines.append("Content-Length: 0")
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        async with asyncio.timeout(UPGRADE_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        status, reason, response_headers = parse_head(head[:-4])
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        writer.close()
        raise upgrade.UpgradeError(f"no response from {host}:{port}: {e!r}") from None
    except upgrade.UpgradeError:
        writer.close()
        raise
    return upgrade.Upstream(reader, writer, status, reason, response_headers)


def parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    """(status, reason, headers) of an HTTP/1.1 response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise upgrade.UpgradeError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers
