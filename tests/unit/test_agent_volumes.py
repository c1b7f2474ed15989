"""Volume contents and the atomic writer: configMap and secret payloads (all keys, listed items
with paths and modes, optional sources, missing keys), downward API files, projected volumes
with a service account token, the `..data` symlink layout with atomic swaps on update (removed
keys disappear, unchanged payloads are not rewritten, bad paths are refused), and hostPath type
checks."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from kybern.agent import atomic, env, payload, volumes

Obj = dict[str, Any]
POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"b": "2", "a": 'x"y'},
               "annotations": {"note": "n"}},
    "spec": {"nodeName": "n1", "containers": [{"name": "main", "resources": {
        "limits": {"memory": "256Mi"}, "requests": {"cpu": "250m"}}}]},
}  # fmt: skip


class Objects:
    def __init__(self, cms: dict[str, Obj], secrets: dict[str, Obj]) -> None:
        self.cms, self.secrets = cms, secrets

    def configmap(self, namespace: str, name: str) -> Obj | None:
        return self.cms.get(name)

    def secret(self, namespace: str, name: str) -> Obj | None:
        return self.secrets.get(name)


OBJECTS = Objects(
    {
        "cfg": {
            "data": {"a": "1", "b": "2"},
            "binaryData": {"bin": base64.b64encode(b"\x00").decode()},
        }
    },
    {"pw": {"data": {"user": base64.b64encode(b"admin").decode()}}},
)


def files(p: payload.Payload) -> dict[str, tuple[bytes, int]]:
    return {k: (v.data, v.mode) for k, v in p.items()}


def test_configmap_and_secret_payloads() -> None:
    ctx = env.PodContext()
    whole = payload.volume_payload(
        {"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600}}, POD, ctx, OBJECTS, str
    )
    assert whole is not None
    assert files(whole) == {"a": (b"1", 0o600), "b": (b"2", 0o600), "bin": (b"\x00", 0o600)}
    items = {"name": "cfg", "items": [{"key": "a", "path": "dir/first", "mode": 0o400}]}
    assert files(payload.volume_payload({"configMap": items}, POD, ctx, OBJECTS, str) or {}) == {
        "dir/first": (b"1", 0o400)
    }
    secret = payload.volume_payload({"secret": {"secretName": "pw"}}, POD, ctx, OBJECTS, str)
    assert files(secret or {}) == {"user": (b"admin", 0o644)}
    optional = {"configMap": {"name": "none", "optional": True}}
    assert payload.volume_payload(optional, POD, ctx, OBJECTS, str) == {}
    with pytest.raises(payload.VolumeError, match='configmap "none" not found'):
        payload.volume_payload({"configMap": {"name": "none"}}, POD, ctx, OBJECTS, str)
    missing = {"configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}
    with pytest.raises(payload.VolumeError, match="has no key 'zz'"):
        payload.volume_payload(missing, POD, ctx, OBJECTS, str)
    assert payload.volume_payload({"emptyDir": {}}, POD, ctx, OBJECTS, str) is None


def test_downward_api_and_projected_payloads() -> None:
    ctx = env.PodContext(["10.0.0.1"], ["192.0.2.1"], {"cpu": "2"})
    down = {
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
                {"path": "mem", "resourceFieldRef": {"containerName": "main",
                                                     "resource": "limits.memory",
                                                     "divisor": "1Mi"}},
            ]
        }
    }  # fmt: skip
    got = files(payload.volume_payload(down, POD, ctx, OBJECTS, str) or {})
    assert got["labels"] == (b'a="x\\"y"\nb="2"', 0o644)
    assert got["name"] == (b"p", 0o400) and got["mem"] == (b"256", 0o644)
    seen: list[Obj] = []

    def token(sat: Obj) -> str:
        seen.append(sat)
        return "tok"

    proj = {
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "audience": "api"}},
                {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}},
                {"secret": {"name": "pw"}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                    "fieldPath": "metadata.namespace"}}]}},
            ]
        }
    }  # fmt: skip
    got = files(payload.volume_payload(proj, POD, ctx, OBJECTS, token) or {})
    assert got == {
        "token": (b"tok", 0o600),
        "a": (b"1", 0o644),
        "user": (b"admin", 0o644),
        "ns": (b"ns", 0o644),
    }
    assert seen == [{"path": "token", "audience": "api"}]


def test_referenced_objects() -> None:
    pod = {
        "spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [
                {"name": "a", "configMap": {"name": "cm1"}},
                {"name": "b", "secret": {"secretName": "s1"}},
                {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm2"}}]}},
            ],
            "containers": [
                {"name": "x", "envFrom": [{"secretRef": {"name": "s2"}}],
                 "env": [{"name": "E",
                          "valueFrom": {"configMapKeyRef": {"name": "cm3", "key": "k"}}}]}
            ],
        }
    }  # fmt: skip
    assert payload.referenced_objects(pod) == {
        ("configmap", "cm1"),
        ("configmap", "cm2"),
        ("configmap", "cm3"),
        ("secret", "s1"),
        ("secret", "s2"),
        ("secret", "pull"),
    }


def test_atomic_writer_swaps_the_data_link(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    first = {"a": atomic.File(b"1"), "dir/b": atomic.File(b"2", 0o600)}
    assert atomic.write(target, first)
    data = os.readlink(target / atomic.DATA)
    assert data.startswith("..") and (target / data).is_dir()
    assert os.readlink(target / "a") == "..data/a" and os.readlink(target / "dir") == "..data/dir"
    assert (target / "dir" / "b").read_bytes() == b"2"
    assert (target / "dir" / "b").stat().st_mode & 0o777 == 0o600
    assert not atomic.write(target, first)  # unchanged: nothing written
    assert os.readlink(target / atomic.DATA) == data
    assert atomic.write(target, {"a": atomic.File(b"one"), "c": atomic.File(b"3")})
    new = os.readlink(target / atomic.DATA)
    assert new != data and not (target / data).exists()  # the old generation is gone
    assert not (target / "dir").exists() and (target / "c").read_bytes() == b"3"
    assert atomic.read(target) == {"a": b"one", "c": b"3"}
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == ["a", "c"]
    assert atomic.write(target, {})
    assert atomic.read(target) == {}
    assert [p.name for p in target.iterdir() if not p.name.startswith("..")] == []


@pytest.mark.parametrize("path", ["/abs", "../up", "a/../b", "..hidden", ""])
def test_atomic_writer_refuses_bad_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(atomic.PayloadError):
        atomic.write(tmp_path / "v", {path: atomic.File(b"x")})


def test_host_path_types(tmp_path: Path) -> None:
    d = tmp_path / "new" / "dir"
    volumes.check_host_path(str(d), "DirectoryOrCreate")
    assert d.is_dir()
    f = tmp_path / "file"
    volumes.check_host_path(str(f), "FileOrCreate")
    assert f.is_file() and f.stat().st_mode & 0o777 == 0o644
    volumes.check_host_path(str(f), "File")
    volumes.check_host_path(str(tmp_path / "anything"), "")
    with pytest.raises(volumes.VolumeError, match="is not a directory"):
        volumes.check_host_path(str(f), "Directory")
    with pytest.raises(volumes.VolumeError, match="does not exist"):
        volumes.check_host_path(str(tmp_path / "absent"), "File")
    with pytest.raises(volumes.VolumeError, match="is not a socket"):
        volumes.check_host_path(str(f), "Socket")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        volumes.check_host_path(str(sock_path), "Socket")
    volumes.check_host_path("/dev/null", "CharDevice")
