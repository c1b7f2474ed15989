"""The result cache: libcni's path layout and `cniCacheV1` format (config as base64, CNI args
as pairs), legacy entries holding a bare result, atomic writes, listing by network or
container, and entries whose file names collide."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from kybern.cni.cache import CachedAttachment, ResultCache, decode, encode

ENTRY = CachedAttachment(
    network="pods",
    container_id="c1",
    ifname="eth0",
    netns="/var/run/netns/c1",
    cni_args=(("K8S_POD_NAME", "web"),),
    capability_args={"portMappings": [{"hostPort": 80, "containerPort": 8080}]},
    config=b'{"name":"pods"}',
    result={"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]},
)


def test_path_layout(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    assert cache.path("pods", "c1", "eth0") == tmp_path / "results" / "pods-c1-eth0"
    for bad in (
        ("", "c", "e"),
        ("n", "", "e"),
        ("n", "c", ""),
        ("n", "../x", "e"),
        ("..", "c", "e"),
    ):
        with pytest.raises(ValueError):
            cache.path(*bad)


def test_format_is_libcnis() -> None:
    obj = json.loads(encode(ENTRY))
    assert obj == {
        "kind": "cniCacheV1",
        "containerId": "c1",
        "config": base64.b64encode(b'{"name":"pods"}').decode(),
        "ifName": "eth0",
        "networkName": "pods",
        "netns": "/var/run/netns/c1",
        "cniArgs": [["K8S_POD_NAME", "web"]],
        "capabilityArgs": {"portMappings": [{"hostPort": 80, "containerPort": 8080}]},
        "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]},
    }
    assert decode(encode(ENTRY)) == ENTRY
    failed = CachedAttachment("pods", "c2", "eth0")
    assert "result" not in json.loads(encode(failed)) and decode(encode(failed)) == failed


def test_legacy_and_garbage() -> None:
    legacy = decode(b'{"cniVersion":"0.3.1","ips":[]}', network="n", container_id="c", ifname="e")
    assert (legacy.network, legacy.container_id, legacy.ifname) == ("n", "c", "e")
    assert legacy.result == {"cniVersion": "0.3.1", "ips": []}
    for bad in (b"{", b"[]", b'{"kind":"other"}', b'{"kind":"cniCacheV1","cniArgs":[["a"]]}'):
        with pytest.raises(ValueError):
            decode(bad)


def test_store_load_list_remove(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    assert cache.load("pods", "c1", "eth0") is None and cache.list() == []
    cache.store(ENTRY)
    cache.store(CachedAttachment("pods", "c2", "eth0", result={"cniVersion": "1.0.0"}))
    cache.store(CachedAttachment("other", "c1", "net1"))
    path = cache.path("pods", "c1", "eth0")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in cache.results_dir.iterdir() if p.name.startswith(".")] == []
    assert cache.load("pods", "c1", "eth0") == ENTRY
    assert [(e.network, e.container_id) for e in cache.list()] == [
        ("other", "c1"),
        ("pods", "c1"),
        ("pods", "c2"),
    ]
    assert [e.container_id for e in cache.list(network="pods")] == ["c1", "c2"]
    assert [e.network for e in cache.list(container_id="c1")] == ["other", "pods"]
    (cache.results_dir / "junk").write_text("nope")
    assert len(cache.list()) == 3
    cache.remove("pods", "c1", "eth0")
    cache.remove("pods", "c1", "eth0")  # idempotent
    assert cache.load("pods", "c1", "eth0") is None


def test_colliding_names_are_told_apart_by_content(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    cache.store(CachedAttachment("a-b", "c", "eth0"))
    assert cache.path("a", "b-c", "eth0") == cache.path("a-b", "c", "eth0")
    assert cache.load("a", "b-c", "eth0") is None
    assert cache.load("a-b", "c", "eth0") is not None
    assert cache.list(network="a") == []


def test_without_fsync(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path, fsync=False)
    cache.store(ENTRY)
    assert cache.load("pods", "c1", "eth0") == ENTRY
