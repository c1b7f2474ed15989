"""OCI images that kybern builds and serves itself: reproducible layers, configs, manifests and
image layout tarballs (`oci`), the `busybox` and `pause` images made from Debian's busybox-static
(`busybox`), and a Distribution v2 push client with a loopback `docker-registry` runner
(`registry`). Used by `kybern up` (the sandbox image it imports into its runtime) and by the
end-to-end tests; it imports nothing of the API server, client or storage layers."""

from kybern.images import busybox, oci, registry
from kybern.images.busybox import BUSYBOX_IMAGE, PAUSE_IMAGE, BusyboxError
from kybern.images.oci import Blob, Entry, Image, Layer
from kybern.images.registry import LocalRegistry, RegistryError

__all__ = [
    "BUSYBOX_IMAGE",
    "PAUSE_IMAGE",
    "Blob",
    "BusyboxError",
    "Entry",
    "Image",
    "Layer",
    "LocalRegistry",
    "RegistryError",
    "busybox",
    "oci",
    "registry",
]
