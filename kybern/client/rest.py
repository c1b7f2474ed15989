"""An async Kubernetes REST client over HTTPS (aiohttp): kubeconfig loading with client
certificates or bearer tokens, the verbs on any `registry.Resource`, and watch streams as async
iterators. Errors come back as `errors.StatusError` built from the server's `Status`."""

from __future__ import annotations

import base64
import os
import re
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
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

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


# what `quote(s, safe="")` leaves as it is (most names: DNS labels and subdomains)
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
# a path that `yarl.URL` takes as it is: only characters it never (re)quotes, no query or
# fragment, no dot segments to normalize (all start with "/.")
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9!$&'()*+,;=:@_.~/-]*").fullmatch


def _segment(s: str) -> str:
    return s if _UNQUOTED(s) else quote(s, safe="")


def resource_path(
    res: registry.Resource, namespace: str = "", name: str = "", subresource: str = ""
) -> str:
    root = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and namespace:
        root += f"/namespaces/{_segment(namespace)}"
    root += f"/{res.plural}"
    if name:
        root += f"/{_segment(name)}"
        if subresource:
            root += f"/{subresource}"
    return root


def _base_url(server: str) -> URL | None:
    """`server` parsed once, when `server + path` can be joined without parsing (see
    `Client._url`): an origin (scheme, host, port) without path, query or fragment, with
    which joining a path gives what parsing the joined string gives."""
    try:
        base = URL(server)
        if (
            not base.absolute
            or server.endswith("/")
            or base.raw_path != "/"
            or "?" in server
            or "#" in server
        ):
            return None
        probe = "/api/v1/namespaces/default/pods/x"
        if base.with_path(probe, encoded=True) != URL(server + probe):
            return None
    except (ValueError, TypeError):
        return None
    return base


_TIMEOUTS: dict[float, aiohttp.ClientTimeout] = {}
_CONTENT_TYPES: dict[str, CIMultiDictProxy[str]] = {}


def _timeout(total: float) -> aiohttp.ClientTimeout:
    """One (immutable) `ClientTimeout(total=...)` per value, not one per request."""
    t = _TIMEOUTS.get(total)
    if t is None:
        t = aiohttp.ClientTimeout(total=total)
        if len(_TIMEOUTS) < 64:
            _TIMEOUTS[total] = t
    return t


def _content_type(content_type: str) -> CIMultiDictProxy[str]:
    """The request headers of a body: a read-only multidict aiohttp merges without copying
    it into one first (the same headers, in the same order, as a `dict` gives)."""
    h = _CONTENT_TYPES.get(content_type)
    if h is None:
        h = CIMultiDictProxy(CIMultiDict({"Content-Type": content_type}))
        if len(_CONTENT_TYPES) < 64:
            _CONTENT_TYPES[content_type] = h
    return h


class Client:
    """One connection pool to one API server. Use `async with Client(cfg) as c:`."""

    def __init__(self, cfg: Config, *, user_agent: str = "kybern", qps_limit: int = 100) -> None:
        self.cfg = cfg
        self.user_agent = user_agent
        self._limit = qps_limit
        self._session: aiohttp.ClientSession | None = None
        self._server = ""  # the `cfg.server` that `_base` was parsed from
        self._base: URL | None = None

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

    def _url(self, path: str) -> URL | str:
        """`cfg.server + path` as aiohttp would parse it, without the parsing (and quoting)
        when `path` is plain: what `resource_path` gives for DNS names."""
        server = self.cfg.server
        if server is not self._server:
            self._server, self._base = server, _base_url(server)
        base = self._base
        if base is not None and _PLAIN_PATH(path) and "/." not in path:
            return base.with_path(path, encoded=True)
        return server + path

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
        headers = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers = _content_type(content_type)
        # awaited, not entered: the answer is read to its end or released below, which is all
        # `__aexit__` would do (`read()` also closes the connection on any error)
        resp = await (self._session or self.session).request(
            method,
            self._url(path),
            params=params or None,
            data=data,
            headers=headers,
            timeout=_timeout(timeout),
        )
        content = resp.content
        if content.is_eof():
            # all of the answer is here, and its end gave the connection back to the pool (what
            # `read()` waits for): take the bytes as they are instead of reading them in a loop
            try:
                raw = content.read_nowait() if decode or resp.status >= 400 else b""
            finally:
                resp.release()
        else:
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
            self._url(resource_path(res, namespace)),
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.read())
            lines = _Lines()
            feed = lines.feed
            loads = orjson.loads
            readany = resp.content.readany  # what `iter_any()` awaits, without its wrapper
            while chunk := await readany():
                for line in feed(chunk):
                    ev = loads(line)
                    if ev.get("type") == "ERROR":
                        raise errors.from_status(ev.get("object") or {}, 500)
                    yield ev["type"], ev["object"]


_BLANK = frozenset(b" \t\n\r\x0b\x0c")  # what `bytes.strip()` strips


class _Lines:
    """Splits a byte stream into its non-blank lines, as views of the chunks (no copies):
    every complete line of a chunk at once (a chunk often holds many events); a partial line
    waits for the next chunk, and only that line is joined."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes | memoryview]:
        end = chunk.find(b"\n")
        if end < 0:
            if chunk:
                self._parts.append(chunk)
            return []
        out: list[bytes | memoryview] = []
        start = 0
        if self._parts:
            self._parts.append(chunk[:end])
            line = b"".join(self._parts)
            self._parts = []
            if line.strip():
                out.append(line)
            start = end + 1
            end = chunk.find(b"\n", start)
        view = memoryview(chunk)
        while end >= 0:
            if end > start and (chunk[start] not in _BLANK or chunk[start:end].strip()):
                out.append(view[start:end])
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            self._parts.append(chunk[start:])
        return out


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
