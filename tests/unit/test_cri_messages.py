"""CRI message construction and the CRI log format: sandbox and container configs carry the pod's
concepts where a runtime looks for them (namespaces as a kubelet sets them, no hostname for a
host-network pod, env order kept), filters, state names, and log records parsed, written and
re-joined from partial lines."""

from __future__ import annotations

import datetime

import pytest

from kybern.cri import api, logs, messages


def test_sandbox_config() -> None:
    sc = messages.sandbox_config(
        "web-0", "default", "uid-1", attempt=2, hostname="web-0", log_directory="/var/log/pods/x",
        labels={"app": "web"}, annotations={"a": "b"}, cgroup_parent="/kubepods/pod1",
        dns=api.DNSConfig(servers=["10.0.0.10"], searches=["default.svc.cluster.local"]),
        port_mappings=[api.PortMapping(protocol=api.TCP, container_port=80, host_port=8080)],
    )  # fmt: skip
    assert (sc.metadata.name, sc.metadata.namespace, sc.metadata.uid) == (
        "web-0",
        "default",
        "uid-1",
    )
    assert sc.metadata.attempt == 2 and sc.hostname == "web-0"
    ns = sc.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (api.POD, api.CONTAINER, api.POD)
    assert sc.linux.cgroup_parent == "/kubepods/pod1"
    assert dict(sc.labels) == {"app": "web"} and dict(sc.annotations) == {"a": "b"}
    assert sc.port_mappings[0].host_port == 8080
    assert list(sc.dns_config.servers) == ["10.0.0.10"]
    assert api.PodSandboxConfig.FromString(sc.SerializeToString()) == sc


def test_host_network_sandbox_has_no_hostname() -> None:
    sc = messages.sandbox_config(
        "p", "ns", "u", hostname="p", host_network=True, host_pid=True, host_ipc=True
    )
    ns = sc.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (api.NODE, api.NODE, api.NODE)
    assert sc.hostname == ""


def test_container_config() -> None:
    cc = messages.container_config(
        "main", "kybern.local/busybox:1", command=["sh", "-c"], args=["echo $B"],
        env={"B": "2", "A": "1"}, working_dir="/tmp", log_path="main/0.log", attempt=1, tty=True,
    )  # fmt: skip
    assert cc.metadata.name == "main" and cc.metadata.attempt == 1
    assert cc.image.image == "kybern.local/busybox:1"
    assert cc.image.user_specified_image == "kybern.local/busybox:1"
    assert list(cc.command) == ["sh", "-c"] and list(cc.args) == ["echo $B"]
    assert [(kv.key, kv.value) for kv in cc.envs] == [("B", "2"), ("A", "1")]
    assert (cc.working_dir, cc.log_path, cc.tty, cc.stdin) == ("/tmp", "main/0.log", True, False)
    assert not cc.HasField("linux")


def test_filters_and_state_names() -> None:
    f = messages.container_filter(pod_sandbox_id="s", state=api.CONTAINER_RUNNING)
    assert f.pod_sandbox_id == "s" and f.state.state == api.CONTAINER_RUNNING
    assert not messages.container_filter().HasField("state")
    sf = messages.sandbox_filter(state=api.SANDBOX_READY, labels={"k": "v"})
    assert sf.HasField("state") and dict(sf.label_selector) == {"k": "v"}
    assert messages.container_state_name(api.CONTAINER_EXITED) == "CONTAINER_EXITED"
    assert messages.sandbox_state_name(api.SANDBOX_NOTREADY) == "SANDBOX_NOTREADY"


def test_parse_log_line() -> None:
    rec = logs.parse_line(b"2016-10-06T00:17:09.669794202Z stdout F hello world\n")
    assert (rec.stream, rec.full, rec.content) == ("stdout", True, b"hello world")
    assert rec.timestamp == datetime.datetime(2016, 10, 6, 0, 17, 9, 669794, tzinfo=datetime.UTC)
    partial = logs.parse_line(b"2016-10-06T00:17:09.669794202+02:00 stderr P part")
    assert (partial.stream, partial.full) == ("stderr", False)
    empty = logs.parse_line(b"2016-10-06T00:17:09.669794202Z stdout F")
    assert empty.content == b""
    assert logs.parse_line(b"2016-10-06T00:17:09Z stdout F a b  c").content == b"a b  c"


@pytest.mark.parametrize(
    "line", [b"garbage", b"2016-10-06T00:17:09Z stdin F x", b"yesterday stdout F x"]
)
def test_parse_log_line_rejects(line: bytes) -> None:
    with pytest.raises(logs.LogFormatError):
        logs.parse_line(line)


def test_format_and_join() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    assert logs.format_time(when) == "2024-01-02T03:04:05.123456000Z"
    assert logs.format_time(when, nanos=7) == "2024-01-02T03:04:05.000000007Z"
    t = logs.format_time(when)
    records = [
        logs.LogRecord(t, "stdout", False, b"long "),
        logs.LogRecord(t, "stderr", True, b"err"),
        logs.LogRecord(t, "stdout", False, b"line "),
        logs.LogRecord(t, "stdout", True, b"end"),
        logs.LogRecord(t, "stdout", False, b"cut"),
    ]
    lines = [logs.format_line(r) for r in records]
    assert lines[0] == f"{t} stdout P long \n".encode()
    parsed = [logs.parse_line(line) for line in lines]
    assert parsed == records
    joined = list(logs.join(parsed))
    assert [(r.stream, r.full, r.content) for r in joined] == [
        ("stderr", True, b"err"),
        ("stdout", True, b"long line end"),
        ("stdout", False, b"cut"),
    ]
