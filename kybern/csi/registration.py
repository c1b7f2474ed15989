"""Kubelet plugin registration (`pluginregistration.v1`, gRPC package `pluginregistration`),
both sides. A driver runs `RegistrationServer`: the `Registration` service on
`<registration-dir>/<driver>-reg.sock` answering `GetInfo` (type `CSIPlugin`, the driver's name,
its CSI endpoint, supported versions `["1.0.0"]`) and taking the kubelet's verdict through
`NotifyRegistrationStatus`, as node-driver-registrar does. An agent runs `PluginWatcher`: it
watches the registration directory (inotify, with a rescan fallback), and for each new socket
calls `GetInfo`, checks the type and versions, hands the plugin to its handler (which talks to
the driver and publishes it in CSINode) and reports the outcome back; a removed socket
deregisters the plugin."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import stat
import struct
from pathlib import Path
from typing import Any

import grpc

from kybern.csi import spec
from kybern.csi.client import channel_options
from kybern.csi.gen import pluginregistration_pb2 as reg
from kybern.csi.gen import pluginregistration_pb2_grpc as reg_grpc

log = logging.getLogger("kybern.csi.registration")
CSI_PLUGIN = "CSIPlugin"
IN_CREATE, IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO = 0x100, 0x200, 0x40, 0x80
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000


def socket_name(driver: str) -> str:
    return f"{driver}-reg.sock"


MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL


def listen_address(path: Path) -> str:
    """gRPC's `unix://` address for a socket at `path`, or a clear error when the path is too
    long for a unix socket (gRPC's own message does not say why)."""
    size = len(str(path).encode())
    if size > MAX_SOCKET_PATH:
        raise ValueError(
            f"socket path {path} is {size} bytes, over the {MAX_SOCKET_PATH} a unix socket "
            "allows: use a shorter directory (--data-dir, --kubelet-registration-dir)"
        )
    return f"unix://{path}"


class _Servicer(reg_grpc.RegistrationServicer):
    def __init__(self, server: RegistrationServer) -> None:
        self.server = server

    async def GetInfo(self, request: reg.InfoRequest, context: Any) -> reg.PluginInfo:
        s = self.server
        return reg.PluginInfo(
            type=CSI_PLUGIN, name=s.driver, endpoint=s.endpoint, supported_versions=s.versions
        )

    async def NotifyRegistrationStatus(
        self, request: reg.RegistrationStatus, context: Any
    ) -> reg.RegistrationStatusResponse:
        self.server.status = (request.plugin_registered, request.error)
        if request.plugin_registered:
            log.info("the kubelet registered %s", self.server.driver)
        else:
            log.error("the kubelet refused %s: %s", self.server.driver, request.error)
        self.server.notified.set()
        return reg.RegistrationStatusResponse()


class RegistrationServer:
    """Serves `Registration` for one driver in `directory`. `endpoint` is the path of the
    driver's CSI socket as the kubelet should dial it."""

    def __init__(
        self,
        directory: str | Path,
        driver: str,
        endpoint: str,
        versions: tuple[str, ...] = spec.SUPPORTED_VERSIONS,
    ) -> None:
        self.directory = Path(directory)
        self.driver = driver
        self.endpoint = endpoint.removeprefix("unix://")
        self.versions = list(versions)
        self.status: tuple[bool, str] | None = None
        self.notified = asyncio.Event()
        self._server: Any = None

    @property
    def path(self) -> Path:
        return self.directory / socket_name(self.driver)

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.path.unlink, missing_ok=True)
        server = grpc.aio.server()
        reg_grpc.add_RegistrationServicer_to_server(_Servicer(self), server)
        server.add_insecure_port(listen_address(self.path))
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.path.unlink, missing_ok=True)


async def get_info(socket: str | Path, timeout: float = 10.0) -> reg.PluginInfo:
    """`GetInfo` of the registration socket at `socket`."""
    async with grpc.aio.insecure_channel(f"unix://{socket}", options=channel_options()) as ch:
        stub = reg_grpc.RegistrationStub(ch)
        out: reg.PluginInfo = await stub.GetInfo(reg.InfoRequest(), timeout=timeout)
        return out


async def notify(
    socket: str | Path, registered: bool, error: str = "", timeout: float = 10.0
) -> None:
    async with grpc.aio.insecure_channel(f"unix://{socket}", options=channel_options()) as ch:
        stub = reg_grpc.RegistrationStub(ch)
        status = reg.RegistrationStatus(plugin_registered=registered, error=error)
        await stub.NotifyRegistrationStatus(status, timeout=timeout)


