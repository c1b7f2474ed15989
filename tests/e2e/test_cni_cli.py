"""`kybern cni add|del|check|status|gc` as cnitool is used: NETCONFPATH and CNI_PATH (or
`--conf-dir`/`--bin-dir`), CNI_ARGS, CNI_IFNAME and CAP_ARGS from the environment, cnitool's
container id, the result printed as JSON, and exit status 1 with a clear message on errors.
Checked through the test plugin (what the plugins receive) and once on the real reference
plugins in a namespace of its own."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_helpers import REF_BIN, HostNet, host_net, install_test_plugin, read_calls

from kybern.cli import cni as cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    p = argparse.ArgumentParser(prog="kybern")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    code = cli.run(p.parse_args(["cni", *argv]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    record = tmp_path / "calls.jsonl"
    for name in ("tp-a", "tp-b"):
        install_test_plugin(bin_dir, name, record=record, state_dir=tmp_path / "state")
    conflist = {
        "cniVersion": "1.1.0",
        "name": "clinet",
        "plugins": [
            {"type": "tp-a", "addIP": "10.98.0.7/24"},
            {"type": "tp-b", "capabilities": {"portMappings": True}},
        ],
    }
    (conf_dir / "10-clinet.conflist").write_text(json.dumps(conflist))
    monkeypatch.setenv("NETCONFPATH", str(conf_dir))
    monkeypatch.setenv("CNI_PATH", str(bin_dir))
    monkeypatch.setenv("CNI_ARGS", "K8S_POD_NAME=web;IgnoreUnknown=1")
    monkeypatch.setenv("CNI_IFNAME", "net7")
    monkeypatch.setenv("CAP_ARGS", '{"portMappings": [{"hostPort": 8080, "containerPort": 80}]}')
    yield {"conf": conf_dir, "bin": bin_dir, "record": record, "tmp": tmp_path}


def calls(record: Path, command: str) -> list[dict[str, Any]]:
    return [c for c in read_calls(record) if c["command"] == command]


def test_add_check_del_status_gc(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = str(setup["tmp"] / "cache")
    netns = "/var/run/netns/kybern-cli-test"
    code, out, err = run(capsys, "add", "clinet", netns, "--cache-dir", cache)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"cniVersion": "1.1.0", "ips": [{"address": "10.98.0.7/24"}]}
    a, b = calls(setup["record"], "ADD")
    env = {k: v for k, v in b["env"].items() if k.startswith("CNI_")}
    assert env == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": cli.container_id(netns),
        "CNI_NETNS": netns,
        "CNI_IFNAME": "net7",
        "CNI_ARGS": "K8S_POD_NAME=web;IgnoreUnknown=1",
        "CNI_PATH": str(setup["bin"]),
    }
    assert b["stdin"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80}]
    }
    assert "runtimeConfig" not in a["stdin"]

    assert run(capsys, "check", "clinet", netns, "--cache-dir", cache) == (0, "", "")
    assert run(capsys, "status", "clinet", "--cache-dir", cache) == (0, "", "")
    assert len(calls(setup["record"], "STATUS")) == 2
    other = "/var/run/netns/kybern-cli-other"
    assert run(capsys, "add", "clinet", other, "--cache-dir", cache)[0] == 0
    assert run(capsys, "gc", "clinet", netns, "--cache-dir", cache) == (0, "", "")
    gc = calls(setup["record"], "GC")[0]["stdin"]["cni.dev/valid-attachments"]
    assert gc == [{"containerID": cli.container_id(netns), "ifname": "net7"}]
    dels = calls(setup["record"], "DEL")
    assert {d["env"]["CNI_CONTAINERID"] for d in dels} == {cli.container_id(other)}
    assert run(capsys, "del", "clinet", netns, "--cache-dir", cache) == (0, "", "")
    assert run(capsys, "del", "clinet", netns, "--cache-dir", cache) == (0, "", "")
    assert list((setup["tmp"] / "cache" / "results").iterdir()) == []


def test_flags_override_the_environment(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETCONFPATH", "/nonexistent")
    monkeypatch.setenv("CNI_PATH", "/nonexistent")
    monkeypatch.delenv("CNI_IFNAME")
    code, out, _ = run(
        capsys,
        "add",
        "clinet",
        "/var/run/netns/f",
        "--conf-dir",
        str(setup["conf"]),
        "--bin-dir",
        str(setup["bin"]),
        "--cache-dir",
        str(setup["tmp"] / "cache"),
    )
    assert code == 0 and json.loads(out)["ips"]
    assert calls(setup["record"], "ADD")[0]["env"]["CNI_IFNAME"] == "eth0"


def test_errors_exit_1_with_a_message(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ["--cache-dir", str(setup["tmp"] / "cache")]
    code, out, err = run(capsys, "add", "nonet", "/var/run/netns/e", *cache)
    assert (code, out) == (1, "")
    assert err.startswith("kybern cni add: no network configuration named 'nonet'")
    code, _, err = run(capsys, "check", "clinet", "/var/run/netns/e", *cache)
    assert code == 1 and "no cached ADD result" in err
    monkeypatch.setenv("CAP_ARGS", "{broken")
    code, _, err = run(capsys, "add", "clinet", "/var/run/netns/e", *cache)
    assert code == 1 and "CAP_ARGS is not JSON" in err
    monkeypatch.setenv("CAP_ARGS", "{}")
    monkeypatch.setenv("CNI_ARGS", "novalue")
    code, _, err = run(capsys, "add", "clinet", "/var/run/netns/e", *cache)
    assert code == 1 and "invalid CNI_ARGS pair 'novalue'" in err
    monkeypatch.setenv("CNI_ARGS", "")
    failing = {
        "cniVersion": "1.0.0",
        "name": "bad",
        "type": "tp-a",
        "fail": {"code": 140, "msg": "the plugin says no"},
    }
    (setup["conf"] / "20-bad.conf").write_text(json.dumps(failing))
    code, _, err = run(capsys, "add", "bad", "/var/run/netns/e", *cache)
    assert code == 1
    assert "plugin 'tp-a' ADD network 'bad' failed: the plugin says no [code 140" in err


@pytest.fixture(scope="module")
def hostnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostNet]:
    with host_net(tmp_path_factory.mktemp("cni-cli")) as net:
        yield net


def test_real_plugins_through_the_cli(
    hostnet: HostNet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-pods.conflist").write_text(json.dumps(hostnet.default_conflist()))
    netns = hostnet.add_netns("cli")
    hostnet.container_ids.append(cli.container_id(netns))
    for var in ("CNI_ARGS", "CAP_ARGS", "CNI_IFNAME"):
        monkeypatch.delenv(var, raising=False)
    argv = ["--conf-dir", str(conf_dir), "--bin-dir", REF_BIN, "--cache-dir", str(tmp_path / "c")]
    code, out, err = run(capsys, "add", hostnet.network, netns, *argv)
    assert code == 0, err
    ip = json.loads(out)["ips"][0]["address"].split("/")[0]
    assert ip in hostnet.allocated()
    assert run(capsys, "check", hostnet.network, netns, *argv) == (0, "", "")
    assert run(capsys, "del", hostnet.network, netns, *argv) == (0, "", "")
    assert ip not in hostnet.allocated()
    hostnet.del_netns(netns)
