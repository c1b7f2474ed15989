"""Images for containers, as kubelet's image manager handles them: `imagePullPolicy` (Always,
IfNotPresent, Never; the default is Always for `:latest` or untagged images), credentials from
the pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson` and the older `dockercfg`) turned
into CRI `AuthConfig`s for the image's registry (each matching one is tried), one pull at a time
per image, and ErrImagePull → ImagePullBackOff with kubelet's back-off between attempts. Remembers
when each image was last used, for image garbage collection."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kybern.agent import backoff, common
from kybern.cri import api, client, errors

log = logging.getLogger("kybern.agent")
Obj = common.Obj
DEFAULT_REGISTRY = "docker.io"


class ImageError(Exception):
    """An image is not available: `reason` is the container's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def split_reference(image: str) -> tuple[str, str, str]:
    """(registry, repository, tag or digest) of an image reference, with Docker's defaults."""
    name, digest = image, ""
    if "@" in name:
        name, digest = name.split("@", 1)
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
    else:
        registry, repo = DEFAULT_REGISTRY, name
    tag = ""
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = repo.rsplit(":", 1)
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = "library/" + repo
    return registry, repo, digest or tag or "latest"


def pull_policy(container: Obj) -> str:
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image", ""))
    _, _, ref = split_reference(image)
    return "Always" if ref == "latest" and "@" not in image else "IfNotPresent"


def _registry_key(key: str) -> str:
    k = key.strip()
    for scheme in ("https://", "http://"):
        if k.startswith(scheme):
            k = k[len(scheme) :]
    k = k.rstrip("/")
    if k.endswith("/v1") or k.endswith("/v2"):
        k = k[:-3]
    if k in ("index.docker.io", "registry-1.docker.io"):
        k = DEFAULT_REGISTRY
    return k


@dataclass(frozen=True)
class Credential:
    registry: str
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""

    def auth_config(self) -> api.AuthConfig:
        user, password = self.username, self.password
        if self.auth and not user:
            with_colon = base64.b64decode(self.auth).decode(errors="replace")
            user, _, password = with_colon.partition(":")
        return api.AuthConfig(
            username=user,
            password=password,
            server_address=self.registry,
            identity_token=self.identity_token,
        )


def credentials(secret: Obj) -> list[Credential]:
    """The registry credentials in a pull secret."""
    data = secret.get("data") or {}
    typ = secret.get("type", "")
    try:
        if typ == "kubernetes.io/dockerconfigjson" or ".dockerconfigjson" in data:
            doc = json.loads(base64.b64decode(data.get(".dockerconfigjson", "")) or b"{}")
            auths = doc.get("auths") or {}
        elif typ == "kubernetes.io/dockercfg" or ".dockercfg" in data:
            auths = json.loads(base64.b64decode(data.get(".dockercfg", "")) or b"{}")
        else:
            return []
    except (ValueError, TypeError):
        return []
    out = []
    for key, entry in auths.items():
        if isinstance(entry, dict):
            out.append(
                Credential(
                    _registry_key(key),
                    str(entry.get("username", "")),
                    str(entry.get("password", "")),
                    str(entry.get("auth", "")),
                    str(entry.get("identitytoken", "")),
                )
            )
    return out


def auth_for(image: str, secrets: Iterable[Obj]) -> list[api.AuthConfig]:
    """The AuthConfigs of `secrets` that match the registry of `image` (most specific first)."""
    registry, repo, _ = split_reference(image)
    full = f"{registry}/{repo}"
    found: list[tuple[int, Credential]] = []
    for s in secrets:
        for cred in credentials(s):
            if full == cred.registry or full.startswith(cred.registry + "/"):
                found.append((len(cred.registry), cred))
            elif cred.registry == registry:
                found.append((len(cred.registry), cred))
    found.sort(key=lambda x: -x[0])
    return [c.auth_config() for _, c in found]


class ImageManager:
    def __init__(
        self,
        rt: client.RuntimeClient,
        *,
        backoff_base: float = backoff.DEFAULT_BASE,
        backoff_cap: float = backoff.DEFAULT_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rt = rt
        self.clock = clock
        self.backoff = backoff.CrashLoopBackOff(backoff_base, backoff_cap, clock)
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, float] = {}  # backoff key -> time of the failed pull
        self.last_used: dict[str, float] = {}  # image id -> time

    async def status(self, image: str) -> api.Image | None:
        return await self.rt.image_status(image)

    async def ensure(
        self,
        pod: Obj,
        container: Obj,
        secrets: Mapping[str, Obj],
        sandbox_config: api.PodSandboxConfig | None = None,
        on_pull: Callable[[str], None] | None = None,
    ) -> api.Image:
        """The image to run `container` with, pulled if the policy says so. Raises ImageError
        (ErrImageNeverPull, ErrImagePull, ImagePullBackOff, InvalidImageName)."""
        image = str(container.get("image", ""))
        if not image:
            raise ImageError("InvalidImageName", "container has no image")
        policy = pull_policy(container)
        present = await self.rt.image_status(image)
        if present is not None and policy != "Always":
            self.last_used[present.id] = self.clock()
            return present
        if policy == "Never":
            raise ImageError(
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
        key = f"{common.pod_uid(pod)}/{image}"
        failed = self._failed.get(key)
        if failed is not None:
            wait = self.backoff.in_backoff(key, failed)
            if wait > 0:
                raise ImageError("ImagePullBackOff", f'Back-off pulling image "{image}"')
        lock = self._locks.setdefault(image, asyncio.Lock())
        async with lock:
            if on_pull is not None:
                on_pull(image)
            auths: list[api.AuthConfig | None] = [*auth_for(image, secrets.values())] or [None]
            last: errors.CRIError | None = None
            for auth in auths:
                try:
                    await self.rt.pull_image(image, auth, sandbox_config)
                    last = None
                    break
                except errors.CRIError as e:
                    last = e
        if last is not None:
            now = self.clock()
            self._failed[key] = now
            self.backoff.restarted(key, now)
            raise ImageError("ErrImagePull", f'failed to pull image "{image}": {last.details}')
        self._failed.pop(key, None)
        pulled = await self.rt.image_status(image)
        if pulled is None:
            raise ImageError("ErrImagePull", f'image "{image}" is missing after its pull')
        self.last_used[pulled.id] = self.clock()
        return pulled

    def forget_pod(self, uid: str) -> None:
        for k in [k for k in self._failed if k.startswith(uid + "/")]:
            del self._failed[k]
        self.backoff.forget_prefix(uid + "/")
