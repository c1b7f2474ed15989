"""API discovery for controllers that act on every kind the server serves (the namespace
controller deletes all namespaced content; the garbage collector watches every kind that can
own or be owned, CRDs included): reads `/api/v1` and the preferred version of every group in
`/apis`, caches the result for a few seconds, and maps apiVersion+kind to a resource."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from kybern.api import errors, registry
from kybern.client import rest

_BUILTIN = registry.Registry()


@dataclass
class Result:
    resources: list[registry.Resource] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # groupVersion -> error


def _parse(group_version: str, doc: dict[str, object]) -> list[registry.Resource]:
    group, _, version = group_version.rpartition("/")
    out: list[registry.Resource] = []
    for r in doc.get("resources") or []:  # type: ignore[attr-defined]
        name = r.get("name", "")
        if not name or "/" in name:
            continue
        out.append(
            registry.Resource(
                group=group,
                version=version,
                kind=r.get("kind", ""),
                plural=name,
                namespaced=bool(r.get("namespaced")),
                verbs=tuple(r.get("verbs") or ()),
                crd=_BUILTIN.lookup(group, version, name) is None,
            )
        )
    return out


class Discovery:
    def __init__(
        self, client: rest.Client, *, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cached: Result | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def resources(self, *, fresh: bool = False) -> Result:
        async with self._lock:
            if not fresh and self._cached is not None and self.clock() - self._at < self.ttl:
                return self._cached
            result = Result()
            gvs = ["v1"]
            groups = await self.client.request("GET", "/apis")
            for g in groups.get("groups") or []:
                pv = (g.get("preferredVersion") or {}).get("groupVersion")
                if pv:
                    gvs.append(pv)
            docs = await asyncio.gather(*(self._fetch(gv) for gv in gvs), return_exceptions=True)
            for gv, doc in zip(gvs, docs, strict=True):
                if isinstance(doc, BaseException):
                    result.failed[gv] = str(doc)
                else:
                    result.resources.extend(_parse(gv, doc))
            self._cached, self._at = result, self.clock()
            return result

    async def _fetch(self, gv: str) -> dict[str, object]:
        path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        try:
            doc: dict[str, object] = await self.client.request("GET", path)
        except (errors.StatusError, aiohttp.ClientError, OSError) as e:
            msg = f"unable to retrieve the complete list of server APIs: {gv}: {e}"
            raise RuntimeError(msg) from e
        return doc

    def invalidate(self) -> None:
        self._cached = None

    async def by_kind(self, api_version: str, kind: str) -> registry.Resource | None:
        group, _, version = api_version.rpartition("/")
        known = _BUILTIN.by_kind(group, version, kind)
        if known is not None:
            return known
        for fresh in (False, True):
            for r in (await self.resources(fresh=fresh)).resources:
                if r.group == group and r.version == version and r.kind == kind:
                    return r
        return None
