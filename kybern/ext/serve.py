"""Running an extension API server against a cluster in one call: `running(server, client)`
reads the front-proxy settings from the cluster's `extension-apiserver-authentication`
ConfigMap, makes a serving certificate (self-signed CA, names of the service and the address),
starts the server and registers it (Service, Endpoints, APIService), and stops it on exit
(leaving the registration, whose APIService then turns unavailable, unless `unregister`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kybern.client import rest
from kybern.ext import registration as registermod
from kybern.ext import tls
from kybern.ext.auth import AuthConfig
from kybern.ext.server import Server


@contextlib.asynccontextmanager
async def running(
    server: Server,
    client: rest.Client,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    advertise: str = "",
    namespace: str = "kube-system",
    service: str = "",
    group_priority: int = 100,
    version_priority: int = 100,
    register: bool = True,
    unregister: bool = False,
    cert: tls.ServingCert | None = None,
) -> AsyncIterator[registermod.Registration]:
    """Serve `server` on host:port, registered as `<version>.<group>` with the address
    `advertise` (default: `host`, or 127.0.0.1 when that is a wildcard) in its Endpoints."""
    auth = await AuthConfig.load(client)
    probe = registermod.Registration(server.group, server.version, host, 0, b"", namespace, service)
    address = advertise or ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host)
    if cert is None:
        names = [address, *tls.service_names(namespace, probe.service_name)]
        cert = await asyncio.to_thread(tls.self_signed, names)
    await server.start(auth=auth, cert=cert, host=host, port=port)
    reg = registermod.Registration(
        server.group,
        server.version,
        address,
        server.port,
        cert.ca_pem,
        namespace,
        service,
        group_priority,
        version_priority,
    )
    try:
        if register:
            await registermod.register(client, reg)
        yield reg
    finally:
        try:
            if register and unregister:
                await registermod.unregister(client, reg)
        finally:
            await server.stop()
