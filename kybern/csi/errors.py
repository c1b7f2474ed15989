"""Errors of the CSI client: every failed CSI call becomes a `CSIError` carrying the gRPC status
code, the driver's endpoint and the method, with a message that says what happened in the CSI
spec's words. Subclasses name the outcomes an orchestrator branches on (`NotFoundError`,
`AlreadyExistsError`, `UnimplementedError`, `DriverUnavailableError`, ...); `final` tells a
definite failure from one whose outcome is unknown (timeouts, an unavailable or busy driver), as
the external provisioner does before it gives a volume up. `from_status` builds them without any
I/O, so the mapping is unit-testable."""

from __future__ import annotations

import grpc


class CSIError(Exception):
    """A CSI call failed. `code` is the gRPC status code, `details` the driver's own text."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        endpoint: str = "",
        method: str = "",
        details: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.endpoint = endpoint
        self.method = method
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def final(self) -> bool:
        """True when the driver definitely did not (and will not) do what was asked; False when
        the operation may still be in progress or may have succeeded (retry the same call)."""
        return self.code not in NOT_FINAL


class DriverUnavailableError(CSIError):
    """Nothing answers at the endpoint (no socket, connection refused, driver restarting)."""


class CSITimeoutError(CSIError):
    """The call's deadline passed before the driver answered; the operation may continue."""


class InvalidArgumentError(CSIError):
    """A required field is missing or a field is invalid or unsupported."""


class NotFoundError(CSIError):
    """The volume, snapshot or node named in the call does not exist."""


class AlreadyExistsError(CSIError):
    """An object of that name (or at that path) exists but is incompatible with the request."""


class FailedPreconditionError(CSIError):
    """The object is not in a state that allows the call (in use, published elsewhere, ...)."""


class OutOfRangeError(CSIError):
    """The capacity range is not allowed by the driver."""


class AbortedError(CSIError):
    """Another operation on the same object is pending, or a list token is stale."""


class ResourceExhaustedError(CSIError):
    """Out of space, or of volumes a node may carry, or no topology can satisfy the request."""


class UnimplementedError(CSIError):
    """The driver does not implement the RPC (check its capabilities before calling)."""


NOT_FINAL = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

_CLASSES: dict[grpc.StatusCode, type[CSIError]] = {
    grpc.StatusCode.UNAVAILABLE: DriverUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: CSITimeoutError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
}


def from_status(
    code: grpc.StatusCode,
    details: str,
    *,
    endpoint: str,
    method: str,
    socket_exists: bool | None = None,
) -> CSIError:
    """The `CSIError` for a failed call of `method` (`/csi.v1.Node/NodeStageVolume`) on
    `endpoint`. `socket_exists` (checked by the caller) tells an absent driver from one that
    refuses connections."""
    short = method.rsplit("/", 1)[-1] or method
    kw = {"code": code, "endpoint": endpoint, "method": method, "details": details}
    if code == grpc.StatusCode.UNAVAILABLE:
        if socket_exists is False:
            text = f"no CSI driver at {endpoint}: is the driver running?"
        else:
            text = f"CSI driver at {endpoint} is unavailable ({details or 'connection failed'})"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        text = f"{short} on {endpoint} did not finish in time; it may still complete"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        text = f"the CSI driver at {endpoint} does not implement {short}"
    else:
        text = f"{short}: {code.name}: {details or 'no details'}"
    return _CLASSES.get(code, CSIError)(text, **kw)
