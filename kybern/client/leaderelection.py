"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: acquire when the
lease is free or expired, renew every `retry_period`, give up leadership when renewal fails for
`renew_deadline`; compare-on-resourceVersion writes make two candidates never both win."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import Any

import aiohttp

from kybern.api import errors, registry
from kybern.client import rest

log = logging.getLogger("kybern.leaderelection")
LEASES = next(r for r in registry.BUILTIN if r.kind == "Lease")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str) -> float:
    return datetime.datetime.strptime(
        ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z"
    ).timestamp()


class LeaderElector:
    def __init__(
        self,
        client: rest.Client,
        name: str,
        identity: str,
        *,
        namespace: str = "kube-system",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = asyncio.Event()
        self.lost = asyncio.Event()
        self._observed: tuple[str, float] = ("", 0.0)  # (resourceVersion, local time seen)

    async def try_acquire_or_renew(self) -> bool:
        now = _micro_now()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except errors.StatusError as e:
            if e.code != 404:
                raise
            fresh: dict[str, Any] = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            try:
                await self.client.create(
                    LEASES,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": fresh,
                    },
                    self.namespace,
                )
            except errors.StatusError as e2:
                if e2.code == 409:
                    return False
                raise
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        rv = lease["metadata"]["resourceVersion"]
        if rv != self._observed[0]:
            self._observed = (rv, time.monotonic())
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = time.monotonic() > self._observed[1] + duration
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(self.lease_duration)
        spec["renewTime"] = now
        lease["spec"] = spec
        try:
            updated = await self.client.update(LEASES, lease)
        except errors.StatusError as e:
            if e.code == 409:
                return False
            raise
        self._observed = (updated["metadata"]["resourceVersion"], time.monotonic())
        return True

    async def run(self) -> None:
        """Acquire, then keep renewing; returns when leadership is lost."""
        while not self.is_leader.is_set():
            with contextlib.suppress(errors.StatusError, OSError, aiohttp.ClientError):
                if await self.try_acquire_or_renew():
                    self.is_leader.set()
                    log.info("became leader of %s/%s", self.namespace, self.name)
                    break
            await asyncio.sleep(self.retry_period)
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            ok = False
            with contextlib.suppress(errors.StatusError, OSError, aiohttp.ClientError):
                ok = await self.try_acquire_or_renew()
            if ok:
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew > self.renew_deadline:
                self.is_leader.clear()
                self.lost.set()
                log.warning("lost leadership of %s/%s", self.namespace, self.name)
                return
