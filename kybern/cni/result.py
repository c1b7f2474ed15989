"""CNI results: one typed model for every spec version a plugin may return (0.1.0/0.2.0 with
`ip4`/`ip6`, 0.3.x/0.4.0 with versioned `ips`, 1.0.0, and 1.1.0 with interface/route extras),
parsed from a plugin's stdout and rendered at any version. The runtime parses each plugin's
result, converts it to the chain's version for the next plugin's `prevResult`, and caches it;
conversion is lossless upwards and drops fields an older version cannot express."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from kybern.cni import version as versions


@dataclasses.dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0  # 1.1.0
    socket_path: str = ""  # 1.1.0
    pci_id: str = ""  # 1.1.0


@dataclasses.dataclass(frozen=True)
class IPConfig:
    address: str  # CIDR, e.g. "10.22.0.5/24"
    gateway: str = ""
    interface: int | None = None  # index into Result.interfaces

    @property
    def family(self) -> str:
        """The address family, "4" or "6" (the 0.3.x/0.4.0 `version` field)."""
        return str(ipaddress.ip_interface(self.address).version)

    @property
    def ip(self) -> str:
        """The address without its prefix length."""
        return str(ipaddress.ip_interface(self.address).ip)


@dataclasses.dataclass(frozen=True)
class Route:
    dst: str
    gw: str = ""
    mtu: int = 0  # 1.1.0
    advmss: int = 0  # 1.1.0
    priority: int = 0  # 1.1.0
    table: int | None = None  # 1.1.0
    scope: int | None = None  # 1.1.0


@dataclasses.dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclasses.dataclass(frozen=True)
class Result:
    """A plugin's ADD result; `cni_version` is the version it was produced at (or converted to)."""

    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], default_version: str = "") -> Result:
        """Parse a result of any supported version. A result without `cniVersion` is taken to
        be at `default_version` (the version the plugin was called with), as libcni does."""
        return parse(obj, default_version)

    def to_json(self, cni_version: str | None = None) -> dict[str, Any]:
        """The result as the spec shapes it at `cni_version` (default: its own)."""
        return render(self, cni_version or self.cni_version)

    def convert(self, cni_version: str) -> Result:
        """The same result at another version: rendered there and parsed back, so whatever the
        target version cannot express is gone (and an impossible conversion raises)."""
        target = versions.normalize(cni_version)
        if target == self.cni_version:
            return self
        return parse(render(self, target), target)


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}.{key} must be an integer")
    return value


def _opt_int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    if obj.get(key) is None:
        return None
    return _int(obj, key, where)


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}.{key} must be a list")
    return value


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object")
    return value


def _cidr(text: str, where: str) -> str:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an address in CIDR notation") from None
    if "/" not in text:
        raise ValueError(f"{where}: {text!r} has no prefix length")
    return text


def _ip(text: str, where: str) -> str:
    if text:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not an IP address") from None
    return text


def _dns(obj: Any) -> DNS:
    if obj is None:
        return DNS()
    d = _obj(obj, "dns")

    def strings(key: str) -> tuple[str, ...]:
        items = _list(d, key, "dns")
        if not all(isinstance(i, str) for i in items):
            raise ValueError(f"dns.{key} must be a list of strings")
        return tuple(items)

    return DNS(
        nameservers=strings("nameservers"),
        domain=_str(d, "domain", "dns"),
        search=strings("search"),
        options=strings("options"),
    )


def _route(obj: Any, where: str) -> Route:
    r = _obj(obj, where)
    return Route(
        dst=_cidr(_str(r, "dst", where), f"{where}.dst"),
        gw=_ip(_str(r, "gw", where), f"{where}.gw"),
        mtu=_int(r, "mtu", where),
        advmss=_int(r, "advmss", where),
        priority=_int(r, "priority", where),
        table=_opt_int(r, "table", where),
        scope=_opt_int(r, "scope", where),
    )


