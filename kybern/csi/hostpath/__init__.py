"""`kybern csi-hostpath`: a CSI driver keeping volumes as directories (and, where loop devices
work, block volumes as image files) under a data directory, with every Identity, Controller and
Node RPC and the spec's error codes — the reference driver kybern is tested with. Built on the
`kybern.csi` protocol package only."""

from kybern.csi.hostpath.base import DRIVER_NAME, TOPOLOGY_KEY, Config
from kybern.csi.hostpath.server import HostpathDriver

__all__ = ["DRIVER_NAME", "TOPOLOGY_KEY", "Config", "HostpathDriver"]
