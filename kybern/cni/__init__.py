"""The runtime side of the Container Network Interface (CNI spec 1.0 and 1.1, and the older
result versions plugins may return): network configuration loading, plugin invocation (ADD,
DEL, CHECK, VERSION, GC, STATUS), version negotiation, result conversion, the on-disk result
cache and spec errors. A protocol package: container runtimes (kybern's own, `kybern cni`) call
it; it imports nothing of the API server, client or storage layers."""

from kybern.cni import config, fake, protocol, result, version
from kybern.cni.cache import DEFAULT_CACHE_DIR, CachedAttachment, ResultCache
from kybern.cni.config import NetworkConfigList, PluginConfig
from kybern.cni.errors import (
    CNIError,
    Code,
    ConfigError,
    MultiError,
    NetworkNotFoundError,
    PluginNotFoundError,
    PluginTimeoutError,
)
from kybern.cni.invoke import DEFAULT_BIN_DIRS, ExecOutput, Executor, SubprocessExecutor
from kybern.cni.protocol import GCAttachment, RuntimeConf
from kybern.cni.result import DNS, Interface, IPConfig, Result, Route
from kybern.cni.runtime import Runtime

__all__ = [
    "DEFAULT_BIN_DIRS",
    "DEFAULT_CACHE_DIR",
    "DNS",
    "CNIError",
    "CachedAttachment",
    "Code",
    "ConfigError",
    "ExecOutput",
    "Executor",
    "GCAttachment",
    "IPConfig",
    "Interface",
    "MultiError",
    "NetworkConfigList",
    "NetworkNotFoundError",
    "PluginConfig",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "Result",
    "ResultCache",
    "Route",
    "Runtime",
    "RuntimeConf",
    "SubprocessExecutor",
    "config",
    "fake",
    "protocol",
    "result",
    "version",
]
