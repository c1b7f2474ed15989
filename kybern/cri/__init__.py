"""The Container Runtime Interface, `runtime.v1`: kybern's own `.proto` (`proto/api.proto`)
generated into `gen/` (messages re-exported here as `api`, services and servicers in
`gen.api_pb2_grpc`), the async client a kubelet-like agent uses (`RuntimeClient`, with errors
that say what to do), message builders, the CRI log format, and a supervisor for a containerd of
kybern's own (`containerd.Containerd`). A protocol package: the agent and `kybern runtime` build on
it; it imports nothing of the API server, client, storage or controller layers."""

from kybern.cri import containerd, errors, logs, messages
from kybern.cri.client import (
    DEFAULT_ENDPOINT,
    DEFAULT_TIMEOUT,
    METHODS,
    NO_DEADLINE,
    Method,
    RuntimeClient,
    RuntimeVersion,
    parse_endpoint,
)
from kybern.cri.containerd import Containerd, ContainerdConfig
from kybern.cri.errors import (
    CRIError,
    CRITimeoutError,
    NotFoundError,
    RuntimeUnavailableError,
    UnsupportedAPIError,
)
from kybern.cri.gen import api_pb2 as api
from kybern.cri.logs import LogRecord

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_TIMEOUT",
    "METHODS",
    "NO_DEADLINE",
    "CRIError",
    "CRITimeoutError",
    "Containerd",
    "ContainerdConfig",
    "LogRecord",
    "Method",
    "NotFoundError",
    "RuntimeClient",
    "RuntimeUnavailableError",
    "RuntimeVersion",
    "UnsupportedAPIError",
    "api",
    "containerd",
    "errors",
    "logs",
    "messages",
    "parse_endpoint",
]
