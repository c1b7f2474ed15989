"""The async CRI client: `RuntimeClient` calls a container runtime's `runtime.v1` RuntimeService
and ImageService over gRPC (grpc.aio) on a unix socket, the way a kubelet does. It negotiates
with `Version` (`connect`, or `wait_ready` while a runtime starts), gives every call a deadline
(the client default, or per call), and turns every gRPC failure into a `kybern.cri.errors`
exception whose message says what to do. Methods are the RPC names in snake_case, take and return
the generated messages of `kybern.cri.api` (plain ids, strings and lists where the RPC only wraps
one), and any RPC without a wrapper is reachable through `call`. The node agent is its user."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from kybern.cri import errors
from kybern.cri.gen import api_pb2 as api

DEFAULT_ENDPOINT = "unix:///run/containerd/containerd.sock"
DEFAULT_TIMEOUT = 120.0  # seconds: the kubelet's --runtime-request-timeout default
CONNECT_TIMEOUT = 10.0  # seconds: the Version call of connect()
PULL_TIMEOUT = 600.0
MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # what a kubelet accepts from a runtime
NO_DEADLINE = math.inf
R = TypeVar("R", bound=Message)


@dataclasses.dataclass(frozen=True)
class Method:
    """One RPC of the CRI: its service, full gRPC path and message classes."""

    service: str
    name: str
    request: type[Message]
    response: type[Message]
    streaming: bool

    @property
    def path(self) -> str:
        return f"/runtime.v1.{self.service}/{self.name}"


def _methods() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for service in api.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            out[m.name] = Method(
                service.name,
                m.name,
                getattr(api, m.input_type.name),
                getattr(api, m.output_type.name),
                m.server_streaming,
            )
    return out


METHODS: Mapping[str, Method] = _methods()


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """`(grpc target, socket path)` for `unix:///path` (or a bare absolute path, as kubelets
    still accept); any other scheme is a ValueError."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif endpoint.startswith("/"):
        path = endpoint
    else:
        raise ValueError(
            f"CRI endpoint {endpoint!r} is not a unix socket: use unix:///path/to/runtime.sock"
        )
    if not path.startswith("/"):
        raise ValueError(f"CRI endpoint {endpoint!r} needs an absolute path (unix:///...)")
    return "unix://" + path, path


@dataclasses.dataclass(frozen=True)
class RuntimeVersion:
    """What `Version` reported: e.g. `containerd`, `1.6.20~ds1`, API `v1`."""

    runtime_name: str
    runtime_version: str
    runtime_api_version: str
    version: str

    def __str__(self) -> str:
        return f"{self.runtime_name}://{self.runtime_version}"


def image_spec(image: str | api.ImageSpec) -> api.ImageSpec:
    return image if isinstance(image, api.ImageSpec) else api.ImageSpec(image=image)


