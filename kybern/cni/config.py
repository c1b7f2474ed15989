"""Network configuration: parsing `.conflist` network configuration lists and single-plugin
`.conf`/`.json` files (converted to a one-plugin list), and finding a network in a conf dir whose
files are read in lexical order, as container runtimes do. `cniVersion` and 1.1's `cniVersions`
are both honoured: the list's `cni_version` is the highest declared version this library speaks
(the runtime may lower it further after asking the plugins)."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from kybern.cni import version as versions
from kybern.cni.errors import ConfigError, NetworkNotFoundError

log = logging.getLogger(__name__)

EXTENSIONS = (".conf", ".conflist", ".json")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


@dataclasses.dataclass(frozen=True)
class PluginConfig:
    """One plugin of a chain: its configuration object as written (`raw`), its `type` (the
    executable's name) and the capabilities it declares true (filtering `runtimeConfig`)."""

    raw: Mapping[str, Any]
    type: str
    capabilities: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class NetworkConfigList:
    """A network: a named chain of plugins. `cni_versions` is every version the file declares
    (ascending); `cni_version` the highest of them this library supports."""

    name: str
    cni_version: str
    plugins: tuple[PluginConfig, ...]
    cni_versions: tuple[str, ...] = ()
    disable_check: bool = False
    disable_gc: bool = False
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: Path | None = None

    @property
    def bytes(self) -> bytes:
        """The list as JSON (what the result cache stores as `config`)."""
        return orjson.dumps(self.raw)


def validate_name(name: str) -> str:
    """Network names: alphanumeric first, then alphanumerics, `_`, `.` or `-` (as libcni)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid network name {name!r}: must start with a letter or digit and contain only "
            "letters, digits, '_', '.' and '-'"
        )
    return name


def _load_json(data: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{what}: invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{what}: must be a JSON object")
    return obj


def _bool(obj: Mapping[str, Any], key: str, what: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{what}: {key} must be true or false, not {value!r}")


def parse_plugin(data: bytes | str | Mapping[str, Any], what: str = "plugin") -> PluginConfig:
    """One plugin configuration object; it must name its `type`."""
    obj = _load_json(data, what)
    ptype = obj.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise ConfigError(f"{what}: missing 'type'")
    if "/" in ptype or ptype in (".", ".."):
        raise ConfigError(f"{what}: invalid plugin type {ptype!r}")
    caps = obj.get("capabilities", {})
    if caps is None:
        caps = {}
    if not isinstance(caps, Mapping) or not all(isinstance(v, bool) for v in caps.values()):
        raise ConfigError(f"{what}: capabilities must be an object of booleans")
    return PluginConfig(
        raw=obj, type=ptype, capabilities=frozenset(k for k, v in caps.items() if v)
    )


def _declared_versions(obj: Mapping[str, Any], what: str) -> list[str]:
    declared: list[str] = []
    single = obj.get("cniVersion")
    if single not in (None, ""):
        if not isinstance(single, str):
            raise ConfigError(f"{what}: cniVersion must be a string")
        declared.append(single)
    many = obj.get("cniVersions")
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(v, str) for v in many):
            raise ConfigError(f"{what}: cniVersions must be a list of strings")
        declared.extend(many)
    try:
        return versions.sort(declared)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None


def parse_list(
    data: bytes | str | Mapping[str, Any], source: Path | None = None
) -> NetworkConfigList:
    """A network configuration list (an object with `plugins`)."""
    what = str(source) if source else "network configuration list"
    obj = _load_json(data, what)
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what}: no network name")
    try:
        validate_name(name)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
    declared = _declared_versions(obj, what)
    if not declared:
        raise ConfigError(f"{what}: no cniVersion")
    chosen = versions.select(declared)
    if chosen is None:
        raise ConfigError(
            f"{what}: none of the declared CNI versions {declared} is supported "
            f"(supported: {', '.join(versions.SUPPORTED)})"
        )
    plugins_raw = obj.get("plugins")
    if not isinstance(plugins_raw, list) or not plugins_raw:
        raise ConfigError(f"{what}: 'plugins' must be a non-empty list")
    plugins = tuple(parse_plugin(p, f"{what}: plugins[{i}]") for i, p in enumerate(plugins_raw))
    return NetworkConfigList(
        name=name,
        cni_version=chosen,
        plugins=plugins,
        cni_versions=tuple(declared),
        disable_check=_bool(obj, "disableCheck", what),
        disable_gc=_bool(obj, "disableGC", what),
        raw=obj,
        source=source,
    )


def list_from_plugin(plugin: PluginConfig, source: Path | None = None) -> NetworkConfigList:
    """A single-plugin configuration (`.conf`) as a one-plugin list of the same name/version."""
    raw: dict[str, Any] = {"name": plugin.raw.get("name"), "plugins": [dict(plugin.raw)]}
    if "cniVersion" in plugin.raw:
        raw["cniVersion"] = plugin.raw["cniVersion"]
    return parse_list(raw, source)


def parse(data: bytes | str | Mapping[str, Any], source: Path | None = None) -> NetworkConfigList:
    """A list or a single plugin configuration, told apart by the `plugins` key."""
    obj = _load_json(data, str(source) if source else "network configuration")
    if "plugins" in obj:
        return parse_list(obj, source)
    return list_from_plugin(parse_plugin(obj, str(source) if source else "plugin"), source)


def load_file(path: str | os.PathLike[str]) -> NetworkConfigList:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {p}: {e.strerror or e}") from None
    return parse(data, p)


def conf_files(conf_dir: str | os.PathLike[str]) -> list[Path]:
    """Configuration files of a conf dir (`.conf`, `.conflist`, `.json`), in lexical order of
    their names; a missing directory has none."""
    d = Path(conf_dir)
    try:
        entries = list(os.scandir(d))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(f"cannot read {d}: {e.strerror or e}") from None
    names = sorted(
        e.name
        for e in entries
        if e.name.endswith(EXTENSIONS) and not e.is_dir(follow_symlinks=True)
    )
    return [d / n for n in names]


def load_dir(conf_dir: str | os.PathLike[str], *, strict: bool = False) -> list[NetworkConfigList]:
    """Every valid network of a conf dir, in file order. Invalid files are logged and skipped,
    or raise when `strict`."""
    out = []
    for path in conf_files(conf_dir):
        try:
            out.append(load_file(path))
        except ConfigError as e:
            if strict:
                raise
            log.warning("skipping CNI configuration %s", e)
    return out


def find(
    conf_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], name: str
) -> NetworkConfigList:
    """The first network named `name` (files in lexical order; dirs in the order given). Files
    that do not parse are skipped; if none matches, the error lists them."""
    dirs = [conf_dirs] if isinstance(conf_dirs, str | os.PathLike) else list(conf_dirs)
    problems = []
    for d in dirs:
        for path in conf_files(d):
            try:
                net = load_file(path)
            except ConfigError as e:
                problems.append(str(e))
                continue
            if net.name == name:
                return net
    where = ", ".join(str(d) for d in dirs)
    msg = f"no network configuration named {name!r} in {where}"
    if problems:
        msg += "; unreadable files: " + "; ".join(problems)
    raise NetworkNotFoundError(msg)


def default(conf_dir: str | os.PathLike[str]) -> NetworkConfigList:
    """The network a runtime uses when none is named: the first valid file in lexical order."""
    for path in conf_files(conf_dir):
        try:
            return load_file(path)
        except ConfigError as e:
            log.warning("skipping CNI configuration %s", e)
    raise NetworkNotFoundError(f"no valid network configuration in {conf_dir}")
