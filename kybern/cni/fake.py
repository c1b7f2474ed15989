"""An in-memory `Executor` for tests of code that runs CNI plugins (the runtime itself, and the
container runtimes built on it): plugins are Python callables keyed by executable name, every
call is recorded with its environment and decoded stdin, and nothing is spawned. By default a
plugin answers VERSION with every supported version, passes `prevResult` on for ADD (an empty
result when there is none) and succeeds for everything else; a handler raising `FakeFailure`
makes the call fail with that spec error."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from kybern.cni import version as versions
from kybern.cni.invoke import ExecOutput


@dataclasses.dataclass(frozen=True)
class FakeCall:
    plugin: str  # the executable's name
    command: str
    env: Mapping[str, str]
    stdin: Mapping[str, Any]

    @property
    def cni_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith("CNI_")}


class FakeFailure(Exception):
    """Raised by a handler: the plugin exits 1 printing this spec error."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


Handler = Callable[[FakeCall], Mapping[str, Any] | None]


def default_handler(call: FakeCall) -> Mapping[str, Any] | None:
    if call.command == "ADD":
        out = dict(call.stdin.get("prevResult") or {})
        out["cniVersion"] = call.stdin.get("cniVersion", versions.CURRENT)
        return out
    return None


class FakeExecutor:
    """`Executor` whose plugins are `handlers[name]` (default: `default_handler`) and which
    report `versions[name]` (default: all) on VERSION. `calls` lists every call in order."""

    def __init__(
        self,
        handlers: Mapping[str, Handler] | None = None,
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.handlers = dict(handlers or {})
        self.versions = {k: list(v) for k, v in (versions or {}).items()}
        self.calls: list[FakeCall] = []

    def of(self, command: str) -> list[FakeCall]:
        return [c for c in self.calls if c.command == command]

    async def run(
        self, path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float | None
    ) -> ExecOutput:
        name = os.path.basename(path)
        call = FakeCall(name, env.get("CNI_COMMAND", ""), dict(env), orjson.loads(stdin))
        self.calls.append(call)
        if call.command == "VERSION":
            supported = self.versions.get(name, list(versions.SUPPORTED))
            body = {"cniVersion": supported[-1], "supportedVersions": supported}
            return ExecOutput(0, orjson.dumps(body), b"", 0.0)
        handler = self.handlers.get(name, default_handler)
        try:
            out = handler(call)
        except FakeFailure as e:
            err = {"cniVersion": call.stdin.get("cniVersion", ""), "code": e.code, "msg": e.msg}
            if e.details:
                err["details"] = e.details
            return ExecOutput(1, orjson.dumps(err), b"", 0.0)
        return ExecOutput(0, orjson.dumps(out) if out is not None else b"", b"", 0.0)
