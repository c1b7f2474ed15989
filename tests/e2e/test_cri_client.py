"""The CRI client's behaviour at the edges, against real gRPC servers on unix sockets in a temp
dir: no runtime at the endpoint, a stale socket, an endpoint that serves only the older
`runtime.v1alpha2` API, a runtime that reports another API version, a call that outlives its
deadline, `wait_ready`, and a server-streaming RPC. The servers are built on the generated
servicers (`kybern.cri.gen.api_pb2_grpc`), as `kybern runtime` will be."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from kybern.cri import RuntimeClient, api, errors
from kybern.cri.gen import api_pb2_grpc


class FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    def __init__(self, api_version: str = "v1") -> None:
        self.api_version = api_version
        self.hang = asyncio.Event()

    async def Version(self, request: api.VersionRequest, context: Any) -> api.VersionResponse:
        if self.api_version == "hang":
            await self.hang.wait()
        return api.VersionResponse(
            version=request.version,
            runtime_name="fake",
            runtime_version="0.0.1",
            runtime_api_version=self.api_version,
        )

    async def GetContainerEvents(
        self, request: api.GetEventsRequest, context: Any
    ) -> AsyncIterator[api.ContainerEventResponse]:
        for i, kind in enumerate([api.CONTAINER_CREATED_EVENT, api.CONTAINER_STARTED_EVENT]):
            yield api.ContainerEventResponse(
                container_id=f"c{i}", container_event_type=kind, created_at=i + 1
            )


async def serve(path: Path, register: Callable[[Any], None]) -> Any:
    server = grpc.aio.server()
    register(server)
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    return server


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "cri.sock"


async def test_no_runtime_at_endpoint(sock: Path) -> None:
    async with RuntimeClient(f"unix://{sock}") as rt:
        with pytest.raises(errors.RuntimeUnavailableError) as e:
            await rt.connect()
    assert str(e.value) == f"no CRI runtime at unix://{sock}: is containerd running?"
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.method == "/runtime.v1.RuntimeService/Version"


async def test_stale_socket(sock: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))  # bound, never listening: connections are refused
    try:
        async with RuntimeClient(str(sock)) as rt:
            with pytest.raises(errors.RuntimeUnavailableError) as e:
                await rt.list_images()
    finally:
        s.close()
    assert "is unavailable" in str(e.value) and "is containerd running" in str(e.value)


async def test_endpoint_speaking_only_v1alpha2(sock: Path) -> None:
    async def version(request: api.VersionRequest, context: Any) -> api.VersionResponse:
        return api.VersionResponse(runtime_name="old", runtime_api_version="v1alpha2")

    handler = grpc.method_handlers_generic_handler(
        "runtime.v1alpha2.RuntimeService",
        {
            "Version": grpc.unary_unary_rpc_method_handler(
                version,
                request_deserializer=api.VersionRequest.FromString,
                response_serializer=api.VersionResponse.SerializeToString,
            )
        },
    )
    server = await serve(sock, lambda s: s.add_generic_rpc_handlers((handler,)))
    try:
        async with RuntimeClient(f"unix://{sock}") as rt:
            with pytest.raises(errors.UnsupportedAPIError) as e:
                await rt.connect()
    finally:
        await server.stop(None)
    assert e.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert "does not serve CRI runtime.v1" in str(e.value) and "v1alpha2" in str(e.value)


async def test_runtime_reporting_another_api_version(sock: Path) -> None:
    fake = FakeRuntime(api_version="v1alpha2")
    server = await serve(sock, lambda s: api_pb2_grpc.add_RuntimeServiceServicer_to_server(fake, s))
    try:
        async with RuntimeClient(f"unix://{sock}") as rt:
            with pytest.raises(errors.UnsupportedAPIError) as e:
                await rt.connect()
            assert rt.runtime_version is None
    finally:
        await server.stop(None)
    assert "reports API version 'v1alpha2'" in str(e.value)


async def test_wait_ready_and_streaming(sock: Path) -> None:
    async with RuntimeClient(f"unix://{sock}") as rt:
        with pytest.raises(errors.RuntimeUnavailableError):
            await rt.wait_ready(0.2)
        fake = FakeRuntime()
        server = await serve(
            sock, lambda s: api_pb2_grpc.add_RuntimeServiceServicer_to_server(fake, s)
        )
        try:
            v = await rt.wait_ready(10)
            assert (v.runtime_name, v.runtime_api_version, v.version) == ("fake", "v1", "0.1.0")
            assert rt.runtime_version == v and str(v) == "fake://0.0.1"
            events = [e async for e in rt.container_events()]
            assert [(e.container_id, e.container_event_type) for e in events] == [
                ("c0", api.CONTAINER_CREATED_EVENT),
                ("c1", api.CONTAINER_STARTED_EVENT),
            ]
            # the fake leaves every other RPC to the generated servicer: UNIMPLEMENTED
            with pytest.raises(errors.UnsupportedAPIError) as e:
                await rt.list_pod_sandbox()
            assert "does not implement /runtime.v1.RuntimeService/ListPodSandbox" in str(e.value)
        finally:
            await server.stop(None)


async def test_deadline(sock: Path) -> None:
    fake = FakeRuntime(api_version="hang")
    server = await serve(sock, lambda s: api_pb2_grpc.add_RuntimeServiceServicer_to_server(fake, s))
    try:
        async with RuntimeClient(f"unix://{sock}", timeout=0.2) as rt:
            with pytest.raises(errors.CRITimeoutError) as e:
                await rt.version()
    finally:
        fake.hang.set()
        await server.stop(None)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "Version" in str(e.value) and "timed out after 0.2s" in str(e.value)


def test_endpoint_must_be_a_unix_socket() -> None:
    with pytest.raises(ValueError, match="not a unix socket"):
        RuntimeClient("tcp://127.0.0.1:1234")
