"""A containerd that kybern starts and owns: `Containerd` writes a version-2 config into a
directory of its own (root, state, gRPC socket, runc root, CNI conf dir, registry hosts dir and log
all below it), starts Debian's `containerd`, waits for CRI v1 on the socket, imports OCI layout
tarballs with `ctr`, and on `stop` removes every container and sandbox it ran (through CRI), ends
containerd and any shim left, unmounts whatever is still mounted below its directory and deletes
it. The config carries the facts of these machines: `restrict_oom_score_adj` (the process may not
lower oom_score_adj; runc fails otherwise), Debian's CNI plugins in /usr/lib/cni, a loopback-only
CNI network until the agent writes a real one, and the stream server on loopback. Used by the
end-to-end tests and, later, by `kybern up` to supervise its runtime."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from kybern.cri import client as cri
from kybern.cri import errors

CRI_NAMESPACE = "k8s.io"
DEFAULT_SANDBOX_IMAGE = "kybern.local/pause:1"
CNI_BIN_DIR = "/usr/lib/cni"
LOOPBACK_NETWORK = "kybern-loopback"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SHIM_SOCKET_DIR = Path("/run/containerd/s")  # containerd 1.6 shims put their sockets here
_QUIET_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


def _q(value: str | Path) -> str:
    """A TOML basic string (JSON escaping is valid TOML for these values)."""
    return json.dumps(str(value))


@dataclasses.dataclass(frozen=True)
class ContainerdConfig:
    """Where everything of one containerd lives (all below `base_dir`) and how CRI is set up."""

    base_dir: Path
    sandbox_image: str = DEFAULT_SANDBOX_IMAGE
    snapshotter: str = "overlayfs"
    cni_bin_dir: str = CNI_BIN_DIR
    log_level: str = "info"

    @property
    def root(self) -> Path:
        return self.base_dir / "root"

    @property
    def state(self) -> Path:
        return self.base_dir / "state"

    @property
    def socket(self) -> Path:
        return self.base_dir / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.state / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base_dir / "cni" / "net.d"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.base_dir / "certs.d"

    @property
    def config_file(self) -> Path:
        return self.base_dir / "config.toml"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "containerd.log"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"


def render_config(cfg: ContainerdConfig) -> str:
    """containerd's config.toml (version 2) for `cfg`."""
    cri_plugin = 'plugins."io.containerd.grpc.v1.cri"'
    runc = f"{cri_plugin}.containerd.runtimes.runc"
    disabled = ", ".join(_q(p) for p in _QUIET_PLUGINS)
    return f"""version = 2
root = {_q(cfg.root)}
state = {_q(cfg.state)}
disabled_plugins = [{disabled}]

[grpc]
  address = {_q(cfg.socket)}

[ttrpc]
  address = {_q(str(cfg.socket) + ".ttrpc")}

[debug]
  address = ""
  level = {_q(cfg.log_level)}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_q(cfg.base_dir / "opt")}

[{cri_plugin}]
  sandbox_image = {_q(cfg.sandbox_image)}
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384

[{cri_plugin}.containerd]
  snapshotter = {_q(cfg.snapshotter)}
  default_runtime_name = "runc"

[{runc}]
  runtime_type = "io.containerd.runc.v2"

[{runc}.options]
  Root = {_q(cfg.runc_root)}
  SystemdCgroup = false

[{cri_plugin}.cni]
  bin_dir = {_q(cfg.cni_bin_dir)}
  conf_dir = {_q(cfg.cni_conf_dir)}
  max_conf_num = 1

[{cri_plugin}.registry]
  config_path = {_q(cfg.registry_hosts_dir)}
"""


def loopback_conflist(name: str = LOOPBACK_NETWORK) -> str:
    """A CNI network list with only the loopback plugin (hostNetwork pods need no more)."""
    conf = {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "loopback"}]}
    return json.dumps(conf, indent=2) + "\n"


def hosts_toml(server: str, *, plain_http: bool = True) -> str:
    """A registry hosts.toml sending pulls of one registry host to `server` (`http://H:P`)."""
    return (
        f"server = {_q(server)}\n\n"
        f"[host.{_q(server)}]\n"
        '  capabilities = ["pull", "resolve"]\n'
        f"  skip_verify = {'true' if plain_http else 'false'}\n"
    )


def mounts_below(path: Path, mountinfo: str) -> list[str]:
    """Mount points at or below `path` in /proc/self/mountinfo text, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def processes_mentioning(needle: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids whose command line contains `needle` (blocking: reads /proc)."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def shared_dirs() -> list[Path]:
    """Directories outside its own that containerd (or runc, or a shim) may create and leave
    empty: the `k8s.io` cgroup of each hierarchy (the parent of sandboxes without a cgroup
    parent) and the shims' socket directory. Deepest first."""
    out = [SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent]
    with contextlib.suppress(OSError):
        out[:0] = [h / CRI_NAMESPACE for h in sorted(CGROUP_ROOT.iterdir()) if h.is_dir()]
    return out


