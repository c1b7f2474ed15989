"""The controller-side CSI loops Kubernetes runs as sidecars next to a driver — provisioner,
attacher, resizer and snapshotter — for any CSI driver, built on `kybern.client` and the
`kybern.csi` protocol package. `Sidecars` discovers the driver and runs what it supports;
`crds` holds the `snapshot.storage.k8s.io/v1` CustomResourceDefinitions."""

from kybern.csi_sidecars import crds
from kybern.csi_sidecars.runner import Sidecars

__all__ = ["Sidecars", "crds"]
