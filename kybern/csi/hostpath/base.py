"""What the hostpath driver's services share: its configuration (`Config`), the core object
holding the durable state (`Core`: a lock for names and creation, one per volume for the calls
on it, and every state change written to disk in a thread — concurrent changes share one write —
before the RPC answers), `RPCError` for the spec's error codes, the `rpc` decorator that
turns it into the gRPC status and records per-method handler time (the benchmark's "time in the
driver"), and the request checks every service repeats (required fields, capabilities)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from kybern.csi import mount, spec
from kybern.csi.client import CallStats
from kybern.csi.gen import csi_pb2 as csi
from kybern.csi.hostpath.state import State

log = logging.getLogger("kybern.csi.hostpath")
DRIVER_NAME = "hostpath.csi.kybern.io"
TOPOLOGY_KEY = "topology.hostpath.csi.kybern.io/node"
GiB = 1 << 30
TiB = 1 << 40
Mode = csi.VolumeCapability.AccessMode
SINGLE_NODE_MODES = frozenset(
    {
        Mode.SINGLE_NODE_WRITER,
        Mode.SINGLE_NODE_READER_ONLY,
        Mode.SINGLE_NODE_SINGLE_WRITER,
        Mode.SINGLE_NODE_MULTI_WRITER,
    }
)
T = TypeVar("T")


@dataclass
class Config:
    data_dir: Path
    node_id: str
    name: str = DRIVER_NAME
    vendor_version: str = "0.1.0"
    max_volume_size: int = TiB
    default_size: int = GiB
    capacity: int = 0  # bytes the driver may hand out; 0: the data dir's free space
    max_volumes_per_node: int = 0
    attach: bool = True  # offer PUBLISH_UNPUBLISH_VOLUME
    block: bool | None = None  # None: when loop devices work here

    def __post_init__(self) -> None:
        if self.block is None:
            self.block = mount.loop_supported()


class RPCError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RPCError:
    return RPCError(grpc.StatusCode.NOT_FOUND, message)


@dataclass
class Core:
    """The state, its lock and the configuration, shared by the three services."""

    config: Config
    state: State
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # names, creation, deletion
    stats: CallStats = field(default_factory=CallStats)
    _volume_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _save_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _dirty: bool = False

    @classmethod
    async def open(cls, config: Config) -> Core:
        state = await asyncio.to_thread(State.load, config.data_dir)
        return cls(config, state)

    def volume_lock(self, volume_id: str) -> asyncio.Lock:
        """Serializes the calls on one volume (taken after `lock` where both are needed)."""
        return self._volume_locks.setdefault(volume_id, asyncio.Lock())

    async def save(self) -> None:
        """Write the state durably; concurrent callers share one write that includes all
        their changes."""
        self._dirty = True
        async with self._save_lock:
            if not self._dirty:
                return
            self._dirty = False
            doc = self.state.snapshot_doc()
            await asyncio.to_thread(self.state.write, doc)

    @property
    def topology(self) -> dict[str, str]:
        return {TOPOLOGY_KEY: self.config.node_id}


Handler = Callable[[Any, Any, Any], Awaitable[T]]


def rpc(fn: Handler[T]) -> Handler[T]:
    """Wrap a servicer method: `RPCError` becomes the call's status; time is recorded."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Any) -> T:
        start = time.perf_counter()
        ok = False
        try:
            out = await fn(self, request, context)
            ok = True
            return out
        except RPCError as e:
            log.debug("%s: %s %s", fn.__name__, e.code.name, e.message)
            await context.abort(e.code, e.message)
            raise AssertionError("unreachable") from e
        finally:
            self.core.stats.record(fn.__name__, time.perf_counter() - start, ok)

    return wrapper


def require(value: object, name: str) -> None:
    if not value:
        raise invalid(f"{name} is required")


def check_capability(cap: csi.VolumeCapability, config: Config) -> None:
    """INVALID_ARGUMENT unless the capability names an access type and a known mode (and block
    access is possible here)."""
    kind = cap.WhichOneof("access_type")
    if kind is None:
        raise invalid("volume capability needs an access type (block or mount)")
    if cap.access_mode.mode == Mode.UNKNOWN:
        raise invalid("volume capability needs an access mode")
    if kind == "block" and not config.block:
        raise invalid("block volumes need loop devices, which are not available on this node")


def check_capabilities(caps: Any, config: Config) -> bool:
    """Check a non-empty list of capabilities; True if they ask for block access. Asking for
    both block and mount access of one volume is INVALID_ARGUMENT."""
    if not caps:
        raise invalid("volume capabilities are required")
    kinds = set()
    for cap in caps:
        check_capability(cap, config)
        kinds.add(cap.WhichOneof("access_type"))
    if len(kinds) > 1:
        raise invalid("a volume cannot have both block and mount access types")
    return "block" in kinds


def summary(cap: csi.VolumeCapability) -> list[Any]:
    kind, fs, flags, mode = spec.capability_summary(cap)
    return [kind, fs, list(flags), mode]