def parse(obj: Mapping[str, Any], default_version: str = "") -> Result:
    """See `Result.from_json`; raises ValueError on anything that is not a valid result."""
    obj = _obj(obj, "result")
    raw_version = obj.get("cniVersion") or default_version or "0.1.0"
    if not isinstance(raw_version, str):
        raise ValueError("result cniVersion must be a string")
    ver = versions.normalize(raw_version)
    if ver not in versions.SUPPORTED:
        raise ValueError(f"unsupported result version {raw_version!r}")
    if versions.parse(ver) < (0, 3, 0):
        return _parse_legacy(obj, ver)
    interfaces = []
    for i, item in enumerate(_list(obj, "interfaces", "result")):
        where = f"interfaces[{i}]"
        d = _obj(item, where)
        name = _str(d, "name", where)
        if not name:
            raise ValueError(f"{where}.name is required")
        interfaces.append(
            Interface(
                name=name,
                mac=_str(d, "mac", where),
                sandbox=_str(d, "sandbox", where),
                mtu=_int(d, "mtu", where),
                socket_path=_str(d, "socketPath", where),
                pci_id=_str(d, "pciID", where),
            )
        )
    ips = []
    for i, item in enumerate(_list(obj, "ips", "result")):
        where = f"ips[{i}]"
        d = _obj(item, where)
        index = _opt_int(d, "interface", where)
        if index is not None and not 0 <= index < len(interfaces):
            raise ValueError(f"{where}.interface {index} is not an index into interfaces")
        address = _cidr(_str(d, "address", where), f"{where}.address")
        declared = d.get("version")
        if declared not in (None, "") and str(declared) != str(
            ipaddress.ip_interface(address).version
        ):
            raise ValueError(f"{where}.version {declared!r} does not match {address}")
        ips.append(
            IPConfig(
                address=address,
                gateway=_ip(_str(d, "gateway", where), f"{where}.gateway"),
                interface=index,
            )
        )
    routes = [_route(r, f"routes[{i}]") for i, r in enumerate(_list(obj, "routes", "result"))]
    return Result(ver, tuple(interfaces), tuple(ips), tuple(routes), _dns(obj.get("dns")))


def _parse_legacy(obj: Mapping[str, Any], ver: str) -> Result:
    ips: list[IPConfig] = []
    routes: list[Route] = []
    for key in ("ip4", "ip6"):
        block = obj.get(key)
        if block is None:
            continue
        d = _obj(block, key)
        ips.append(
            IPConfig(
                address=_cidr(_str(d, "ip", key), f"{key}.ip"),
                gateway=_ip(_str(d, "gateway", key), f"{key}.gateway"),
            )
        )
        routes.extend(
            _route(r, f"{key}.routes[{i}]") for i, r in enumerate(_list(d, "routes", key))
        )
    return Result(ver, (), tuple(ips), tuple(routes), _dns(obj.get("dns")))


def render(result: Result, cni_version: str) -> dict[str, Any]:
    """See `Result.to_json`."""
    ver = versions.normalize(cni_version)
    if ver not in versions.SUPPORTED:
        raise ValueError(f"unsupported result version {cni_version!r}")
    if versions.parse(ver) < (0, 3, 0):
        return _render_legacy(result, ver)
    v11 = versions.at_least(ver, "1.1.0")
    v10 = versions.at_least(ver, "1.0.0")
    out: dict[str, Any] = {"cniVersion": ver}
    if result.interfaces:
        items = []
        for itf in result.interfaces:
            d: dict[str, Any] = {"name": itf.name}
            if itf.mac:
                d["mac"] = itf.mac
            if v11 and itf.mtu:
                d["mtu"] = itf.mtu
            if itf.sandbox:
                d["sandbox"] = itf.sandbox
            if v11 and itf.socket_path:
                d["socketPath"] = itf.socket_path
            if v11 and itf.pci_id:
                d["pciID"] = itf.pci_id
            items.append(d)
        out["interfaces"] = items
    if result.ips:
        items = []
        for ip in result.ips:
            d = {} if v10 else {"version": ip.family}
            if ip.interface is not None:
                d["interface"] = ip.interface
            d["address"] = ip.address
            if ip.gateway:
                d["gateway"] = ip.gateway
            items.append(d)
        out["ips"] = items
    if result.routes:
        out["routes"] = [_render_route(r, v11) for r in result.routes]
    dns = result.dns.to_json()
    if dns or not v10:
        out["dns"] = dns
    return out


def _render_route(route: Route, v11: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"dst": route.dst}
    if route.gw:
        d["gw"] = route.gw
    if v11:
        for key, value in (("mtu", route.mtu), ("advmss", route.advmss)):
            if value:
                d[key] = value
        if route.priority:
            d["priority"] = route.priority
        if route.table is not None:
            d["table"] = route.table
        if route.scope is not None:
            d["scope"] = route.scope
    return d


def _render_legacy(result: Result, ver: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": ver}
    for family in ("4", "6"):
        ips = [ip for ip in result.ips if ip.family == family]
        if len(ips) > 1:
            raise ValueError(
                f"cannot convert a result with {len(ips)} IPv{family} addresses to {ver}"
            )
        if not ips:
            continue
        block: dict[str, Any] = {"ip": ips[0].address}
        if ips[0].gateway:
            block["gateway"] = ips[0].gateway
        routes = [
            _render_route(r, False)
            for r in result.routes
            if str(ipaddress.ip_network(r.dst, strict=False).version) == family
        ]
        if routes:
            block["routes"] = routes
        out[f"ip{family}"] = block
    out["dns"] = result.dns.to_json()
    return out
