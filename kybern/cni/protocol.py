"""The sans-I/O core of plugin invocation: everything between "run plugin P for command C" and
the bytes exchanged with the executable, without running anything. It builds the `CNI_*`
environment and the stdin configuration (the plugin's own object with `name`, `cniVersion`,
`prevResult` and the `runtimeConfig` keys its capabilities ask for injected), and turns an
exit status plus stdout/stderr into a `Result`, a version list or a `CNIError`. `Runtime` feeds
it; unit tests drive it directly."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import orjson

from kybern.cni import version as versions
from kybern.cni.config import PluginConfig
from kybern.cni.errors import CNIError, Code
from kybern.cni.result import Result

Command = Literal["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"]
COMMANDS: tuple[Command, ...] = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
# An earlier text of spec 1.1 named the GC key `cni.dev/attachments`; libcni sends both.
LEGACY_ATTACHMENTS = "cni.dev/attachments"

_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


@dataclasses.dataclass(frozen=True)
class RuntimeConf:
    """Per-attachment arguments of one ADD/DEL/CHECK: which container, which netns, which
    interface, the `CNI_ARGS` pairs and the capability arguments (`portMappings`, `bandwidth`,
    `ips`, `mac`, `dns`, ...) offered to plugins that declare the capability."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class GCAttachment:
    """One attachment a GC must keep (`cni.dev/valid-attachments` entry)."""

    container_id: str
    ifname: str

    def to_json(self) -> dict[str, str]:
        return {"containerID": self.container_id, "ifname": self.ifname}


def validate_container_id(container_id: str) -> None:
    if not container_id or not _CONTAINER_ID.match(container_id):
        raise CNIError(
            Code.INVALID_ENVIRONMENT,
            f"invalid container id {container_id!r}: must start with a letter or digit and "
            "contain only letters, digits, '_', '.' and '-'",
        )


def validate_ifname(ifname: str) -> None:
    """Linux interface names: 1-15 bytes, not `.`/`..`, no `/`, `:` or whitespace."""
    bad = (
        not ifname
        or len(ifname.encode()) > 15
        or ifname in (".", "..")
        or any(c in ifname for c in "/:")
        or any(c.isspace() for c in ifname)
    )
    if bad:
        raise CNIError(Code.INVALID_ENVIRONMENT, f"invalid interface name {ifname!r}")


def validate_runtime_conf(rt: RuntimeConf) -> None:
    validate_container_id(rt.container_id)
    validate_ifname(rt.ifname)
    for key, value in rt.args:
        # Plugins split CNI_ARGS on ';' and each pair on '=': neither may hide inside a pair.
        if not key or any(c in key or c in value for c in ";="):
            raise CNIError(Code.INVALID_ENVIRONMENT, f"invalid CNI_ARGS pair {key!r}={value!r}")


def format_cni_args(args: Iterable[tuple[str, str]]) -> str:
    """`[("K8S_POD_NAME", "web")]` -> `"K8S_POD_NAME=web"` (pairs joined by `;`)."""
    return ";".join(f"{k}={v}" for k, v in args)


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """`"A=1;B=2"` -> pairs; every pair needs a non-empty key and value (as cnitool)."""
    if not text:
        return ()
    pairs = []
    for item in text.split(";"):
        kv = item.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"invalid CNI_ARGS pair {item!r}")
        pairs.append((kv[0], kv[1]))
    return tuple(pairs)


