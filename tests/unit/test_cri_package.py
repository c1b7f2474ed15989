"""The shape of `kybern.cri` and `kybern.images`: exported surface, independence from server
code, docstrings and sizes of hand-written modules, generated stubs in step with the proto, every
CRI RPC present under its service, and wire facts (field numbers that moved over the API's life,
enum values) pinned so an edit of the proto cannot change them unnoticed."""

from __future__ import annotations

import ast
import hashlib
import pkgutil
from pathlib import Path

import pytest

import kybern.cri
import kybern.images
from kybern.cri import METHODS, api
from kybern.cri.gen import PROTO_SHA256

CRI = Path(kybern.cri.__file__).parent
IMAGES = Path(kybern.images.__file__).parent
FORBIDDEN = ("kybern.apiserver", "kybern.client", "kybern.storage", "kybern.controllers")
FORBIDDEN += ("kybern.cli", "kybern.api", "kybern.scheduler", "kybern.simnodes")

RUNTIME_RPCS = """Version RunPodSandbox StopPodSandbox RemovePodSandbox PodSandboxStatus
ListPodSandbox CreateContainer StartContainer StopContainer RemoveContainer ListContainers
ContainerStatus UpdateContainerResources ReopenContainerLog ExecSync Exec Attach PortForward
ContainerStats ListContainerStats PodSandboxStats ListPodSandboxStats UpdateRuntimeConfig Status
CheckpointContainer GetContainerEvents ListMetricDescriptors ListPodSandboxMetrics RuntimeConfig
StreamPodSandboxes StreamContainers StreamContainerStats StreamPodSandboxStats
StreamPodSandboxMetrics UpdatePodSandboxResources""".split()
IMAGE_RPCS = "ListImages ImageStatus PullImage RemoveImage ImageFsInfo StreamImages".split()


def hand_written() -> list[Path]:
    files = [p for p in CRI.glob("*.py")] + [p for p in IMAGES.glob("*.py")]
    return sorted(files)


@pytest.mark.parametrize("package", [kybern.cri, kybern.images])
def test_exported_members(package: object) -> None:
    exported = set(package.__all__)  # type: ignore[attr-defined]
    public = {n for n in vars(package) if not n.startswith("_")}
    path = Path(package.__file__).parent  # type: ignore[attr-defined]
    modules = {m.name for m in pkgutil.iter_modules([str(path)])}
    assert exported == public - (modules - exported)
    assert all(getattr(package, n) is not None for n in exported)


@pytest.mark.parametrize("path", hand_written(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_shape(path: Path) -> None:
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc and "\n\n" not in doc, "one-paragraph module docstring"
    assert len(path.read_text().splitlines()) < 600
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_generated_stubs_match_the_proto() -> None:
    proto = CRI / "proto" / "api.proto"
    assert hashlib.sha256(proto.read_bytes()).hexdigest() == PROTO_SHA256, (
        "kybern/cri/proto/api.proto changed: run .venv/bin/python scripts/gen_cri.py"
    )


def test_every_rpc_is_served_by_its_service() -> None:
    for name in RUNTIME_RPCS:
        assert METHODS[name].service == "RuntimeService", name
    for name in IMAGE_RPCS:
        assert METHODS[name].service == "ImageService", name
    assert set(METHODS) == set(RUNTIME_RPCS) | set(IMAGE_RPCS)
    assert METHODS["Version"].path == "/runtime.v1.RuntimeService/Version"
    assert METHODS["PullImage"].path == "/runtime.v1.ImageService/PullImage"
    events = METHODS["GetContainerEvents"]
    assert events.streaming and events.request is api.GetEventsRequest
    assert events.response is api.ContainerEventResponse
    assert not METHODS["ExecSync"].streaming
    assert api.DESCRIPTOR.package == "runtime.v1"


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("VersionResponse", "runtime_api_version", 4),
        ("PodSandboxConfig", "windows", 9),
        ("LinuxSandboxSecurityContext", "run_as_group", 8),
        ("LinuxSandboxSecurityContext", "seccomp", 9),
        ("LinuxSandboxSecurityContext", "supplemental_groups_policy", 11),
        ("LinuxContainerSecurityContext", "run_as_group", 12),
        ("LinuxContainerSecurityContext", "supplemental_groups_policy", 17),
        ("ImageSpec", "user_specified_image", 18),
        ("ImageSpec", "runtime_handler", 19),
        ("ImageSpec", "image_ref", 20),
        ("Mount", "uidMappings", 6),
        ("Mount", "image_sub_path", 10),
        ("ContainerConfig", "CDI_devices", 17),
        ("ContainerConfig", "stop_signal", 18),
        ("ContainerStatus", "image_id", 17),
        ("ContainerStatus", "stop_signal", 19),
        ("Namespace", "options", 2),
        ("ExecSyncResponse", "exit_code", 3),
        ("PsiData", "Avg300", 4),
        ("ContainerEventResponse", "pod_sandbox_status", 4),
        ("AuthConfig", "registry_token", 6),
    ],
)
def test_field_numbers(message: str, field: str, number: int) -> None:
    assert api.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number == number


def test_enum_values() -> None:
    assert (api.SANDBOX_READY, api.SANDBOX_NOTREADY) == (0, 1)
    assert [api.CONTAINER_CREATED, api.CONTAINER_RUNNING, api.CONTAINER_EXITED] == [0, 1, 2]
    assert (api.POD, api.CONTAINER, api.NODE, api.TARGET) == (0, 1, 2, 3)
    assert (api.SIGTERM, api.SIGKILL, api.SIGRTMAX) == (23, 13, 65)
    assert api.SecurityProfile.Localhost == 2
    assert (api.SYSTEMD, api.CGROUPFS) == (0, 1)


def test_messages_round_trip_on_the_wire() -> None:
    req = api.CreateContainerRequest(
        pod_sandbox_id="s",
        config=api.ContainerConfig(
            metadata=api.ContainerMetadata(name="c", attempt=2),
            envs=[api.KeyValue(key="A", value="1")],
            stop_signal=api.SIGTERM,
        ),
    )
    data = req.SerializeToString()
    # field 1 (pod_sandbox_id, length-delimited) comes first: tag 0x0a, length 1, "s"
    assert data[:3] == b"\x0a\x01s"
    assert api.CreateContainerRequest.FromString(data) == req
