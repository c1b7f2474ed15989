"""The WebSocket channel protocols and exec options (`kybern.agent.streaming_exec`), and the API
server's side of the pod subresources (`kybern.apiserver.proxy`): query translation into the
kubelet's URL, the container a request means, the errors kube-apiserver gives, and where a
node's agent listens."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from kybern.agent import streaming_exec as sx
from kybern.api import errors
from kybern.apiserver import proxy


def test_binary_channels_and_the_v5_close_signal() -> None:
    assert sx.decode_message(b"\x00abc", sx.V5) == sx.ChannelMessage(0, b"abc")
    assert sx.decode_message(b"\x04{}", sx.V4) == sx.ChannelMessage(4, b"{}")
    assert sx.decode_message(b"\xff\x00", sx.V5) == sx.ChannelMessage(0, b"", close=True)
    # v4 has no close signal: 255 is just a channel number nobody uses
    assert sx.decode_message(b"\xff\x00", sx.V4) == sx.ChannelMessage(255, b"\x00")
    assert sx.decode_message(b"", sx.V5) is None
    with pytest.raises(ValueError):
        sx.decode_message(b"\xff\x00\x01", sx.V5)
    assert sx.encode_message(sx.STDOUT, b"hi\n", sx.V5) == b"\x01hi\n"
    assert sx.encode_message(sx.ERROR, b"", sx.V4) == b"\x03"


def test_base64_channels() -> None:
    msg = sx.encode_message(sx.STDERR, b"\x00\xffoops", sx.V4_BASE64)
    assert msg == "2AP9vb3Bz"
    assert sx.decode_message(msg, sx.V4_BASE64) == sx.ChannelMessage(2, b"\x00\xffoops")
    assert sx.decode_message("0aGk=", sx.V4_BASE64) == sx.ChannelMessage(0, b"hi")
    with pytest.raises(ValueError):
        sx.decode_message("0***", sx.V4_BASE64)


def test_resize_messages() -> None:
    assert sx.parse_resize(b'{"Width":80,"Height":24}') == [(80, 24)]
    # Go's json.Encoder writes one object per line; several may arrive in one message
    assert sx.parse_resize(b'{"Width":80,"Height":24}\n{"Width":100,"Height":30}\n') == [
        (80, 24),
        (100, 30),
    ]
    assert sx.parse_resize(b"  ") == []
    for bad in (b"[1,2]", b'{"Width":-1,"Height":2}', b'{"Width":"80"}', b"{"):
        with pytest.raises(ValueError):
            sx.parse_resize(bad)
    assert sx.encode_resize(80, 24) == b'{"Width":80,"Height":24}\n'


def options(command: list[str], **query: str) -> sx.StreamOptions:
    return sx.StreamOptions.from_query(query, command, exec=True)


def test_stream_options() -> None:
    o = options(["sh"], stdin="1", stdout="true", stderr="True")
    assert (o.stdin, o.stdout, o.stderr, o.tty, o.command) == (True, True, True, False, ["sh"])
    o = options(["sh"], stdout="1", stderr="1", tty="1")
    assert (o.stdout, o.stderr, o.tty) == (True, False, True)  # a terminal has one output
    with pytest.raises(sx.StreamRequestError, match="at least 1 of stdin, stdout, stderr"):
        options(["sh"])
    with pytest.raises(sx.StreamRequestError, match="at least one command"):
        sx.StreamOptions.from_query({"stdout": "1"}, [], exec=True)
    assert sx.StreamOptions.from_query({"stdout": "1"}, [], exec=False).stdout  # attach
    with pytest.raises(sx.StreamRequestError, match="must be a boolean"):
        options(["sh"], stdout="yes")


# ---- the API server -----------------------------------------------------------------------


def test_log_params() -> None:
    q = MultiDict(
        follow="true", previous="0", timestamps="True", tailLines="5", limitBytes="100",
        sinceTime="2024-05-01T12:00:00+02:00", container="c",
    )  # fmt: skip
    assert proxy.log_params(q, "p") == {
        "follow": "true",
        "timestamps": "true",
        "sinceTime": "2024-05-01T10:00:00Z",
        "tailLines": "5",
        "limitBytes": "100",
    }
    assert proxy.log_params(MultiDict(sinceSeconds="10"), "p") == {"sinceSeconds": "10"}
    with pytest.raises(errors.StatusError) as e:
        proxy.log_params(MultiDict(tailLines="-1", limitBytes="0"), "p")
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert 'PodLogOptions "p" is invalid' in e.value.message and "tailLines" in e.value.message
    with pytest.raises(errors.StatusError) as e:
        proxy.log_params(MultiDict(sinceSeconds="5", sinceTime="2024-05-01T12:00:00Z"), "p")
    assert e.value.code == 422 and "at most one of" in e.value.message
    for bad in (MultiDict(follow="maybe"), MultiDict(tailLines="ten"), MultiDict(sinceTime="x")):
        with pytest.raises(errors.StatusError) as e:
            proxy.log_params(bad, "p")
        assert e.value.code == 400


def test_stream_params() -> None:
    words = [("command", "sh"), ("command", "-c"), ("command", "echo hi")]
    flags = [("stdin", "True"), ("stdout", "true"), ("stderr", "false"), ("tty", "1")]
    q = MultiDict([*words, *flags, ("container", "c")])
    assert proxy.stream_params(q, "exec") == [
        ("stdin", "1"), ("stdout", "1"), ("tty", "1"),
        ("command", "sh"), ("command", "-c"), ("command", "echo hi"),
    ]  # fmt: skip
    assert proxy.stream_params(q, "attach") == [("stdin", "1"), ("stdout", "1"), ("tty", "1")]
    ports = MultiDict([("ports", "80"), ("ports", "8080,9090")])
    assert proxy.stream_params(ports, "portforward") == [("port", "80,8080,9090")]
    assert proxy.stream_params(MultiDict(), "portforward") == []
    with pytest.raises(errors.StatusError, match="between 1 and 65535"):
        proxy.stream_params(MultiDict(ports="70000"), "portforward")


def pod(containers: list[str], init: tuple[str, ...] = (), **status: object) -> dict[str, object]:
    spec: dict[str, object] = {"containers": [{"name": n} for n in containers]}
    if init:
        spec["initContainers"] = [{"name": n} for n in init]
    return {"metadata": {"name": "web"}, "spec": spec, "status": dict(status)}


def test_pick_container() -> None:
    assert proxy.pick_container(pod(["main"]), "") == "main"
    assert proxy.pick_container(pod(["a", "b"], ("setup",)), "setup") == "setup"
    with pytest.raises(errors.StatusError) as e:
        proxy.pick_container(pod(["main"]), "nope")
    assert (e.value.code, e.value.message) == (400, "container nope is not valid for pod web")
    with pytest.raises(errors.StatusError) as e:
        proxy.pick_container(pod(["a", "b"], ("setup",)), "")
    assert e.value.message == (
        "a container name must be specified for pod web, choose one of: [a b] "
        "or one of the init containers: [setup]"
    )


def test_check_log_state() -> None:
    waiting = {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}}
    with pytest.raises(errors.StatusError) as e:
        proxy.check_log_state(pod(["main"], containerStatuses=[waiting]), "main")
    assert e.value.code == 400
    assert e.value.message == 'container "main" in pod "web" is waiting to start: ContainerCreating'
    pulling = {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    with pytest.raises(errors.StatusError, match="trying and failing to pull image"):
        proxy.check_log_state(pod(["main"], containerStatuses=[pulling]), "main")
    # a crash-looping container has logs of its last run
    looping = {
        "name": "main",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://abc"}},
    }
    proxy.check_log_state(pod(["main"], containerStatuses=[looping]), "main")
    proxy.check_log_state(pod(["main"]), "main")  # no status yet: the agent decides


def test_agent_address() -> None:
    node = {
        "status": {
            "addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "10.0.0.5"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}},
        }
    }
    assert proxy.agent_address(node) == ("10.0.0.5", 12345)
    node["status"]["daemonEndpoints"] = {}  # type: ignore[index]
    assert proxy.agent_address(node) == ("10.0.0.5", proxy.DEFAULT_AGENT_PORT)
    with pytest.raises(errors.StatusError, match="no preferred addresses"):
        proxy.agent_address({"status": {}})


def test_agent_errors_become_status_errors() -> None:
    status = (
        b'{"kind":"Status","apiVersion":"v1","status":"Failure","message":"boom",'
        b'"reason":"BadRequest","code":400}'
    )
    e = proxy._agent_error(400, status)
    assert (e.code, e.reason, e.message) == (400, "BadRequest", "boom")
    e = proxy._agent_error(404, b"pod not there\n")
    assert (e.code, e.reason, e.message) == (404, "NotFound", "pod not there")