class RuntimeClient:
    """A CRI client for one runtime endpoint (and optionally a separate image endpoint).

    `timeout` is the default deadline of each call in seconds; every method also takes
    `timeout=` (None: the default, `NO_DEADLINE`: none). `PullImage` defaults to `pull_timeout`;
    `StopContainer` and `ExecSync` add their own grace/exec timeout to the deadline. Use as
    `async with RuntimeClient(ep) as rt: v = await rt.connect()`."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        image_endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        pull_timeout: float = PULL_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self.image_endpoint = image_endpoint or endpoint
        self._target, self._path = parse_endpoint(endpoint)
        self._image_target, self._image_path = parse_endpoint(self.image_endpoint)
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self.runtime_version: RuntimeVersion | None = None
        self._channels: dict[str, Any] = {}

    # -- connection ---------------------------------------------------------------------------

    def _channel(self, service: str) -> Any:
        target = self._image_target if service == "ImageService" else self._target
        channel = self._channels.get(target)
        if channel is None:
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
                ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
                ("grpc.enable_retries", 0),
                # reconnect soon after a runtime (re)starts, not after grpc's 1 s default
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ]
            channel = grpc.aio.insecure_channel(target, options=options)
            self._channels[target] = channel
        return channel

    async def connect(self, *, timeout: float | None = None) -> RuntimeVersion:
        """Call `Version` and check that the runtime speaks CRI v1; remember and return what it
        reported. Raises `RuntimeUnavailableError` or `UnsupportedAPIError` with advice."""
        v = await self.version(timeout=CONNECT_TIMEOUT if timeout is None else timeout)
        if not errors.is_v1(v.runtime_api_version):
            raise errors.version_mismatch(
                self.endpoint, f"{v.runtime_name} {v.runtime_version}", v.runtime_api_version
            )
        self.runtime_version = v
        return v

    async def wait_ready(self, timeout: float, *, interval: float = 0.05) -> RuntimeVersion:
        """`connect`, retrying while the runtime is unavailable, until `timeout` seconds pass
        (then the last `RuntimeUnavailableError` is raised). For a runtime that is starting."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return await self.connect(timeout=max(min(left, CONNECT_TIMEOUT), 0.05))
            except (errors.RuntimeUnavailableError, errors.CRITimeoutError):
                if time.monotonic() + interval > deadline:
                    raise
            await asyncio.sleep(interval)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def __aenter__(self) -> RuntimeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- generic calls --------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float | None:
        t = self.timeout if timeout is None else timeout
        return None if math.isinf(t) else t

    async def _error(self, e: grpc.aio.AioRpcError, m: Method, timeout: float | None) -> Exception:
        code = e.code()
        exists: bool | None = None
        if code == grpc.StatusCode.UNAVAILABLE:
            path = self._image_path if m.service == "ImageService" else self._path
            exists = await asyncio.to_thread(os.path.exists, path)
        endpoint = self.image_endpoint if m.service == "ImageService" else self.endpoint
        return errors.from_status(
            code,
            e.details() or "",
            endpoint=endpoint,
            method=m.path,
            socket_exists=exists,
            timeout=timeout,
        )

    async def call(
        self, method: str, request: Message | None = None, *, timeout: float | None = None
    ) -> Message:
        """Call any unary RPC by name (`"CheckpointContainer"`), with its request message (an
        empty one if omitted); returns the response message."""
        m = METHODS[method]
        if m.streaming:
            raise ValueError(f"{method} is a streaming RPC: use stream()")
        req = request if request is not None else m.request()
        if not isinstance(req, m.request):
            raise TypeError(f"{method} takes {m.request.__name__}, not {type(req).__name__}")
        deadline = self._deadline(timeout)
        fn = self._channel(m.service).unary_unary(
            m.path,
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.response.FromString,
        )
        try:
            response: Message = await fn(req, timeout=deadline)
        except grpc.aio.AioRpcError as e:
            raise await self._error(e, m, deadline) from e
        return response

    async def _call(
        self, method: str, request: Message, response: type[R], timeout: float | None
    ) -> R:
        out = await self.call(method, request, timeout=timeout)
        assert isinstance(out, response)
        return out

    async def stream(
        self, method: str, request: Message | None = None, *, timeout: float = NO_DEADLINE
    ) -> AsyncIterator[Message]:
        """Iterate a server-streaming RPC (`GetContainerEvents`, `StreamContainers`, ...); the
        stream is cancelled when the iteration stops. No deadline unless given."""
        m = METHODS[method]
        if not m.streaming:
            raise ValueError(f"{method} is a unary RPC: use call()")
        deadline = self._deadline(timeout)
        fn = self._channel(m.service).unary_stream(
            m.path,
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.response.FromString,
        )
        rpc = fn(request if request is not None else m.request(), timeout=deadline)
        try:
            async for item in rpc:
                yield item
        except grpc.aio.AioRpcError as e:
            raise await self._error(e, m, deadline) from e
        finally:
            rpc.cancel()

    # -- RuntimeService: runtime ----------------------------------------------------------------

    async def version(self, *, timeout: float | None = None) -> RuntimeVersion:
        r = await self._call(
            "Version", api.VersionRequest(version="0.1.0"), api.VersionResponse, timeout
        )
        return RuntimeVersion(r.runtime_name, r.runtime_version, r.runtime_api_version, r.version)

    async def status(
        self, verbose: bool = False, *, timeout: float | None = None
    ) -> api.StatusResponse:
        req = api.StatusRequest(verbose=verbose)
        return await self._call("Status", req, api.StatusResponse, timeout)

    async def runtime_config(self, *, timeout: float | None = None) -> api.RuntimeConfigResponse:
        req = api.RuntimeConfigRequest()
        return await self._call("RuntimeConfig", req, api.RuntimeConfigResponse, timeout)

    async def update_runtime_config(self, pod_cidr: str, *, timeout: float | None = None) -> None:
        cfg = api.RuntimeConfig(network_config=api.NetworkConfig(pod_cidr=pod_cidr))
        req = api.UpdateRuntimeConfigRequest(runtime_config=cfg)
        await self._call("UpdateRuntimeConfig", req, api.UpdateRuntimeConfigResponse, timeout)

    async def container_events(self) -> AsyncIterator[api.ContainerEventResponse]:
        """The runtime's container events (`GetContainerEvents`), until the iteration stops."""
        async for event in self.stream("GetContainerEvents", api.GetEventsRequest()):
            assert isinstance(event, api.ContainerEventResponse)
            yield event

    # -- RuntimeService: sandboxes --------------------------------------------------------------

    async def run_pod_sandbox(
        self,
        config: api.PodSandboxConfig,
        runtime_handler: str = "",
        *,
        timeout: float | None = None,
    ) -> str:
        """Create and start a sandbox; returns its id."""
        req = api.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        r = await self._call("RunPodSandbox", req, api.RunPodSandboxResponse, timeout)
        return r.pod_sandbox_id

    async def stop_pod_sandbox(self, pod_sandbox_id: str, *, timeout: float | None = None) -> None:
        req = api.StopPodSandboxRequest(pod_sandbox_id=pod_sandbox_id)
        await self._call("StopPodSandbox", req, api.StopPodSandboxResponse, timeout)

    async def remove_pod_sandbox(
        self, pod_sandbox_id: str, *, timeout: float | None = None
    ) -> None:
        req = api.RemovePodSandboxRequest(pod_sandbox_id=pod_sandbox_id)
        await self._call("RemovePodSandbox", req, api.RemovePodSandboxResponse, timeout)

    async def pod_sandbox_status(
        self, pod_sandbox_id: str, verbose: bool = False, *, timeout: float | None = None
    ) -> api.PodSandboxStatusResponse:
        req = api.PodSandboxStatusRequest(pod_sandbox_id=pod_sandbox_id, verbose=verbose)
        return await self._call("PodSandboxStatus", req, api.PodSandboxStatusResponse, timeout)

    async def list_pod_sandbox(
        self, filter: api.PodSandboxFilter | None = None, *, timeout: float | None = None
    ) -> list[api.PodSandbox]:
        req = api.ListPodSandboxRequest(filter=filter)
        r = await self._call("ListPodSandbox", req, api.ListPodSandboxResponse, timeout)
        return list(r.items)

    # -- RuntimeService: containers -------------------------------------------------------------

    async def create_container(
        self,
        pod_sandbox_id: str,
        config: api.ContainerConfig,
        sandbox_config: api.PodSandboxConfig,
        *,
        timeout: float | None = None,
    ) -> str:
        """Create a container in a sandbox; returns its id."""
        req = api.CreateContainerRequest(
            pod_sandbox_id=pod_sandbox_id, config=config, sandbox_config=sandbox_config
        )
        r = await self._call("CreateContainer", req, api.CreateContainerResponse, timeout)
        return r.container_id

    async def start_container(self, container_id: str, *, timeout: float | None = None) -> None:
        req = api.StartContainerRequest(container_id=container_id)
        await self._call("StartContainer", req, api.StartContainerResponse, timeout)

    async def stop_container(
        self, container_id: str, grace_period: int = 0, *, timeout: float | None = None
    ) -> None:
        """Stop with the container's stop signal, then SIGKILL after `grace_period` seconds.
        The call's deadline is the grace period plus `timeout` (default: the client's)."""
        req = api.StopContainerRequest(container_id=container_id, timeout=grace_period)
        deadline = (self.timeout if timeout is None else timeout) + max(grace_period, 0)
        await self._call("StopContainer", req, api.StopContainerResponse, deadline)

    async def remove_container(self, container_id: str, *, timeout: float | None = None) -> None:
        req = api.RemoveContainerRequest(container_id=container_id)
        await self._call("RemoveContainer", req, api.RemoveContainerResponse, timeout)

    async def list_containers(
        self, filter: api.ContainerFilter | None = None, *, timeout: float | None = None
    ) -> list[api.Container]:
        req = api.ListContainersRequest(filter=filter)
        r = await self._call("ListContainers", req, api.ListContainersResponse, timeout)
        return list(r.containers)

    async def container_status(
        self, container_id: str, verbose: bool = False, *, timeout: float | None = None
    ) -> api.ContainerStatusResponse:
        req = api.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return await self._call("ContainerStatus", req, api.ContainerStatusResponse, timeout)

    async def update_container_resources(
        self,
        container_id: str,
        linux: api.LinuxContainerResources | None = None,
        annotations: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        req = api.UpdateContainerResourcesRequest(
            container_id=container_id, linux=linux, annotations=dict(annotations or {})
        )
        await self._call(
            "UpdateContainerResources", req, api.UpdateContainerResourcesResponse, timeout
        )

    async def reopen_container_log(
        self, container_id: str, *, timeout: float | None = None
    ) -> None:
        req = api.ReopenContainerLogRequest(container_id=container_id)
        await self._call("ReopenContainerLog", req, api.ReopenContainerLogResponse, timeout)

    async def exec_sync(
        self,
        container_id: str,
        cmd: Iterable[str],
        exec_timeout: int = 0,
        *,
        timeout: float | None = None,
    ) -> api.ExecSyncResponse:
        """Run `cmd` in the container and wait for it: stdout, stderr (bytes) and exit_code. The
        runtime kills it after `exec_timeout` seconds (0: never); the call's deadline is that
        plus `timeout` (no deadline when `exec_timeout` is 0 and `timeout` is not given)."""
        req = api.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=exec_timeout)
        if timeout is None:
            deadline = NO_DEADLINE if exec_timeout <= 0 else exec_timeout + self.timeout
        else:
            deadline = timeout + max(exec_timeout, 0)
        return await self._call("ExecSync", req, api.ExecSyncResponse, deadline)

    async def exec(self, request: api.ExecRequest, *, timeout: float | None = None) -> str:
        """Prepare a streaming exec; returns the URL of the runtime's streaming server."""
        return (await self._call("Exec", request, api.ExecResponse, timeout)).url

    async def attach(self, request: api.AttachRequest, *, timeout: float | None = None) -> str:
        """Prepare a streaming attach; returns the streaming server URL."""
        return (await self._call("Attach", request, api.AttachResponse, timeout)).url

    async def port_forward(
        self, pod_sandbox_id: str, ports: Iterable[int] = (), *, timeout: float | None = None
    ) -> str:
        """Prepare a port-forward into the sandbox; returns the streaming server URL."""
        req = api.PortForwardRequest(pod_sandbox_id=pod_sandbox_id, port=list(ports))
        return (await self._call("PortForward", req, api.PortForwardResponse, timeout)).url

    # -- RuntimeService: statistics --------------------------------------------------------------

    async def container_stats(
        self, container_id: str, *, timeout: float | None = None
    ) -> api.ContainerStats:
        req = api.ContainerStatsRequest(container_id=container_id)
        r = await self._call("ContainerStats", req, api.ContainerStatsResponse, timeout)
        return r.stats

    async def list_container_stats(
        self, filter: api.ContainerStatsFilter | None = None, *, timeout: float | None = None
    ) -> list[api.ContainerStats]:
        req = api.ListContainerStatsRequest(filter=filter)
        r = await self._call("ListContainerStats", req, api.ListContainerStatsResponse, timeout)
        return list(r.stats)

    async def pod_sandbox_stats(
        self, pod_sandbox_id: str, *, timeout: float | None = None
    ) -> api.PodSandboxStats:
        req = api.PodSandboxStatsRequest(pod_sandbox_id=pod_sandbox_id)
        r = await self._call("PodSandboxStats", req, api.PodSandboxStatsResponse, timeout)
        return r.stats

    async def list_pod_sandbox_stats(
        self, filter: api.PodSandboxStatsFilter | None = None, *, timeout: float | None = None
    ) -> list[api.PodSandboxStats]:
        req = api.ListPodSandboxStatsRequest(filter=filter)
        r = await self._call("ListPodSandboxStats", req, api.ListPodSandboxStatsResponse, timeout)
        return list(r.stats)

    # -- ImageService ---------------------------------------------------------------------------

    async def list_images(
        self, filter: api.ImageFilter | None = None, *, timeout: float | None = None
    ) -> list[api.Image]:
        req = api.ListImagesRequest(filter=filter)
        r = await self._call("ListImages", req, api.ListImagesResponse, timeout)
        return list(r.images)

    async def image_status(
        self, image: str | api.ImageSpec, *, timeout: float | None = None
    ) -> api.Image | None:
        """The image, or None when the runtime does not have it."""
        req = api.ImageStatusRequest(image=image_spec(image))
        r = await self._call("ImageStatus", req, api.ImageStatusResponse, timeout)
        return r.image if r.HasField("image") and r.image.id else None

    async def pull_image(
        self,
        image: str | api.ImageSpec,
        auth: api.AuthConfig | None = None,
        sandbox_config: api.PodSandboxConfig | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Pull an image; returns its reference on the node (`image_ref`, the image id)."""
        req = api.PullImageRequest(
            image=image_spec(image), auth=auth, sandbox_config=sandbox_config
        )
        deadline = self.pull_timeout if timeout is None else timeout
        r = await self._call("PullImage", req, api.PullImageResponse, deadline)
        return r.image_ref

    async def remove_image(
        self, image: str | api.ImageSpec, *, timeout: float | None = None
    ) -> None:
        req = api.RemoveImageRequest(image=image_spec(image))
        await self._call("RemoveImage", req, api.RemoveImageResponse, timeout)

    async def image_fs_info(self, *, timeout: float | None = None) -> api.ImageFsInfoResponse:
        req = api.ImageFsInfoRequest()
        return await self._call("ImageFsInfo", req, api.ImageFsInfoResponse, timeout)
