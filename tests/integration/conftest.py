"""Fixtures of the integration tests: a real `kybern server` process on a real SQLite file,
driven by the real `kubectl` binary, the PyPI `kubernetes` client and raw HTTPS.

`Server` starts `python -m kybern server --data-dir D --port 0`, waits for `D/kubeconfig` and
for `/readyz`, and stops the process again (SIGTERM, then SIGKILL if it does not go). The
`server` fixture is one server per test module; `fresh_server` is one per test (for restart
and kill tests); `ns` is a namespace of its own for one test."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kybern.controllers import manager

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0  # the CLI contract: SIGTERM stops the server within 5 s


def kubectl_env(kubeconfig: Path) -> dict[str, str]:
    """The environment for a kubectl run against the server of `kubeconfig`: its discovery
    cache lives beside the kubeconfig, so a later server on a reused port never sees another
    server's API groups (kubectl keys the shared ~/.kube/cache by host:port only)."""
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(kubeconfig.parent / "kubectl-cache"),
    }


T = TypeVar("T")


class ServerDied(AssertionError):
    """The server process exited: waiting any longer is pointless."""


async def eventually(
    probe: Callable[[], Awaitable[T | None]], message: str, timeout: float = 60.0
) -> T:
    """`wait_for` for async tests: await `probe` until it returns something truthy and return
    that; fail at the deadline, showing the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}; last: {last!r}")
        await asyncio.sleep(0.05)


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that; fail the test at the
    deadline. Exceptions raised by the predicate count as "not yet" (the last one is shown)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ServerDied:
            raise
        except Exception as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}{detail}")
        time.sleep(interval)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# the API machinery alone, as envtest runs it: no controller or scheduler changes objects
API_ONLY = ("--disable-controllers=*", "--disable-scheduler")
# plus the namespace controller, for tests that wait for a namespace to go away
WITH_NAMESPACES = (
    "--disable-controllers=" + ",".join(n for n in manager.NAMES if n != "namespace"),
    "--disable-scheduler",
)


class Server:
    """A `kybern server` child process on its own data dir."""

    def __init__(self, base_dir: Path, args: tuple[str, ...] = API_ONLY) -> None:
        self.args = args
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_path = base_dir / "server.log"
        self.creds_dir = base_dir / "client"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._clients: list[k8s.ApiClient] = []
        self._sessions: list[requests.Session] = []

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        # a kubeconfig left by an earlier run names the old port: wait for the new one
        self.kubeconfig.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kybern",
                    "server",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        try:
            wait_for(self._kubeconfig_written, START_TIMEOUT, message="the kubeconfig")
            self._load_kubeconfig()
            wait_for(self.is_ready, START_TIMEOUT, message="/readyz")
        except BaseException:
            self.kill()
            raise

    def _kubeconfig_written(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerDied(
                f"server exited with {self.proc.returncode} before writing its kubeconfig:\n"
                + self.log_tail()
            )
        return self.kubeconfig.exists()

    def _load_kubeconfig(self) -> None:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.url = cluster["server"]
        self.creds_dir.mkdir(parents=True, exist_ok=True)
        for name, data in (
            ("ca.crt", cluster["certificate-authority-data"]),
            ("client.crt", user["client-certificate-data"]),
            ("client.key", user["client-key-data"]),
        ):
            path = self.creds_dir / name
            path.write_bytes(base64.b64decode(data))
            path.chmod(0o600)

    @property
    def ca_file(self) -> str:
        return str(self.creds_dir / "ca.crt")

    @property
    def client_cert(self) -> tuple[str, str]:
        return (str(self.creds_dir / "client.crt"), str(self.creds_dir / "client.key"))

    def is_ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerDied(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            r = requests.get(self.url + "/readyz", verify=self.ca_file, timeout=5)
        except requests.RequestException:
            return False
        return r.status_code == 200 and r.text.strip() == "ok"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _close_clients(self) -> None:
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        for s in self._sessions:
            s.close()
        self._clients.clear()
        self._sessions.clear()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait up to `timeout` seconds; SIGKILL if it is still there (and then
        fail: the CLI contract says SIGTERM stops the server within 5 s)."""
        self._close_clients()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"server did not stop within {timeout}s of SIGTERM:\n{self.log_tail()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        self._close_clients()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        rc = self.stop()
        assert rc == 0, f"server exited with {rc} on SIGTERM:\n{self.log_tail()}"
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- clients -------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server."""
        env = kubectl_env(self.kubeconfig)
        proc = subprocess.run(
            [KUBECTL, *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited with {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def kubectl_popen(self, *args: str) -> subprocess.Popen[str]:
        env = kubectl_env(self.kubeconfig)
        return subprocess.Popen(
            [KUBECTL, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def client(self) -> k8s.ApiClient:
        """A `kubernetes` ApiClient loaded from this server's kubeconfig (closed on stop)."""
        c = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
        self._clients.append(c)
        return c

    def http(self, *, authenticated: bool = True) -> requests.Session:
        """A `requests` session that trusts the server's CA and (by default) presents the
        admin client certificate from the kubeconfig."""
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace `verify`
        s.verify = self.ca_file
        if authenticated:
            s.cert = self.client_cert
        self._sessions.append(s)
        return s


class StreamReader:
    """Collects a child's stdout on a thread so that a test can wait for what it prints."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.chunks: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = self.proc.stdout.read(1)
            if not data:
                return
            with self.lock:
                self.chunks.append(data)

    @property
    def text(self) -> str:
        with self.lock:
            return "".join(self.chunks)

    def json_values(self) -> list[Any]:
        """Every complete JSON value printed so far (kubectl -o json prints one per event)."""
        text, values, pos = self.text, [], 0
        decoder = json.JSONDecoder()
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                return values
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                return values  # the last one is still being written
            values.append(value)


@contextlib.contextmanager
def running_server(
    *, must_survive: bool = True, args: tuple[str, ...] = API_ONLY
) -> Iterator[Server]:
    """A started server in a temp dir; stopped (and checked to exit cleanly) and removed at
    the end. `must_survive`: fail if the process is gone by then (not for kill tests)."""
    base = Path(tempfile.mkdtemp(prefix="kybern-it-"))
    srv = Server(base, args)
    try:
        srv.start()
        yield srv
        if must_survive:
            assert srv.running, f"server died during the tests:\n{srv.log_tail()}"
        if srv.running:
            rc = srv.stop()
            assert rc == 0, f"server exited with {rc} on SIGTERM:\n{srv.log_tail()}"
    finally:
        with contextlib.suppress(Exception):
            srv.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def fresh_server() -> Iterator[Server]:
    with running_server(must_survive=False) as srv:
        yield srv


@pytest.fixture
def api(server: Server) -> k8s.ApiClient:
    return server.client()


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    """A namespace of this test's own, deleted afterwards."""
    core = k8s.CoreV1Api(server.client())
    name = unique("it")
    core.create_namespace(
        k8s.V1Namespace(api_version="v1", kind="Namespace", metadata=k8s.V1ObjectMeta(name=name))
    )
    yield name
    if server.running:
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the server's log to a failing test's report."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for key in ("server", "fresh_server"):
            srv = funcargs.get(key)
            if isinstance(srv, Server):
                report.sections.append((f"{key} log", srv.log_tail()))
    return report
