"""kybern's CRI client against the real containerd (Debian's, with runc): version negotiation,
images imported from kybern's own OCI layout and pulled from a loopback docker-registry, the
whole life of a hostNetwork pod (sandbox, container, CRI log file, ExecSync, stop and removal),
a container that exits non-zero, the errors a caller branches on, and a containerd stopped with
pods still running that leaves nothing behind. No image comes from the internet."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from containerd_helpers import build_images, pod_names, running_containerd, wait_until

from kybern.cri import Containerd, RuntimeClient, api, errors, logs, messages
from kybern.images import busybox, oci, registry

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) stdout F hello$")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def images() -> tuple[oci.Image, oci.Image, bytes]:
    return await build_images()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctd(images: tuple[oci.Image, oci.Image, bytes]) -> AsyncIterator[Containerd]:
    async with running_containerd(images[2]) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def rt(ctd: Containerd) -> AsyncIterator[RuntimeClient]:
    async with ctd.client(timeout=60) as client:
        await client.connect()
        yield client


async def run_pod(
    rt: RuntimeClient, logdir: Path, name: str, command: list[str]
) -> tuple[str, str, api.PodSandboxConfig]:
    pod, uid = pod_names(name)
    sc = messages.sandbox_config(
        pod, "default", uid, host_network=True, log_directory=str(logdir), hostname=pod
    )
    sid = await rt.run_pod_sandbox(sc)
    cc = messages.container_config(
        "main", busybox.BUSYBOX_IMAGE, command=command, log_path="main/0.log"
    )
    cid = await rt.create_container(sid, cc, sc)
    await rt.start_container(cid)
    return sid, cid, sc


async def test_version_is_containerd_v1(rt: RuntimeClient) -> None:
    v = await rt.connect()
    assert v.runtime_name == "containerd"
    assert v.runtime_api_version == "v1"
    assert v.runtime_version
    status = await rt.status()
    conditions = {c.type: c.status for c in status.status.conditions}
    assert conditions["RuntimeReady"] is True
    assert conditions["NetworkReady"] is True  # the loopback-only CNI config loaded


async def test_imported_images_are_listed(
    rt: RuntimeClient, ctd: Containerd, images: tuple[oci.Image, oci.Image, bytes]
) -> None:
    bb, pause, _ = images
    listed = {tag: img for img in await rt.list_images() for tag in img.repo_tags}
    assert listed[busybox.BUSYBOX_IMAGE].id == bb.config_digest
    assert listed[busybox.PAUSE_IMAGE].id == pause.config_digest
    status = await rt.image_status(busybox.BUSYBOX_IMAGE)
    assert status is not None and status.id == bb.config_digest and status.size > 0
    assert await rt.image_status("kybern.local/absent:1") is None
    fs = await rt.image_fs_info()
    # usage is sampled periodically, so only where it is measured is certain
    assert fs.image_filesystems[0].fs_id.mountpoint.startswith(str(ctd.base_dir / "root"))


async def registry_image() -> oci.Image:
    """busybox with a label of its own: another image id, so removing it spares busybox:1."""

    def build() -> oci.Image:
        layer = busybox.base_layer(busybox.read_busybox())
        return oci.build_image("registry-test", [layer], cmd=["sh"], labels={"test": "pull"})

    return await asyncio.to_thread(build)


async def test_pull_from_local_registry(rt: RuntimeClient, ctd: Containerd) -> None:
    image = await registry_image()
    async with registry.LocalRegistry() as reg:
        assert reg.host.startswith("127.0.0.1:")
        digest = await reg.push(image, "kybern/busybox", "1")
        assert digest == image.digest
        kind, body = await registry.fetch_manifest(reg.url, "kybern/busybox", "1")
        assert kind == oci.MEDIA_TYPE_MANIFEST and body == image.manifest.data
        # a second push finds every blob in place and only puts the manifest again
        assert await reg.push(image, "kybern/busybox", "1") == image.digest
        await ctd.add_registry_host(reg.host)
        ref = f"{reg.host}/kybern/busybox:1"
        image_ref = await rt.pull_image(ref)
        assert image_ref == image.config_digest
        pulled = await rt.image_status(ref)
        assert pulled is not None and ref in pulled.repo_tags
        assert f"{reg.host}/kybern/busybox@{image.digest}" in pulled.repo_digests
        await rt.remove_image(ref)
        assert await rt.image_status(ref) is None
    assert not await asyncio.to_thread(reg.base_dir.exists)
    assert await rt.image_status(busybox.BUSYBOX_IMAGE) is not None


async def test_pod_lifecycle(rt: RuntimeClient, tmp_path: Path) -> None:
    logdir = tmp_path / "pod"
    sid, cid, _ = await run_pod(rt, logdir, "life", ["sh", "-c", "echo hello; sleep 3600"])

    sandbox = await rt.pod_sandbox_status(sid)
    assert sandbox.status.state == api.SANDBOX_READY
    assert sandbox.status.linux.namespaces.options.network == api.NODE

    status = (await rt.container_status(cid)).status
    assert messages.container_state_name(status.state) == "CONTAINER_RUNNING"
    assert status.started_at > 0 and status.log_path == str(logdir / "main/0.log")

    log_file = logdir / "main" / "0.log"

    def read_log() -> list[bytes]:
        return log_file.read_bytes().splitlines() if log_file.exists() else []

    async def logged() -> list[bytes]:
        return await asyncio.to_thread(read_log)

    lines = await wait_until(logged, what="the container's log line")
    assert LOG_LINE.match(lines[0]), lines
    record = logs.parse_line(lines[0])
    assert (record.stream, record.full, record.content) == ("stdout", True, b"hello")

    r = await rt.exec_sync(cid, ["sh", "-c", "echo hi; echo oops >&2; exit 3"], exec_timeout=30)
    assert (r.stdout, r.stderr, r.exit_code) == (b"hi\n", b"oops\n", 3)

    listed = await rt.list_containers(messages.container_filter(pod_sandbox_id=sid))
    assert [c.id for c in listed] == [cid]

    await rt.stop_container(cid, grace_period=2)
    status = (await rt.container_status(cid)).status
    assert status.state == api.CONTAINER_EXITED
    await rt.remove_container(cid)
    with pytest.raises(errors.NotFoundError):
        await rt.container_status(cid)

    await rt.stop_pod_sandbox(sid)
    assert (await rt.pod_sandbox_status(sid)).status.state == api.SANDBOX_NOTREADY
    await rt.stop_pod_sandbox(sid)  # idempotent
    await rt.remove_pod_sandbox(sid)
    assert sid not in {s.id for s in await rt.list_pod_sandbox()}
    await rt.remove_pod_sandbox(sid)  # idempotent


async def test_container_exit_code(rt: RuntimeClient, tmp_path: Path) -> None:
    sid, cid, _ = await run_pod(rt, tmp_path, "exit", ["sh", "-c", "echo bye; exit 7"])

    async def exited() -> api.ContainerStatus | None:
        s = (await rt.container_status(cid)).status
        return s if s.state == api.CONTAINER_EXITED else None

    status = await wait_until(exited, what="the container to exit")
    assert status.exit_code == 7
    assert status.reason == "Error"
    assert status.finished_at > 0 and status.started_at > 0  # containerd may stamp either first
    running = messages.container_filter(state=api.CONTAINER_RUNNING)
    assert cid not in {c.id for c in await rt.list_containers(running)}
    await rt.remove_container(cid)
    await rt.stop_pod_sandbox(sid)
    await rt.remove_pod_sandbox(sid)


async def test_pause_exits_on_sigterm(rt: RuntimeClient) -> None:
    """The sandbox process is PID 1 of its pod: it must handle TERM itself."""
    pod, uid = pod_names("pause")
    sid = await rt.run_pod_sandbox(messages.sandbox_config(pod, "default", uid, host_network=True))
    info = json.loads((await rt.pod_sandbox_status(sid, verbose=True)).info["info"])
    assert info["image"] == busybox.PAUSE_IMAGE
    pid = info["pid"]

    def idle() -> bool:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return "sigsuspend" in wchan and bool(children)

    async def waiting() -> bool:  # past its start-up: the shell blocks in `wait` on its sleep
        return await asyncio.to_thread(idle)

    await wait_until(waiting, what="the sandbox shell to wait on its sleep")
    os.kill(pid, signal.SIGTERM)

    async def not_ready() -> bool:
        return (await rt.pod_sandbox_status(sid)).status.state == api.SANDBOX_NOTREADY

    await wait_until(not_ready, what="the sandbox to stop on SIGTERM")
    await rt.stop_pod_sandbox(sid)
    await rt.remove_pod_sandbox(sid)


async def test_errors_name_the_outcome(rt: RuntimeClient) -> None:
    with pytest.raises(errors.NotFoundError) as e:
        await rt.container_status("0" * 64)
    assert e.value.method == "/runtime.v1.RuntimeService/ContainerStatus"
    # containerd 1.6 predates these RPCs: an older runtime answers UNIMPLEMENTED
    with pytest.raises(errors.UnsupportedAPIError) as u:
        await rt.call("ListMetricDescriptors")
    assert "does not implement /runtime.v1.RuntimeService/ListMetricDescriptors" in str(u.value)
    with pytest.raises(errors.CRIError):
        await rt.pull_image("kybern.local/absent:1", timeout=30)


async def test_stop_removes_running_pods(images: tuple[oci.Image, oci.Image, bytes]) -> None:
    """A second containerd, stopped with a running pod in it: `stop` removes the pod, ends
    every process and leaves no mount or directory (running_containerd asserts that)."""
    async with running_containerd(images[2]) as other:
        base = other.base_dir
        async with other.client(timeout=60) as client:
            _, cid, _ = await run_pod(client, base / "logs", "left", ["sleep", "3600"])
            info = (await client.container_status(cid, verbose=True)).info
            assert '"pid"' in info["info"]
        assert await other.mounts(), "a running container has its rootfs mounted"
    assert not await asyncio.to_thread(base.exists)


async def test_stop_after_containerd_crash(images: tuple[oci.Image, oci.Image, bytes]) -> None:
    """containerd killed with a pod running: `stop` still ends the orphaned shims and the
    container processes (runc delete --force) and leaves nothing."""
    async with running_containerd(images[2]) as other:
        async with other.client(timeout=60) as client:
            _, cid, _ = await run_pod(client, other.base_dir / "logs", "crash", ["sleep", "3600"])
            info = json.loads((await client.container_status(cid, verbose=True)).info["info"])
        assert other._proc is not None
        other._proc.kill()
        await other._proc.wait()
        assert [c for _, c in await other.runc_containers()].count(cid) == 1
    assert not await asyncio.to_thread(Path(f"/proc/{info['pid']}").exists)