def shim_socket(address: Path, namespace: str, id: str) -> Path:
    """Where a containerd 1.6 shim of sandbox/container `id` listens (removed by the shim when
    it exits; left behind when it is killed)."""
    digest = hashlib.sha256(f"{address}/{namespace}/{id}".encode()).hexdigest()
    return SHIM_SOCKET_DIR / digest


def _remove_if_empty(path: Path) -> bool:
    """rmdir `path` if it has no subdirectories (cgroup directories hold only control files,
    which rmdir removes with them); False if it stays."""
    try:
        if any(p.is_dir() for p in path.iterdir()):
            return False
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


async def _run(*argv: str, timeout: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def overlay_supported(work: Path) -> bool:
    """Whether an overlay filesystem can be mounted below `work` (else use `native`)."""
    d = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="overlay-probe-", dir=work))
    try:
        for sub in ("lower", "upper", "work", "merged"):
            await asyncio.to_thread((d / sub).mkdir)
        opts = f"lowerdir={d / 'lower'},upperdir={d / 'upper'},workdir={d / 'work'}"
        rc, _ = await _run("mount", "-t", "overlay", "overlay", "-o", opts, str(d / "merged"))
        if rc == 0:
            await _run("umount", str(d / "merged"))
        return rc == 0
    finally:
        await asyncio.to_thread(shutil.rmtree, d, True)


