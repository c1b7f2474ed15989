"""An async Kubernetes REST client over HTTPS (aiohttp): kubeconfig loading with client
certificates or bearer tokens, the verbs on any `registry.Resource`, and watch streams as async
iterators. Errors come back as `errors.StatusError` built from the server's `Status`."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml

from kybern.api import errors, registry

Obj = dict[str, Any]
PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass
class Config:
    server: str
    ca_data: bytes = b""
    cert_data: bytes = b""
    key_data: bytes = b""
    token: str = ""
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_data and self.key_data:
            with tempfile.TemporaryDirectory(prefix="kybern-client-") as d:
                cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
                for p, data in ((cert, self.cert_data), (key, self.key_data)):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        return ctx


def _field(entry: dict[str, Any], name: str, base: Path) -> bytes:
    if entry.get(f"{name}-data"):
        return base64.b64decode(entry[f"{name}-data"])
    if entry.get(name):
        return (base / entry[name]).read_bytes()
    return b""


def load_kubeconfig(path: str | Path, context: str = "") -> Config:
    """The cluster and user of `context` (default: current-context) of a kubeconfig file."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text())
    ctx_name = context or doc.get("current-context", "")
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user: dict[str, Any] = next(
        (u["user"] for u in doc.get("users") or [] if u["name"] == ctx.get("user")), {}
    )
    base = path.parent
    return Config(
        server=cluster["server"].rstrip("/"),
        ca_data=_field(cluster, "certificate-authority", base),
        cert_data=_field(user, "client-certificate", base),
        key_data=_field(user, "client-key", base),
        token=user.get("token", ""),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def resource_path(
    res: registry.Resource, namespace: str = "", name: str = "", subresource: str = ""
) -> str:
    root = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and namespace:
        root += f"/namespaces/{quote(namespace, safe='')}"
    root += f"/{res.plural}"
    if name:
        root += f"/{quote(name, safe='')}"
        if subresource:
            root += f"/{subresource}"
    return root


class Client:
    """One connection pool to one API server. Use `async with Client(cfg) as c:`."""

    def __init__(self, cfg: Config, *, user_agent: str = "kybern", qps_limit: int = 100) -> None:
        self.cfg = cfg
        self.user_agent = user_agent
        self._limit = qps_limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.cfg.token:
                headers["Authorization"] = f"Bearer {self.cfg.token}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.cfg.ssl_context(), limit=self._limit),
                headers=headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        decode: bool = True,
    ) -> Any:
        """The decoded JSON answer of `method path`, None for an empty one or with
        `decode=False` (an answer nobody reads). Errors (>= 400) raise `errors.StatusError`."""
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        async with self.session.request(
            method,
            self.cfg.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error(resp.status, raw)
            return orjson.loads(raw) if decode and raw else None

    # ---- verbs -------------------------------------------------------------------------

    async def get(self, res: registry.Resource, name: str, namespace: str = "") -> Obj:
        out: Obj = await self.request("GET", resource_path(res, namespace, name))
        return out

    async def list(
        self,
        res: registry.Resource,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> Obj:
        params = _params(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=str(limit) if limit else "",
            resourceVersion=resource_version,
            **{"continue": continue_token},
        )
        out: Obj = await self.request("GET", resource_path(res, namespace), params=params)
        return out

    async def create(
        self,
        res: registry.Resource,
        obj: Obj,
        namespace: str = "",
        *,
        subresource: str = "",
        name: str = "",
    ) -> Obj:
        ns = namespace or obj.get("metadata", {}).get("namespace", "")
        out: Obj = await self.request("POST", resource_path(res, ns, name, subresource), body=obj)
        return out

    async def update(self, res: registry.Resource, obj: Obj, *, subresource: str = "") -> Obj:
        m = obj["metadata"]
        out: Obj = await self.request(
            "PUT", resource_path(res, m.get("namespace", ""), m["name"], subresource), body=obj
        )
        return out

    async def update_status(self, res: registry.Resource, obj: Obj) -> Obj:
        return await self.update(res, obj, subresource="status")

    async def patch(
        self,
        res: registry.Resource,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        patch_type: str = "merge",
        subresource: str = "",
        field_manager: str = "",
        force: bool = False,
    ) -> Obj:
        params = _params(fieldManager=field_manager, force="true" if force else "")
        body = patch if isinstance(patch, bytes) else orjson.dumps(patch)
        out: Obj = await self.request(
            "PATCH",
            resource_path(res, namespace, name, subresource),
            params=params,
            body=body,
            content_type=PATCH_TYPES[patch_type],
        )
        return out

    async def delete(
        self,
        res: registry.Resource,
        name: str,
        namespace: str = "",
        *,
        grace_period: int | None = None,
        propagation: str = "",
        uid: str = "",
        resource_version: str = "",
    ) -> Obj:
        opts: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if propagation:
            opts["propagationPolicy"] = propagation
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if pre:
            opts["preconditions"] = pre
        out: Obj = await self.request("DELETE", resource_path(res, namespace, name), body=opts)
        return out

    async def watch(
        self,
        res: registry.Resource,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Yields (type, object) until the server ends the stream. An `ERROR` event is raised
        as StatusError (410 Expired: the caller re-lists)."""
        params = _params(
            watch="true",
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=str(timeout_seconds),
            allowWatchBookmarks="true" if bookmarks else "",
        )
        async with self.session.get(
            self.cfg.server + resource_path(res, namespace),
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.read())
            buf = b""
            async for chunk in resp.content.iter_any():
                if b"\n" not in chunk:
                    buf += chunk
                    continue
                # every complete line at once (a chunk often holds many events)
                *lines, buf = (buf + chunk).split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    if ev.get("type") == "ERROR":
                        raise errors.from_status(ev.get("object") or {}, 500)
                    yield ev["type"], ev["object"]


def _params(**kw: str) -> dict[str, str]:
    return {k: v for k, v in kw.items() if v}


def _error(code: int, raw: bytes) -> errors.StatusError:
    try:
        status = orjson.loads(raw)
        if isinstance(status, dict) and status.get("kind") == "Status":
            return errors.from_status(status, code)
    except orjson.JSONDecodeError:
        pass
    return errors.StatusError(code, "Unknown", raw.decode(errors="replace")[:500])
