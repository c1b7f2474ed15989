"""`kubectl logs`, `exec`, `attach` and `port-forward` end to end: the real kubectl (and the PyPI
`kubernetes` client) → a real `kybern server` process → the agent's HTTPS server (in the test's
event loop) → the real containerd and runc. Pods are made directly through CRI with their Pod
objects bound to a registered Node, so only the streaming path is under test. Everything waits
on events with deadlines (never a bare sleep) and nothing is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import socket
import ssl
import struct
import termios
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from containerd_helpers import build_images, running_containerd, wait_until
from streaming_helpers import (
    KUBECTL,
    NAMESPACE,
    Container,
    CriPod,
    KybernServer,
    kubectl_env,
    register_node,
)

from kybern.agent import streaming_tls
from kybern.agent.httpserver import AgentServer
from kybern.cri import Containerd, RuntimeClient, api, logs

pytestmark = pytest.mark.asyncio(loop_scope="module")
NODE = "stream-node"
TIMESTAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (.*)$")
SLEEP = ["sh", "-c", "exec sleep 3600"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctd() -> AsyncIterator[Containerd]:
    _, _, layout = await build_images()
    async with running_containerd(layout) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rt(ctd: Containerd) -> AsyncIterator[RuntimeClient]:
    async with ctd.client(timeout=60) as client:
        await client.connect()
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streaming")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(base: Path) -> AsyncIterator[KybernServer]:
    s = KybernServer(base / "server")
    try:
        await s.start()
        yield s
    finally:
        await s.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(server: KybernServer, rt: RuntimeClient, base: Path) -> AsyncIterator[AgentServer]:
    cert, key = await asyncio.to_thread(
        streaming_tls.ensure_serving_cert,
        base / "agent",
        server.pki / "ca.crt",
        server.pki / "ca.key",
        NODE,
        ["127.0.0.1"],
    )
    srv = AgentServer(
        rt, port=0, cert_file=cert, key_file=key, client_ca_file=server.pki / "ca.crt"
    )
    await srv.start()
    try:
        await register_node(server, NODE, srv.port)
        yield srv
    finally:
        await srv.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def pods(
    server: KybernServer, rt: RuntimeClient, agent: AgentServer, base: Path
) -> AsyncIterator[Any]:
    """A factory of CRI pods (removed after the test)."""
    made: list[CriPod] = []

    async def make(*containers: Container) -> CriPod:
        name = f"s-{uuid.uuid4().hex[:8]}"
        pod = await CriPod.create(server, rt, NODE, name, list(containers), base / "logs")
        made.append(pod)
        return pod

    yield make
    for pod in made:
        await pod.remove(rt)
        await server.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod.name}")


async def log_lines(pod: CriPod, container: str = "main", attempt: int = 0) -> list[bytes]:
    path = pod.log_dir / container / f"{attempt}.log"

    def read() -> list[bytes]:
        return path.read_bytes().splitlines() if path.exists() else []

    return await asyncio.to_thread(read)


async def wait_logged(pod: CriPod, count: int, attempt: int = 0) -> None:
    async def enough() -> bool:
        return len(await log_lines(pod, attempt=attempt)) >= count

    await wait_until(enough, what=f"{count} log records")


async def read_until(stream: asyncio.StreamReader, needle: bytes, timeout: float = 30.0) -> bytes:
    got = b""
    async with asyncio.timeout(timeout):
        while needle not in got:
            chunk = await stream.read(4096)
            assert chunk, f"stream ended before {needle!r}: {got!r}"
            got += chunk
    return got


# ---- logs ---------------------------------------------------------------------------------


async def test_logs(server: KybernServer, pods: Any) -> None:
    script = "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2; exec sleep 3600"
    pod = await pods(Container("main", ["sh", "-c", script]))
    await wait_logged(pod, 6)
    # stdout and stderr reach the file through two pipes: their order is the file's
    records = [logs.parse_line(line) for line in await log_lines(pod)]
    lines = [r.content.decode() + "\n" for r in records]
    assert sorted(lines) == ["line-1\n", "line-2\n", "line-3\n", "line-4\n", "line-5\n", "oops\n"]
    every = "".join(lines)

    rc, out, err = await server.kubectl("logs", pod.name)
    assert (rc, out) == (0, every), err
    assert (await server.kubectl("logs", pod.name, "-c", "main"))[1] == every
    assert (await server.kubectl("logs", pod.name, "--tail=2"))[1] == "".join(lines[-2:])
    assert (await server.kubectl("logs", pod.name, "--tail=0"))[1] == ""
    assert (await server.kubectl("logs", pod.name, "--limit-bytes=9"))[1] == every[:9]
    assert (await server.kubectl("logs", pod.name, "--since=1h"))[1] == every
    assert (await server.kubectl("logs", pod.name, "--since-time=2000-01-01T00:00:00Z"))[1] == every
    assert (await server.kubectl("logs", pod.name, "--since-time=2999-01-01T00:00:00Z"))[1] == ""

    rc, out, _ = await server.kubectl("logs", pod.name, "--timestamps", "--tail=3")
    got = out.splitlines()
    assert rc == 0 and len(got) == 3
    matches = [TIMESTAMPED.match(line) for line in got]
    assert all(matches), got
    assert [m.group(1) for m in matches if m] == [r.time for r in records[-3:]]
    assert [m.group(2) + "\n" for m in matches if m] == lines[-3:]


async def test_log_errors(server: KybernServer, pods: Any) -> None:
    pod = await pods(Container("main", SLEEP))
    rc, _, err = await server.kubectl("logs", pod.name, "-c", "nope")
    assert rc != 0 and f"container nope is not valid for pod {pod.name}" in err
    rc, _, err = await server.kubectl("logs", "absent-pod")
    assert rc != 0 and 'pods "absent-pod" not found' in err
    rc, _, err = await server.kubectl("logs", pod.name, "--previous")
    assert rc != 0 and f'previous terminated container "main" in pod "{pod.name}" not found' in err
    # the API server's own checks, as kube-apiserver answers them
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod.name}/log"
    for query, code in (
        ("tailLines=-1", 422),
        ("sinceSeconds=1&sinceTime=2000-01-01T00:00:00Z", 422),
    ):
        with pytest.raises(AssertionError, match=f": {code} "):
            await server.request("GET", f"{path}?{query}")


async def test_logs_follow_until_exit(server: KybernServer, rt: RuntimeClient, pods: Any) -> None:
    script = (
        "echo $$ > /tmp/pid; echo start; while [ ! -e /tmp/stop ]; do sleep 0.1; done; echo bye"
    )
    pod = await pods(Container("main", ["sh", "-c", script]))
    await wait_logged(pod, 1)
    proc = await server.kubectl_proc("logs", "-f", pod.name)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        got = await read_until(proc.stdout, b"start\n")
        # a line written by another process to the container's stdout reaches the follower
        cid = pod.containers["main"]
        more = "echo more > /proc/$(cat /tmp/pid)/fd/1"
        r = await rt.exec_sync(cid, ["sh", "-c", more], exec_timeout=30)
        assert r.exit_code == 0, r.stderr
        got += await read_until(proc.stdout, b"more\n")
        # the container exits: the follower drains its last line and ends
        await rt.exec_sync(cid, ["touch", "/tmp/stop"], exec_timeout=30)
        async with asyncio.timeout(30):
            rest, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert (got + rest).decode() == "start\nmore\nbye\n"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_logs_follow_ends_with_the_client(
    server: KybernServer, agent: AgentServer, pods: Any
) -> None:
    """A follower that goes away ends the stream at the API server and at the agent."""
    pod = await pods(Container("main", ["sh", "-c", "echo quiet; exec sleep 3600"]))
    await wait_logged(pod, 1)
    assert agent.active == 0
    proc = await server.kubectl_proc("logs", "-f", pod.name)
    assert proc.stdout is not None
    await read_until(proc.stdout, b"quiet\n")
    assert agent.active == 1
    proc.kill()
    await proc.wait()

    async def closed() -> bool:
        return agent.active == 0

    await wait_until(closed, what="the agent to end the followed log")


async def test_logs_previous(server: KybernServer, rt: RuntimeClient, pods: Any) -> None:
    pod = await pods(Container("main", ["sh", "-c", "echo first-run"]))
    cid = pod.containers["main"]

    async def exited() -> bool:
        return (await rt.container_status(cid)).status.state == api.CONTAINER_EXITED

    await wait_until(exited, what="the first run to exit")
    await pod.run_container(
        rt, Container("main", ["sh", "-c", "echo second-run; exec sleep 3600"]), 1
    )
    await pod.report(server, rt)
    await wait_logged(pod, 1, attempt=1)
    assert (await server.kubectl("logs", pod.name, "--previous"))[1] == "first-run\n"
    assert (await server.kubectl("logs", pod.name))[1] == "second-run\n"


# ---- exec ---------------------------------------------------------------------------------


async def test_exec_exit_code(server: KybernServer, pods: Any) -> None:
    pod = await pods(Container("main", SLEEP))
    rc, out, err = await server.kubectl("exec", pod.name, "--", "sh", "-c", "echo hi; exit 3")
    assert (rc, out) == (3, "hi\n"), err
    assert "command terminated with exit code 3" in err
    rc, out, err = await server.kubectl(
        "exec", pod.name, "--", "sh", "-c", "echo out; echo err >&2"
    )
    assert (rc, out, err) == (0, "out\n", "err\n")


async def test_exec_stdin(server: KybernServer, pods: Any) -> None:
    pod = await pods(Container("main", SLEEP))
    data = b"".join(b"line %d\n" % i for i in range(2000))  # several frames' worth
    rc, out, err = await server.kubectl(
        "exec", "-i", pod.name, "--", "sh", "-c", "cat; echo done", input=data
    )
    assert (rc, out.encode()) == (0, data + b"done\n"), err


async def test_exec_over_spdy(server: KybernServer, pods: Any) -> None:
    """kubectl's SPDY fallback (WebSockets off) passes through the API server and the agent."""
    pod = await pods(Container("main", SLEEP))
    env = {
        **kubectl_env(server.kubeconfig),
        "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "exec", "-i", pod.name, "--", "sh", "-c", "cat; exit 4",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate(b"via spdy\n")
    assert (proc.returncode, out) == (4, b"via spdy\n"), err


async def test_exec_tty(server: KybernServer, pods: Any) -> None:
    """`kubectl exec -it` on a pseudo-terminal: the remote shell sees a terminal of the local
    size (the resize channel) and the exit code comes back."""
    pod = await pods(Container("main", SLEEP))
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    env = kubectl_env(server.kubeconfig)
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "exec", "-it", pod.name, "--", "sh",
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    output = bytearray()
    eof = asyncio.Event()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
            eof.set()
        output.extend(data)

    loop.add_reader(master, readable)
    try:
        os.write(master, b"[ -t 0 ] && echo tty-yes; stty size; exit 7\n")
        async with asyncio.timeout(60):
            await proc.wait()
            await eof.wait()
    finally:
        loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 7, text
    assert "tty-yes" in text and "33 101" in text, text


async def test_kubectl_cp(server: KybernServer, pods: Any, base: Path) -> None:
    """`kubectl cp` both ways: tar through exec's stdin (ended by the CLOSE signal) and stdout."""
    pod = await pods(Container("main", SLEEP))
    data = os.urandom(300_000)
    src, back = base / f"{pod.name}.src", base / f"{pod.name}.back"
    src.write_bytes(data)
    rc, _, err = await server.kubectl("cp", str(src), f"{pod.name}:/tmp/data")
    assert rc == 0, err
    rc, _, err = await server.kubectl("cp", f"{pod.name}:/tmp/data", str(back))
    assert rc == 0, err
    assert back.read_bytes() == data


async def test_exec_errors(server: KybernServer, rt: RuntimeClient, pods: Any) -> None:
    pod = await pods(Container("main", SLEEP))
    rc, _, err = await server.kubectl("exec", pod.name, "-c", "nope", "--", "true")
    assert rc != 0 and f"container nope is not valid for pod {pod.name}" in err
    # the agent's answer when the container does not run (any more)
    await rt.stop_container(pod.containers["main"], 0)
    rc, _, err = await server.kubectl("exec", pod.name, "--", "true")
    assert rc != 0 and 'container not found ("main")' in err, err
    # a pod without a node
    name = f"s-{uuid.uuid4().hex[:8]}"
    spec = {"containers": [{"name": "main", "image": "kybern.local/busybox:1"}]}
    await server.request(
        "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", {"metadata": {"name": name}, "spec": spec}
    )
    try:
        rc, _, err = await server.kubectl("exec", name, "--", "true")
        assert rc != 0 and f"pod {name} does not have a host assigned" in err
        rc, out, _ = await server.kubectl("logs", name)  # kube-apiserver: an empty log
        assert (rc, out) == (0, "")
    finally:
        await server.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")


def python_client_exec(kubeconfig: Path, name: str) -> tuple[str, str, str, int | None]:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        out = stream(
            core.connect_get_namespaced_pod_exec, name, NAMESPACE,
            command=["sh", "-c", "echo hello-python"],
            stderr=True, stdin=False, stdout=True, tty=False,
        )  # fmt: skip
        resp = stream(
            core.connect_get_namespaced_pod_exec, name, NAMESPACE,
            command=["sh", "-c", "read l; echo got:$l; echo to-err >&2; exit 3"],
            stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False,
        )  # fmt: skip
        resp.write_stdin("ping\n")
        resp.run_forever(timeout=60)
        stdout, stderr = resp.read_stdout(), resp.read_stderr()
        code = resp.returncode
        resp.close()
        return out, stdout, stderr, code
    finally:
        api_client.close()


async def test_python_client_exec(server: KybernServer, pods: Any) -> None:
    pod = await pods(Container("main", SLEEP))
    out, stdout, stderr, code = await asyncio.to_thread(
        python_client_exec, server.kubeconfig, pod.name
    )
    assert out == "hello-python\n"
    assert (stdout, stderr, code) == ("got:ping\n", "to-err\n", 3)


# ---- attach, port-forward -------------------------------------------------------------------


async def test_attach(server: KybernServer, pods: Any) -> None:
    script = "while read l; do echo got:$l; done; echo bye"
    pod = await pods(Container("main", ["sh", "-c", script], stdin=True, stdin_once=True))
    rc, out, err = await server.kubectl("attach", "-i", pod.name, input=b"ping\n")
    assert "got:ping\n" in out, (rc, out, err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http_get(port: int) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/index.html") as r:
            return await r.text()


@pytest.mark.parametrize("websockets", ["true", "false"])
async def test_port_forward(server: KybernServer, pods: Any, websockets: str) -> None:
    """kubectl port-forward: SPDY tunnelled in WebSocket (kubectl's default) and plain SPDY."""
    port = free_port()
    script = (
        f"mkdir -p /tmp/www && echo hello-pf > /tmp/www/index.html && "
        f"exec httpd -f -p 127.0.0.1:{port} -h /tmp/www"
    )
    pod = await pods(Container("main", ["sh", "-c", script]))

    async def serving() -> bool:  # a hostNetwork pod: its port is the host's
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return True
        return False

    await wait_until(serving, what="httpd in the pod")
    env = {
        **kubectl_env(server.kubeconfig),
        "KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets,
    }
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "port-forward", pod.name, f":{port}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = (await read_until(proc.stdout, b"\n")).decode()
        m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", banner)
        assert m and int(m.group(2)) == port, banner
        local = int(m.group(1))
        for _ in range(3):  # each connection is a new pair of streams in the same session
            assert await http_get(local) == "hello-pf\n"
    finally:
        proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()


def python_client_port_forward(kubeconfig: Path, name: str, port: int) -> bytes:
    from kubernetes import client, config
    from kubernetes.stream import portforward

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        pf = portforward(
            core.connect_get_namespaced_pod_portforward, name, NAMESPACE, ports=str(port)
        )
        sock = pf.socket(port)
        sock.settimeout(60)
        sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        return data
    finally:
        api_client.close()


async def test_python_client_port_forward(server: KybernServer, pods: Any) -> None:
    """The Python client's port-forward: WebSocket `v4.channel.k8s.io`, ports in the URL."""
    port = free_port()
    script = (
        f"mkdir -p /tmp/www && echo hello-py > /tmp/www/index.html && "
        f"exec httpd -f -p 127.0.0.1:{port} -h /tmp/www"
    )
    pod = await pods(Container("main", ["sh", "-c", script]))

    async def serving() -> bool:
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return True
        return False

    await wait_until(serving, what="httpd in the pod")
    async with asyncio.timeout(90):
        data = await asyncio.to_thread(
            python_client_port_forward, server.kubeconfig, pod.name, port
        )
    assert data.startswith(b"HTTP/1.") and data.endswith(b"\r\n\r\nhello-py\n"), data


# ---- the agent's door ----------------------------------------------------------------------


async def test_agent_authenticates_clients(
    server: KybernServer, agent: AgentServer, pods: Any
) -> None:
    pod = await pods(Container("main", ["sh", "-c", "echo secret; exec sleep 3600"]))
    await wait_logged(pod, 1)
    assert (await server.kubectl("logs", pod.name))[1] == "secret\n"  # the API server's way in
    url = f"https://127.0.0.1:{agent.port}/containerLogs/{NAMESPACE}/{pod.name}/main"
    pki = server.pki

    def context(cert: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        if cert:
            ctx.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
        return ctx

    async with aiohttp.ClientSession() as http:
        for cert, code in ((None, 401), ("admin", 403), ("agent-client", 200)):
            async with http.get(url, ssl=context(cert)) as r:
                assert r.status == code, (cert, await r.text())
                if code == 200:
                    assert await r.text() == "secret\n"


async def test_discovery_lists_the_subresources(server: KybernServer) -> None:
    doc = await server.request("GET", "/api/v1")
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["pods/log"]["kind"] == "Pod" and by_name["pods/log"]["verbs"] == ["get"]
    for sub, kind in (("exec", "PodExecOptions"), ("attach", "PodAttachOptions"),
                      ("portforward", "PodPortForwardOptions")):  # fmt: skip
        assert by_name[f"pods/{sub}"]["kind"] == kind
        assert by_name[f"pods/{sub}"]["verbs"] == ["create", "get"]
