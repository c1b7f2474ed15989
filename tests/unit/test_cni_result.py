"""CNI results: parsing every supported version (0.1.0/0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 with
`version` per IP, 1.0.0, 1.1.0 extras), rendering at any version, conversion (lossless upwards,
dropping what an older version cannot say, refusing what it cannot hold), validation errors,
and round-trip properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kybern.cni import result, version
from kybern.cni.result import DNS, Interface, IPConfig, Result, Route

FULL_11: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "cni0", "mac": "0a:58:0a:f4:00:01", "mtu": 1450},
        {
            "name": "eth0",
            "mac": "0a:58:0a:f4:00:05",
            "mtu": 1450,
            "sandbox": "/var/run/netns/p1",
            "socketPath": "/run/vhost.sock",
            "pciID": "0000:00:1f.6",
        },
    ],
    "ips": [
        {"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1"},
        {"interface": 1, "address": "fd00:10:244::5/64", "gateway": "fd00:10:244::1"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.244.0.1", "mtu": 1400, "advmss": 1360, "priority": 10},
        {"dst": "10.96.0.0/12", "table": 100, "scope": 253},
    ],
    "dns": {
        "nameservers": ["10.96.0.10"],
        "domain": "cluster.local",
        "search": ["a.b"],
        "options": ["ndots:5"],
    },
}


def test_1_1_round_trip() -> None:
    r = Result.from_json(FULL_11)
    assert r.cni_version == "1.1.0"
    assert r.interfaces[1] == Interface(
        "eth0", "0a:58:0a:f4:00:05", "/var/run/netns/p1", 1450, "/run/vhost.sock", "0000:00:1f.6"
    )
    assert r.ips[1].family == "6" and r.ips[0].ip == "10.244.0.5"
    assert r.routes[1] == Route("10.96.0.0/12", table=100, scope=253)
    assert r.to_json() == FULL_11


def test_down_to_1_0_drops_1_1_fields() -> None:
    out = Result.from_json(FULL_11).to_json("1.0.0")
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"][1] == {
        "name": "eth0",
        "mac": "0a:58:0a:f4:00:05",
        "sandbox": "/var/run/netns/p1",
    }
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}, {"dst": "10.96.0.0/12"}]
    assert "version" not in out["ips"][0]


@pytest.mark.parametrize("ver", ["0.3.0", "0.3.1", "0.4.0"])
def test_0_3_and_0_4_carry_the_ip_version(ver: str) -> None:
    out = Result.from_json(FULL_11).to_json(ver)
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert out["ips"][0] == {
        "version": "4",
        "interface": 1,
        "address": "10.244.0.5/24",
        "gateway": "10.244.0.1",
    }
    assert Result.from_json(out).convert("1.0.0") == Result.from_json(FULL_11).convert("1.0.0")


def test_empty_dns_is_an_object_before_1_0_and_absent_after() -> None:
    r = Result("1.0.0", ips=(IPConfig("10.0.0.2/24"),))
    assert r.to_json("0.4.0")["dns"] == {}
    assert "dns" not in r.to_json("1.0.0")


def test_legacy_0_2_0_parse_and_upconvert() -> None:
    legacy = {
        "cniVersion": "0.2.0",
        "ip4": {
            "ip": "10.1.0.5/16",
            "gateway": "10.1.0.1",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}],
        },
        "ip6": {"ip": "fd00::5/64"},
        "dns": {"nameservers": ["10.1.0.1"]},
    }
    r = Result.from_json(legacy)
    assert r.ips == (IPConfig("10.1.0.5/16", "10.1.0.1"), IPConfig("fd00::5/64"))
    assert r.convert("1.0.0").to_json() == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}, {"address": "fd00::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    }
    assert r.convert("1.0.0").to_json("0.2.0") == {**legacy, "cniVersion": "0.2.0"}


def test_down_to_0_2_0_needs_at_most_one_address_per_family() -> None:
    two = Result("1.0.0", ips=(IPConfig("10.0.0.2/24"), IPConfig("10.0.1.2/24")))
    with pytest.raises(ValueError, match="2 IPv4 addresses"):
        two.convert("0.2.0")
    one = Result("1.0.0", ips=(IPConfig("10.0.0.2/24"),), routes=(Route("fd00::/8"),))
    assert one.to_json("0.1.0") == {"cniVersion": "0.1.0", "ip4": {"ip": "10.0.0.2/24"}, "dns": {}}


def test_missing_version_is_the_callers() -> None:
    assert Result.from_json({"ips": [{"address": "10.0.0.2/24"}]}, "1.0.0").cni_version == "1.0.0"
    assert Result.from_json({"ip4": {"ip": "10.0.0.2/24"}}).cni_version == "0.1.0"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"cniVersion": "9.9.9"}, "unsupported result version"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}, "CIDR"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3"}]}, "prefix length"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/8", "interface": 0}]}, "index"),
        ({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.3/8"}]}, "match"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/8", "gateway": "x"}]}, "IP"),
        ({"cniVersion": "1.0.0", "interfaces": [{"mac": "aa"}]}, "name is required"),
        ({"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]}, r"routes\[0\]\.dst"),
        ({"cniVersion": "1.0.0", "dns": {"nameservers": "10.0.0.1"}}, "list"),
        ({"cniVersion": "1.0.0", "ips": {}}, "must be a list"),
        ({"cniVersion": 1}, "must be a string"),
    ],
)
def test_invalid_results(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Result.from_json(obj)


def test_unsupported_render_version() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Result("1.0.0").to_json("2.0.0")


# -- properties --------------------------------------------------------------------------------

v4 = st.builds(
    lambda a, b, p: f"10.{a}.{b}.7/{p}",
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(8, 30),
)
v6 = st.builds(lambda a, p: f"fd00:{a:x}::7/{p}", st.integers(0, 0xFFFF), st.integers(48, 120))
names = st.text("abcdefgh0123456789", min_size=1, max_size=8)
small = st.integers(0, 9000)


@st.composite
def results(draw: st.DrawFn) -> Result:
    interfaces = draw(
        st.lists(
            st.builds(
                Interface,
                names,
                st.just("aa:bb:cc:dd:ee:ff") | st.just(""),
                st.just("") | st.just("/var/run/netns/x"),
                small,
                st.just(""),
                st.just(""),
            ),
            max_size=3,
        )
    )
    index = st.none() | (st.integers(0, len(interfaces) - 1) if interfaces else st.none())
    ips = draw(st.lists(st.builds(IPConfig, v4 | v6, st.just(""), index), max_size=4))
    routes = draw(
        st.lists(
            st.builds(
                Route,
                st.just("0.0.0.0/0") | st.just("fd00::/8"),
                st.just(""),
                small,
                small,
                small,
                st.none() | small,
                st.none() | st.integers(0, 255),
            ),
            max_size=3,
        )
    )
    dns = draw(st.builds(DNS, st.tuples() | st.tuples(st.just("10.96.0.10")), st.just("") | names))
    return Result("1.1.0", tuple(interfaces), tuple(ips), tuple(routes), dns)


@given(results())
def test_1_1_render_parse_is_identity(r: Result) -> None:
    assert Result.from_json(r.to_json()) == r


@given(results(), st.sampled_from(["0.3.0", "0.3.1", "0.4.0", "1.0.0"]))
def test_down_then_up_keeps_what_the_lower_version_holds(r: Result, ver: str) -> None:
    down = r.convert(ver)
    assert down.cni_version == ver
    assert down.convert("1.1.0").convert(ver) == down
    assert [ip.address for ip in down.ips] == [ip.address for ip in r.ips]
    assert [rt.dst for rt in down.routes] == [rt.dst for rt in r.routes]


def test_versions() -> None:
    assert version.parse("1.0") == (1, 0, 0)
    assert version.normalize("0.4") == "0.4.0"
    assert version.at_least("1.1.0", "1.0.0") and not version.at_least("0.3.1", "0.4.0")
    assert version.sort(["1.0.0", "0.3.1", "1.0", "0.4.0"]) == ["0.3.1", "0.4.0", "1.0.0"]
    assert version.select(["1.0.0", "1.1.0", "2.0.0"]) == "1.1.0"
    assert version.select(["1.0.0", "1.1.0"], [["0.4.0", "1.0.0"], ["1.0.0", "1.1.0"]]) == "1.0.0"
    assert version.select(["1.1.0"], [["0.4.0"]]) is None
    assert not version.is_supported("x")
    for bad in ("", "1.a", "1.2.3.4", "-1.0.0"):
        with pytest.raises(ValueError):
            version.parse(bad)
    assert result.render(Result("0.4.0"), "1.0") == {"cniVersion": "1.0.0"}
