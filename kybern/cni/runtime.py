"""The CNI runtime: what a container runtime does with a network configuration list (libcni's
role for containerd and CRI-O). `Runtime` runs ADD through the chain (each plugin gets the
previous plugin's result as `prevResult`), DEL in reverse, CHECK, 1.1's STATUS and GC, and
VERSION for negotiation; it keeps the result cache, serializes operations on one container,
bounds how many plugins run at once, and applies a timeout to every plugin call. The node's
runtime and `kybern cni` are its callers; the protocol details live in `protocol`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kybern.cni import protocol
from kybern.cni import version as versions
from kybern.cni.cache import DEFAULT_CACHE_DIR, CachedAttachment, ResultCache
from kybern.cni.config import NetworkConfigList, PluginConfig
from kybern.cni.errors import (
    CNIError,
    Code,
    MultiError,
    PluginNotFoundError,
    PluginTimeoutError,
)
from kybern.cni.invoke import DEFAULT_BIN_DIRS, Executor, SubprocessExecutor, find_plugin
from kybern.cni.protocol import Command, GCAttachment, RuntimeConf
from kybern.cni.result import Result

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class _Binary:
    path: Path
    key: tuple[int, int, int, int]  # device, inode, size, mtime: a replaced binary is re-asked


class Runtime:
    """Runs network configuration lists against plugins found in `bin_dirs`.

    `cache_dir` holds the result cache (libcni's default, shared with cnitool). `timeout` bounds
    each plugin call (seconds, None for none); `max_parallel` bounds concurrent plugin
    processes. With `negotiate`, the chain runs at the highest version the list declares and
    every plugin reports through VERSION (asked once per binary); without, at the list's own
    highest version. `env` is the environment plugins inherit (default: this process's).
    `durable_cache` fsyncs every cache write (libcni does not; it costs a few ms per ADD)."""

    def __init__(
        self,
        bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
        *,
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
        executor: Executor | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_parallel: int = 32,
        negotiate: bool = True,
        env: Mapping[str, str] | None = None,
        durable_cache: bool = True,
    ) -> None:
        self.bin_dirs = tuple(str(d) for d in bin_dirs)
        self.cache = ResultCache(cache_dir, fsync=durable_cache)
        self.executor: Executor = executor or SubprocessExecutor()
        self.timeout = timeout
        self.negotiate_versions = negotiate
        self._env = dict(os.environ if env is None else env)
        self._slots = asyncio.Semaphore(max_parallel)
        self._versions: dict[tuple[str, tuple[int, int, int, int]], tuple[str, ...]] = {}
        self._version_calls: dict[tuple[str, tuple[int, int, int, int]], asyncio.Future[Any]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- plumbing ---------------------------------------------------------------------------

    def find_plugin(self, plugin_type: str) -> Path:
        return find_plugin(plugin_type, self.bin_dirs)

    def _binary(self, plugin_type: str) -> _Binary:
        path = self.find_plugin(plugin_type)
        st = path.stat()
        return _Binary(path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    async def _exec(
        self,
        plugin_type: str,
        path: Path,
        command: Command,
        env: dict[str, str],
        stdin: bytes,
        network: str = "",
    ) -> tuple[int, bytes, bytes]:
        where = {"plugin": plugin_type, "command": command, "network": network}
        async with self._slots:
            try:
                out = await self.executor.run(str(path), env=env, stdin=stdin, timeout=self.timeout)
            except TimeoutError:
                raise PluginTimeoutError(
                    Code.INTERNAL,
                    f"plugin did not finish within {self.timeout:g}s; killed",
                    **where,
                ) from None
            except OSError as e:
                raise CNIError(
                    Code.INTERNAL, f"cannot run {path}: {e.strerror or e}", **where
                ) from None
        log.debug(
            "cni %s %s (%s) exit %d in %.3fs",
            command,
            plugin_type,
            network,
            out.returncode,
            out.duration,
        )
        return out.returncode, out.stdout, out.stderr

    def _lock(self, container_id: str) -> asyncio.Lock:
        lock = self._locks.get(container_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[container_id] = lock
        return lock

    async def _call(
        self,
        net: NetworkConfigList,
        plugin: PluginConfig,
        command: Command,
        cni_version: str,
        rt: RuntimeConf | None,
        *,
        prev_result: Result | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[int, bytes, bytes]:
        try:
            path = self.find_plugin(plugin.type)
        except CNIError as e:
            raise PluginNotFoundError(
                e.code, e.msg, plugin=plugin.type, command=command, network=net.name
            ) from None
        conf = protocol.plugin_stdin(
            plugin,
            name=net.name,
            cni_version=cni_version,
            prev_result=prev_result,
            capability_args=rt.capability_args if rt is not None else None,
            extra=extra,
        )
        env = protocol.build_env(command, rt, self.bin_dirs, self._env)
        return await self._exec(
            plugin.type, path, command, env, protocol.encode(conf), network=net.name
        )

    # -- versions ---------------------------------------------------------------------------

    async def version_info(self, plugin_type: str) -> tuple[str, ...]:
        """The spec versions a plugin supports (VERSION), cached per binary. (Finding and
        stat-ing the binary are a few local syscalls, done inline as for every call.)"""
        binary = self._binary(plugin_type)
        key = (str(binary.path), binary.key)
        while key not in self._versions:
            pending = self._version_calls.get(key)
            if pending is None:
                break
            try:
                return tuple(await asyncio.shield(pending))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # the task that was asking got cancelled, not this one: ask anew
        else:
            return self._versions[key]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._version_calls[key] = fut
        try:
            env = protocol.build_env("VERSION", None, self.bin_dirs, self._env)
            rc, out, err = await self._exec(
                plugin_type, binary.path, "VERSION", env, protocol.version_stdin(versions.CURRENT)
            )
            supported = protocol.parse_version(rc, out, err, plugin=plugin_type)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._version_calls.pop(key, None)
        self._versions[key] = supported
        fut.set_result(supported)
        return supported

    async def negotiate(self, net: NetworkConfigList) -> str:
        """The version the chain runs at: the highest one the list declares that every plugin
        supports. Raises an incompatible-version error naming the plugin that rules out the
        list's own version when there is none."""
        if not self.negotiate_versions:
            return net.cni_version
        types = list(dict.fromkeys(p.type for p in net.plugins))
        infos = await asyncio.gather(*(self._version_info_for(net, t) for t in types))
        chosen = versions.select(net.cni_versions, infos)
        if chosen is not None:
            return chosen
        for t, supported in zip(types, infos, strict=True):
            if net.cni_version not in supported:
                raise CNIError(
                    Code.INCOMPATIBLE_VERSION,
                    f"plugin supports CNI versions {list(supported)}; the network declares "
                    f"{list(net.cni_versions)} and no version suits every plugin of the chain",
                    plugin=t,
                    network=net.name,
                )
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"no CNI version of {list(net.cni_versions)} suits every plugin",
            network=net.name,
        )

    async def _version_info_for(self, net: NetworkConfigList, plugin_type: str) -> tuple[str, ...]:
        try:
            return await self.version_info(plugin_type)
        except CNIError as e:
            e.network = e.network or net.name
            raise

    async def _lenient_version(self, net: NetworkConfigList) -> str:
        """DEL and GC must make progress even when VERSION cannot be asked (plugin gone)."""
        try:
            return await self.negotiate(net)
        except CNIError as e:
            log.warning("cni: using version %s for %s: %s", net.cni_version, net.name, e)
            return net.cni_version

    # -- cache ------------------------------------------------------------------------------

    async def cached_attachment(
        self, net: NetworkConfigList | str, rt: RuntimeConf
    ) -> CachedAttachment | None:
        name = net if isinstance(net, str) else net.name
        try:
            return await asyncio.to_thread(self.cache.load, name, rt.container_id, rt.ifname)
        except ValueError as e:
            log.warning(
                "cni: ignoring unreadable cache entry of %s/%s: %s", name, rt.container_id, e
            )
            return None

    async def cached_result(self, net: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """What the last ADD of this attachment returned (at the chain's version), if known."""
        entry = await self.cached_attachment(net, rt)
        return self._entry_result(net, entry, await self._lenient_version(net))

    def _entry_result(
        self, net: NetworkConfigList, entry: CachedAttachment | None, cni_version: str
    ) -> Result | None:
        if entry is None or entry.result is None:
            return None
        try:
            return Result.from_json(entry.result, default_version=cni_version).convert(cni_version)
        except ValueError as e:
            log.warning("cni: cached result of %s/%s unusable: %s", net.name, entry.container_id, e)
            return None

    async def cached_attachments(self, container_id: str = "") -> list[CachedAttachment]:
        return await asyncio.to_thread(self.cache.list, container_id=container_id)

    async def _store(
        self, net: NetworkConfigList, rt: RuntimeConf, result: Result | None, version: str
    ) -> None:
        entry = CachedAttachment(
            network=net.name,
            container_id=rt.container_id,
            ifname=rt.ifname,
            netns=rt.netns,
            cni_args=rt.args,
            capability_args=dict(rt.capability_args),
            config=net.bytes,
            result=result.to_json(version) if result is not None else None,
        )
        await asyncio.to_thread(self.cache.store, entry)

    async def _record_failed_add(
        self, net: NetworkConfigList, rt: RuntimeConf, version: str
    ) -> None:
        try:
            await self._store(net, rt, None, version)
        except OSError as e:
            log.warning("cni: cannot record failed ADD of %s/%s: %s", net.name, rt.container_id, e)

    # -- operations -------------------------------------------------------------------------

    async def add(self, net: NetworkConfigList, rt: RuntimeConf) -> Result:
        """ADD the container to the network: the chain in order, each plugin fed the previous
        result. The result (at the chain's version) is cached. If a plugin fails, the error is
        raised and the attachment stays recorded without a result, so that a DEL (which the
        caller owes after a failed ADD) and GC can find it."""
        protocol.validate_runtime_conf(rt)
        cni_version = await self.negotiate(net)
        async with self._lock(rt.container_id):
            prev: Result | None = None
            for plugin in net.plugins:
                try:
                    rc, out, err = await self._call(
                        net, plugin, "ADD", cni_version, rt, prev_result=prev
                    )
                    result = protocol.parse_add(
                        rc,
                        out,
                        err,
                        cni_version=cni_version,
                        plugin=plugin.type,
                        network=net.name,
                    )
                    prev = result.convert(cni_version)
                except ValueError as e:
                    await self._record_failed_add(net, rt, cni_version)
                    raise CNIError(
                        Code.DECODING_FAILURE,
                        f"cannot convert result to {cni_version}: {e}",
                        plugin=plugin.type,
                        command="ADD",
                        network=net.name,
                    ) from None
                except BaseException:
                    await asyncio.shield(self._record_failed_add(net, rt, cni_version))
                    raise
            assert prev is not None
            try:
                await self._store(net, rt, prev, cni_version)
            except OSError as e:
                raise CNIError(
                    Code.IO_FAILURE,
                    f"cannot write result cache: {e.strerror or e}",
                    command="ADD",
                    network=net.name,
                ) from None
            return prev

    async def delete(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL the container from the network: the chain in reverse, each plugin given the
        cached result as `prevResult` (0.4.0 and later). When the caller passes no CNI_ARGS or
        capability arguments, those the ADD was given are used (portmap, for one, removes its
        rules only when it sees the same `portMappings`). Every plugin is called even if one
        fails; the cache entry goes only when all succeeded. Idempotent."""
        protocol.validate_runtime_conf(rt)
        cni_version = await self._lenient_version(net)
        async with self._lock(rt.container_id):
            entry = await self.cached_attachment(net, rt)
            if entry is not None and not rt.capability_args and entry.capability_args:
                rt = dataclasses.replace(rt, capability_args=entry.capability_args)
            if entry is not None and not rt.args and entry.cni_args:
                rt = dataclasses.replace(rt, args=entry.cni_args)
            prev: Result | None = None
            if versions.at_least(cni_version, "0.4.0"):
                prev = self._entry_result(net, entry, cni_version)
            errors: list[CNIError] = []
            for plugin in reversed(net.plugins):
                try:
                    rc, out, err = await self._call(
                        net, plugin, "DEL", cni_version, rt, prev_result=prev
                    )
                    protocol.check_exit(
                        rc, out, err, plugin=plugin.type, command="DEL", network=net.name
                    )
                except CNIError as e:
                    errors.append(e)
            if errors:
                raise errors[0] if len(errors) == 1 else MultiError(errors)
            await asyncio.to_thread(self.cache.remove, net.name, rt.container_id, rt.ifname)

    async def check(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK the attachment against the cached ADD result; raises the first plugin error.
        Does nothing when the list sets `disableCheck`."""
        protocol.validate_runtime_conf(rt)
        cni_version = await self.negotiate(net)
        if not versions.at_least(cni_version, "0.4.0"):
            raise CNIError(
                Code.INCOMPATIBLE_VERSION,
                f"configuration version {cni_version} does not support the CHECK command",
                command="CHECK",
                network=net.name,
            )
        if net.disable_check:
            return
        async with self._lock(rt.container_id):
            prev = self._entry_result(net, await self.cached_attachment(net, rt), cni_version)
            if prev is None:
                raise CNIError(
                    Code.UNKNOWN_CONTAINER,
                    f"no cached ADD result for container {rt.container_id!r} interface "
                    f"{rt.ifname!r}",
                    command="CHECK",
                    network=net.name,
                )
            for plugin in net.plugins:
                rc, out, err = await self._call(
                    net, plugin, "CHECK", cni_version, rt, prev_result=prev
                )
                protocol.check_exit(
                    rc, out, err, plugin=plugin.type, command="CHECK", network=net.name
                )

    async def status(self, net: NetworkConfigList) -> None:
        """STATUS (1.1): returns when every plugin is ready for ADDs, else raises the first
        plugin's error (code 50 or 51 by the spec). A chain below 1.1 counts as ready."""
        cni_version = await self.negotiate(net)
        if not versions.at_least(cni_version, "1.1.0"):
            return
        for plugin in net.plugins:
            rc, out, err = await self._call(net, plugin, "STATUS", cni_version, None)
            protocol.check_exit(
                rc, out, err, plugin=plugin.type, command="STATUS", network=net.name
            )

    async def gc(self, net: NetworkConfigList, valid: Iterable[GCAttachment]) -> None:
        """Garbage-collect the network (1.1): DEL every cached attachment of this network that
        is not in `valid` (with its cached netns and arguments), then, if the chain speaks 1.1,
        send GC with `cni.dev/valid-attachments` to every plugin so it can drop leftovers the
        cache does not know. Nothing at all when the list sets `disableGC`. Errors are
        collected and raised together at the end."""
        if net.disable_gc:
            return
        keep = {(a.container_id, a.ifname) for a in valid}
        errors: list[CNIError] = []
        entries = await asyncio.to_thread(self.cache.list, network=net.name)
        for entry in entries:
            if (entry.container_id, entry.ifname) in keep:
                continue
            rt = RuntimeConf(
                container_id=entry.container_id,
                netns=entry.netns,
                ifname=entry.ifname,
                args=entry.cni_args,
                capability_args=entry.capability_args,
            )
            try:
                await self.delete(net, rt)
            except CNIError as e:
                errors.append(e)
        cni_version = await self._lenient_version(net)
        if versions.at_least(cni_version, "1.1.0"):
            extra = protocol.gc_extra(GCAttachment(c, i) for c, i in sorted(keep))
            for plugin in net.plugins:
                try:
                    rc, out, err = await self._call(
                        net, plugin, "GC", cni_version, None, extra=extra
                    )
                    protocol.check_exit(
                        rc, out, err, plugin=plugin.type, command="GC", network=net.name
                    )
                except CNIError as e:
                    errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)
