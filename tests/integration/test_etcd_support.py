"""Real etcd clusters for the etcd tests (and bench/etcd.py): `EtcdCluster(size)` starts `size`
members of Debian's `etcd` on free loopback ports with data dirs in a temp dir (on /dev/shm
when there is one, so fsync is cheap on a shared machine), waits until the cluster has a
leader, and can kill, stop and restart single members; `close` kills every member and removes
the dirs. With `tls=True` the members serve clients over TLS and require a client certificate
(a CA, server and client certificate made by kybern's own PKI code in the temp dir). This module
holds no tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from kybern.apiserver import certs

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def etcd_available() -> bool:
    return os.access(ETCD, os.X_OK)


class EtcdMember:
    def __init__(self, name: str, base: Path, pki: certs.Pki | None = None) -> None:
        self.name = name
        self.pki = pki
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = base / name
        self.log_path = base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def scheme(self) -> str:
        return "https" if self.pki is not None else "http"

    def start(self, initial_cluster: str, token: str) -> None:
        assert not self.running
        client_url = f"{self.scheme}://{self.endpoint}"
        args = [
            ETCD,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={token}",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
        ]
        if self.pki is not None:
            args += [
                f"--cert-file={self.pki.server_cert}",
                f"--key-file={self.pki.server_key}",
                f"--trusted-ca-file={self.pki.ca_cert}",
                "--client-cert-auth",
            ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def healthy(self) -> bool:
        """etcd's /health: true when the member has a leader and answers a quorum read."""
        ctx = self.pki.client_ssl_context() if self.pki is not None else None
        try:
            url = f"{self.scheme}://{self.endpoint}/health"
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError, ssl.SSLError):
            return False

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EtcdCluster:
    """`size` members on loopback; see the module docstring."""

    def __init__(self, size: int = 1, *, tls: bool = False) -> None:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.base = Path(tempfile.mkdtemp(prefix="kybern-etcd-", dir=shm))
        self.pki = certs.ensure_pki(self.base / "pki", hosts=["127.0.0.1"]) if tls else None
        self.members = [EtcdMember(f"m{i}", self.base, self.pki) for i in range(size)]
        self.token = self.base.name

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    @property
    def url(self) -> str:
        return f"{'etcds' if self.pki is not None else 'etcd'}://{self.endpoints}"

    def _initial(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, timeout: float = 30.0) -> None:
        for m in self.members:
            m.start(self._initial(), self.token)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0, members: list[int] | None = None) -> None:
        chosen = [self.members[i] for i in members] if members is not None else self.members
        deadline = time.monotonic() + timeout
        while not all(m.healthy() for m in chosen):
            for m in chosen:
                if m.proc is not None and m.proc.poll() is not None:
                    raise AssertionError(f"etcd {m.name} exited:\n{m.log_tail()}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"{m.name}:\n{m.log_tail()}" for m in chosen)
                raise AssertionError(f"etcd did not become healthy in {timeout}s\n{logs}")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        self.members[i].signal(signal.SIGKILL)

    def stop(self, i: int) -> None:
        self.members[i].signal(signal.SIGTERM)

    def restart(self, i: int) -> None:
        """Start a stopped member again on its data dir (it rejoins the cluster)."""
        self.members[i].start(self._initial(), self.token)

    def close(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                m.signal(signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def etcd_cluster(size: int = 1, *, tls: bool = False) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(size, tls=tls)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