def build_env(
    command: Command,
    rt: RuntimeConf | None,
    cni_path: Sequence[str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The plugin's environment: `base` (normally the runtime's own, so `PATH` reaches plugins
    that run iptables) without any inherited `CNI_*`, plus the variables the command takes:
    all six for ADD/DEL/CHECK, `CNI_COMMAND` and `CNI_PATH` for GC/STATUS, only `CNI_COMMAND`
    for VERSION."""
    env = {k: v for k, v in (base or {}).items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = command
    if command in ("ADD", "DEL", "CHECK"):
        if rt is None:
            raise ValueError(f"{command} needs a RuntimeConf")
        env["CNI_CONTAINERID"] = rt.container_id
        env["CNI_NETNS"] = rt.netns
        env["CNI_IFNAME"] = rt.ifname
        env["CNI_ARGS"] = format_cni_args(rt.args)
    if command != "VERSION":
        env["CNI_PATH"] = ":".join(str(p) for p in cni_path)
    return env


def runtime_config(plugin: PluginConfig, capability_args: Mapping[str, Any]) -> dict[str, Any]:
    """The `runtimeConfig` for one plugin: the capability arguments whose key the plugin declares
    as a true capability, nothing else."""
    return {k: v for k, v in capability_args.items() if k in plugin.capabilities}


def plugin_stdin(
    plugin: PluginConfig,
    *,
    name: str,
    cni_version: str,
    prev_result: Result | Mapping[str, Any] | None = None,
    capability_args: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The configuration object a plugin reads on stdin: its own object from the list with the
    list's `name` and the chain's `cniVersion` injected, `prevResult` (rendered at that version)
    when given, `runtimeConfig` when any capability argument applies, and `extra` keys (GC's
    valid attachments). Keys the runtime injects replace same-named keys of the file."""
    conf = dict(plugin.raw)
    conf["name"] = name
    conf["cniVersion"] = cni_version
    if prev_result is not None:
        conf["prevResult"] = (
            prev_result.to_json(cni_version) if isinstance(prev_result, Result) else prev_result
        )
    if capability_args:
        rc = runtime_config(plugin, capability_args)
        if rc:
            conf["runtimeConfig"] = rc
    if extra:
        conf.update(extra)
    return conf


def encode(conf: Mapping[str, Any]) -> bytes:
    return orjson.dumps(conf)


def gc_extra(valid: Iterable[GCAttachment]) -> dict[str, Any]:
    items = [a.to_json() for a in valid]
    return {VALID_ATTACHMENTS: items, LEGACY_ATTACHMENTS: items}


def version_stdin(cni_version: str) -> bytes:
    """VERSION reads only the caller's version on stdin."""
    return orjson.dumps({"cniVersion": cni_version})


def _text(data: bytes, limit: int = 4000) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def check_exit(
    returncode: int,
    stdout: bytes,
    stderr: bytes,
    *,
    plugin: str = "",
    command: str = "",
    network: str = "",
) -> None:
    """Raise the plugin's error if it failed: its spec error object from stdout when it printed
    one, else what it wrote (stderr first) with the exit status."""
    if returncode == 0:
        return
    where = {"plugin": plugin, "command": command, "network": network, "stderr": _text(stderr)}
    err: Any = None
    if stdout.strip():
        try:
            err = orjson.loads(stdout)
        except orjson.JSONDecodeError:
            err = None
    if isinstance(err, dict) and isinstance(err.get("code"), int) and "msg" in err:
        details = err.get("details")
        raise CNIError(
            err["code"],
            str(err.get("msg") or ""),
            details if isinstance(details, str) else "",
            **where,
        )
    status = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    text = _text(stderr) or _text(stdout)
    raise CNIError(Code.INTERNAL, f"{text} ({status})" if text else status, **where)


def parse_add(
    returncode: int,
    stdout: bytes,
    stderr: bytes,
    *,
    cni_version: str,
    plugin: str = "",
    network: str = "",
) -> Result:
    """An ADD's outcome: the plugin's result (raises its error, or a decoding error naming it)."""
    check_exit(returncode, stdout, stderr, plugin=plugin, command="ADD", network=network)
    where = {"plugin": plugin, "command": "ADD", "network": network, "stderr": _text(stderr)}
    if not stdout.strip():
        raise CNIError(Code.DECODING_FAILURE, "plugin printed no result", **where)
    try:
        obj = orjson.loads(stdout)
    except orjson.JSONDecodeError as e:
        raise CNIError(Code.DECODING_FAILURE, f"result is not JSON: {e}", **where) from None
    if not isinstance(obj, dict):
        raise CNIError(Code.DECODING_FAILURE, "result is not a JSON object", **where)
    try:
        return Result.from_json(obj, default_version=cni_version)
    except ValueError as e:
        raise CNIError(Code.DECODING_FAILURE, f"invalid result: {e}", **where) from None


def parse_version(
    returncode: int, stdout: bytes, stderr: bytes, *, plugin: str = ""
) -> tuple[str, ...]:
    """The versions a plugin supports, from its VERSION output. A plugin from before VERSION
    existed (it rejects the command) speaks 0.1.0; an answer without `supportedVersions` speaks
    just its `cniVersion`."""
    try:
        check_exit(returncode, stdout, stderr, plugin=plugin, command="VERSION")
    except CNIError as e:
        if "unknown CNI_COMMAND" in e.msg:
            return ("0.1.0",)
        raise
    where = {"plugin": plugin, "command": "VERSION", "stderr": _text(stderr)}
    try:
        obj = orjson.loads(stdout)
    except orjson.JSONDecodeError as e:
        raise CNIError(Code.DECODING_FAILURE, f"VERSION output is not JSON: {e}", **where) from None
    if not isinstance(obj, dict):
        raise CNIError(Code.DECODING_FAILURE, "VERSION output is not a JSON object", **where)
    supported = obj.get("supportedVersions")
    if supported is None:
        own = obj.get("cniVersion") or "0.1.0"
        supported = [own]
    if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
        raise CNIError(
            Code.DECODING_FAILURE, "supportedVersions must be a list of strings", **where
        )
    try:
        return tuple(versions.sort(supported))
    except ValueError as e:
        raise CNIError(Code.DECODING_FAILURE, f"bad VERSION output: {e}", **where) from None
