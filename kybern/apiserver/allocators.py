"""Service address allocation: cluster IPs from the service CIDR (the first address goes to
the `kubernetes` service) and node ports from 30000-32767. The used set is read from the watch
cache, plus addresses reserved by requests still in flight."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

from kybern.api import errors


class IPAllocator:
    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        self._reserved: set[str] = set()

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def first(self) -> str:
        return str(self.network.network_address + 1)

    def allocate(self, used: Iterable[str]) -> str:
        taken = set(used) | self._reserved
        size = self.network.num_addresses - 2
        start = random.randrange(size)
        for i in range(size):
            ip = str(self.network.network_address + 1 + (start + i) % size)
            if ip not in taken and ip != self.first():
                self._reserved.add(ip)
                return ip
        raise errors.StatusError(
            500,
            "InternalError",
            "Internal error occurred: failed to allocate a serviceIP: range is full",
        )

    def reserve(self, ip: str, used: Iterable[str], name: str = "") -> None:
        if ip in self._reserved or ip in set(used):
            raise errors.invalid(
                "Service",
                "",
                name,
                [
                    errors.invalid_value(
                        "spec.clusterIPs",
                        [ip],
                        f"failed to allocate IP {ip}: provided IP is already allocated",
                    )
                ],
            )
        self._reserved.add(ip)

    def release(self, ip: str) -> None:
        self._reserved.discard(ip)


class PortAllocator:
    def __init__(self, low: int = 30000, high: int = 32767) -> None:
        self.low = low
        self.high = high
        self._reserved: set[int] = set()

    def allocate(self, used: Iterable[int]) -> int:
        taken = set(used) | self._reserved
        span = self.high - self.low + 1
        start = random.randrange(span)
        for i in range(span):
            port = self.low + (start + i) % span
            if port not in taken:
                self._reserved.add(port)
                return port
        raise errors.StatusError(
            500,
            "InternalError",
            "Internal error occurred: failed to allocate a nodePort: range is full",
        )

    def check(
        self, port: int, used: Iterable[int], field: str = "spec.ports.nodePort", name: str = ""
    ) -> None:
        if not self.low <= port <= self.high:
            raise errors.invalid(
                "Service",
                "",
                name,
                [
                    errors.invalid_value(
                        field,
                        port,
                        "provided port is not in the valid range. The range of valid "
                        f"ports is {self.low}-{self.high}",
                    )
                ],
            )
        if port in self._reserved or port in set(used):
            raise errors.invalid(
                "Service",
                "",
                name,
                [errors.invalid_value(field, port, "provided port is already allocated")],
            )
        self._reserved.add(port)

    def release(self, port: int) -> None:
        self._reserved.discard(port)
