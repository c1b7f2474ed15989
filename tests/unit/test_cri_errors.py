"""The CRI client's error mapping, without sockets: each gRPC status becomes the `CRIError`
subclass a caller branches on, with a message that says what to do (no runtime, another CRI
version, an RPC the runtime lacks, a deadline), and endpoints are parsed strictly."""

from __future__ import annotations

import grpc
import pytest

from kybern.cri import client, errors

EP = "unix:///run/kybern/containerd.sock"
VERSION = "/runtime.v1.RuntimeService/Version"


def test_absent_runtime() -> None:
    e = errors.from_status(
        grpc.StatusCode.UNAVAILABLE, "connect failed", endpoint=EP, method=VERSION,
        socket_exists=False,
    )  # fmt: skip
    assert isinstance(e, errors.RuntimeUnavailableError)
    assert str(e) == f"no CRI runtime at {EP}: is containerd running?"
    assert (e.code, e.endpoint, e.method, e.details) == (
        grpc.StatusCode.UNAVAILABLE,
        EP,
        VERSION,
        "connect failed",
    )


def test_refusing_runtime() -> None:
    e = errors.from_status(
        grpc.StatusCode.UNAVAILABLE, "Connection refused", endpoint=EP, method=VERSION,
        socket_exists=True,
    )  # fmt: skip
    assert isinstance(e, errors.RuntimeUnavailableError)
    assert "Connection refused" in str(e) and "is containerd running" in str(e)


def test_other_api_version() -> None:
    e = errors.from_status(grpc.StatusCode.UNIMPLEMENTED, "", endpoint=EP, method=VERSION)
    assert isinstance(e, errors.UnsupportedAPIError)
    assert "does not serve CRI runtime.v1" in str(e) and "v1alpha2" in str(e)


def test_missing_rpc() -> None:
    method = "/runtime.v1.RuntimeService/CheckpointContainer"
    e = errors.from_status(
        grpc.StatusCode.UNIMPLEMENTED, "unknown method", endpoint=EP, method=method
    )
    assert isinstance(e, errors.UnsupportedAPIError)
    assert f"does not implement {method}" in str(e)


def test_deadline() -> None:
    e = errors.from_status(
        grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", endpoint=EP,
        method="/runtime.v1.ImageService/PullImage", timeout=2.5,
    )  # fmt: skip
    assert isinstance(e, errors.CRITimeoutError)
    assert str(e) == f"CRI PullImage on {EP} timed out after 2.5s: the runtime is slow or stuck"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.UNKNOWN, errors.CRIError),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.CRIError),
    ],
)
def test_other_codes(code: grpc.StatusCode, cls: type[errors.CRIError]) -> None:
    method = "/runtime.v1.RuntimeService/ContainerStatus"
    e = errors.from_status(code, "an error occurred", endpoint=EP, method=method)
    assert type(e) is cls
    assert str(e) == f"CRI ContainerStatus on {EP} failed: {code.name}: an error occurred"
    assert e.message == str(e)


def test_version_mismatch() -> None:
    e = errors.version_mismatch(EP, "cri-o 1.20", "v1alpha2")
    assert isinstance(e, errors.UnsupportedAPIError)
    assert "reports API version 'v1alpha2'" in str(e) and "cri-o 1.20" in str(e)
    assert errors.is_v1("v1") and errors.is_v1("v1.2")
    assert not errors.is_v1("v1alpha2") and not errors.is_v1("0.1.0")


@pytest.mark.parametrize(
    ("endpoint", "target", "path"),
    [
        ("unix:///run/containerd/containerd.sock", "unix:///run/containerd/containerd.sock",
         "/run/containerd/containerd.sock"),
        ("/var/run/crio/crio.sock", "unix:///var/run/crio/crio.sock", "/var/run/crio/crio.sock"),
    ],
)  # fmt: skip
def test_parse_endpoint(endpoint: str, target: str, path: str) -> None:
    assert client.parse_endpoint(endpoint) == (target, path)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1", "unix://relative.sock", "npipe:////./x"])
def test_parse_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError, match="unix"):
        client.parse_endpoint(endpoint)
