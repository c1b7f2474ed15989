"""Running plugin executables: finding a plugin `type` in the plugin directories, and the
`Executor` protocol with its asyncio implementation. `SubprocessExecutor` starts the plugin in a
new session (so a timeout or a cancellation kills the plugin and the IPAM plugins it started),
writes stdin, collects stdout and stderr, and never blocks the event loop. Tests and benchmarks
wrap it (the protocol is one method) to record or time every call."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kybern.cni.errors import Code, PluginNotFoundError

DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")


@dataclasses.dataclass(frozen=True)
class ExecOutput:
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float  # seconds from spawn to exit


class Executor(Protocol):
    """Runs one plugin binary to completion. Raises `TimeoutError` when `timeout` passes (the
    process is gone by then) and `OSError` when it cannot be started."""

    async def run(
        self, path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float | None
    ) -> ExecOutput: ...


def find_plugin(plugin_type: str, bin_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """The first executable regular file named `plugin_type` in `bin_dirs`."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise PluginNotFoundError(Code.INTERNAL, f"invalid plugin type {plugin_type!r}")
    for d in bin_dirs:
        if not str(d):
            continue
        candidate = Path(d) / plugin_type
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    dirs = ", ".join(str(d) for d in bin_dirs) or "(no plugin directories)"
    raise PluginNotFoundError(
        Code.INTERNAL, f"failed to find plugin {plugin_type!r} in path [{dirs}]", plugin=plugin_type
    )


class SubprocessExecutor:
    """`Executor` on asyncio subprocesses. A binary that is still being written (`ETXTBSY`) is
    retried a few times, as libcni does."""

    def __init__(self, *, busy_retries: int = 5, busy_delay: float = 0.1) -> None:
        self._busy_retries = busy_retries
        self._busy_delay = busy_delay

    async def run(
        self, path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float | None
    ) -> ExecOutput:
        attempt = 0
        while True:
            try:
                return await self._run_once(path, env=env, stdin=stdin, timeout=timeout)
            except OSError as e:
                if e.errno != errno.ETXTBSY or attempt >= self._busy_retries:
                    raise
                attempt += 1
                await asyncio.sleep(self._busy_delay * attempt)

    async def _run_once(
        self, path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float | None
    ) -> ExecOutput:
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            async with asyncio.timeout(timeout):
                _, stdout, stderr = await asyncio.gather(
                    _feed(proc.stdin, stdin), proc.stdout.read(), proc.stderr.read()
                )
                await proc.wait()
        except BaseException:
            # Timeout or cancellation: the whole process group goes, and is reaped.
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        returncode = proc.returncode
        assert returncode is not None
        return ExecOutput(returncode, stdout, stderr, time.monotonic() - start)


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    """Write stdin and close it. A plugin may exit without reading it all (VERSION often does):
    asyncio then reports a broken pipe, uvloop a RuntimeError on the closed transport."""
    try:
        pipe.write(data)
        await pipe.drain()
    except (BrokenPipeError, ConnectionResetError, RuntimeError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            pipe.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
