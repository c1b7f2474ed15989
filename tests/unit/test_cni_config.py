"""Network configuration: conflist parsing (`cniVersion`, 1.1's `cniVersions` with the highest
supported picked, `disableCheck`, `disableGC`, capabilities), single `.conf` files turned into
one-plugin lists, configuration errors, and conf dirs read in lexical order (`.conf`,
`.conflist`, `.json`), with invalid files skipped or reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kybern.cni import ConfigError, NetworkNotFoundError, config

LIST: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "podnet",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
    ],
}


def test_parse_list() -> None:
    net = config.parse(json.dumps(LIST))
    assert (net.name, net.cni_version, net.cni_versions) == ("podnet", "1.0.0", ("1.0.0",))
    assert [p.type for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[0].raw == LIST["plugins"][0]
    assert net.plugins[1].capabilities == frozenset({"portMappings"})
    assert not net.disable_check and not net.disable_gc
    assert json.loads(net.bytes) == LIST


def test_cni_versions_picks_the_highest_supported() -> None:
    net = config.parse({**LIST, "cniVersions": ["0.4.0", "1.1.0", "7.0.0"]})
    assert net.cni_version == "1.1.0"
    assert net.cni_versions == ("0.4.0", "1.0.0", "1.1.0", "7.0.0")
    only_versions = {k: v for k, v in LIST.items() if k != "cniVersion"}
    assert config.parse({**only_versions, "cniVersions": ["0.3.1", "1.0"]}).cni_version == "1.0.0"


@pytest.mark.parametrize("value", [True, "true", "TRUE"])
def test_disable_flags(value: object) -> None:
    net = config.parse({**LIST, "disableCheck": value, "disableGC": value})
    assert net.disable_check and net.disable_gc
    assert not config.parse({**LIST, "disableCheck": "false"}).disable_check


def test_single_plugin_conf_becomes_a_list() -> None:
    single = {"cniVersion": "0.4.0", "name": "one", "type": "ptp", "ipMasq": True}
    net = config.parse(json.dumps(single))
    assert (net.name, net.cni_version) == ("one", "0.4.0")
    assert len(net.plugins) == 1 and net.plugins[0].raw == single


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "JSON object"),
        ({**LIST, "name": ""}, "no network name"),
        ({**LIST, "name": "bad/name"}, "invalid network name"),
        ({k: v for k, v in LIST.items() if k != "cniVersion"}, "no cniVersion"),
        ({**LIST, "cniVersion": "9.0.0"}, "none of the declared CNI versions"),
        ({**LIST, "cniVersion": "one"}, "invalid CNI version"),
        ({**LIST, "cniVersions": "1.0.0"}, "list of strings"),
        ({**LIST, "plugins": []}, "non-empty list"),
        ({**LIST, "plugins": [{"bridge": "x"}]}, "missing 'type'"),
        ({**LIST, "plugins": [{"type": "../../bin/sh"}]}, "invalid plugin type"),
        ({**LIST, "plugins": [{"type": "x", "capabilities": {"a": 1}}]}, "booleans"),
        ({**LIST, "disableCheck": "maybe"}, "true or false"),
        ({"cniVersion": "1.0.0", "type": "bridge"}, "no network name"),
    ],
)
def test_invalid(doc: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.parse(doc if isinstance(doc, bytes) else json.dumps(doc))


def write(d: Path, name: str, doc: Any) -> Path:
    path = d / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_conf_dir_lexical_order_and_lookup(tmp_path: Path) -> None:
    write(tmp_path, "20-pods.conflist", LIST)
    write(tmp_path, "10-single.conf", {"cniVersion": "1.0.0", "name": "single", "type": "ptp"})
    write(tmp_path, "30-other.json", {**LIST, "name": "other"})
    write(tmp_path, "40-dup.conflist", {**LIST, "cniVersion": "0.4.0"})
    write(tmp_path, "README.md", "not a config")
    (tmp_path / "50-dir.conf").mkdir()
    write(tmp_path, "05-broken.conflist", "{oops")
    assert [p.name for p in config.conf_files(tmp_path)] == [
        "05-broken.conflist",
        "10-single.conf",
        "20-pods.conflist",
        "30-other.json",
        "40-dup.conflist",
    ]
    assert [n.name for n in config.load_dir(tmp_path)] == ["single", "podnet", "other", "podnet"]
    with pytest.raises(ConfigError, match="05-broken"):
        config.load_dir(tmp_path, strict=True)
    found = config.find(tmp_path, "podnet")
    assert found.cni_version == "1.0.0" and found.source == tmp_path / "20-pods.conflist"
    assert config.default(tmp_path).name == "single"
    with pytest.raises(NetworkNotFoundError, match=r"'nope'.*05-broken"):
        config.find(tmp_path, "nope")
    assert config.find([tmp_path / "missing", tmp_path], "other").name == "other"


def test_missing_dir_has_no_configs(tmp_path: Path) -> None:
    assert config.conf_files(tmp_path / "nope") == []
    with pytest.raises(NetworkNotFoundError):
        config.default(tmp_path / "nope")
    with pytest.raises(ConfigError, match="cannot read"):
        config.load_file(tmp_path / "nope.conf")