class Containerd:
    """One containerd process with everything under `base_dir` (a new temporary directory by
    default, deleted on `stop`). `snapshotter=None` picks overlayfs when it mounts here, else
    native. Use as `async with Containerd() as ctd:` then `ctd.endpoint` / `ctd.client()`."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        sandbox_image: str = DEFAULT_SANDBOX_IMAGE,
        snapshotter: str | None = None,
        binary: str = "containerd",
        ctr: str = "ctr",
        log_level: str = "info",
    ) -> None:
        self._own_dir = base_dir is None
        base = Path(base_dir or tempfile.mkdtemp(prefix="kybern-containerd-"))
        self._snapshotter = snapshotter
        self.config = ContainerdConfig(base, sandbox_image, snapshotter or "overlayfs")
        self.config = dataclasses.replace(self.config, log_level=log_level)
        self.binary = binary
        self.ctr = ctr
        self.version: cri.RuntimeVersion | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._new_dirs: list[Path] = []

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @property
    def base_dir(self) -> Path:
        return self.config.base_dir

    @property
    def running(self) -> bool:
        """Whether the containerd process this object started is still alive."""
        return self._proc is not None and self._proc.returncode is None

    async def wait(self) -> int:
        """Until the containerd process exits (by itself or through `stop`); its exit code."""
        proc = self._proc
        if proc is None:
            return 0
        return await proc.wait()

    def client(self, timeout: float = cri.DEFAULT_TIMEOUT) -> cri.RuntimeClient:
        """A new CRI client on this containerd (close it, or use it with `async with`)."""
        return cri.RuntimeClient(self.endpoint, timeout=timeout)

    async def start(self, timeout: float = 60.0) -> cri.RuntimeVersion:
        """Write the config, start containerd and wait until CRI v1 answers on the socket."""
        for tool in (self.binary, self.ctr):
            if shutil.which(tool) is None:
                raise FileNotFoundError(f"{tool} not found: apt-get install containerd runc")
        if self._snapshotter is None:
            ok = await overlay_supported(await self._mkdir(self.base_dir))
            self.config = dataclasses.replace(
                self.config, snapshotter="overlayfs" if ok else "native"
            )
        log = await asyncio.to_thread(self._prepare)
        with log:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary, "--config", str(self.config.config_file),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        waiter = asyncio.ensure_future(self._proc.wait())
        try:
            async with self.client() as rt:
                ready = asyncio.ensure_future(rt.wait_ready(timeout))
                done, _ = await asyncio.wait({ready, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if ready not in done:
                    ready.cancel()
                    with contextlib.suppress(asyncio.CancelledError, errors.CRIError):
                        await ready
                    raise RuntimeError(
                        f"containerd exited with {self._proc.returncode}: {await self.log_tail()}"
                    )
                self.version = ready.result()
        except BaseException:
            waiter.cancel()
            await self.stop()
            raise
        waiter.cancel()
        return self.version

    async def _mkdir(self, path: Path) -> Path:
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return path

    def _prepare(self) -> BinaryIO:
        cfg = self.config
        self._new_dirs = [d for d in shared_dirs() if not d.exists()]
        for d in (cfg.root, cfg.state, cfg.cni_conf_dir, cfg.registry_hosts_dir):
            d.mkdir(parents=True, exist_ok=True)
        cfg.config_file.write_text(render_config(cfg))
        conflist = cfg.cni_conf_dir / f"10-{LOOPBACK_NETWORK}.conflist"
        if not any(cfg.cni_conf_dir.iterdir()):
            conflist.write_text(loopback_conflist())
        return cfg.log_file.open("ab")

    async def log_tail(self, size: int = 4000) -> str:
        def read() -> str:
            with contextlib.suppress(OSError):
                return self.config.log_file.read_text(errors="replace")[-size:]
            return ""

        return await asyncio.to_thread(read)

    async def add_registry_host(self, host: str, server: str | None = None) -> None:
        """Let CRI pull `host/...` from `server` (default `http://host`) over plain HTTP;
        containerd reads the hosts directory on each pull, so no restart is needed."""
        d = self.config.registry_hosts_dir / host
        text = hosts_toml(server or f"http://{host}")

        def write() -> None:
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts.toml").write_text(text)

        await asyncio.to_thread(write)

    async def import_layout(self, layout: bytes | Path, timeout: float = 120.0) -> str:
        """`ctr -n k8s.io images import` an OCI layout tarball (bytes or a file); returns ctr's
        output. The images keep the names their index annotations give them."""
        path = layout if isinstance(layout, Path) else self.base_dir / f"import-{id(layout)}.tar"
        if isinstance(layout, bytes):
            await asyncio.to_thread(path.write_bytes, layout)
        rc, out = await _run(
            self.ctr, "--address", str(self.config.socket), "--namespace", CRI_NAMESPACE,
            "images", "import", "--snapshotter", self.config.snapshotter, str(path),
            timeout=timeout,
        )  # fmt: skip
        if isinstance(layout, bytes):
            await asyncio.to_thread(path.unlink, True)
        if rc != 0:
            raise RuntimeError(f"ctr images import failed ({rc}): {out.strip()}")
        return out

    async def remove_all(self, timeout: float = 60.0) -> None:
        """Stop and remove every container and sandbox through CRI (containers first)."""
        async with self.client(timeout=timeout) as rt:
            for c in await rt.list_containers():
                with contextlib.suppress(errors.NotFoundError):
                    await rt.stop_container(c.id, 0)
                    await rt.remove_container(c.id)
            for s in await rt.list_pod_sandbox():
                with contextlib.suppress(errors.NotFoundError):
                    await rt.stop_pod_sandbox(s.id)
                    await rt.remove_pod_sandbox(s.id)

    async def stop(self, timeout: float = 30.0) -> None:
        """Remove all containers and sandboxes, stop containerd (TERM, then KILL at the
        deadline), kill shims still bound to its socket, unmount and delete its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(errors.CRIError):
                await self.remove_all(timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await self._kill_shims(timeout)
        await self._delete_runc_containers()
        for point in await self.mounts():
            await _run("umount", "-l", point)
        for d in self._new_dirs:
            await asyncio.to_thread(_remove_if_empty, d)
        if self._own_dir:
            await asyncio.to_thread(shutil.rmtree, self.base_dir, True)

    async def _kill_shims(self, timeout: float) -> None:
        needle = str(self.config.socket)
        deadline = time.monotonic() + timeout
        while pids := await asyncio.to_thread(processes_mentioning, needle):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {needle} survive SIGKILL: {pids}")
            await asyncio.sleep(0.02)

    async def runc_containers(self) -> list[tuple[str, str]]:
        """(runc root, container id) of every container runc still has in this containerd's
        runc root (none once containerd removed them through CRI)."""
        roots = await asyncio.to_thread(
            lambda: sorted(p for p in self.config.runc_root.glob("*") if p.is_dir())
        )
        found = []
        for root in roots:
            rc, out = await _run("runc", "--root", str(root), "list", "-q")
            found += [(str(root), cid) for cid in out.split()] if rc == 0 else []
        return found

    async def _delete_runc_containers(self) -> None:
        """The last resort after a crash of containerd: `runc delete --force` kills what is left
        of each container (the shims that owned them are gone) and removes its cgroups."""
        for root, cid in await self.runc_containers():
            await _run("runc", "--root", root, "delete", "--force", cid)
            sock = shim_socket(self.config.socket, Path(root).name, cid)
            await asyncio.to_thread(sock.unlink, True)

    async def mounts(self) -> list[str]:
        """Mount points below this containerd's directory (deepest first)."""
        text = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
        return mounts_below(self.base_dir, text)

    async def leftovers(self) -> list[str]:
        """What is still on the machine from this containerd: mounts below its directory,
        processes naming its socket, its directory itself. Empty after a clean `stop`."""
        out = [f"mount {m}" for m in await self.mounts()]
        pids = await asyncio.to_thread(processes_mentioning, str(self.config.socket))
        out += [f"process {p}" for p in pids]
        out += [f"runc container {cid}" for _, cid in await self.runc_containers()]
        if self._own_dir and await asyncio.to_thread(self.base_dir.exists):
            out.append(f"directory {self.base_dir}")
        for d in self._new_dirs:
            if await asyncio.to_thread(d.exists):
                out.append(f"directory {d}")
        return out

    async def __aenter__(self) -> Containerd:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
