"""An aggregated API server in a page of Python, with kybern.ext: the group `hello.kybern.io/v1`
serves `greetings` (namespaced objects kept in memory: get, list, label selectors, watch) and
`hellos` (computed per request: one object greeting whoever asks, as the API server
authenticated them). Run it against a cluster and use kubectl as for any other API:

    python examples/hello_apiserver.py --kubeconfig ~/.kybern/kubeconfig &
    kubectl get hellos                      # NAME: you, MESSAGE: Hello, kybern-admin!
    kubectl get greetings -A -w             # watch; the server adds one every 10 s
    kubectl get --raw /apis/hello.kybern.io/v1/namespaces/default/greetings/world

It registers itself (Service `kube-system/hello`, Endpoints, APIService `v1.hello.kybern.io`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from kybern import ext
from kybern.client import rest

GROUP, VERSION = "hello.kybern.io", "v1"


def build() -> tuple[ext.Server, ext.MemoryStore]:
    """The server and the store behind its `greetings`."""
    greetings = ext.MemoryStore()

    async def hellos(ctx: ext.Context) -> list[ext.Obj]:
        user = ctx.user
        return [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Hello",
                "metadata": {"name": user.name},
                "message": f"Hello, {user.name}!",
                "groups": list(user.groups),
            }
        ]

    resources = [
        ext.Resource(
            "hellos",
            "Hello",
            hellos,
            namespaced=False,
            columns=(ext.Column("Message", lambda o: o["message"]),),
        ),
        ext.Resource.backed_by(
            greetings,
            "greetings",
            "Greeting",
            short_names=("gr",),
            columns=(ext.Column("Text", lambda o: o["spec"]["text"]),),
        ),
    ]
    return ext.Server(GROUP, VERSION, resources), greetings


def greeting(name: str, text: str, namespace: str = "default") -> ext.Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Greeting",
        "metadata": {"name": name, "namespace": namespace, "labels": {"lang": "en"}},
        "spec": {"text": text},
    }


async def main(kubeconfig: str, port: int) -> None:
    cfg = await asyncio.to_thread(rest.load_kubeconfig, kubeconfig)
    server, greetings = build()
    greetings.put(greeting("world", "Hello, world!"))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with rest.Client(cfg) as client, ext.running(server, client, port=port) as reg:
        print(f"serving {reg.apiservice_name} on {reg.address}:{reg.port}", flush=True)
        count = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10.0)
                return
            count += 1
            greetings.put(greeting(f"greeting-{count}", f"Hello number {count}"))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--port", type=int, default=0, help="HTTPS port (0: any free one)")
    args = p.parse_args()
    asyncio.run(main(args.kubeconfig, args.port))
