"""Registering an extension API server with the API server, as its manifests would: a Service
without a selector (`<namespace>/<name>`, port 443 → the server's port), an Endpoints object
naming the address the server listens on, and the APIService `<version>.<group>` pointing at
the Service with the serving CA as `caBundle`. Re-registering updates all three (a restarted
server has a new port and a new certificate); `unregister` removes them."""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from typing import Any

from kybern.api import errors, registry
from kybern.client import rest

Obj = dict[str, Any]
SERVICES = next(r for r in registry.BUILTIN if r.plural == "services" and not r.group)
ENDPOINTS = next(r for r in registry.BUILTIN if r.plural == "endpoints")
APISERVICES = next(r for r in registry.BUILTIN if r.plural == "apiservices")
PORT_NAME = "https"


@dataclass(frozen=True)
class Registration:
    """Where an extension server for `group`/`version` is reachable."""

    group: str
    version: str
    address: str  # the IP the aggregator connects to
    port: int
    ca_pem: bytes  # caBundle: verifies the server's certificate
    namespace: str = "kube-system"
    service: str = ""  # default: the group's first label, e.g. `metrics` for metrics.k8s.io
    group_priority: int = 100
    version_priority: int = 100

    @property
    def service_name(self) -> str:
        return self.service or self.group.split(".")[0].replace("_", "-").lower()

    @property
    def apiservice_name(self) -> str:
        return f"{self.version}.{self.group}"


def objects_of(reg: Registration) -> tuple[Obj, Obj, Obj]:
    """(Service, Endpoints, APIService) for `reg`."""
    meta = {"name": reg.service_name, "namespace": reg.namespace}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": dict(meta),
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": PORT_NAME, "port": 443, "protocol": "TCP", "targetPort": reg.port}],
        },
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": dict(meta),
        "subsets": [
            {
                "addresses": [{"ip": reg.address}],
                "ports": [{"name": PORT_NAME, "port": reg.port, "protocol": "TCP"}],
            }
        ],
    }
    apiservice = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": reg.apiservice_name},
        "spec": {
            "group": reg.group,
            "version": reg.version,
            "groupPriorityMinimum": reg.group_priority,
            "versionPriority": reg.version_priority,
            "service": {"namespace": reg.namespace, "name": reg.service_name, "port": 443},
            "caBundle": base64.b64encode(reg.ca_pem).decode(),
        },
    }
    return service, endpoints, apiservice


async def _apply(client: rest.Client, res: registry.Resource, obj: Obj, fields: list[str]) -> None:
    """Create `obj`, or merge-patch the `fields` of the existing one."""
    meta = obj["metadata"]
    try:
        await client.create(res, obj, meta.get("namespace", ""))
    except errors.StatusError as e:
        if e.code != 409:
            raise
        patch = {k: obj[k] for k in fields}
        await client.patch(res, meta["name"], patch, meta.get("namespace", ""))


async def register(client: rest.Client, reg: Registration) -> None:
    """Create or update the Service, Endpoints and APIService of `reg`."""
    service, endpoints, apiservice = objects_of(reg)
    await _apply(client, SERVICES, service, [])
    svc = await client.get(SERVICES, reg.service_name, reg.namespace)
    if (svc.get("spec") or {}).get("ports") != service["spec"]["ports"]:
        await client.patch(SERVICES, reg.service_name, {"spec": service["spec"]}, reg.namespace)
    await _apply(client, ENDPOINTS, endpoints, ["subsets"])
    await _apply(client, APISERVICES, apiservice, ["spec"])


async def unregister(client: rest.Client, reg: Registration) -> None:
    """Delete the APIService, Service and Endpoints of `reg` (missing ones are fine)."""
    for res, name, ns in (
        (APISERVICES, reg.apiservice_name, ""),
        (ENDPOINTS, reg.service_name, reg.namespace),
        (SERVICES, reg.service_name, reg.namespace),
    ):
        with contextlib.suppress(errors.StatusError):
            await client.delete(res, name, ns)
