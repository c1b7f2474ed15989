"""The Container Storage Interface, `csi.v1`: kybern's own `.proto` (`proto/csi.proto`)
generated into `gen/` (messages re-exported here as `csi`, services and servicers in
`gen.csi_pb2_grpc`), the async client an orchestrator uses (`CSIClient`, with capability
discovery and errors in the spec's terms), the kubelet plugin registration protocol
(`registration`), the node-side pieces the agent builds on (`drivers`: registered drivers and
their CSINode entry; `volumes`: staging and publishing), mount primitives and the hostpath
driver (`hostpath`). A protocol package: it imports nothing of the API server, client, storage
or controller layers."""

from kybern.csi import errors, mount, registration, spec
from kybern.csi.client import DEFAULT_TIMEOUT, METHODS, CallStats, CSIClient, Method, parse_endpoint
from kybern.csi.errors import (
    AlreadyExistsError,
    CSIError,
    CSITimeoutError,
    DriverUnavailableError,
    NotFoundError,
    UnimplementedError,
)
from kybern.csi.gen import csi_pb2 as csi
from kybern.csi.spec import Capabilities

__all__ = [
    "DEFAULT_TIMEOUT",
    "METHODS",
    "AlreadyExistsError",
    "CSIClient",
    "CSIError",
    "CSITimeoutError",
    "CallStats",
    "Capabilities",
    "DriverUnavailableError",
    "Method",
    "NotFoundError",
    "UnimplementedError",
    "csi",
    "errors",
    "mount",
    "parse_endpoint",
    "registration",
    "spec",
]
