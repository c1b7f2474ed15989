"""Serving kybern's images from a registry that speaks the Distribution v2 HTTP API: `push` uploads
an `oci.Image` (each blob by a monolithic upload, POST then PUT with the digest, skipped when a
HEAD finds it already there; then the manifest by tag), and `LocalRegistry` runs Debian's
`docker-registry` on a loopback port with its storage in a directory of ours, so runtimes can
pull `127.0.0.1:PORT/busybox:1` over plain HTTP. Used by tests and by anyone who needs the images
in a registry rather than imported into a runtime."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlencode, urljoin

import aiohttp

from kybern.images import oci

REGISTRY_BINARY = "docker-registry"
_LISTENING = re.compile(r"listening on (\S+?):(\d+)")


class RegistryError(RuntimeError):
    """A registry answered a push step with an unexpected status."""

    def __init__(self, step: str, status: int, body: str) -> None:
        super().__init__(f"registry {step}: HTTP {status}: {body[:300]}")
        self.step, self.status = step, status


async def push(
    base_url: str,
    repository: str,
    reference: str,
    image: oci.Image,
    *,
    session: aiohttp.ClientSession | None = None,
) -> str:
    """Push `image` as `<repository>:<reference>` to the registry at `base_url`
    (`http://127.0.0.1:5000`); return the manifest digest."""
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    try:
        root = base_url.rstrip("/") + f"/v2/{repository}/"
        for blob in image.blobs()[:-1]:
            await _push_blob(sess, root, blob)
        url = root + f"manifests/{reference}"
        headers = {"Content-Type": image.manifest.media_type}
        async with sess.put(url, data=image.manifest.data, headers=headers) as r:
            if r.status != 201:
                raise RegistryError(f"PUT manifest {reference}", r.status, await r.text())
            got = r.headers.get("Docker-Content-Digest", image.digest)
            if got != image.digest:
                raise RegistryError("manifest digest", r.status, f"{got} != {image.digest}")
        return image.digest
    finally:
        if own:
            await sess.close()


async def _push_blob(sess: aiohttp.ClientSession, root: str, blob: oci.Blob) -> None:
    async with sess.head(root + f"blobs/{blob.digest}") as r:
        if r.status == 200:
            return
    async with sess.post(root + "blobs/uploads/") as r:
        if r.status != 202:
            raise RegistryError("POST blob upload", r.status, await r.text())
        location = urljoin(root, r.headers["Location"])
    sep = "&" if "?" in location else "?"
    url = location + sep + urlencode({"digest": blob.digest})
    headers = {"Content-Type": "application/octet-stream"}
    async with sess.put(url, data=blob.data, headers=headers) as r:
        if r.status != 201:
            raise RegistryError(f"PUT blob {blob.digest}", r.status, await r.text())


async def fetch_manifest(
    base_url: str, repository: str, reference: str, session: aiohttp.ClientSession | None = None
) -> tuple[str, bytes]:
    """GET a manifest (OCI or Docker v2 media types); return (content type, body)."""
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    accept = ", ".join(
        [
            oci.MEDIA_TYPE_MANIFEST,
            oci.MEDIA_TYPE_INDEX,
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
    )
    try:
        url = base_url.rstrip("/") + f"/v2/{repository}/manifests/{reference}"
        async with sess.get(url, headers={"Accept": accept}) as r:
            if r.status != 200:
                raise RegistryError(f"GET manifest {reference}", r.status, await r.text())
            return r.headers.get("Content-Type", ""), await r.read()
    finally:
        if own:
            await sess.close()


def registry_config(root: Path, addr: str = "127.0.0.1:0") -> str:
    """docker-registry's YAML configuration: filesystem storage under `root`, no auth, HTTP on
    `addr` (loopback), no upload purging."""
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  formatter: text\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root}\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: {addr}\n"
        "  secret: kybern-local-registry\n"
    )


class LocalRegistry:
    """docker-registry on `127.0.0.1:<free port>`, storing under a temporary directory (or
    `base_dir`). Use as `async with LocalRegistry() as reg:` then `reg.host` (`127.0.0.1:PORT`),
    `reg.url` and `await reg.push(image, "busybox", "1")`."""

    def __init__(self, base_dir: Path | None = None, *, binary: str = REGISTRY_BINARY) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="kybern-registry-"))
        self.binary = binary
        self.host = ""
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "registry.log"

    async def start(self, timeout: float = 20.0) -> None:
        exe = shutil.which(self.binary)
        if exe is None:
            raise FileNotFoundError(f"{self.binary} not found: apt-get install docker-registry")
        config = self.base_dir / "config.yml"
        log = await asyncio.to_thread(self._prepare, config)
        with log:
            self._proc = await asyncio.create_subprocess_exec(
                exe, "serve", str(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            text = await asyncio.to_thread(self.log_path.read_text, errors="replace")
            found = _LISTENING.search(text)
            if found:
                self.host = f"127.0.0.1:{found.group(2)}"
                break
            if self._proc.returncode is not None or time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"docker-registry did not start; its log:\n{text[-2000:]}")
            await asyncio.sleep(0.02)
        await self._wait_ready(deadline)

    def _prepare(self, config: Path) -> BinaryIO:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(registry_config(self.base_dir / "data"))
        return self.log_path.open("wb")

    async def _wait_ready(self, deadline: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as sess:
            while True:
                try:
                    async with sess.get(self.url + "/v2/") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry at {self.url} never answered /v2/")
                await asyncio.sleep(0.02)

    async def push(self, image: oci.Image, repository: str, reference: str) -> str:
        """Push `image` as `<host>/<repository>:<reference>`; return the manifest digest."""
        return await push(self.url, repository, reference, image)

    async def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._own_dir:
            await asyncio.to_thread(shutil.rmtree, self.base_dir, True)

    async def __aenter__(self) -> LocalRegistry:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
