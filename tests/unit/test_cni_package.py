"""The shape of `kybern.cni` and `kybern cni`: the exported surface, the protocol package's
independence from server code, module docstrings and sizes, and the CLI's parser, cnitool's
container id and the environment it reads (CNI_PATH, CNI_ARGS, CAP_ARGS, CNI_IFNAME)."""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import pkgutil
from pathlib import Path

import pytest

import kybern.cni
from kybern.cli import cni as cli

PACKAGE = Path(kybern.cni.__file__).parent


def test_exported_members() -> None:
    exported = set(kybern.cni.__all__)
    public = {n for n in vars(kybern.cni) if not n.startswith("_")}
    modules = {m.name for m in pkgutil.iter_modules([str(PACKAGE)])}
    assert exported == public - (modules - set(kybern.cni.__all__))
    assert all(getattr(kybern.cni, n) is not None for n in exported)


def test_protocol_package_imports_no_server_code() -> None:
    forbidden = ("kybern.apiserver", "kybern.client", "kybern.storage", "kybern.cli", "kybern.api")
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_modules_have_docstrings_and_stay_small() -> None:
    for path in [*PACKAGE.glob("*.py"), Path(cli.__file__)]:
        text = path.read_text()
        assert ast.get_docstring(ast.parse(text)), f"{path.name} has no docstring"
        assert len(text.splitlines()) < 600, f"{path.name} is too long"
    for m in pkgutil.iter_modules([str(PACKAGE)]):
        importlib.import_module(f"kybern.cni.{m.name}")


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kybern")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(["cni", *argv])


def test_parser() -> None:
    a = parse("add", "pods", "/var/run/netns/x", "--conf-dir", "/c", "--bin-dir", "/a:/b")
    assert (a.command, a.cni_op, a.network, a.netns, a.conf_dir) == (
        "cni",
        "add",
        "pods",
        "/var/run/netns/x",
        "/c",
    )
    assert cli._bin_dirs(a) == ["/a", "/b"]
    g = parse("gc", "pods", "--valid", "c1", "--valid", "c2/net1")
    assert g.netns == "" and g.valid == ["c1", "c2/net1"]
    assert parse("status", "pods").netns == ""
    with pytest.raises(SystemExit):
        parse("add", "pods")  # add needs the namespace
    with pytest.raises(SystemExit):
        parse("frobnicate", "pods", "/x")


def test_container_id_is_cnitools() -> None:
    digest = hashlib.sha512(b"/var/run/netns/x").hexdigest()
    assert cli.container_id("/var/run/netns/x") == "cnitool-" + digest[:20]
    assert cli.container_id("/var/run/netns/../netns/x") == cli.container_id("/var/run/netns/x")


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNI_PATH", "/opt/cni/bin:/usr/lib/cni")
    monkeypatch.setenv("CNI_ARGS", "K8S_POD_NAME=web;IgnoreUnknown=1")
    monkeypatch.setenv("CAP_ARGS", '{"portMappings": [{"hostPort": 8080}]}')
    a = parse("add", "pods", "/var/run/netns/x")
    assert cli._bin_dirs(a) == ["/opt/cni/bin", "/usr/lib/cni"]
    rt = cli._runtime_conf(a, "net1")
    assert rt.container_id == cli.container_id("/var/run/netns/x") and rt.ifname == "net1"
    assert rt.args == (("K8S_POD_NAME", "web"), ("IgnoreUnknown", "1"))
    assert rt.capability_args == {"portMappings": [{"hostPort": 8080}]}
    keep = cli._valid(parse("gc", "pods", "/var/run/netns/x", "--valid", "c9/net2"), rt)
    assert [(k.container_id, k.ifname) for k in keep] == [
        (rt.container_id, "net1"),
        ("c9", "net2"),
    ]
    monkeypatch.setenv("CAP_ARGS", "[1]")
    with pytest.raises(ValueError, match="JSON object"):
        cli._runtime_conf(a, "eth0")
    monkeypatch.setenv("CAP_ARGS", "{")
    with pytest.raises(ValueError, match="not JSON"):
        cli._runtime_conf(a, "eth0")
    monkeypatch.delenv("CNI_PATH")
    assert cli._bin_dirs(a) == ["/opt/cni/bin", "/usr/lib/cni"]
