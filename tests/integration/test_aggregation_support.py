"""An extension API server for the aggregation tests, built on kybern.ext and run on a thread
with its own event loop (so a test can stop and restart it on the same port, and add objects
while a watch is open). Group `hello.test/v1`: `whoamis` (cluster-scoped, computed: what the
server learned about the caller — user, groups, extras, and the raw identity headers),
`greetings` (namespaced, a MemoryStore: get/list/watch) and an `echo` WebSocket subresource of
greetings (`.../greetings/<name>/echo`) that answers each message with the user's name. No tests
here."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from conftest import Server

from kybern import ext
from kybern.ext import registration

T = TypeVar("T")
Obj = dict[str, Any]
GROUP, VERSION = "hello.test", "v1"
NAMESPACE, SERVICE = "kube-system", "hello-test"


def greeting(name: str, namespace: str = "default", **labels: str) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Greeting",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"text": f"hello {name}"},
    }


class Backend:
    """The test extension server (see the module docstring)."""

    def __init__(self, auth_data: dict[str, str]) -> None:
        self.auth = ext.AuthConfig.from_data(auth_data)
        self.cert = ext.self_signed(ext.service_names(NAMESPACE, SERVICE))
        self.port = 0
        self.greetings = ext.MemoryStore()
        self.seen: list[Obj] = []  # whoami answers, in order
        self.server: ext.Server | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---- the server --------------------------------------------------------------------

    def _build(self) -> ext.Server:
        async def whoamis(ctx: ext.Context) -> list[Obj]:
            h = ctx.request.headers
            obj = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "WhoAmI",
                "metadata": {"name": ctx.user.name},
                "spec": {
                    "user": ctx.user.name,
                    "groups": list(ctx.user.groups),
                    "extra": {k: list(v) for k, v in ctx.user.extra.items()},
                    "remoteUser": h.getall("X-Remote-User", []),
                    "remoteGroups": h.getall("X-Remote-Group", []),
                    "authorization": h.get("Authorization", ""),
                },
            }
            self.seen.append(obj)
            return [obj]

        async def echo(request: web.Request) -> web.StreamResponse:
            user = request[ext.USER_KEY]
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(f"{user.name}: {msg.data}")
            return ws

        return ext.Server(
            GROUP,
            VERSION,
            [
                ext.Resource("whoamis", "WhoAmI", whoamis, namespaced=False),
                ext.Resource.backed_by(
                    self.greetings,
                    "greetings",
                    "Greeting",
                    short_names=("gr",),
                    columns=(ext.Column("Text", lambda o: o["spec"]["text"]),),
                ),
            ],
            extra_routes=[
                web.get(f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/greetings/{{name}}/echo", echo)
            ],
        )

    def start(self) -> None:
        """Serve (again on the same port after a stop)."""
        assert self.server is None, "already serving"
        server = self._build()
        self.call(server.start(auth=self.auth, cert=self.cert, host="127.0.0.1", port=self.port))
        self.server, self.port = server, server.port

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def put(self, obj: Obj) -> Obj:
        async def put() -> Obj:
            return self.greetings.put(obj)

        return self.call(put())

    # ---- registration ------------------------------------------------------------------

    @property
    def registration(self) -> ext.Registration:
        return ext.Registration(
            GROUP, VERSION, "127.0.0.1", self.port, self.cert.ca_pem, NAMESPACE, SERVICE
        )

    def register(self, server: Server) -> None:
        """Service, Endpoints and APIService, applied with kubectl as a user would."""
        items = list(registration.objects_of(self.registration))
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        server.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def unregister(self, server: Server) -> None:
        server.kubectl("delete", "apiservice", self.registration.apiservice_name, "--wait=false")
        server.kubectl("delete", "-n", NAMESPACE, "service,endpoints", SERVICE, "--wait=false")


def auth_data(server: Server) -> dict[str, str]:
    cm = server.kubectl_json(
        "get", "configmap", "-n", "kube-system", "extension-apiserver-authentication"
    )
    data: dict[str, str] = cm["data"]
    return data


def condition(server: Server, name: str) -> Obj:
    """The Available condition of APIService `name` ({} if none yet)."""
    obj = server.kubectl_json("get", "apiservice", name)
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == "Available"), {})