@dataclasses.dataclass(frozen=True)
class Plugin:
    """A registered plugin: its name, CSI endpoint, versions and registration socket."""

    name: str
    endpoint: str
    versions: tuple[str, ...]
    socket: str


class Handler:
    """What a `PluginWatcher` calls: `register` raises to refuse a plugin (its message goes back
    to the plugin); `deregister` when its socket goes away."""

    async def register(self, plugin: Plugin) -> None:
        raise NotImplementedError

    async def deregister(self, plugin: Plugin) -> None:
        raise NotImplementedError


def validate(info: reg.PluginInfo) -> str:
    """Why the kubelet would refuse this CSI plugin ("" if it would not)."""
    if info.type != CSI_PLUGIN:
        return f"plugin type {info.type!r} is not {CSI_PLUGIN}"
    if not info.name:
        return "the plugin has no name"
    if not any(v.split(".")[0] in ("1", "v1") for v in info.supported_versions):
        return f"none of the versions {list(info.supported_versions)} is supported (need 1.x)"
    return ""


class _Inotify:
    """A non-blocking inotify descriptor on one directory (creations, removals, renames)."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
        if libc.inotify_add_watch(self.fd, str(directory).encode(), mask) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {directory}")

    def drain(self) -> bool:
        """Read pending events; True if there were any."""
        seen = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            if not data:
                return seen
            seen = True
            struct.unpack_from("iIII", data)

    def close(self) -> None:
        os.close(self.fd)


class PluginWatcher:
    """Watches `directory` for registration sockets and registers their plugins with
    `handler`. `rescan` (seconds) is a safety net next to inotify."""

    def __init__(self, directory: str | Path, handler: Handler, *, rescan: float = 5.0) -> None:
        self.directory = Path(directory)
        self.handler = handler
        self.rescan = rescan
        self.plugins: dict[str, Plugin] = {}  # by socket path
        self.failed: dict[str, str] = {}  # socket path -> why it was refused for good
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.changed = asyncio.Condition()

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        await self.sync()
        self._task = asyncio.create_task(self._run(), name="csi-plugin-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, name: str, timeout: float = 30.0) -> Plugin:
        """The plugin `name` once it is registered."""

        def find() -> Plugin | None:
            return next((p for p in self.plugins.values() if p.name == name), None)

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(find), timeout)
        found = find()
        assert found is not None
        return found

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        watch: _Inotify | None = None
        try:
            watch = _Inotify(self.directory)
            loop.add_reader(watch.fd, self._wake.set)
        except OSError as e:
            log.warning("inotify on %s failed (%s); rescanning only", self.directory, e)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.rescan)
                self._wake.clear()
                if watch is not None:
                    watch.drain()
                try:
                    await self.sync()
                except Exception:
                    log.exception("plugin registration scan of %s failed", self.directory)
        finally:
            if watch is not None:
                loop.remove_reader(watch.fd)
                watch.close()

    def _sockets(self) -> list[str]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                        out.append(entry.path)
        return sorted(out)

    async def sync(self) -> None:
        """Register new sockets and deregister vanished ones."""
        present = set(await asyncio.to_thread(self._sockets))
        for path in [p for p in self.plugins if p not in present]:
            plugin = self.plugins.pop(path)
            log.info("CSI plugin %s went away", plugin.name)
            with contextlib.suppress(Exception):
                await self.handler.deregister(plugin)
            await self._notify_changed()
        for path in [p for p in self.failed if p not in present]:
            del self.failed[path]
        for path in sorted(present - set(self.plugins) - set(self.failed)):
            await self._register(path)

    async def _register(self, path: str) -> None:
        try:
            info = await get_info(path)
        except grpc.aio.AioRpcError as e:
            log.debug("registration socket %s: %s", path, e.details())
            return  # not ready yet: the next event or rescan retries
        why = validate(info)
        plugin = Plugin(info.name, info.endpoint, tuple(info.supported_versions), path)
        transient = False
        if not why:
            try:
                await self.handler.register(plugin)
            except Exception as e:  # the driver or the API server: retried at the next scan
                why, transient = f"registration of {info.name} failed: {e}", True
        with contextlib.suppress(grpc.aio.AioRpcError):
            await notify(path, not why, why)
        if why:
            log.warning("CSI plugin at %s refused: %s", path, why)
            if not transient:
                self.failed[path] = why
            return
        log.info("CSI plugin %s registered (endpoint %s)", plugin.name, plugin.endpoint)
        self.plugins[path] = plugin
        await self._notify_changed()

    async def _notify_changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()
