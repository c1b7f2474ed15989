"""Errors of the CRI client. Every failed call becomes a `CRIError` carrying the gRPC status code,
the endpoint and the method, with a message that says what to do: no socket at the endpoint means
no runtime is running; `UNIMPLEMENTED` on `Version` means the endpoint speaks another CRI version
(v1alpha2 only) or is not a CRI runtime at all. Subclasses name the outcomes a caller branches on
(`RuntimeUnavailableError`, `UnsupportedAPIError`, `NotFoundError`, `CRITimeoutError`);
`from_status` builds them from a status without any I/O, so the mapping is unit-testable."""

from __future__ import annotations

import grpc

API_VERSION = "v1"
SUPPORTED_RUNTIMES = "containerd >= 1.6, CRI-O >= 1.23, or kybern runtime"


class CRIError(Exception):
    """A CRI call failed. `code` is the gRPC status code, `details` the runtime's own text."""

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


class RuntimeUnavailableError(CRIError):
    """Nothing answers at the endpoint (no socket, connection refused, runtime shutting down)."""


class UnsupportedAPIError(CRIError):
    """The endpoint does not serve the RPC in CRI `runtime.v1` (another API version, an older
    runtime without the method, or not a CRI endpoint)."""


class NotFoundError(CRIError):
    """The sandbox, container or image named in the call does not exist."""


class CRITimeoutError(CRIError):
    """The call's deadline passed before the runtime answered."""


_CLASSES: dict[grpc.StatusCode, type[CRIError]] = {
    grpc.StatusCode.UNAVAILABLE: RuntimeUnavailableError,
    grpc.StatusCode.UNIMPLEMENTED: UnsupportedAPIError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.DEADLINE_EXCEEDED: CRITimeoutError,
}


def from_status(
    code: grpc.StatusCode,
    details: str,
    *,
    endpoint: str,
    method: str,
    socket_exists: bool | None = None,
    timeout: float | None = None,
) -> CRIError:
    """The `CRIError` for a failed call of `method` (`/runtime.v1.RuntimeService/Version`) on
    `endpoint`. `socket_exists` (checked by the caller for unix endpoints) tells an absent runtime
    from one that refuses connections."""
    short = method.rsplit("/", 1)[-1] or method
    kw = {"code": code, "endpoint": endpoint, "method": method, "details": details}
    if code == grpc.StatusCode.UNAVAILABLE:
        if socket_exists is False:
            text = f"no CRI runtime at {endpoint}: is containerd running?"
        else:
            text = (
                f"CRI runtime at {endpoint} is unavailable ({details or 'no details'}): "
                "is containerd running, and is this its socket?"
            )
        return RuntimeUnavailableError(text, **kw)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        if short == "Version":
            text = (
                f"the endpoint {endpoint} does not serve CRI runtime.{API_VERSION} ({method} is "
                f"unimplemented): it may speak only the older v1alpha2 API, or not be a CRI "
                f"runtime at all; kybern needs CRI {API_VERSION} ({SUPPORTED_RUNTIMES})"
            )
        else:
            text = (
                f"the CRI runtime at {endpoint} does not implement {method}: it predates that "
                f"RPC or does not support it ({details or 'no details'})"
            )
        return UnsupportedAPIError(text, **kw)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        after = f" after {timeout:g}s" if timeout is not None else ""
        text = f"CRI {short} on {endpoint} timed out{after}: the runtime is slow or stuck"
        return CRITimeoutError(text, **kw)
    cls = _CLASSES.get(code, CRIError)
    return cls(f"CRI {short} on {endpoint} failed: {code.name}: {details}", **kw)


def version_mismatch(endpoint: str, runtime: str, api_version: str) -> UnsupportedAPIError:
    """The runtime answered `Version` but reports an API version other than v1."""
    return UnsupportedAPIError(
        f"the CRI runtime at {endpoint} ({runtime}) reports API version {api_version!r}; "
        f"kybern needs CRI {API_VERSION} ({SUPPORTED_RUNTIMES})",
        code=grpc.StatusCode.FAILED_PRECONDITION,
        endpoint=endpoint,
        method="/runtime.v1.RuntimeService/Version",
    )


def is_v1(api_version: str) -> bool:
    """True for the API versions a CRI v1 runtime reports (`v1`, also `v1.x`), not v1alpha/beta."""
    return api_version == API_VERSION or api_version.startswith(API_VERSION + ".")
