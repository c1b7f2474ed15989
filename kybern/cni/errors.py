"""Errors of the CNI runtime library. A plugin reports failure as a spec error result (`code`,
`msg`, `details` on stdout, non-zero exit); `CNIError` carries those fields plus who failed (the
plugin type, the command and the network) so that a message alone tells an operator what broke.
Failures found on the runtime side (plugin not found, timeout, unreadable output) are `CNIError`s
too, with the library's own codes; a bad configuration file is a `ConfigError`."""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """Well-known error codes of the CNI specification (0-99 reserved), plus the runtime's own
    `INTERNAL` (999), the value libcni uses for failures that are not a plugin's error result."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


_CODE_TEXT = {
    Code.INCOMPATIBLE_VERSION: "incompatible CNI version",
    Code.UNSUPPORTED_FIELD: "unsupported field in network configuration",
    Code.UNKNOWN_CONTAINER: "container unknown or does not exist",
    Code.INVALID_ENVIRONMENT: "invalid necessary environment variables",
    Code.IO_FAILURE: "I/O failure",
    Code.DECODING_FAILURE: "failed to decode content",
    Code.INVALID_NETWORK_CONFIG: "invalid network config",
    Code.TRY_AGAIN_LATER: "try again later",
    Code.PLUGIN_NOT_AVAILABLE: "plugin not available",
    Code.PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY: (
        "plugin not available, existing containers may have limited connectivity"
    ),
    Code.INTERNAL: "runtime error",
}


def describe_code(code: int) -> str:
    """A short text for a well-known code, or "plugin-specific error" for codes 100 and up."""
    try:
        return _CODE_TEXT[Code(code)]
    except ValueError:
        return "plugin-specific error" if code >= 100 else "error"


class ConfigError(ValueError):
    """A network configuration (file or bytes) is not valid CNI configuration."""


class NetworkNotFoundError(ConfigError):
    """No configuration in the conf dir has the requested network name."""


class CNIError(Exception):
    """A CNI operation failed. `code`, `msg` and `details` are the spec error fields; `plugin`
    (the plugin type), `command` and `network` say where; `stderr` holds what the plugin logged."""

    def __init__(
        self,
        code: int,
        msg: str,
        details: str = "",
        *,
        plugin: str = "",
        command: str = "",
        network: str = "",
        stderr: str = "",
    ) -> None:
        self.code = int(code)
        self.msg = msg
        self.details = details
        self.plugin = plugin
        self.command = command
        self.network = network
        self.stderr = stderr
        super().__init__(code, msg, details)

    def __str__(self) -> str:
        return self.message

    @property
    def message(self) -> str:
        where = []
        if self.plugin:
            where.append(f"plugin {self.plugin!r}")
        if self.command:
            where.append(self.command)
        if self.network:
            where.append(f"network {self.network!r}")
        head = "CNI " + " ".join(where) + " failed" if where else "CNI operation failed"
        text = f"{head}: {self.msg or describe_code(self.code)}"
        if self.details and self.details != self.msg:
            text += f" ({self.details})"
        return f"{text} [code {self.code}: {describe_code(self.code)}]"

    def to_json(self, cni_version: str = "") -> dict[str, object]:
        """The spec error object (as a plugin would print it)."""
        out: dict[str, object] = {}
        if cni_version:
            out["cniVersion"] = cni_version
        out["code"] = self.code
        out["msg"] = self.msg
        if self.details:
            out["details"] = self.details
        return out


class PluginNotFoundError(CNIError):
    """The executable for a plugin `type` is in none of the plugin directories."""


class PluginTimeoutError(CNIError):
    """A plugin did not finish within the timeout; it and its process group were killed."""


class MultiError(CNIError):
    """Several steps failed (DEL keeps going through the chain, GC through attachments); the
    first failure gives the code and message, the others are listed in `details`."""

    def __init__(self, errors: list[CNIError]) -> None:
        first = errors[0]
        self.errors = list(errors)
        rest = "; ".join(e.message for e in errors[1:])
        details = first.details
        if rest:
            details = f"{details}; also: {rest}" if details else f"also: {rest}"
        super().__init__(
            first.code,
            first.msg,
            details,
            plugin=first.plugin,
            command=first.command,
            network=first.network,
            stderr=first.stderr,
        )
