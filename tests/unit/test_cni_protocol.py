"""The sans-I/O core: the `CNI_*` environment per command, the stdin configuration (`name`,
`cniVersion`, `prevResult`, `runtimeConfig` filtered by capabilities, GC's attachments),
`CNI_ARGS`, name validation, and turning exit status plus output into results, versions or
`CNIError`s with the plugin's code, message and details."""

from __future__ import annotations

import json

import pytest

from kybern.cni import CNIError, Code, MultiError, config, protocol
from kybern.cni.protocol import GCAttachment, RuntimeConf
from kybern.cni.result import IPConfig, Result

RT = RuntimeConf(
    container_id="abc123",
    netns="/var/run/netns/p1",
    ifname="eth0",
    args=(("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web")),
    capability_args={"portMappings": [{"hostPort": 80}], "bandwidth": {"ingressRate": 1}},
)
BASE = {"PATH": "/usr/sbin:/usr/bin", "HOME": "/root", "CNI_COMMAND": "stale", "CNI_FOO": "x"}


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_env_for_attachment_commands(command: protocol.Command) -> None:
    env = protocol.build_env(command, RT, ["/opt/cni/bin", "/usr/lib/cni"], BASE)
    assert env == {
        "PATH": "/usr/sbin:/usr/bin",
        "HOME": "/root",
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/var/run/netns/p1",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    }


def test_env_for_gc_status_version() -> None:
    for command in ("GC", "STATUS"):
        env = protocol.build_env(command, None, ["/a", "/b"], BASE)
        assert {k: v for k, v in env.items() if k.startswith("CNI_")} == {
            "CNI_COMMAND": command,
            "CNI_PATH": "/a:/b",
        }
    assert protocol.build_env("VERSION", None, ["/a"], {}) == {"CNI_COMMAND": "VERSION"}
    with pytest.raises(ValueError):
        protocol.build_env("ADD", None, [], {})


PLUGIN = config.parse_plugin(
    {
        "type": "portmap",
        "name": "own",
        "cniVersion": "0.3.1",
        "capabilities": {"portMappings": True, "bandwidth": False, "ips": True},
        "runtimeConfig": {"from": "file"},
        "snat": True,
    }
)


def test_stdin_injects_name_version_prev_result_and_filtered_runtime_config() -> None:
    prev = Result("1.0.0", ips=(IPConfig("10.0.0.5/24", "10.0.0.1"),))
    conf = protocol.plugin_stdin(
        PLUGIN,
        name="podnet",
        cni_version="0.4.0",
        prev_result=prev,
        capability_args=RT.capability_args,
    )
    assert conf == {
        "type": "portmap",
        "name": "podnet",
        "cniVersion": "0.4.0",
        "capabilities": {"portMappings": True, "bandwidth": False, "ips": True},
        "runtimeConfig": {"portMappings": [{"hostPort": 80}]},
        "snat": True,
        "prevResult": {
            "cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "10.0.0.5/24", "gateway": "10.0.0.1"}],
            "dns": {},
        },
    }
    assert json.loads(protocol.encode(conf)) == conf


def test_stdin_without_prev_result_or_matching_capabilities() -> None:
    plain = config.parse_plugin({"type": "bridge", "bridge": "cni0"})
    conf = protocol.plugin_stdin(plain, name="n", cni_version="1.0.0", capability_args={"x": 1})
    assert conf == {"type": "bridge", "bridge": "cni0", "name": "n", "cniVersion": "1.0.0"}
    kept = protocol.plugin_stdin(PLUGIN, name="n", cni_version="1.0.0", capability_args={})
    assert kept["runtimeConfig"] == {"from": "file"}, "no capability args: the file's own stays"


def test_gc_extra_and_version_stdin() -> None:
    extra = protocol.gc_extra([GCAttachment("c1", "eth0"), GCAttachment("c2", "net1")])
    valid = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]
    assert extra == {"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
    assert json.loads(protocol.version_stdin("1.1.0")) == {"cniVersion": "1.1.0"}


def test_cni_args() -> None:
    assert protocol.format_cni_args([("A", "1"), ("B", "2")]) == "A=1;B=2"
    assert protocol.parse_cni_args("A=1;B=2") == (("A", "1"), ("B", "2"))
    assert protocol.parse_cni_args("") == ()
    for bad in ("A", "A=", "=1", "A=1=2", "A=1;;B=2"):
        with pytest.raises(ValueError, match="invalid CNI_ARGS"):
            protocol.parse_cni_args(bad)


@pytest.mark.parametrize(
    "rt",
    [
        RuntimeConf("", "/n"),
        RuntimeConf("-leading-dash", "/n"),
        RuntimeConf("has space", "/n"),
        RuntimeConf("a/b", "/n"),
        RuntimeConf("ok", "/n", ifname=""),
        RuntimeConf("ok", "/n", ifname="sixteen-chars-xx"),
        RuntimeConf("ok", "/n", ifname=".."),
        RuntimeConf("ok", "/n", ifname="eth:0"),
        RuntimeConf("ok", "/n", ifname="et h0"),
        RuntimeConf("ok", "/n", args=(("A", "x;B=y"),)),
        RuntimeConf("ok", "/n", args=(("", "x"),)),
    ],
)
def test_invalid_runtime_conf(rt: RuntimeConf) -> None:
    with pytest.raises(CNIError) as info:
        protocol.validate_runtime_conf(rt)
    assert info.value.code == Code.INVALID_ENVIRONMENT


def test_valid_runtime_conf() -> None:
    protocol.validate_runtime_conf(RT)
    protocol.validate_runtime_conf(RuntimeConf("a.b_c-1", "", ifname="fifteen-chars-x"))


def test_spec_error_from_stdout() -> None:
    out = b'{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}'
    with pytest.raises(CNIError) as info:
        protocol.check_exit(1, out, b"log line\n", plugin="bridge", command="ADD", network="pods")
    e = info.value
    assert (e.code, e.msg, e.details, e.stderr) == (7, "invalid config", "no bridge", "log line")
    assert str(e) == (
        "CNI plugin 'bridge' ADD network 'pods' failed: invalid config (no bridge) "
        "[code 7: invalid network config]"
    )
    assert e.to_json("1.0.0") == {
        "cniVersion": "1.0.0",
        "code": 7,
        "msg": "invalid config",
        "details": "no bridge",
    }


def test_failure_without_spec_error_uses_stderr_and_status() -> None:
    with pytest.raises(CNIError) as info:
        protocol.check_exit(2, b"", b"panic: oops\n", plugin="x", command="DEL")
    assert info.value.code == Code.INTERNAL
    assert info.value.msg == "panic: oops (exit status 2)"
    with pytest.raises(CNIError, match="killed by signal 9"):
        protocol.check_exit(-9, b"", b"", plugin="x")
    with pytest.raises(CNIError, match="plain text"):
        protocol.check_exit(1, b"plain text", b"", plugin="x")
    protocol.check_exit(0, b"whatever", b"")


def test_parse_add() -> None:
    r = protocol.parse_add(0, b'{"ips":[{"address":"10.0.0.2/24"}]}', b"", cni_version="1.0.0")
    assert r.cni_version == "1.0.0" and r.ips[0].address == "10.0.0.2/24"
    for out, code, text in (
        (b"", Code.DECODING_FAILURE, "no result"),
        (b"{x", Code.DECODING_FAILURE, "not JSON"),
        (b"[1]", Code.DECODING_FAILURE, "not a JSON object"),
        (b'{"cniVersion":"1.0.0","ips":[{"address":"x"}]}', Code.DECODING_FAILURE, "invalid"),
    ):
        with pytest.raises(CNIError, match=text) as info:
            protocol.parse_add(0, out, b"", cni_version="1.0.0", plugin="p")
        assert info.value.code == code and info.value.plugin == "p"


def test_parse_version() -> None:
    out = b'{"cniVersion":"1.0.0","supportedVersions":["0.3.1","1.0.0","0.4.0","0.3.0"]}'
    assert protocol.parse_version(0, out, b"") == ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
    assert protocol.parse_version(0, b'{"cniVersion":"0.2.0"}', b"") == ("0.2.0",)
    old = b'{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'
    assert protocol.parse_version(1, old, b"") == ("0.1.0",)
    for bad in (b"nope", b'{"supportedVersions":"1.0.0"}', b'{"supportedVersions":["x"]}', b"1"):
        with pytest.raises(CNIError) as info:
            protocol.parse_version(0, bad, b"", plugin="p")
        assert info.value.code == Code.DECODING_FAILURE and info.value.command == "VERSION"


def test_multi_error_lists_every_failure() -> None:
    a = CNIError(5, "first", plugin="a", command="DEL")
    b = CNIError(999, "second", plugin="b", command="DEL")
    m = MultiError([a, b])
    assert m.code == 5 and m.plugin == "a" and m.errors == [a, b]
    assert "first" in str(m) and "also: CNI plugin 'b' DEL failed: second" in str(m)
    assert "plugin-specific" in str(CNIError(150, "x"))
